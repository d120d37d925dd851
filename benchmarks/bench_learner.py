"""Leverage Learner benchmarks: the per-event update, ``ingest`` with learning on
and off, and the M-step solver beside a numpy reference (answers checked equal).

    PYTHONPATH=src python3 -m pytest benchmarks/bench_learner.py --benchmark-only
    PYTHONPATH=src python3 -m pytest benchmarks/bench_learner.py --benchmark-disable   # CI: once, answers only

Compare the groups' means: ``learner-update`` (a batch of liquidations on an
engine prepared with the first half of a 24 h market; per-event cost = mean /
batch size) and ``ingest`` (the whole stream).
"""

from __future__ import annotations

import numpy as np
import pytest

import heatcore as hc
from heatcore import _core, sim

VENUES = ("bybit", "hyperliquid", "okx")


@pytest.fixture(scope="module")
def market() -> tuple[sim.SimResult, np.ndarray]:
    r = sim.simulate(hours=24, seed=5, venues=list(VENUES))
    ev = np.zeros(len(r.events), dtype=hc.EVENT_DTYPE)
    for name in r.events.dtype.names:
        ev[name] = r.events[name]
    return r, ev


def _prepared(r: sim.SimResult, ev: np.ndarray, learn: bool) -> tuple[tuple, dict]:
    half = len(ev) // 2
    eng = hc.Engine(r.symbol, r.step, venues=r.venues, learn=learn)
    eng.ingest(ev[:half])
    rest = ev[half:]
    liq = np.ascontiguousarray(rest[rest["kind"] == 2])
    return (eng, liq), {}


def _update(eng: hc.Engine, liq: np.ndarray) -> dict:
    return eng.ingest(liq)


@pytest.mark.benchmark(group="learner-update")
@pytest.mark.parametrize("learn", [True, False], ids=["learning-on", "learning-off"])
def test_liquidation_batch(benchmark, market, learn: bool) -> None:
    r, ev = market
    counts = benchmark.pedantic(_update, setup=lambda: _prepared(r, ev, learn), rounds=5, iterations=1)
    n = int((ev[len(ev) // 2:]["kind"] == 2).sum())
    assert counts["liquidation"] == n and counts["rejected"] == 0
    benchmark.extra_info["events"] = n


@pytest.mark.benchmark(group="ingest")
@pytest.mark.parametrize("learn", [True, False], ids=["learning-on", "learning-off"])
def test_ingest_stream(benchmark, market, learn: bool) -> None:
    r, ev = market

    def run() -> hc.Engine:
        eng = hc.Engine(r.symbol, r.step, venues=r.venues, learn=learn)
        eng.ingest(ev)
        return eng

    eng = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["events"] = len(ev)
    mix = eng.leverage_mix("bybit", "long")[1]
    assert np.isfinite(mix).all() and np.isclose(mix.sum(), 1.0)
    if not learn:
        assert np.array_equal(mix, eng.leverage_mix("bybit", "long", which="prior")[1])


def _numpy_rates(a, c, b, n, total):
    """Reference M-step: u = (a + b) / (c + lam n) with sum u n = total, by bisection."""
    num = a + b
    live = (num > 0) & (n > 0)
    lo, hi = np.max(-c[live] / n[live]), num[live].sum() / total
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        if not (lo < mid < hi):
            break
        if (num[live] * n[live] / (c[live] + mid * n[live])).sum() > total:
            lo = mid
        else:
            hi = mid
    return np.where(num > 0, num / (c + hi * n), 0.0)


def _inputs(seed: int = 3):
    rng = np.random.default_rng(seed)
    t = 19
    c = np.where(rng.random(t) < 0.4, 0.0, rng.gamma(2.0, 500.0, t))
    a = rng.poisson(0.05 * c).astype(float)
    b = 20.0 * rng.dirichlet(np.ones(t))
    n = rng.gamma(2.0, 10.0, t)
    return a, c, b, n, 1e9


@pytest.mark.benchmark(group="m-step")
def test_solve_rates_core(benchmark) -> None:
    a, c, b, n, total = _inputs()
    u = benchmark(_core.solve_rates, a, c, b, n, total)
    assert np.allclose(u, _numpy_rates(a, c, b, n, total), rtol=1e-9)
    assert np.isclose((u * n).sum(), total)


@pytest.mark.benchmark(group="m-step")
def test_solve_rates_numpy_reference(benchmark) -> None:
    a, c, b, n, total = _inputs()
    u = benchmark(_numpy_rates, a, c, b, n, total)
    assert np.isclose((u * n).sum(), total)
