"""Thread safety: readers on other threads see the engine between whole batches,
never in the middle of one; a snapshot taken during ingest is a consistent state."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
from persist_stream import synthetic_stream

import heatcore as hc

VENUES = ("binance", "okx", "bybit")
BATCH = 1500


def _map_key(m: hc.HeatMap) -> str:
    h = hashlib.sha1()
    for a in (m.prices, m.long, m.short):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _boundaries(ev: np.ndarray) -> tuple[dict[str, int], dict[bytes, int]]:
    """Serial replay: map and state at every batch boundary -> batch index."""
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    maps, states = {_map_key(eng.heatmap()): 0}, {eng._core.state_bytes(): 0}
    for b in range(0, len(ev), BATCH):
        eng.ingest(ev[b:b + BATCH])
        maps.setdefault(_map_key(eng.heatmap()), b // BATCH + 1)
        states[eng._core.state_bytes()] = b // BATCH + 1
    return maps, states


def test_readers_see_whole_batches_only(tmp_path: Path) -> None:
    ev = synthetic_stream(21, 60_000, VENUES, oi_every=20, vol=1e-3)
    maps, states = _boundaries(ev)
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    done = threading.Event()
    seen: list[int] = []
    snapshots: list[bytes] = []
    counts: list[int] = []
    errors: list[BaseException] = []

    def read_maps() -> None:
        try:
            while not done.is_set():
                seen.append(maps[_map_key(eng.heatmap())])  # KeyError: a map no boundary had
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    def read_other() -> None:
        try:
            i = 0
            while not done.is_set():
                d = eng.diagnostics()
                counts.append(d["events_seen"])
                for v in VENUES:
                    eng.leverage_mix(v, "long")
                    eng.exposure_by_tier(v, "short")
                if i % 5 == 0:
                    snapshots.append(eng.__getstate__())
                i += 1
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read_maps), threading.Thread(target=read_other)]
    for t in readers:
        t.start()
    try:
        for b in range(0, len(ev), BATCH):
            eng.ingest(ev[b:b + BATCH])
            # Give the readers a chance between batches (a loaded machine may not
            # schedule them at all while ingest runs); they also read during it.
            n, deadline = len(seen), time.monotonic() + 0.05
            while len(seen) == n and time.monotonic() < deadline:
                time.sleep(0.0005)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not errors, errors
    print(f"map reads={len(seen)} distinct boundaries={len(set(seen))} snapshots={len(snapshots)}")
    assert len(set(seen)) >= 3  # the readers really ran during the ingest
    assert seen == sorted(seen)  # and never saw the engine go back
    assert all(c % BATCH == 0 or c == len(ev) for c in counts)
    for s in snapshots:  # every snapshot is the state at some batch boundary
        assert hc.Engine._from_snapshot(s)._core.state_bytes() in states
    assert eng._core.state_bytes() == max(states, key=states.__getitem__)
