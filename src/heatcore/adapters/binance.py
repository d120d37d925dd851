"""Binance USD-M (fstream) and COIN-M (dstream) futures.

Messages: ``forceOrder`` (liquidations; combined-stream ``{"stream", "data"}``
wrappers and ``!forceOrder@arr`` lists too), ``markPriceUpdate`` (mark price),
``aggTrade`` (trade price) and the REST ``/fapi|dapi/v1/openInterest`` body.

Semantics (exchanges.md §0.1, §2.1):
- ``o.S`` is the *order* side of the engine's close order: SELL closes a long.
- Price: average fill ``ap`` with filled quantity ``z`` when something filled
  (``price_kind="fill"``), else the order's limit price ``p`` with ``q``
  (``"order"``).
- USD-M quantities are base coin; COIN-M quantities are contracts of a fixed USD
  value (instrument table, e.g. BTCUSD_PERP = 100 USD).
- The stream is a snapshot of at most one order per symbol per second:
  every liquidation record is marked ``sampled``.
"""

from __future__ import annotations

import re
from typing import Any

from ._base import Context, Record

VENUE = "binance"
_COINM = re.compile(r"^[A-Z0-9]+USD_(PERP|\d{6})$")


def _is_coinm(symbol: str) -> bool:
    return bool(_COINM.match(symbol.upper()))


def _force_order(ctx: Context, msg: Any, out: list[Record]) -> None:
    o = ctx.obj(msg.get("o"), "forceOrder.o")
    symbol = ctx.text(o.get("s"), "o.s")
    if not ctx.wanted(symbol):
        return
    s = o.get("S")
    side = ctx.closed_side(s, "SELL", "BUY", "order side o.S")
    ts = ctx.ts_ms(o.get("T", msg.get("E")), "o.T")
    filled = ctx.opt_num(o.get("z"), "o.z")
    avg = ctx.opt_num(o.get("ap"), "o.ap")
    if filled is not None and filled > 0 and avg is not None and avg > 0:
        qty, price, kind = filled, avg, "fill"
    else:
        qty = ctx.num(o.get("q"), "o.q")
        price = ctx.num(o.get("p"), "o.p")
        kind = "order"
    if _is_coinm(symbol) or "ps" in o:
        notional = ctx.instruments.get(VENUE, symbol).notional_usd(qty, price)
    else:
        notional = qty * price
    ctx.liquidation(out, ts, symbol, side, price, notional, kind, sampled=True)


def _mark(ctx: Context, msg: Any, out: list[Record]) -> None:
    symbol = ctx.text(msg.get("s"), "s")
    if ctx.wanted(symbol):
        ctx.price_record(out, ctx.ts_ms(msg.get("E"), "E"), symbol, ctx.num(msg.get("p"), "p"))


def _agg_trade(ctx: Context, msg: Any, out: list[Record]) -> None:
    symbol = ctx.text(msg.get("s"), "s")
    if ctx.wanted(symbol):
        ctx.price_record(
            out, ctx.ts_ms(msg.get("T", msg.get("E")), "T"), symbol, ctx.num(msg.get("p"), "p")
        )


def _open_interest(ctx: Context, msg: Any, out: list[Record]) -> None:
    symbol = ctx.text(msg.get("symbol"), "symbol")
    if not ctx.wanted(symbol):
        return
    ts = ctx.ts_ms(msg.get("time"), "time")
    oi = ctx.opt_num(msg.get("openInterest"), "openInterest")
    price = ctx.last_price.get(symbol)
    if oi is None or oi <= 0:
        ctx.oi_record(out, ts, symbol, oi, price)
        return
    if _is_coinm(symbol):
        ctx.oi_record(
            out, ts, symbol, ctx.instruments.get(VENUE, symbol).notional_usd(oi, 0.0), price
        )
    elif price is None:
        # USD-M OI is in coins; without a price of our own we cannot convert it.
        ctx.skip("oi_no_price")
    else:
        ctx.oi_record(out, ts, symbol, oi * price, price)


_EVENTS = {"forceOrder": _force_order, "markPriceUpdate": _mark, "aggTrade": _agg_trade}


def _one(ctx: Context, msg: Any, out: list[Record]) -> None:
    msg = ctx.obj(msg, "message")
    if "stream" in msg and "data" in msg:
        data = msg["data"]
        if isinstance(data, list):
            ctx.each(data, lambda m: _one(ctx, m, out))
        else:
            _one(ctx, data, out)
        return
    e = msg.get("e")
    if isinstance(e, str) and e in _EVENTS:
        _EVENTS[e](ctx, msg, out)
    elif "openInterest" in msg and "symbol" in msg:
        _open_interest(ctx, msg, out)
    elif "result" in msg and "id" in msg:
        ctx.skip("ack")
    elif "code" in msg and "msg" in msg:
        raise ctx.fail("venue_error", f"error {msg.get('code')!r}: {str(msg.get('msg'))[:80]}")
    else:
        raise ctx.fail("unknown_message", f"unrecognised message (e={e!r})")


def parse(ctx: Context, msg: Any) -> list[Record]:
    out: list[Record] = []
    if isinstance(msg, list):  # !forceOrder@arr / !markPrice@arr batches
        ctx.each(msg, lambda m: _one(ctx, m, out))
    else:
        _one(ctx, msg, out)
    return out
