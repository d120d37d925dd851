"""Synthetic event streams for the persistence, validation, thread and soak tests.

Every event in a stream is valid and distinct (strictly increasing timestamps),
so that any refusal the engine counts on it comes from what a test injected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heatcore import EVENT_DTYPE
from heatcore.venues import venue_id

T0 = 1_767_225_600_000  # 2026-01-01 UTC, ms


def synthetic_stream(seed: int, n: int, venues: Sequence[str] = ("binance", "okx"), *, t0: int = T0,
                     dt_ms: int = 250, price0: float = 90_000.0, vol: float = 4e-4,
                     revert: float = 0.0, oi_every: int = 40, liq_rate: float = 0.06,
                     log_anchor: float | None = None) -> np.ndarray:
    """``n`` valid events over ``venues`` (round robin): a log random walk of the
    price (mean-reverting toward ``log_anchor`` when ``revert`` > 0), an OI
    reading per venue every ``oi_every`` events, liquidations at ``liq_rate``.
    The first events of each venue are a price and an OI reading."""
    rng = np.random.default_rng(seed)
    nv = len(venues)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["ts"] = t0 + np.arange(n, dtype=np.int64) * dt_ms
    slot = np.arange(n) % nv
    ev["venue"] = np.array([venue_id(v) for v in venues], dtype=np.uint16)[slot]
    steps = rng.normal(0.0, vol, n)
    if revert > 0.0:
        anchor = np.log(price0) if log_anchor is None else log_anchor
        logp = np.empty(n)
        x = np.log(price0)
        for i in range(n):  # only used for short streams; the soak test uses its own chunked walk
            x += steps[i] - revert * (x - anchor)
            logp[i] = x
    else:
        logp = np.log(price0) + np.cumsum(steps)
    price = np.exp(logp)
    kind = np.zeros(n, dtype=np.uint8)
    kind[(np.arange(n) // nv) % oi_every == 1] = 1
    liq = (rng.random(n) < liq_rate) & (kind == 0) & (np.arange(n) >= 2 * nv)
    kind[liq] = 2
    ev["kind"] = kind
    oi = 2e9 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    ev["price"] = price
    ev["value"] = np.where(kind == 1, oi, 0.0)
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    ev["side"] = np.where(kind == 2, side, 0)
    notional = np.exp(rng.normal(np.log(20_000.0), 1.2, n))
    ev["value"] = np.where(kind == 2, notional, ev["value"])
    # A liquidation prints slightly off the mark (bankruptcy/fill prices).
    ev["price"] = np.where(kind == 2, price * (1.0 - 0.001 * side), ev["price"])
    return ev
