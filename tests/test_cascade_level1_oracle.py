"""The level-1 diagnostic's learned-scale candidate and gate (tests/cascade_level1_oracle.py).

Its figures back the strict xfail of test_cascade_brier.py; these checks show the
candidate and the gate it is run through are not blind: on synthetic occasions
whose outcomes follow a grossly wrong volatility the candidate learns the scale
and the gate opens; with the right volatility the gate keeps the raw forecast.
They also measure the gate's power at level 1: a 30 % volatility error over a 72 h
run's worth of occasions is not significant (the recalibration's window counts one
effective forecast per horizon).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cascade_level1_oracle import _erfc_inverse, learned_scale

ERFC = np.vectorize(math.erfc)


def _occasions(true_scale: float, seed: int, pairs: int = 850) -> dict[str, np.ndarray]:
    """Two forecasts every 5 min (72 h: 850 pairs) at erfc(u), outcomes drawn at erfc(u / true_scale)."""
    rng = np.random.default_rng(seed)
    t = np.repeat(np.arange(pairs) * 300_000, 2)
    u = rng.uniform(0.2, 2.0, t.size)
    raw = ERFC(u)
    y = (rng.random(t.size) < ERFC(u / true_scale)).astype(float)
    return {"t": t, "y": y, "raw": raw, "u": _erfc_inverse(raw)}


def test_erfc_inverse_recovers_the_distance():
    u = np.array([0.0, 1e-3, 0.3, 1.0, 2.5, 5.0])
    assert np.allclose(_erfc_inverse(ERFC(u)), u, atol=1e-9)
    assert _erfc_inverse(np.array([1.0]))[0] == 0.0


@pytest.mark.parametrize("true_scale", [2.0, 0.5])
def test_gross_volatility_error_is_learned_and_passes_the_gate(true_scale):
    d = _occasions(true_scale, seed=1)
    cand, issued, z_max = learned_scale(d)
    brier = {name: np.mean((p - d["y"]) ** 2) for name, p in (("raw", d["raw"]), ("cand", cand), ("issued", issued))}
    assert z_max > 2.0
    assert brier["issued"] < brier["raw"]
    assert brier["cand"] < brier["raw"]
    # the learned scale at the end of the run is on the right side of 1
    last = np.argmax(d["t"])
    s_end = d["u"][last] / _erfc_inverse(cand[last:last + 1])[0]
    assert (s_end - 1.0) * (true_scale - 1.0) > 0.0, s_end


@pytest.mark.parametrize("true_scale", [1.0, 1.3])
def test_gate_keeps_raw_for_right_or_modestly_wrong_volatility(true_scale):
    d = _occasions(true_scale, seed=2)
    _, issued, z_max = learned_scale(d)
    assert z_max < 2.0
    assert np.array_equal(issued, d["raw"])
