"""Bybit v5 public streams (linear and inverse).

Messages: ``allLiquidation.{symbol}`` (complete, batched every 500 ms), the
deprecated ``liquidation.{symbol}`` (at most 1 per second: sampled), and
``tickers.{symbol}`` (mark price, open interest; snapshot then *partial*
deltas: a field absent from a delta is unchanged, never zero).

Semantics (exchanges.md §0.1, §2.2): ``S``/``side`` is the *position* side:
``Buy`` means a long was liquidated (opposite to Binance). ``p`` is taken as the
bankruptcy price. Linear sizes are base coin; inverse symbols (``BTCUSD``,
``BTCUSDH26``) count 1-USD contracts.
"""

from __future__ import annotations

import re
from typing import Any

from ._base import Context, Instrument, Record

VENUE = "bybit"
_INVERSE = re.compile(r"^[A-Z0-9]+USD([FGHJKMNQUVXZ]\d{2})?$")


def _instrument(ctx: Context, symbol: str) -> Instrument:
    inst = ctx.instruments.find(VENUE, symbol)
    if inst is not None:
        return inst
    s = symbol.upper()
    if s.endswith(("USDT", "USDC", "PERP")) or re.search(r"-\d{2}[A-Z]{3}\d{2}$", s):
        return Instrument(VENUE, symbol, 1.0)
    if _INVERSE.match(s):
        return Instrument(VENUE, symbol, 1.0, inverse=True)
    return ctx.instruments.get(VENUE, symbol)  # raises unknown_instrument


def _side(ctx: Context, s: Any) -> str:
    if s == "Buy":
        return "long"
    if s == "Sell":
        return "short"
    raise ctx.fail("bad_side", f"position side must be Buy or Sell, got {s!r}")


def _liq(ctx: Context, row: Any, out: list[Record], what: str, fields: tuple[str, str, str, str, str],
         sampled: bool) -> None:
    """One liquidation row; ``fields`` names symbol, side, time, price and size in this layout."""
    f_sym, f_side, f_ts, f_px, f_sz = fields
    row = ctx.obj(row, what)
    symbol = ctx.text(row.get(f_sym), f_sym)
    if not ctx.wanted(symbol):
        return
    side = _side(ctx, row.get(f_side))
    ts = ctx.ts_ms(row.get(f_ts), f_ts)
    price = ctx.num(row.get(f_px), f_px)
    size = ctx.num(row.get(f_sz), f_sz)
    ctx.liquidation(out, ts, symbol, side, price, _instrument(ctx, symbol).notional_usd(size, price),
                    "bankruptcy", sampled=sampled)


def _all_liq(ctx: Context, row: Any, out: list[Record]) -> None:
    # allLiquidation: complete, batched every 500 ms.
    _liq(ctx, row, out, "allLiquidation row", ("s", "S", "T", "p", "v"), sampled=False)


def _legacy_liq(ctx: Context, row: Any, out: list[Record]) -> None:
    # The deprecated liquidation.{symbol} topic pushed at most one event per second.
    _liq(ctx, row, out, "liquidation data", ("symbol", "side", "updatedTime", "price", "size"), sampled=True)


def _ticker(ctx: Context, msg: Any, out: list[Record]) -> None:
    data = ctx.obj(msg.get("data"), "tickers data")
    symbol = ctx.text(data.get("symbol"), "symbol")
    if not ctx.wanted(symbol):
        return
    ts = ctx.ts_ms(msg.get("ts"), "ts")
    inst = _instrument(ctx, symbol)
    mark = data.get("markPrice")
    if mark is not None and mark != "":
        ctx.price_record(out, ts, symbol, ctx.num(mark, "markPrice"))
    price = ctx.last_price.get(symbol)
    if inst.inverse:
        # Inverse: openInterest counts USD contracts; openInterestValue is in coin.
        if "openInterest" in data:
            oi = ctx.opt_num(data.get("openInterest"), "openInterest")
            ctx.oi_record(
                out, ts, symbol, None if oi is None else inst.notional_usd(oi, 0.0), price
            )
    elif "openInterestValue" in data:
        ctx.oi_record(
            out, ts, symbol, ctx.opt_num(data.get("openInterestValue"), "openInterestValue"), price
        )
    elif "openInterest" in data:
        oi = ctx.opt_num(data.get("openInterest"), "openInterest")
        if oi is not None and oi > 0 and price is None:
            ctx.skip("oi_no_price")
        else:
            ctx.oi_record(out, ts, symbol, None if oi is None else oi * (price or 0.0), price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    topic = msg.get("topic")
    if isinstance(topic, str):
        if topic.startswith("allLiquidation."):
            ctx.each(ctx.arr(msg.get("data"), "data"), lambda r: _all_liq(ctx, r, out))
        elif topic.startswith("liquidation."):
            data = msg.get("data")
            ctx.each(data if isinstance(data, list) else [data], lambda r: _legacy_liq(ctx, r, out))
        elif topic.startswith("tickers."):
            _ticker(ctx, msg, out)
        else:
            raise ctx.fail("unknown_message", f"unsupported topic {topic[:60]!r}")
    elif "op" in msg and ("success" in msg or "ret_msg" in msg):
        if msg.get("success") is False:
            raise ctx.fail(
                "venue_error", f"{msg.get('op')!r} failed: {str(msg.get('ret_msg'))[:80]}"
            )
        ctx.skip("heartbeat" if msg.get("op") in ("ping", "pong") else "ack")
    else:
        raise ctx.fail("unknown_message", "message without topic")
    return out
