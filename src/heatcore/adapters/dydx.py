"""dYdX v4 indexer WS.

Messages: ``v4_trades`` ``channel_data`` / ``channel_batch_data`` (liquidations
are trades of ``type`` ``LIQUIDATED``, or ``liquidation: true`` on older
indexers) and ``v4_markets`` (oracle price, open interest in base coin).
The ``subscribed`` reply of ``v4_trades`` is recent history (re-sent on every
reconnect) and is not replayed; that of ``v4_markets`` is a current snapshot
and is used.

Semantics (exchanges.md §0.1, §2.10): ``side`` is the taker side and
liquidation orders are taker IOC orders, so SELL means a long was liquidated
(likely; uncertain). ``DELEVERAGED`` (ADL) fills are not liquidations and are
counted apart. Price is the trade print; sizes are base coin. Complete feed.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "dydx"


def _trade(ctx: Context, market: str, t: Any, out: list[Record]) -> None:
    t = ctx.obj(t, "trade")
    kind = t.get("type")
    if kind == "DELEVERAGED":
        ctx.skip("deleveraged")
        return
    if kind != "LIQUIDATED" and t.get("liquidation") is not True:
        ctx.skip("not_liquidation")
        return
    s = t.get("side")
    if s not in ("BUY", "SELL"):
        raise ctx.fail("bad_side", f"side must be BUY or SELL, got {s!r}")
    ts = ctx.iso_ms(t.get("createdAt"), "createdAt")
    price = ctx.num(t.get("price"), "price")
    size = ctx.num(t.get("size"), "size")
    ctx.liquidation(
        out,
        ts,
        market,
        "long" if s == "SELL" else "short",
        price,
        size * price,
        "trade",
        sampled=False,
    )


def _trades(ctx: Context, market: str, contents: Any, out: list[Record]) -> None:
    contents = ctx.obj(contents, "contents")
    ctx.each(
        ctx.arr(contents.get("trades"), "contents.trades"), lambda t: _trade(ctx, market, t, out)
    )


def _markets(ctx: Context, contents: Any, out: list[Record]) -> None:
    contents = ctx.obj(contents, "contents")
    oracle = contents.get("oraclePrices")
    if oracle is not None:
        for market, row in ctx.obj(oracle, "oraclePrices").items():
            if not ctx.wanted(market):
                continue
            row = ctx.obj(row, "oraclePrices[]")
            ts = ctx.iso_ms(row["effectiveAt"]) if "effectiveAt" in row else ctx.recv_ts()
            ctx.price_record(
                out, ts, market, ctx.num(row.get("price", row.get("oraclePrice")), "price")
            )
    trading = contents.get("trading", contents.get("markets"))
    if trading is None:
        return
    for market, row in ctx.obj(trading, "trading").items():
        if not ctx.wanted(market):
            continue
        row = ctx.obj(row, "trading[]")
        ts = ctx.recv_ts()
        if row.get("oraclePrice") is not None:
            ctx.price_record(out, ts, market, ctx.num(row.get("oraclePrice"), "oraclePrice"))
        if "openInterest" not in row:
            continue  # partial update: OI unchanged, not zero
        oi = ctx.opt_num(row.get("openInterest"), "openInterest")
        price = ctx.last_price.get(market)
        if oi is not None and oi > 0 and price is None:
            ctx.skip("oi_no_price")
            continue
        ctx.oi_record(out, ts, market, None if oi is None else oi * (price or 0.0), price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    kind = msg.get("type")
    channel = msg.get("channel")
    if kind in ("connected", "unsubscribed", "pong"):
        ctx.skip("ack")
        return out
    if kind == "error":
        raise ctx.fail("venue_error", str(msg.get("message"))[:80])
    if kind not in ("subscribed", "channel_data", "channel_batch_data"):
        raise ctx.fail("unknown_message", f"unsupported type {str(kind)[:30]!r}")
    if channel == "v4_trades":
        if kind == "subscribed":
            ctx.skip("trades_snapshot")
            return out
        market = ctx.text(msg.get("id"), "id")
        if not ctx.wanted(market):
            return out
        if kind == "channel_batch_data":
            ctx.each(
                ctx.arr(msg.get("contents"), "contents"), lambda c: _trades(ctx, market, c, out)
            )
        else:
            _trades(ctx, market, msg.get("contents"), out)
    elif channel == "v4_markets":
        if kind == "channel_batch_data":
            ctx.each(ctx.arr(msg.get("contents"), "contents"), lambda c: _markets(ctx, c, out))
        else:
            _markets(ctx, msg.get("contents"), out)
    else:
        raise ctx.fail("unknown_message", f"unsupported channel {str(channel)[:30]!r}")
    return out
