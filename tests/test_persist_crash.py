"""Crashes: a process killed in the middle of saving, and a live run killed and
resumed from its autosnapshot and journal, must lose nothing it had applied."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from persist_stream import synthetic_stream

import heatcore as hc
from heatcore import persist

VENUES = ("binance", "okx", "hyperliquid")
HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports heatcore the way the parent did (installed, or the caller's
    # PYTHONPATH); only the tests' own helpers are added.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env


def _spawn(code: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, env=_env(), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()


SAVER = """
import mmap, sys, heatcore as hc
a, b, path = hc.Engine.load(sys.argv[1]), hc.Engine.load(sys.argv[2]), sys.argv[3]
with open(sys.argv[4], "r+b") as f:
    inside = mmap.mmap(f.fileno(), 1)  # shared with the parent: 1 while a save is running
a.save(path)
print("ready", flush=True)
i = 0
while True:
    inside[0] = 1
    (b if i % 2 == 0 else a).save(path)
    inside[0] = 0
    i += 1
"""


def test_kill_during_save_always_leaves_a_loadable_snapshot(tmp_path: Path) -> None:
    ev = synthetic_stream(5, 60_000, VENUES, oi_every=50, vol=1.5e-3)
    a, b = hc.Engine("BTCUSDT", venues=VENUES), hc.Engine("BTCUSDT", venues=VENUES)
    a.ingest(ev[:20_000])
    b.ingest(ev)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    states = {a._core.state_bytes(): "a", b._core.state_bytes(): "b"}
    assert len(states) == 2
    target = tmp_path / "live" / "snap"
    target.parent.mkdir()
    flag = tmp_path / "inside"
    flag.write_bytes(b"\0")
    rng = np.random.default_rng(0)
    kills, inside_save, tmp_window, seen = 20, 0, 0, set()
    for _ in range(kills):
        proc = _spawn(SAVER, str(tmp_path / "a"), str(tmp_path / "b"), str(target), str(flag))
        time.sleep(float(rng.uniform(0.0, 0.1)))
        _kill(proc)
        inside_save += flag.read_bytes() == b"\1"  # killed inside Engine.save()
        # killed between creating the temporary file and renaming it over the target
        tmp_window += any(p.name != "snap" for p in target.parent.iterdir())
        loaded = hc.Engine.load(target)  # never raises: the previous snapshot is intact
        seen.add(states[loaded._core.state_bytes()])
        persist.remove_stale_temporaries(target)
        flag.write_bytes(b"\0")
    print(f"kills={kills} inside_save={inside_save} tmp_window={tmp_window} states_seen={sorted(seen)}")
    # The kills must actually land inside saves, or this test shows nothing.
    assert inside_save >= kills // 2
    assert seen == {"a", "b"}


FEEDER = """
import sys, time, numpy as np, heatcore as hc
from heatcore.venues import venue_name, PRICE_KINDS
ev = np.load(sys.argv[1])
path, start = sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(int(sys.argv[4]))
if start == 0:
    eng = hc.Engine("BTCUSDT", venues=("binance", "okx", "hyperliquid"))
    eng.autosnapshot(path, every_events=2500)
else:
    eng = hc.Engine.resume(path, every_events=2500)
print("ready", flush=True)
i = eng.events_seen
while i < len(ev):
    if rng.random() < 0.3:  # a single update through the Python API
        e = ev[i]
        v, ts, k = venue_name(int(e["venue"])), int(e["ts"]), int(e["kind"])
        try:
            if k == 0:
                eng.update_price(v, ts, float(e["price"]))
            elif k == 1:
                eng.update_open_interest(v, ts, float(e["value"]), price=float(e["price"]))
            else:
                eng.on_liquidation(v, ts, {1: "long", -1: "short"}.get(int(e["side"]), "none"), float(e["price"]),
                                   float(e["value"]), price_kind=PRICE_KINDS[int(e["price_kind"])])
        except hc.InputError:
            pass
        i += 1
    else:
        n = int(rng.integers(1, 100))
        eng.ingest(ev[i:i + n])
        i += n
    time.sleep(0.001)  # a live feed: inputs arrive over time, the kill lands anywhere
print("done", flush=True)
"""


def _with_bad_events(ev: np.ndarray, seed: int) -> np.ndarray:
    """Insert duplicates and non-finite prices: refused inputs are part of the state too."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(ev)):
        out.append(ev[i:i + 1])
        r = rng.random()
        if r < 0.01:
            out.append(ev[i:i + 1])  # duplicate
        elif r < 0.02 and ev["kind"][i] == 0:
            bad = ev[i:i + 1].copy()
            bad["price"] = np.nan
            out.append(bad)
    return np.concatenate(out)


def test_killed_live_run_resumes_to_the_same_state(tmp_path: Path) -> None:
    ev = _with_bad_events(synthetic_stream(9, 40_000, VENUES, oi_every=30, vol=8e-4), 1)
    np.save(tmp_path / "ev.npy", ev)
    straight = hc.Engine("BTCUSDT", venues=VENUES)
    counts = straight.ingest(ev)
    assert counts["reasons"].get("duplicate", 0) > 100 and counts["reasons"].get("non_finite", 0) > 50
    path = str(tmp_path / "live.hcsnap")
    rng = np.random.default_rng(2)
    start, restarts, mid_run = 0, 0, 0
    while True:
        proc = _spawn(FEEDER, str(tmp_path / "ev.npy"), path, str(start), str(restarts))
        time.sleep(float(rng.uniform(0.05, 0.3)))
        finished = proc.poll() is not None
        _kill(proc)
        mid_run += not finished
        eng = hc.Engine.resume(path)
        assert eng.events_seen >= start  # nothing applied was lost
        start = eng.events_seen
        restarts += 1
        if finished or start == len(ev) or restarts >= 6:
            break
    eng.ingest(ev[eng.events_seen:])  # the feeder's remaining inputs
    print(f"restarts={restarts} killed_mid_run={mid_run} resumed_at={start} events={len(ev)}")
    assert mid_run >= 2
    assert eng._core.state_bytes() == straight._core.state_bytes()
    assert eng.diagnostics() == straight.diagnostics() | {"events_seen": len(ev)}
    for v in (None, *VENUES):
        m, s = eng.heatmap(v), straight.heatmap(v)
        np.testing.assert_array_equal(m.long, s.long)
        np.testing.assert_array_equal(m.short, s.short)


def _run_with_autosnapshot(path: str, ev: np.ndarray, cut: int, **kw) -> hc.Engine:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.autosnapshot(path, **kw)
    i = 0
    sizes = np.random.default_rng(4).integers(1, 700, len(ev))
    for n in sizes:
        if i >= cut:
            break
        eng.ingest(ev[i:min(cut, i + int(n))])
        i = min(cut, i + int(n))
    return eng  # abandoned without closing: as if the process died here


def test_torn_journal_tail_is_dropped(tmp_path: Path) -> None:
    ev = synthetic_stream(3, 20_000, VENUES)
    straight = hc.Engine("BTCUSDT", venues=VENUES)
    straight.ingest(ev)
    path = str(tmp_path / "s")
    _run_with_autosnapshot(path, ev, 13_000, every_events=5000).autosnapshot(None)
    journal = Path(path + ".journal")
    size = journal.stat().st_size
    for torn in (0, 1, 31, 200):
        with open(journal, "r+b") as f:
            f.truncate(size - torn)
        eng = hc.Engine.resume(path)
        assert eng.events_seen <= 13_000
        assert (eng.events_seen == 13_000) == (torn == 0)
        eng.ingest(ev[eng.events_seen:])
        assert eng._core.state_bytes() == straight._core.state_bytes()


class _Crash(BaseException):
    pass


def test_journal_of_an_older_snapshot_is_ignored(tmp_path: Path, monkeypatch) -> None:
    """A crash between writing a snapshot and starting its journal leaves the
    previous journal, whose inputs are all in the new snapshot already."""
    ev = synthetic_stream(4, 12_000, VENUES)
    straight = hc.Engine("BTCUSDT", venues=VENUES)
    straight.ingest(ev)
    path = str(tmp_path / "s")
    real_write = persist.write_atomic
    journals = []

    def dying_write(target, data):
        if str(target).endswith(".journal"):
            journals.append(target)
            if len(journals) == 3:  # the journal after the second periodic snapshot
                raise _Crash
        real_write(target, data)

    monkeypatch.setattr(persist, "write_atomic", dying_write)
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.autosnapshot(path, every_events=2500)
    i = 0
    with pytest.raises(_Crash):
        while True:
            eng.ingest(ev[i:i + 700])
            i += 700
    eng.autosnapshot(None)
    resumed = hc.Engine.resume(path)
    assert resumed.events_seen == i + 700 == 5600  # the second snapshot, nothing replayed twice
    resumed.ingest(ev[resumed.events_seen:])
    assert resumed._core.state_bytes() == straight._core.state_bytes()


def test_snapshot_every_seconds(tmp_path: Path, monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(persist.time, "monotonic", lambda: clock[0])
    ev = synthetic_stream(5, 3000, VENUES)
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.autosnapshot(tmp_path / "s", every_seconds=60.0)
    eng.ingest(ev[:1000])
    assert hc.Engine.load(tmp_path / "s").events_seen == 0
    clock[0] += 61.0
    eng.ingest(ev[1000:1500])
    assert hc.Engine.load(tmp_path / "s").events_seen == 1500
    assert Path(str(tmp_path / "s") + ".journal").stat().st_size < 100  # rotated with the snapshot
    eng.autosnapshot(None)
    eng.ingest(ev[1500:])
    assert hc.Engine.load(tmp_path / "s").events_seen == 1500


def test_configuration_changes_force_a_snapshot(tmp_path: Path) -> None:
    ev = synthetic_stream(6, 4000, VENUES)
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.autosnapshot(tmp_path / "s", every_events=10**9)
    eng.ingest(ev[:2000])
    eng.set_mix("okx", "long", np.ones(len(eng.tiers)))
    eng.freeze("binance")
    with pytest.raises(hc.InputError, match="unknown_venue"):
        eng.update_price("nowhere", int(ev["ts"][1999]), 1.0)
    eng.ingest(ev[2000:])
    resumed = hc.Engine.resume(tmp_path / "s")
    assert resumed._core.state_bytes() == eng._core.state_bytes()
    assert resumed.diagnostics() == eng.diagnostics()
    np.testing.assert_array_equal(resumed.leverage_mix("okx", "long")[1], eng.leverage_mix("okx", "long")[1])
