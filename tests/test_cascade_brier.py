"""Calibration of the cascade forecast on the simulator (known truth).

"Reaches level k within the horizon" forecasts are taken every 5 simulated
minutes and resolved against the simulator's true price path; the learned
forecast is compared with the forecast with learning off and with
climatology (see cascade_brier.py; run it directly for longer reports).
"""

from __future__ import annotations

import numpy as np
import pytest
from cascade_brier import evaluate

from heatcore import sim


@pytest.fixture(scope="module")
def report():
    r = sim.simulate(hours=72, seed=1, venues=["binance", "bybit", "okx", "hyperliquid", "bitget"])
    rep, extra = evaluate(r, every_s=300.0, horizon_s=3600.0)
    return rep, extra


def test_learned_forecast_beats_climatology_where_levels_are_reached(report):
    rep, _ = report
    reached = np.flatnonzero(rep.base_rate > 0.02)      # levels with enough outcomes to score
    assert reached.size >= 1
    for k in reached:
        assert rep.learned[k] < rep.clim_full[k], k     # even the full-sample (lookahead) base rate
    for k in np.flatnonzero(rep.n > 0):
        assert rep.learned[k] < rep.clim_online[k], k   # the online base rate, at every level


def test_learning_improves_on_the_static_forecast(report):
    rep, _ = report
    ok = rep.n > 0
    assert rep.learned[ok].sum() < 0.85 * rep.static[ok].sum()
    deep = np.flatnonzero(ok & (rep.static > 1e-3))
    deep = deep[deep >= 1]
    assert deep.size >= 2
    for k in deep:                                       # levels 2+: the learned walk is better
        assert rep.learned[k] < rep.static[k], k


def test_recalibration_only_saw_resolved_forecasts(report):
    _, extra = report
    st = extra["state"]
    assert st["resolved_forecasts"] > 1000
    assert st["dropped_forecasts"] == 0
    # one pending forecast per side per record within the last horizon, no more
    assert st["pending_forecasts"] <= 2 * (3600 // 300 + 1)
