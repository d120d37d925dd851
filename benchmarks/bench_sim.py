"""Speed of the synthetic market (heatcore.sim).

The simulator never scans the whole book per tick: each venue and side keeps its
legs sorted by liquidation price plus a small buffer of recent openings, and
the run only steps second by second where a venue's nearest level is crossed.
The baseline is the naive way, in the same process and on the same market: scan
every open leg against every venue mark every second. Both must find exactly
the same liquidations.

    PYTHONPATH=src python3 -m pytest benchmarks/bench_sim.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
from reference_sim import naive_liquidations

from heatcore.sim import SimResult, simulate

# A small market the naive scan can still afford (it costs legs x seconds).
SMALL = dict(hours=1.0, seed=8, venues=("bybit", "okx", "deribit"), oi_scale=0.2,
             daily_vol=0.15, keep_positions=True)


def _found(res: SimResult) -> dict[int, int]:
    liq = res.truth.liquidations
    secs = (liq["ts"] - res.config.start_ts_ms) // 1000
    return dict(zip(liq["leg"].tolist(), secs.tolist(), strict=True))


@pytest.fixture(scope="module")
def small_market() -> SimResult:
    return simulate(**SMALL)


@pytest.mark.benchmark(group="sim-crossings")
def test_naive_scan_baseline(benchmark, small_market: SimResult) -> None:
    found = benchmark.pedantic(naive_liquidations, args=(small_market,), rounds=1, iterations=1)
    assert found == _found(small_market)
    assert len(found) > 200


@pytest.mark.benchmark(group="sim-crossings")
def test_simulate_small(benchmark, small_market: SimResult) -> None:
    # the whole run (book, openings, closes, events), against the naive scan's crossings alone
    res = benchmark.pedantic(simulate, kwargs=SMALL, rounds=3, iterations=1)
    assert _found(res) == _found(small_market)


@pytest.mark.benchmark(group="sim-full")
def test_simulate_24h_22_venues(benchmark) -> None:
    res = benchmark.pedantic(simulate, kwargs=dict(hours=24.0, seed=0), rounds=2, iterations=1)
    ev = res.events
    assert len(res.venues) == 22
    assert np.all(np.diff(ev["ts"]) >= 0)
    assert res.truth.liquidations.size > 10_000
    benchmark.extra_info["events"] = int(ev.size)
    benchmark.extra_info["true_liquidations"] = int(res.truth.liquidations.size)


@pytest.mark.benchmark(group="sim-full")
def test_simulate_24h_one_venue(benchmark) -> None:
    res = benchmark.pedantic(simulate, kwargs=dict(hours=24.0, seed=0, venues=("bybit",)),
                             rounds=2, iterations=1)
    assert res.truth.liquidations.size > 0
