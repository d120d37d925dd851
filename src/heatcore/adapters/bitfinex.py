"""Bitfinex WS v2 ``status`` channel (and REST ``/v2/liquidations/hist``).

Messages: ``liq:global`` rows ``["pos", POS_ID, MTS, null, SYMBOL, AMOUNT,
BASE_PRICE, null, IS_MATCH, IS_MARKET_SOLD, null, PRICE_ACQUIRED]`` and
``deriv:{symbol}`` status rows (``[0]`` MTS, ``[14]`` MARK_PRICE,
``[17]`` OPEN_INTEREST in base coin). Frames are ``[CHAN_ID, payload]``;
channel ids are learned from the ``subscribed`` event of this connection.

Semantics (exchanges.md §0.1, §2.8): ``AMOUNT`` is the liquidated *position*
(positive = long). The position's entry price ``BASE_PRICE`` is not where it
died: the record uses ``PRICE_ACQUIRED`` (``"fill"``); a row without it (the
trigger row) is skipped and the execution row of the same position counts.
Each position is counted once (dedupe on ``POS_ID``).
"""

from __future__ import annotations

from typing import Any

from ._base import Context, Record

VENUE = "bitfinex"


def _liq_row(ctx: Context, row: Any, out: list[Record]) -> None:
    row = ctx.arr(row, "liquidation row")
    if len(row) < 12 or row[0] != "pos":
        raise ctx.fail(
            "malformed", f"liquidation row needs 12 fields starting with 'pos', got {len(row)}"
        )
    pos_id = row[1]
    if isinstance(pos_id, bool) or not isinstance(pos_id, (int, str)):
        raise ctx.fail("malformed", f"POS_ID {pos_id!r}")
    ts = ctx.ts_ms(row[2], "MTS")
    symbol = ctx.text(row[4], "SYMBOL")
    if not ctx.wanted(symbol):
        return
    amount = ctx.num(row[5], "AMOUNT", positive=False)
    if amount == 0:
        raise ctx.fail("bad_size", "AMOUNT 0 says neither side")
    if row[11] is None:
        ctx.skip("no_acquired_price")
        return
    price = ctx.num(row[11], "PRICE_ACQUIRED")
    if not ctx.remember("pos", pos_id):
        ctx.skip("duplicate")
        return
    side = "long" if amount > 0 else "short"
    ctx.liquidation(out, ts, symbol, side, price, abs(amount) * price, "fill", sampled=False)


def _deriv(ctx: Context, key: str, row: Any, out: list[Record]) -> None:
    symbol = key.split(":", 1)[1] if ":" in key else key
    if not ctx.wanted(symbol):
        return
    row = ctx.arr(row, "status row")
    if len(row) < 18:
        raise ctx.fail("malformed", f"derivatives status row has {len(row)} fields, needs 18")
    ts = ctx.ts_ms(row[0], "MTS")
    if row[14] is not None:
        ctx.price_record(out, ts, symbol, ctx.num(row[14], "MARK_PRICE"))
    oi = ctx.opt_num(row[17], "OPEN_INTEREST")
    price = ctx.last_price.get(symbol)
    if oi is not None and oi > 0 and price is None:
        ctx.skip("oi_no_price")
        return
    ctx.oi_record(out, ts, symbol, None if oi is None else oi * (price or 0.0), price)


def _is_liq_rows(x: Any) -> bool:
    return (
        isinstance(x, list)
        and bool(x)
        and isinstance(x[0], list)
        and bool(x[0])
        and x[0][0] == "pos"
    )


def parse(ctx: Context, msg: Any) -> list[Record]:
    out: list[Record] = []
    if isinstance(msg, dict):
        event = msg.get("event")
        if event == "subscribed":
            chan, key = msg.get("chanId"), msg.get("key")
            if isinstance(chan, int) and isinstance(key, str):
                ctx.cache.setdefault("chan", {})[chan] = key
            ctx.skip("ack")
        elif event in ("info", "conf", "unsubscribed", "pong"):
            ctx.skip("ack")
        elif event == "error":
            raise ctx.fail("venue_error", f"{msg.get('code')!r}: {str(msg.get('msg'))[:80]}")
        else:
            raise ctx.fail("unknown_message", f"unsupported event {str(event)[:30]!r}")
        return out
    msg = ctx.arr(msg, "message")
    if not msg:
        raise ctx.fail("malformed", "empty frame")
    if _is_liq_rows(msg):  # a bare list of rows
        ctx.each(msg, lambda r: _liq_row(ctx, r, out))
        return out
    if isinstance(msg[0], list):  # REST /v2/liquidations/hist: [[row], [row], ...]
        ctx.each(msg, lambda r: ctx.each(ctx.arr(r, "entry"), lambda x: _liq_row(ctx, x, out)))
        return out
    if len(msg) < 2 or isinstance(msg[0], bool) or not isinstance(msg[0], int):
        raise ctx.fail("malformed", "frame must be [CHAN_ID, payload]")
    payload = msg[1]
    if payload == "hb":
        ctx.skip("heartbeat")
        return out
    key = ctx.cache.get("chan", {}).get(msg[0])
    if _is_liq_rows(payload) or (key == "liq:global" and isinstance(payload, list)):
        ctx.each(payload, lambda r: _liq_row(ctx, r, out))
    elif isinstance(key, str) and key.startswith("deriv:"):
        _deriv(ctx, key, payload, out)
    elif key is None:
        ctx.skip("unknown_channel")
    else:
        raise ctx.fail("unknown_message", f"unsupported status key {key[:40]!r}")
    return out
