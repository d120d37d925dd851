"""Hyperliquid: user fills carrying a ``liquidation`` object, and asset contexts.

Messages: WS ``userFills`` (``{"channel": "userFills", "data": {"user", "fills",
"isSnapshot"}}``), the info ``userFills`` / ``userFillsByTime`` body (a bare
list of fills; the user comes from ``Parser(..., user=...)``), WS
``activeAssetCtx`` (``markPx``, ``openInterest`` in coin) and the info
``metaAndAssetCtxs`` body.

Semantics (exchanges.md §0.1, §2.11): there is no exchange-wide liquidation
channel. A fill is the liquidated position's own fill only when
``liquidation.liquidatedUser`` is the fill's user; the liquidator's
counter-fill carries the same object and is skipped. Without a known user a
fill is ambiguous and is refused (``unknown_user``), never guessed. The
liquidated user's fill side ``A`` (sell) closes a long, ``B`` a short; ``dir``
is checked against it. Price: the fill price (``"trade"``); sizes are coin.
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "hyperliquid"


def _fill(ctx: Context, user: str | None, f: Any, out: list[Record]) -> None:
    f = ctx.obj(f, "fill")
    liq = f.get("liquidation")
    if liq is None:
        ctx.skip("not_liquidation")
        return
    liq = ctx.obj(liq, "liquidation")
    coin = ctx.text(f.get("coin"), "coin")
    if not ctx.wanted(coin):
        return
    victim = ctx.text(liq.get("liquidatedUser"), "liquidatedUser").lower()
    if user is None:
        raise ctx.fail("unknown_user", "a fill without its user cannot say who was liquidated")
    if victim != user:
        ctx.skip("liquidator_fill")
        return
    s = f.get("side")
    side = ctx.closed_side(s, "A", "B", "side")
    d = f.get("dir")
    if isinstance(d, str) and (("Long" in d) != ("Short" in d)):
        if ("Long" in d) != (side == "long"):
            raise ctx.fail("inconsistent_side", f"dir {d!r} contradicts side {s!r}")
    ts = ctx.ts_ms(f.get("time"), "time")
    price = ctx.num(f.get("px"), "px")
    size = ctx.num(f.get("sz"), "sz")
    ctx.liquidation(out, ts, coin, side, price, size * price, "trade", sampled=False)


def _ctx_row(ctx: Context, coin: str, c: Any, ts: int, out: list[Record]) -> None:
    if not ctx.wanted(coin):
        return
    c = ctx.obj(c, "ctx")
    if c.get("markPx") is not None:
        ctx.price_record(out, ts, coin, ctx.num(c.get("markPx"), "markPx"))
    if "openInterest" in c:
        oi = ctx.opt_num(c.get("openInterest"), "openInterest")
        price = ctx.last_price.get(coin)
        if oi is not None and oi > 0 and price is None:
            ctx.skip("oi_no_price")
            return
        ctx.oi_record(out, ts, coin, None if oi is None else oi * (price or 0.0), price)


def _meta_and_ctxs(ctx: Context, msg: list, out: list[Record]) -> None:
    meta = ctx.obj(msg[0], "meta")
    universe = ctx.arr(meta.get("universe"), "universe")
    ctxs = ctx.arr(msg[1], "assetCtxs")
    if len(universe) != len(ctxs):
        raise ctx.fail("malformed", "universe and assetCtxs differ in length")
    ts = ctx.recv_ts()
    ctx.each(
        list(zip(universe, ctxs, strict=False)),
        lambda uc: _ctx_row(
            ctx, ctx.text(ctx.obj(uc[0], "universe[]").get("name"), "name"), uc[1], ts, out
        ),
    )


def parse(ctx: Context, msg: Any) -> list[Record]:
    out: list[Record] = []
    if isinstance(msg, list):
        if len(msg) == 2 and isinstance(msg[0], dict) and "universe" in msg[0]:
            _meta_and_ctxs(ctx, msg, out)
        else:
            ctx.each(msg, lambda f: _fill(ctx, ctx.user, f, out))
        return out
    msg = ctx.obj(msg, "message")
    channel = msg.get("channel")
    if channel in ("pong", "subscriptionResponse"):
        ctx.skip("ack")
        return out
    if channel == "error":
        raise ctx.fail("venue_error", str(msg.get("data"))[:80])
    if channel == "userFills" or (channel is None and "fills" in msg):
        data = ctx.obj(msg.get("data", msg), "data")
        if data.get("isSnapshot") is True:
            ctx.skip("fills_snapshot")
            return out
        user = data.get("user", ctx.user)
        user = user.lower() if isinstance(user, str) else None
        ctx.each(ctx.arr(data.get("fills"), "fills"), lambda f: _fill(ctx, user, f, out))
        return out
    if channel == "activeAssetCtx":
        data = ctx.obj(msg.get("data"), "data")
        _ctx_row(ctx, ctx.text(data.get("coin"), "coin"), data.get("ctx"), ctx.recv_ts(), out)
        return out
    raise ctx.fail("unknown_message", f"unsupported channel {str(channel)[:30]!r}")
