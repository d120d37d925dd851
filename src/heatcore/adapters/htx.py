"""HTX (Huobi) USDT-margined swaps.

Messages: notification WS ``public.{contract}.liquidation_orders`` (gzip frames
are decompressed by the caller), market WS ``market.{contract}.mark_price.kline.{period}``
(mark price) and ``market.{contract}.trade.detail`` (trade price), and the REST
``/linear-swap-api/v1/swap_open_interest`` body.

Semantics (exchanges.md §0.1, §2.7): ``direction`` is the *order* side with
``offset=close``: sell closes a long. ``price`` is the bankruptcy price. Size:
``amount`` (base coin) when present, else ``volume`` contracts times the
contract size of the instrument table (BTC-USDT 0.001 BTC, uncertain).
The feed is believed complete.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "htx"


def _liq(ctx: Context, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "data[]")
    code = ctx.text(row.get("contract_code"), "contract_code")
    if not ctx.wanted(code):
        return
    d = row.get("direction")
    offset = row.get("offset", "close")
    if offset != "close":
        raise ctx.fail("bad_side", f"a liquidation must close a position, offset {offset!r}")
    side = ctx.closed_side(d, "sell", "buy", "direction")
    ts = ctx.ts_ms(row.get("created_at"), "created_at")
    price = ctx.num(row.get("price"), "price")
    amount = ctx.opt_num(row.get("amount"), "amount")
    if amount is not None:
        if amount <= 0:
            raise ctx.fail("bad_size", f"amount {amount!r}")
        notional = amount * price
    else:
        volume = ctx.num(row.get("volume"), "volume")
        notional = ctx.instruments.get(VENUE, code).notional_usd(volume, price)
    ctx.liquidation(out, ts, code, side, price, notional, "bankruptcy", sampled=False)


def _open_interest(ctx: Context, ts: int, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "data[]")
    code = ctx.text(row.get("contract_code"), "contract_code")
    if not ctx.wanted(code):
        return
    price = ctx.last_price.get(code)
    value = ctx.opt_num(row.get("value"), "value")  # USDT value of the open positions
    if value is None:
        amount = ctx.opt_num(row.get("amount"), "amount")
        if amount is not None and amount > 0:
            if price is None:
                ctx.skip("oi_no_price")
                return
            value = amount * price
        else:
            value = amount
    ctx.oi_record(out, ts, code, value, price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    if "ping" in msg or msg.get("op") in ("ping", "pong"):
        ctx.skip("heartbeat")
        return out
    op = msg.get("op")
    if op == "notify":
        topic = ctx.text(msg.get("topic"), "topic")
        if not topic.endswith(".liquidation_orders"):
            raise ctx.fail("unknown_message", f"unsupported topic {topic[:50]!r}")
        ctx.each(ctx.arr(msg.get("data"), "data"), lambda r: _liq(ctx, r, out))
        return out
    if op in ("sub", "unsub") or "subbed" in msg:
        code = msg.get("err-code", 0)
        if code not in (0, None) or msg.get("status") == "error":
            raise ctx.fail("venue_error", f"subscription failed: {str(msg.get('err-msg'))[:80]}")
        ctx.skip("ack")
        return out
    ch = msg.get("ch")
    if isinstance(ch, str):
        parts = ch.split(".")
        if len(parts) < 3 or parts[0] != "market":
            raise ctx.fail("unknown_message", f"unsupported channel {ch[:50]!r}")
        code = parts[1]
        if not ctx.wanted(code):
            return out
        tick = ctx.obj(msg.get("tick"), "tick")
        if ".mark_price.kline." in ch:
            ctx.price_record(
                out, ctx.ts_ms(msg.get("ts"), "ts"), code, ctx.num(tick.get("close"), "close")
            )
        elif ch.endswith(".trade.detail"):
            trades = ctx.arr(tick.get("data"), "tick.data")
            if not trades:
                raise ctx.fail("malformed", "empty trade batch")
            last = ctx.obj(trades[-1], "tick.data[-1]")
            ctx.price_record(
                out, ctx.ts_ms(last.get("ts"), "ts"), code, ctx.num(last.get("price"), "price")
            )
        else:
            raise ctx.fail("unknown_message", f"unsupported channel {ch[:50]!r}")
        return out
    if msg.get("status") == "ok" and "data" in msg:  # REST swap_open_interest
        ts = ctx.ts_ms(msg.get("ts"), "ts")
        ctx.each(ctx.arr(msg.get("data"), "data"), lambda r: _open_interest(ctx, ts, r, out))
        return out
    if msg.get("status") == "error":
        raise ctx.fail("venue_error", f"{msg.get('err_code')!r}: {str(msg.get('err_msg'))[:80]}")
    raise ctx.fail("unknown_message", "unrecognised message")
