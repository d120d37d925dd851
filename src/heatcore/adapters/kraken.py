"""Kraken Futures WS v1.

Messages: feed ``trade`` (liquidations are trades with ``type=liquidation``)
and feed ``ticker`` (``markPrice``, ``openInterest``). ``trade_snapshot``
(recent history sent on subscribe, re-sent on every reconnect) is not replayed.

Semantics (exchanges.md §0.1, §2.9): ``side`` is the taker side of the print.
The liquidated position is not stated; liquidation orders are taker orders, so
a sell print is taken as a liquidated long (uncertain; same reading as dYdX).
Price is the trade print. ``PF_`` (linear) quantities are base coin, ``PI_``
(inverse) quantities are 1-USD contracts. Complete feed.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "kraken"


def _inverse(pid: str) -> bool:
    return pid.upper().startswith(("PI_", "FI_"))


def _trade(ctx: Context, t: Any, out: list[Record]) -> None:
    pid = ctx.text(t.get("product_id"), "product_id")
    if t.get("type") != "liquidation":
        ctx.skip("not_liquidation")
        return
    if not ctx.wanted(pid):
        return
    s = t.get("side")
    if s not in ("buy", "sell"):
        raise ctx.fail("bad_side", f"side must be buy or sell, got {s!r}")
    ts = ctx.ts_ms(t.get("time"), "time")
    price = ctx.num(t.get("price"), "price")
    qty = ctx.num(t.get("qty"), "qty")
    notional = qty if _inverse(pid) else qty * price
    ctx.liquidation(
        out, ts, pid, "long" if s == "sell" else "short", price, notional, "trade", sampled=False
    )


def _ticker(ctx: Context, t: Any, out: list[Record]) -> None:
    pid = ctx.text(t.get("product_id"), "product_id")
    if not ctx.wanted(pid):
        return
    ts = ctx.ts_ms(t.get("time"), "time")
    if t.get("markPrice") is not None:
        ctx.price_record(out, ts, pid, ctx.num(t.get("markPrice"), "markPrice"))
    if "openInterest" in t:
        oi = ctx.opt_num(t.get("openInterest"), "openInterest")
        price = ctx.last_price.get(pid)
        if oi is None or oi <= 0 or _inverse(pid):
            ctx.oi_record(out, ts, pid, oi, price)
        elif price is None:
            ctx.skip("oi_no_price")
        else:
            ctx.oi_record(out, ts, pid, oi * price, price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    event = msg.get("event")
    if event is not None:
        if event in ("error", "subscribed_failed", "alert"):
            raise ctx.fail("venue_error", f"{event}: {str(msg.get('message'))[:80]}")
        ctx.skip("ack")
        return out
    feed = msg.get("feed")
    if feed == "heartbeat":
        ctx.skip("heartbeat")
    elif feed == "trade":
        _trade(ctx, msg, out)
    elif feed == "trade_snapshot":
        ctx.skip("trade_snapshot")
    elif feed == "ticker":
        _ticker(ctx, msg, out)
    else:
        raise ctx.fail("unknown_message", f"unsupported feed {str(feed)[:30]!r}")
    return out
