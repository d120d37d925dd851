"""Cascade benchmarks: the forecast walk per call and the chain tracker per event.

Each heatcore path is timed beside a numpy reference of the same work in the
same group, and the answers are checked equal.

    PYTHONPATH=src python3 -m pytest benchmarks/bench_cascade.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

import heatcore as hc
from heatcore import sim
from heatcore.venues import venue_id

T0 = 1_767_225_600_000
N_BURST = 100_000


@pytest.fixture(scope="module")
def fed_engine() -> hc.Engine:
    r = sim.simulate(hours=6, seed=7)  # all 22 venues
    e = hc.Engine(r.symbol, r.step, venues=r.venues)
    e.ingest(r.events)
    return e


def _numpy_clusters(e: hc.Engine, side: str) -> np.ndarray:
    """Reference: sum the venues' maps and apply the documented cluster rule."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_cascade import reference_clusters

    m = e.heatmap()
    return reference_clusters(m, side, m.price, e.cascade_config())


@pytest.mark.benchmark(group="cascade-walk")
def test_cascade_10_levels(benchmark, fed_engine):
    out = benchmark(fed_engine.cascade, "long", 10)
    np.testing.assert_allclose(out["price"], _numpy_clusters(fed_engine, "long"))


@pytest.mark.benchmark(group="cascade-walk")
def test_numpy_clusters_reference(benchmark, fed_engine):
    out = benchmark(_numpy_clusters, fed_engine, "long")
    np.testing.assert_allclose(out, fed_engine.cascade("long", 10)["price"])


def _burst(n: int = N_BURST) -> np.ndarray:
    rng = np.random.default_rng(1)
    ev = np.zeros(n, dtype=hc.EVENT_DTYPE)
    ev["ts"] = T0 + 1000 + np.cumsum(rng.choice([0, 0, 0, 1, 2, 51], size=n))
    ev["side"] = np.where(rng.random(n) < 0.7, 1, -1)
    ev["price"] = 100_000 - ev["side"] * rng.uniform(0, 3000, n)
    ev["value"] = rng.lognormal(9, 1, n)
    ev["venue"] = venue_id("hyperliquid")
    ev["kind"] = 2
    return ev


def _engine() -> hc.Engine:
    e = hc.Engine("BTCUSDT", 50.0, venues=["hyperliquid"], cascade={"gap_ms": 50})
    e.update_price("hyperliquid", T0, 100_000.0)
    e.update_open_interest("hyperliquid", T0, 2e9)
    return e


def _numpy_chain_count(ev: np.ndarray, gap_ms: int = 50) -> int:
    n = 0
    for s in (1, -1):
        t = ev["ts"][ev["side"] == s]
        n += int(np.count_nonzero(np.diff(t) > gap_ms)) + (1 if t.size else 0)
    return n


@pytest.mark.benchmark(group="cascade-chain-per-event")
def test_chain_update_burst(benchmark):
    """100,000 liquidations in ~4 s of event time: ingest (learners + chain tracker)."""
    ev = _burst()
    engines = iter([_engine() for _ in range(12)])

    def run():
        e = next(engines)
        e.ingest(ev)
        return e

    e = benchmark.pedantic(run, rounds=10, iterations=1)
    st = e.cascade_state()
    assert st["chains_total"] + st["open_long"] + st["open_short"] == _numpy_chain_count(ev)
    benchmark.extra_info["per_event_ns"] = benchmark.stats.stats.mean / N_BURST * 1e9


@pytest.mark.benchmark(group="cascade-chain-per-event")
def test_numpy_gap_rule_reference(benchmark):
    ev = _burst()
    n = benchmark(_numpy_chain_count, ev)
    e = _engine()
    e.ingest(ev)
    st = e.cascade_state()
    assert n == st["chains_total"] + st["open_long"] + st["open_short"]
