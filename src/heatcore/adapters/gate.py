"""Gate futures WS v4 (USDT-settled).

Messages: ``futures.public_liquidates`` (sampled: at most one order per contract
per second) and ``futures.tickers`` (mark price, ``total_size`` open interest
in contracts).

Semantics (exchanges.md §0.1, §2.4): ``size`` is the signed quantity of the
liquidation *order* in contracts: negative (a sell) closes a long. This sign
convention is inferred from the docs' wording (uncertain). ``price`` is the
order price. Contracts become coin through the ``quanto_multiplier`` of the
instrument table (BTC_USDT 0.0001 BTC).
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "gate"


def _liq(ctx: Context, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "result[]")
    contract = ctx.text(row.get("contract"), "contract")
    if not ctx.wanted(contract):
        return
    size = ctx.num(row.get("size"), "size", positive=False)
    if size == 0:
        raise ctx.fail("bad_size", "size 0 says neither side")
    side = "long" if size < 0 else "short"
    ts = ctx.ts_ms(row.get("time_ms"), "time_ms")
    price = ctx.num(row.get("price"), "price")
    notional = ctx.instruments.get(VENUE, contract).notional_usd(size, price)
    ctx.liquidation(out, ts, contract, side, price, notional, "order", sampled=True)


def _ticker(ctx: Context, ts: int, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "result[]")
    contract = ctx.text(row.get("contract"), "contract")
    if not ctx.wanted(contract):
        return
    mark = row.get("mark_price")
    if mark is not None and mark != "":
        ctx.price_record(out, ts, contract, ctx.num(mark, "mark_price"))
    if "total_size" in row:
        contracts = ctx.opt_num(row.get("total_size"), "total_size")
        price = ctx.last_price.get(contract)
        if contracts is None or contracts <= 0:
            ctx.oi_record(out, ts, contract, contracts, price)
        elif price is None:
            ctx.skip("oi_no_price")
        else:
            inst = ctx.instruments.get(VENUE, contract)
            ctx.oi_record(out, ts, contract, inst.notional_usd(contracts, price), price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    channel = msg.get("channel")
    event = msg.get("event")
    if channel in ("futures.pong", "futures.ping"):
        ctx.skip("heartbeat")
        return out
    if event in ("subscribe", "unsubscribe"):
        if msg.get("error"):
            raise ctx.fail("venue_error", f"{event} failed: {str(msg.get('error'))[:80]}")
        ctx.skip("ack")
        return out
    if event not in ("update", "all"):
        raise ctx.fail("unknown_message", f"unsupported event {str(event)[:30]!r}")
    if channel == "futures.public_liquidates":
        ctx.each(ctx.arr(msg.get("result"), "result"), lambda r: _liq(ctx, r, out))
    elif channel == "futures.tickers":
        ts = ctx.ts_ms(msg.get("time_ms"), "time_ms")
        ctx.each(ctx.arr(msg.get("result"), "result"), lambda r: _ticker(ctx, ts, r, out))
    else:
        raise ctx.fail("unknown_message", f"unsupported channel {str(channel)[:40]!r}")
    return out
