"""BitMEX realtime WS.

Messages: table ``liquidation`` (the engine's resting liquidation orders) and
table ``instrument`` (mark price, open interest).

Semantics (exchanges.md §0.1, §2.5, §3.2): ``side`` is the liquidation
engine's *order* side (Sell closes a long). The engine places its order at the
bankruptcy price, so ``price`` is reported as ``"bankruptcy"``. A liquidation is
counted once, on ``insert``, with the initial ``leavesQty``; ``partial`` (orders
resting before we subscribed), ``update`` and ``delete`` are not new events.
Rows carry no timestamp: the receive time is used. XBTUSD is inverse, one
contract = 1 USD (instrument table); quanto contracts are unknown instruments.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "bitmex"


def _liq(ctx: Context, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "data[]")
    symbol = ctx.text(row.get("symbol"), "symbol")
    if not ctx.wanted(symbol):
        return
    s = row.get("side")
    side = ctx.closed_side(s, "Sell", "Buy", "side")
    price = ctx.num(row.get("price"), "price")
    qty = ctx.num(row.get("leavesQty"), "leavesQty")
    order_id = row.get("orderID")
    if isinstance(order_id, str) and not ctx.remember("order", order_id):
        ctx.skip("duplicate")
        return
    notional = ctx.instruments.get(VENUE, symbol).notional_usd(qty, price)
    ctx.liquidation(out, ctx.recv_ts(), symbol, side, price, notional, "bankruptcy", sampled=False)


def _instrument(ctx: Context, row: Any, out: list[Record]) -> None:
    row = ctx.obj(row, "data[]")
    symbol = ctx.text(row.get("symbol"), "symbol")
    if not ctx.wanted(symbol):
        return
    ts = ctx.iso_ms(row["timestamp"], "timestamp") if "timestamp" in row else ctx.recv_ts()
    if row.get("markPrice") is not None:
        ctx.price_record(out, ts, symbol, ctx.num(row.get("markPrice"), "markPrice"))
    if "openInterest" in row:
        contracts = ctx.opt_num(row.get("openInterest"), "openInterest")
        price = ctx.last_price.get(symbol)
        if contracts is None or contracts <= 0:
            ctx.oi_record(out, ts, symbol, contracts, price)
            return
        inst = ctx.instruments.get(VENUE, symbol)
        if not inst.inverse and price is None:
            ctx.skip("oi_no_price")
            return
        ctx.oi_record(out, ts, symbol, inst.notional_usd(contracts, price or 0.0), price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    if msg in ("pong", "ping"):
        ctx.skip("heartbeat")
        return []
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    table = msg.get("table")
    if table is None:
        if "error" in msg:
            raise ctx.fail("venue_error", str(msg.get("error"))[:80])
        if "info" in msg or "success" in msg:
            ctx.skip("ack")
            return out
        raise ctx.fail("unknown_message", "message without table")
    action = msg.get("action")
    if table == "liquidation":
        if action == "insert":
            ctx.each(ctx.arr(msg.get("data"), "data"), lambda r: _liq(ctx, r, out))
        elif action in ("partial", "update", "delete"):
            ctx.skip("liquidation_" + action)
        else:
            raise ctx.fail("malformed", f"unknown action {str(action)[:20]!r}")
    elif table == "instrument":
        if action not in ("partial", "insert", "update"):
            ctx.skip("instrument_" + str(action)[:20])
            return out
        ctx.each(ctx.arr(msg.get("data"), "data"), lambda r: _instrument(ctx, r, out))
    else:
        raise ctx.fail("unknown_message", f"unsupported table {str(table)[:40]!r}")
    return out
