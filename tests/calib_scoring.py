"""Scoring helpers for the calibrator tests (not part of the package).

``replay_loglik`` replays a simulated stream through an engine and scores every
liquidation of one venue under a pre-event forecast of its *reported* price:

* the map as it stood before the price update that preceded the event (price has
  usually just crossed, and so consumed, the very levels the event liquidates),
* weighted by the probability that price reaches each level within
  ``HORIZON_S`` (Brownian running extremum, ``erfc(|ln(y/p)| / (sigma sqrt(2h)))``,
  sigma the realised per-second volatility of the venue's prices so far),
* moved from trigger prices to reported prices with the engine's current report
  offset (``calibration(venue)["report_offset"]``: the documented offset for the
  static engine, the learned one with calibration on),
* smoothed by a Gaussian kernel of one bin and mixed with a small uniform floor
  over +-20 % of the event price, so that an empty map scores finitely and the
  same for every engine.

Every engine is scored by exactly this machinery on the same events.
"""

from __future__ import annotations

import math

import numpy as np

import heatcore as hc
from heatcore.events import KIND_LIQUIDATION, KIND_PRICE

HORIZON_S = 60.0   # reach horizon of the forecast
FLOOR = 1e-3       # weight of the uniform floor
FLOOR_SPAN = 0.2   # +-20 % of the event price
SIDES = {1: "long", -1: "short"}


def _reach(prices: np.ndarray, price: float, sigma_h: float) -> np.ndarray:
    z = np.abs(np.log(np.maximum(prices, 1e-300) / price)) / (sigma_h * math.sqrt(2.0))
    return _erfc(z)


def _erfc(z: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erfc and scipy is not required.
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return poly * np.exp(-z * z)


def _density(prices: np.ndarray, mass: np.ndarray, shift: float, x: float, step: float) -> float:
    total = float(mass.sum())
    q = 0.0
    if total > 0.0:
        centres = prices * math.exp(shift)
        lo, hi = np.searchsorted(centres, (x - 6 * step, x + 6 * step))
        z = (x - centres[lo:hi]) / step
        q = float((mass[lo:hi] * np.exp(-0.5 * z * z)).sum()) / (total * step * math.sqrt(2 * math.pi))
    floor = 1.0 / (2 * FLOOR_SPAN * x)
    return (1.0 - FLOOR) * q + FLOOR * floor


def replay_loglik(engine: hc.Engine, events: np.ndarray, venue: str) -> np.ndarray:
    """Ingest ``events`` into ``engine`` and return the log-likelihood (per unit
    price) of each liquidation of ``venue`` under the pre-event map."""
    code = hc.venues.venue_id(venue)
    mine = events["venue"] == code
    is_px = mine & (events["kind"] == KIND_PRICE)
    is_liq = mine & (events["kind"] == KIND_LIQUIDATION)
    px_idx = np.flatnonzero(is_px)
    # price updates followed by at least one of the venue's liquidations before the next one
    liq_count = np.cumsum(is_liq)
    nxt = np.append(px_idx[1:], events.size)
    has = liq_count[nxt - 1] - liq_count[px_idx] > 0
    cut = px_idx[has]
    # realised variance per second of the venue's own prices, cumulative (no look-ahead)
    pts = events["ts"][px_idx].astype(float) / 1000.0
    lpx = np.log(events["price"][px_idx])
    dt = np.diff(pts, prepend=pts[0])
    r2 = np.diff(lpx, prepend=lpx[0]) ** 2
    cum_r2, cum_dt = np.cumsum(r2), np.cumsum(dt)
    pos_of = {int(i): k for k, i in enumerate(px_idx)}
    out: list[float] = []
    start = 0
    step = engine.step
    snap = None
    offsets = {"long": 0.0, "short": 0.0}
    bounds = np.append(cut, events.size)
    for b in bounds:
        chunk = events[start:b]
        if snap is not None:
            for ev in chunk[(chunk["venue"] == code) & (chunk["kind"] == KIND_LIQUIDATION)]:
                side = SIDES[int(ev["side"])]
                mass = snap.long if side == "long" else snap.short
                d = _density(snap.prices, mass, offsets[side], float(ev["price"]), step)
                out.append(math.log(d))
        if chunk.size:
            engine.ingest(chunk)
        if b < events.size:
            m = engine.heatmap(venue)
            k = pos_of[int(b)]
            var_s = cum_r2[k - 1] / cum_dt[k - 1] if k > 1 and cum_dt[k - 1] > 0 else 1e-8
            reach = _reach(m.prices, m.price, math.sqrt(var_s * HORIZON_S)) if m.price > 0 else 1.0
            snap = hc.HeatMap(m.prices, m.long * reach, m.short * reach, venue, m.price)
            cal = engine.calibration(venue)["report_offset"]
            offsets = {s: float(cal[s]["value"]) for s in ("long", "short")}
        start = b
    return np.asarray(out)
