"""Snapshot timing: save and load of a realistic engine, beside baselines run in
the same process (ingesting events, copying the bytes, zlib's CRC-32).

    PYTHONPATH=src:tests python3 -m pytest benchmarks/bench_persist.py -o python_files='bench_*.py' \\
        --benchmark-group-by=group --benchmark-columns=min,median,max
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from persist_stream import synthetic_stream

import heatcore as hc
from heatcore import _core, persist

VENUES = ("binance", "okx", "bybit", "hyperliquid", "gate", "bitget")


@pytest.fixture(scope="module")
def engine() -> hc.Engine:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.ingest(synthetic_stream(1, 200_000, VENUES, oi_every=40, vol=6e-4))
    return eng


@pytest.fixture(scope="module")
def snapshot(engine: hc.Engine) -> bytes:
    return persist.dumps(engine)


@pytest.mark.benchmark(group="persist")
def test_save_bytes(benchmark, engine: hc.Engine, snapshot: bytes) -> None:
    out = benchmark(persist.dumps, engine)
    assert out == snapshot


@pytest.mark.benchmark(group="persist")
def test_load_bytes(benchmark, engine: hc.Engine, snapshot: bytes) -> None:
    eng = benchmark(hc.Engine._from_snapshot, snapshot)
    assert eng._core.state_bytes() == engine._core.state_bytes()


@pytest.mark.benchmark(group="persist")
def test_save_file_atomic(benchmark, engine: hc.Engine, snapshot: bytes, tmp_path: Path) -> None:
    benchmark(engine.save, tmp_path / "s.hcsnap")
    assert (tmp_path / "s.hcsnap").read_bytes() == snapshot


@pytest.mark.benchmark(group="persist")
def test_baseline_copy_bytes(benchmark, snapshot: bytes) -> None:
    out = benchmark(lambda: bytearray(snapshot))
    assert out == snapshot


@pytest.mark.benchmark(group="persist")
def test_baseline_ingest_10k_events(benchmark) -> None:
    ev = synthetic_stream(2, 10_000, VENUES)

    def run() -> int:
        e = hc.Engine("BTCUSDT", venues=VENUES)
        return e.ingest(ev)["rejected"]

    assert benchmark(run) == 0


@pytest.mark.benchmark(group="crc32")
def test_crc32_heatcore(benchmark, snapshot: bytes) -> None:
    assert benchmark(_core.crc32, snapshot) == zlib.crc32(snapshot)


@pytest.mark.benchmark(group="crc32")
def test_crc32_zlib(benchmark, snapshot: bytes) -> None:
    assert benchmark(zlib.crc32, snapshot) == _core.crc32(snapshot)


def test_snapshot_size(snapshot: bytes) -> None:
    print(f"snapshot bytes={len(snapshot)}")
    assert np.isfinite(len(snapshot))
