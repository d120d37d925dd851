"""The C++ core agrees with the numpy reference model (benchmarks/reference.py)
on random streams of prices and open interest."""

from __future__ import annotations

import numpy as np
import pytest
from reference import ReferenceEngine

import heatcore as hc
from heatcore.venues import venue_id


def random_stream(seed: int, venues: list[str], n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=hc.EVENT_DTYPE)
    price = 100_000.0
    oi = {v: 0.0 for v in venues}
    for i in range(n):
        v = venues[rng.integers(len(venues))]
        ev[i]["ts"] = 1_700_000_000_000 + i * 1000
        ev[i]["venue"] = venue_id(v)
        if rng.random() < 0.2 or oi[v] == 0.0:
            oi[v] = max(1e8, (oi[v] or 5e8) * rng.lognormal(0, 0.05))
            ev[i]["kind"] = 1
            ev[i]["value"] = oi[v]
        else:
            price *= float(np.exp(rng.normal(0, 0.004) + (rng.normal(0, 0.03) if rng.random() < 0.01 else 0)))
            ev[i]["kind"] = 0
            ev[i]["price"] = price
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_matches_numpy_reference(seed):
    venues = ["binance", "bybit", "okx", "deribit", "hyperliquid"]
    ev = random_stream(seed, venues)
    core = hc.Engine("BTCUSDT", step=50.0, venues=venues, learn=False)
    ref = ReferenceEngine("BTCUSDT", step=50.0, venues=venues)
    core.ingest(ev)
    ref.ingest(ev)
    for i, v in enumerate(venues):
        m = core.heatmap(v)
        prices, lo, sh = ref.heatmap(i)
        np.testing.assert_array_equal(m.prices, prices)
        np.testing.assert_allclose(m.long, lo, rtol=1e-9, atol=1e-6 * max(1.0, lo.max()))
        np.testing.assert_allclose(m.short, sh, rtol=1e-9, atol=1e-6 * max(1.0, sh.max()))
        for side in ("long", "short"):
            np.testing.assert_allclose(core.exposure_by_tier(v, side), ref.tier_totals(i, side), rtol=1e-9)
        d = core.diagnostics(v)
        assert d["expected_usd_long"] == pytest.approx(ref.expected[i, 0], rel=1e-9)
        assert d["expected_usd_short"] == pytest.approx(ref.expected[i, 1], rel=1e-9)
