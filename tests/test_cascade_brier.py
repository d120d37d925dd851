"""Calibration of the cascade forecast on the simulator (known truth), per level.

"Reaches level k within the horizon" forecasts are taken every 5 simulated
minutes and resolved against the simulator's true price path; the learned
forecast is compared with the forecast with learning off and with
climatology (see cascade_brier.py; run it directly for the per-level table:
``PYTHONPATH=src:tests python3 tests/cascade_brier.py --hours 72 --seeds 1 2``).

A level is *scored* where its outcome was reached often enough for a Brier
comparison to mean something (at least MIN_HITS occasions reached); deeper
levels are almost never reached on the simulator (their full-sample base rate
is 0 and its Brier score exactly 0, which no forecast beats).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from cascade_brier import evaluate

from heatcore import sim

MIN_HITS = 15


SEEDS = (1, 2, 3, 4)


@functools.cache
def _report(seed: int):
    r = sim.simulate(hours=72, seed=seed)
    return evaluate(r, every_s=300.0, horizon_s=3600.0)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def report(request):
    return _report(request.param)


def scored(rep) -> np.ndarray:
    hits = np.nan_to_num(rep.base_rate) * rep.n
    return np.flatnonzero(hits >= MIN_HITS)


def test_learned_beats_climatology_per_level(report):
    rep, _ = report
    levels = scored(rep)
    assert levels.size >= 1 and levels[0] == 0          # level 1 is scored on every seed
    for k in levels:
        assert rep.learned[k] < rep.clim_full[k], (k + 1, rep.learned[k], rep.clim_full[k])
    for k in np.flatnonzero(rep.n > 0):                 # the online base rate, at every level
        assert rep.learned[k] < rep.clim_online[k], (k + 1, rep.learned[k], rep.clim_online[k])


def test_learned_beats_learning_off_from_level_2(report):
    rep, _ = report
    levels = scored(rep)
    deep = levels[levels >= 1]                          # level 2 on seeds 1, 2 and 4
    for k in deep:
        assert rep.learned[k] < rep.static[k], (k + 1, rep.learned[k], rep.static[k])
    # every level the learning-off forecast gets visibly wrong (Brier > 1e-3) is improved
    for k in np.flatnonzero((rep.n > 0) & (rep.static > 1e-3)):
        if k >= 1:
            assert rep.learned[k] < rep.static[k], (k + 1, rep.learned[k], rep.static[k])
    ok = rep.n > 0
    assert rep.learned[ok].sum() < 0.85 * rep.static[ok].sum()


def test_recalibrated_probabilities_and_confidences_fall_with_depth(report):
    rep, _ = report
    assert rep.not_monotone == 0


def test_level_1_is_not_made_worse_by_recalibration(report):
    # Level 1's raw forecast is the volatility reach probability, the same with
    # learning on or off, and already calibrated on the simulator: the gate must
    # keep it unless the engine's own record says otherwise.
    rep, _ = report
    assert rep.learned[0] <= rep.static[0] + 2e-4, (rep.learned[0], rep.static[0])


@pytest.mark.xfail(strict=True, reason="measured (72 h): level 1 learned = learning-off on every seed (0.0459, "
                   "0.0359, 0.0760, 0.0650 for seeds 1-4): the raw level-1 forecast (the volatility reach "
                   "probability, the same with learning on or off) is already calibrated on the simulator and "
                   "the significance gate keeps it. Nothing learnable beats it significantly "
                   "(tests/cascade_level1_oracle.py; raw 0.0581/0.0416/0.0546/0.0607 over all occasions): "
                   "online recalibration with 5-min momentum and 15-min liquidation burst "
                   "0.0612/0.0419/0.0597/0.0613 (worse), eleven features fitted on the other half of the run "
                   "0.0590/0.0407/0.0668/0.0629; a learned volatility scale (ML, online) 0.0611/0.0426/0.0599/"
                   "0.0622 ungated, its gate z never above 0.85 (so issued = raw; on synthetic occasions a 30 % "
                   "volatility error stays under the gate in 72 h); the best fixed scale with lookahead "
                   "(0.92/1.20/0.90/0.88) 0.0578/0.0402/0.0540/0.0597 at paired z 0.23/0.57/0.31/0.45; the "
                   "true variance 0.0586/0.0410/0.0548/0.0606 and the simulator's true excursion law "
                   "0.0582/0.0418/0.0541/0.0600 are worse than raw on two seeds each; excursion laws learned "
                   "online 0.0585/0.0417/0.0546/0.0605 or by the horizon forecast 0.0594/0.0412/0.0550/0.0606")
def test_learned_beats_learning_off_at_level_1(report):
    rep, _ = report
    assert rep.learned[0] < rep.static[0]


def test_recalibration_only_saw_resolved_forecasts(report):
    _, extra = report
    st = extra["state"]
    assert st["resolved_forecasts"] > 1000
    assert st["dropped_forecasts"] == 0
    # one pending forecast per side per record within the last horizon, no more
    assert st["pending_forecasts"] <= 2 * (3600 // 300 + 1)
    # the engine scores its own candidates: the issued forecast is no worse than raw
    # on its own record at the scored levels (up to rounding of the gate)
    for k in (1, 2):
        assert st["brier_issued"][k] <= st["brier_raw"][k] * 1.01, k


@pytest.mark.xfail(strict=True, reason="measured (72 h, default 5 s marks): chain impact law exponent 0.68, "
                   "0.74, 0.81, 0.68 for seeds 1-4 vs the simulator's 0.87: a 5 s tick also holds the moves that "
                   "triggered its later liquidations (with 1 s marks 0.87-0.97: test_cascade_impact.py). The "
                   "walk's per-level segment fit (map geometry, not impact) gives 0.50-0.58 pooled")
def test_learned_impact_exponent_matches_the_simulator():
    truth = sim.SimConfig().impact_exponent
    got = [_report(seed)[1]["state"]["chain_exponent"] for seed in SEEDS]
    assert all(abs(b - truth) < 0.12 for b in got), got
