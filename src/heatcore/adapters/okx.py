"""OKX v5 public channels and REST.

Messages: WS ``liquidation-orders`` (and the REST ``/api/v5/public/liquidation-orders``
body, same ``details`` layout), ``mark-price`` and ``open-interest``.

Semantics (exchanges.md §0.1, §2.3): ``details[].side`` is the *order* side
(sell closes a long); ``posSide`` (``long``/``short`` in hedge mode) is checked
against it when present. ``bkPx`` is the bankruptcy price. ``sz`` counts
contracts for SWAP/FUTURES (notional ``sz * ctVal * bkPx``; inverse
``sz * ctVal`` USD) and base coin for MARGIN. At most one order per contract per
second is pushed: every record is ``sampled``. All ``details`` entries are read.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "okx"


def _detail(ctx: Context, inst_id: str, inst_type: str, d: Any, out: list[Record]) -> None:
    d = ctx.obj(d, "details[]")
    s = d.get("side")
    side = ctx.closed_side(s, "sell", "buy", "details.side")
    pos = d.get("posSide")
    if pos in ("long", "short") and pos != side:
        raise ctx.fail("inconsistent_side", f"order side {s!r} contradicts posSide {pos!r}")
    if pos not in (None, "", "net", "long", "short"):
        raise ctx.fail("bad_side", f"posSide {pos!r}")
    ts = ctx.ts_ms(d.get("ts"), "details.ts")
    price = ctx.num(d.get("bkPx"), "bkPx")
    size = ctx.num(d.get("sz"), "sz")
    if inst_type == "MARGIN":
        notional = size * price
    else:
        notional = ctx.instruments.get(VENUE, inst_id).notional_usd(size, price)
    ctx.liquidation(out, ts, inst_id, side, price, notional, "bankruptcy", sampled=True)


def _liq_item(ctx: Context, item: Any, out: list[Record]) -> None:
    item = ctx.obj(item, "data[]")
    inst_id = ctx.text(item.get("instId"), "instId")
    if not ctx.wanted(inst_id):
        return
    inst_type = item.get("instType", "SWAP")
    if inst_type not in ("SWAP", "FUTURES", "MARGIN"):
        ctx.skip("unsupported_inst_type")
        return
    ctx.each(
        ctx.arr(item.get("details"), "details"), lambda d: _detail(ctx, inst_id, inst_type, d, out)
    )


def _mark(ctx: Context, item: Any, out: list[Record]) -> None:
    item = ctx.obj(item, "data[]")
    inst_id = ctx.text(item.get("instId"), "instId")
    if ctx.wanted(inst_id):
        ctx.price_record(
            out, ctx.ts_ms(item.get("ts"), "ts"), inst_id, ctx.num(item.get("markPx"), "markPx")
        )


def _oi(ctx: Context, item: Any, out: list[Record]) -> None:
    item = ctx.obj(item, "data[]")
    inst_id = ctx.text(item.get("instId"), "instId")
    if not ctx.wanted(inst_id):
        return
    ts = ctx.ts_ms(item.get("ts"), "ts")
    price = ctx.last_price.get(inst_id)
    usd = ctx.opt_num(item.get("oiUsd"), "oiUsd")
    if usd is None:
        ccy = ctx.opt_num(item.get("oiCcy"), "oiCcy")
        contracts = ctx.opt_num(item.get("oi"), "oi")
        inst = ctx.instruments.find(VENUE, inst_id)
        if contracts is not None and inst is not None and inst.inverse:
            usd = inst.notional_usd(contracts, 0.0)
        elif ccy is not None and ccy > 0 and price is None:
            ctx.skip("oi_no_price")
            return
        elif ccy is not None:
            usd = ccy * (price or 0.0)
    ctx.oi_record(out, ts, inst_id, usd, price)


_CHANNELS = {"liquidation-orders": _liq_item, "mark-price": _mark, "open-interest": _oi}


def parse(ctx: Context, msg: Any) -> list[Record]:
    if msg in ("pong", "ping"):
        ctx.skip("heartbeat")
        return []
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    event = msg.get("event")
    if event is not None:
        if event == "error":
            raise ctx.fail("venue_error", f"error {msg.get('code')!r}: {str(msg.get('msg'))[:80]}")
        ctx.skip("ack")
        return out
    arg = msg.get("arg")
    if isinstance(arg, dict):
        channel = arg.get("channel")
        fn = _CHANNELS.get(channel) if isinstance(channel, str) else None
        if fn is None:
            raise ctx.fail("unknown_message", f"unsupported channel {str(channel)[:40]!r}")
        ctx.each(ctx.arr(msg.get("data"), "data"), lambda it: fn(ctx, it, out))
        return out
    if "code" in msg and "data" in msg:  # REST liquidation-orders response
        if msg.get("code") != "0":
            raise ctx.fail(
                "venue_error", f"REST code {msg.get('code')!r}: {str(msg.get('msg'))[:80]}"
            )
        ctx.each(ctx.arr(msg.get("data"), "data"), lambda it: _liq_item(ctx, it, out))
        return out
    raise ctx.fail("unknown_message", "message without arg or event")
