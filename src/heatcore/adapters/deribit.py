"""Deribit JSON-RPC WS v2.

Messages: ``trades.{instrument}.{interval}`` subscriptions (liquidations are
trades carrying ``liquidation`` = ``M`` | ``T`` | ``MT``), ``ticker.{instrument}.{interval}``
(mark price, open interest), heartbeats and RPC results.

Semantics (exchanges.md §0.1, §2.6): ``direction`` is the *taker's* side.
``T``: the taker was liquidated (sell -> long); ``M``: the maker was (sell ->
the maker bought -> short); ``MT``: both, one record per side. Price is the
trade print (``"trade"``). ``amount`` is USD for inverse instruments
(``BTC-PERPETUAL``) and base coin for linear USDC ones (``BTC_USDC-PERPETUAL``);
ticker ``open_interest`` follows the same rule. Complete feed.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "deribit"


def _linear(name: str) -> bool:
    return "_USDC" in name.upper() or "_USDT" in name.upper()


def _trade(ctx: Context, t: Any, out: list[Record]) -> None:
    t = ctx.obj(t, "trade")
    liq = t.get("liquidation")
    if liq is None:
        ctx.skip("not_liquidation")
        return
    name = ctx.text(t.get("instrument_name"), "instrument_name")
    if not ctx.wanted(name):
        return
    if liq not in ("M", "T", "MT"):
        raise ctx.fail("malformed", f"liquidation flag must be M, T or MT, got {liq!r}")
    d = t.get("direction")
    if d not in ("buy", "sell"):
        raise ctx.fail("bad_side", f"direction must be buy or sell, got {d!r}")
    ts = ctx.ts_ms(t.get("timestamp"), "timestamp")
    price = ctx.num(t.get("price"), "price")
    amount = ctx.num(t.get("amount"), "amount")
    notional = amount * price if _linear(name) else amount
    taker_liq = "long" if d == "sell" else "short"
    maker_liq = "short" if d == "sell" else "long"
    if "T" in liq:
        ctx.liquidation(out, ts, name, taker_liq, price, notional, "trade", sampled=False)
    if "M" in liq:
        ctx.liquidation(out, ts, name, maker_liq, price, notional, "trade", sampled=False)


def _ticker(ctx: Context, data: Any, out: list[Record]) -> None:
    data = ctx.obj(data, "ticker data")
    name = ctx.text(data.get("instrument_name"), "instrument_name")
    if not ctx.wanted(name):
        return
    ts = ctx.ts_ms(data.get("timestamp"), "timestamp")
    if data.get("mark_price") is not None:
        ctx.price_record(out, ts, name, ctx.num(data.get("mark_price"), "mark_price"))
    if "open_interest" in data:
        oi = ctx.opt_num(data.get("open_interest"), "open_interest")
        price = ctx.last_price.get(name)
        if oi is None or oi <= 0 or not _linear(name):
            ctx.oi_record(out, ts, name, oi, price)
        elif price is None:
            ctx.skip("oi_no_price")
        else:
            ctx.oi_record(out, ts, name, oi * price, price)


def parse(ctx: Context, msg: Any) -> list[Record]:
    msg = ctx.obj(msg, "message")
    out: list[Record] = []
    method = msg.get("method")
    if method == "heartbeat":
        ctx.skip("heartbeat")
        return out
    if method == "subscription":
        params = ctx.obj(msg.get("params"), "params")
        channel = ctx.text(params.get("channel"), "params.channel")
        if channel.startswith("trades."):
            ctx.each(ctx.arr(params.get("data"), "params.data"), lambda t: _trade(ctx, t, out))
        elif channel.startswith("ticker."):
            _ticker(ctx, params.get("data"), out)
        else:
            raise ctx.fail("unknown_message", f"unsupported channel {channel[:40]!r}")
        return out
    if "error" in msg:
        raise ctx.fail("venue_error", str(msg.get("error"))[:80])
    if "result" in msg and "id" in msg:
        ctx.skip("ack")
        return out
    raise ctx.fail("unknown_message", f"unsupported method {str(method)[:30]!r}")
