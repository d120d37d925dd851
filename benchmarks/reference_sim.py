"""The naive way to find the simulator's liquidations: scan every open leg
against every venue mark every second. Not shipped; the simulator's tests check
that its crossing engine agrees with it, and benchmarks/bench_sim.py times both.
"""

from __future__ import annotations

import math

import numpy as np

from heatcore import venues as hv
from heatcore.sim import SimResult


def naive_liquidations(res: SimResult) -> dict[int, int]:
    """Leg -> second of liquidation, by scanning every open leg against every venue mark
    every second (the simulator must agree without ever doing this).

    Timing follows the simulator's documented bookkeeping: legs opened during a chunk
    join the book at its end; planned closes take effect at the end of their chunk.
    """
    cfg, tr = res.config, res.truth
    pos = tr.positions
    t0, chunk = cfg.start_ts_ms, math.gcd(60, cfg.oi_interval_s)
    marks = tr.marks
    slot = {hv.venue_id(v): i for i, v in enumerate(res.venues)}
    vi = np.array([slot[int(c)] for c in pos["venue"]])
    open_s = (pos["open_ts"] - t0) // 1000
    eligible = np.where(pos["open_ts"] < t0, 0, (open_s // chunk + 1) * chunk)
    stop = ((pos["close_ts"] - t0) // 1000 // chunk + 1) * chunk
    is_long = pos["side"] == 1
    alive = np.ones(pos.size, bool)
    out: dict[int, int] = {}
    for sec in range(marks.shape[1]):
        m = marks[vi, sec]
        hit = alive & (eligible <= sec) & (stop > sec) & np.where(
            is_long, m <= pos["liq_price"], m >= pos["liq_price"])
        for leg in np.flatnonzero(hit).tolist():
            out[leg] = sec
        alive[hit] = False
        alive[np.flatnonzero(hit) ^ 1] = False  # the partner leg closes with it
    return out
