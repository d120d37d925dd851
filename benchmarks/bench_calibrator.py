"""The per-event cost of the Exchange Calibrator.

Group ``calibrator-ingest``: the same stream (a mark, then a liquidation reported
at the bankruptcy price 200 ms later, 20,000 pairs, with a stale tier so that
levels get re-placed on the calibrator's cadence) ingested with calibration on
and off: the difference is the calibrator's per-event update plus the level
re-placements. Group ``calibrator-estimator``: the C++ path beside the pure
Python reference of the estimator (benchmarks/reference_calibrator.py); the
answers are asserted equal.

Run: ``python -m pytest benchmarks/bench_calibrator.py --benchmark-only``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import heatcore as hc
from heatcore.events import KIND_LIQUIDATION, KIND_OI, KIND_PRICE
from heatcore.venues import PRICE_KINDS, venue_id

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_calibrator import RobustLocation

N = 20_000
T0 = 1_767_225_600_000


def _stream(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mech = hc.get_venue("okx").mechanics("BTCUSDT")
    offset = math.log((1 - 1 / 50) / mech.liquidation_ratio(1, 50.0, 1.4))   # a stale tier: 1.4x
    ev = np.zeros(2 * n + 1, dtype=hc.EVENT_DTYPE)
    price = 100_000.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    ts = T0 + np.arange(n) * 5000
    body = ev[1:]
    body["ts"][0::2], body["ts"][1::2] = ts, ts + 200
    body["price"][0::2] = price
    body["price"][1::2] = price * np.exp(offset + rng.normal(0, 1.5e-4, n))
    body["value"][1::2] = rng.lognormal(math.log(15_000), 1.0, n)
    body["kind"][0::2], body["kind"][1::2] = KIND_PRICE, KIND_LIQUIDATION
    body["side"][1::2] = 1
    body["price_kind"][1::2] = PRICE_KINDS.index("bankruptcy")
    ev["venue"] = venue_id("okx")
    # one OI reading first, so that re-placing levels has a book to move
    ev[0]["ts"], ev[0]["kind"], ev[0]["price"], ev[0]["value"] = T0 - 1, KIND_OI, 100_000.0, 1e9
    return ev


EVENTS = _stream()


def _run(calibrate: bool) -> hc.Engine:
    eng = hc.Engine(venues=("okx",), calibrate=calibrate)
    eng.ingest(EVENTS)
    return eng


@pytest.mark.benchmark(group="calibrator-ingest")
@pytest.mark.parametrize("calibrate", [False, True], ids=["off", "on"])
def test_ingest(benchmark, calibrate):
    eng = benchmark(_run, calibrate)
    rs = eng.calibration("okx")["rate_scale"]["long"]
    if calibrate:
        assert rs["value"] == pytest.approx(1.4, rel=0.02)
        assert rs["applied"] == pytest.approx(1.4, rel=0.02)
    else:
        assert rs["value"] == 1.0


def _reference() -> RobustLocation:
    ref = RobustLocation()
    body = EVENTS[1:]
    for x in np.log(body["price"][1::2] / body["price"][0::2]):
        ref.add(float(x))
    return ref


@pytest.mark.benchmark(group="calibrator-estimator")
def test_estimator_cpp(benchmark):
    eng = benchmark(_run, True)
    ref = _reference()
    o = eng.calibration("okx")["report_offset"]["long"]
    assert o["value"] == pytest.approx(ref.posterior(o["prior"], o["prior_std"])[0], rel=1e-9)


@pytest.mark.benchmark(group="calibrator-estimator")
def test_estimator_python_reference(benchmark):
    ref = benchmark(_reference)
    eng = _run(True)
    o = eng.calibration("okx")["report_offset"]["long"]
    assert ref.posterior(o["prior"], o["prior_std"])[0] == pytest.approx(o["value"], rel=1e-9)
