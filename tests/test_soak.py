"""Soak: tens of millions of events through one engine in constant memory."""

from __future__ import annotations

import os

import numpy as np
import pytest

import heatcore as hc
from heatcore.venues import venue_id

VENUES = ("binance", "okx", "bybit", "hyperliquid")
CHUNK = 1_000_000
CHUNKS = 20  # 20 M events
WARMUP = 3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _chunk(rng: np.random.Generator, k: int, out: np.ndarray) -> None:
    """Events [k * CHUNK, (k + 1) * CHUNK): a price oscillating +-6 % around 90k
    with noise (levels get crossed again and again, the grid stays bounded), an
    OI reading per venue every 500 events, 5 % liquidations, 2 % bad events."""
    n = len(out)
    i = np.arange(k * n, (k + 1) * n, dtype=np.int64)
    out["ts"] = 1_767_225_600_000 + i * 20
    slot = i % len(VENUES)
    out["venue"] = np.array([venue_id(v) for v in VENUES], dtype=np.uint16)[slot]
    phase = 2 * np.pi * i / 3_000_000
    price = 90_000.0 * np.exp(0.06 * np.sin(phase) + 0.01 * np.sin(17 * phase) + rng.normal(0, 2e-4, n))
    kind = np.zeros(n, dtype=np.uint8)
    kind[(i // len(VENUES)) % 500 == 1] = 1
    liq = (rng.random(n) < 0.05) & (kind == 0)
    kind[liq] = 2
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    out["kind"] = kind
    out["side"] = np.where(liq, side, 0)
    out["price"] = price
    oi = 3e9 * (1 + 0.2 * np.sin(phase / 3))
    out["value"] = np.where(kind == 1, oi, np.where(liq, rng.lognormal(np.log(2e4), 1.0, n), 0.0))
    bad = rng.random(n) < 0.02
    out["price"][bad] = np.nan  # refused as non_finite, never applied


@pytest.mark.slow
def test_twenty_million_events_in_constant_memory() -> None:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    rng = np.random.default_rng(0)
    buf = np.zeros(CHUNK, dtype=hc.EVENT_DTYPE)
    rss, accepted, rejected, bad = [], 0, 0, 0
    for k in range(CHUNKS):
        _chunk(rng, k, buf)
        bad += int(np.isnan(buf["price"]).sum())
        c = eng.ingest(buf)
        accepted += c["price"] + c["oi"] + c["liquidation"]
        rejected += c["rejected"]
        rss.append(_rss_bytes())
    growth = max(rss[WARMUP:]) - rss[WARMUP - 1]
    grid = eng.diagnostics()["grid"]
    print(f"events={CHUNKS * CHUNK} accepted={accepted} rejected={rejected} grid_bins={grid['bins']} "
          f"rss_after_warmup={rss[WARMUP - 1] / 2**20:.1f}MiB growth={growth / 2**20:.2f}MiB")
    assert accepted + rejected == CHUNKS * CHUNK
    assert rejected == bad == eng.diagnostics()["rejected"]["non_finite"]
    assert growth < 8 * 2**20  # constant memory: no per-event allocation, no unbounded state
    m = eng.heatmap()
    assert np.isfinite(m.long).all() and np.isfinite(m.short).all() and m.total()[0] > 0
    # The state after 20 M events is as small as after the warm-up.
    assert len(eng.__getstate__()) < 4 * 2**20
