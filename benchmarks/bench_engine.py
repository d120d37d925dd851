"""Engine benchmarks: batch ingest, per-call updates, map and cascade reads,
memory and burst latency, and how cost grows with venues, tiers, bins and
stream length.

Each core path is timed beside the numpy reference (benchmarks/reference.py) in
the same group, and both are checked to give the same maps on the same stream:
report ratios, which survive a noisy shared machine, not absolute times.

    python -m pytest benchmarks/bench_engine.py --benchmark-only \\
        --benchmark-group-by=group --benchmark-columns=min,median,mean,ops
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from reference import ReferenceEngine

import heatcore as hc
from heatcore import sim

HOURS = 6          # one simulated market: 22 venues, about 105k events
REF_EVENTS = 1500  # the numpy reference is slow: it runs on the stream's head


@pytest.fixture(scope="module")
def market() -> sim.SimResult:
    return sim.simulate(hours=HOURS, seed=7)


@pytest.fixture(scope="module")
def stream(market: sim.SimResult) -> np.ndarray:
    return market.events


@pytest.fixture(scope="module")
def fed(market: sim.SimResult) -> hc.Engine:
    e = hc.Engine(market.symbol, market.step, venues=market.venues)
    e.ingest(market.events)
    return e


@pytest.fixture(scope="module")
def fed_reference(market: sim.SimResult) -> tuple[hc.Engine, ReferenceEngine]:
    """Core (static baseline) and reference fed the same head of the stream."""
    head = market.events[:REF_EVENTS]
    core = hc.Engine(market.symbol, market.step, venues=market.venues, learn=False)
    core.ingest(head)
    ref = ReferenceEngine(market.symbol, market.step, venues=list(market.venues))
    ref.ingest(head)
    return core, ref


def _assert_same_maps(core: hc.Engine, ref: ReferenceEngine, venue: str | None) -> None:
    m = core.heatmap(venue)
    _, lo, sh = ref.heatmap(None if venue is None else core.venues.index(venue))
    np.testing.assert_allclose(m.long, lo, rtol=1e-9, atol=1e-6 * max(1.0, lo.max()))
    np.testing.assert_allclose(m.short, sh, rtol=1e-9, atol=1e-6 * max(1.0, sh.max()))


# ---- batch ingest ---------------------------------------------------------------------

@pytest.mark.parametrize("learn", [True, False], ids=["learn-on", "learn-off"])
@pytest.mark.benchmark(group="ingest")
def test_ingest_core(benchmark, market, stream, learn):
    def run() -> dict:
        e = hc.Engine(market.symbol, market.step, venues=market.venues, learn=learn)
        return e.ingest(stream)

    counts = benchmark.pedantic(run, rounds=5, iterations=1)
    assert counts["rejected"] == 0
    assert counts["price"] + counts["oi"] + counts["liquidation"] == len(stream)
    if benchmark.stats:
        benchmark.extra_info["events"] = len(stream)
        benchmark.extra_info["M_events_per_s"] = len(stream) / benchmark.stats.stats.min / 1e6


@pytest.mark.benchmark(group="ingest")
def test_ingest_reference(benchmark, market, stream):
    head = stream[:REF_EVENTS]

    def run() -> ReferenceEngine:
        ref = ReferenceEngine(market.symbol, market.step, venues=list(market.venues))
        ref.ingest(head)
        return ref

    ref = benchmark.pedantic(run, rounds=1, iterations=1)
    core = hc.Engine(market.symbol, market.step, venues=market.venues, learn=False)
    core.ingest(head)
    for v in (market.venues[0], market.venues[-1], None):
        _assert_same_maps(core, ref, v)
    if benchmark.stats:
        benchmark.extra_info["events"] = len(head)
        benchmark.extra_info["M_events_per_s"] = len(head) / benchmark.stats.stats.min / 1e6


def test_core_matches_reference_on_the_simulated_stream(fed_reference):
    core, ref = fed_reference
    for v in [*core.venues, None]:
        _assert_same_maps(core, ref, v)
    for i, v in enumerate(core.venues):
        for side in ("long", "short"):
            np.testing.assert_allclose(core.exposure_by_tier(v, side), ref.tier_totals(i, side), rtol=1e-9)


# ---- per-call updates from Python --------------------------------------------------------

def _call_stream(fed: hc.Engine, n: int = 200_000):
    """Distinct, time-ordered single updates continuing the fed market (none refused)."""
    ts0 = fed.diagnostics()["last_ts"] + 1000
    price = fed.heatmap("binance").price
    ts = itertools.count(ts0)
    wiggle = itertools.cycle(np.linspace(-20.0, 20.0, 97))
    return ts, price, wiggle


@pytest.mark.benchmark(group="per-call")
def test_update_price_call(benchmark, fed):
    ts, price, wiggle = _call_stream(fed)
    benchmark(lambda: fed.update_price("binance", next(ts), price + next(wiggle)))


@pytest.mark.benchmark(group="per-call")
def test_update_open_interest_call(benchmark, fed):
    ts, _, wiggle = _call_stream(fed)
    oi = fed.diagnostics("binance")["oi_base"] * fed.heatmap("binance").price
    benchmark(lambda: fed.update_open_interest("binance", next(ts), oi * (1.0 + next(wiggle) * 1e-4)))


@pytest.mark.benchmark(group="per-call")
def test_on_liquidation_call(benchmark, fed):
    ts, price, wiggle = _call_stream(fed)
    benchmark(lambda: fed.on_liquidation("binance", next(ts), "long", price * 0.995, 25_000.0 + next(wiggle)))


@pytest.mark.benchmark(group="per-call")
def test_reference_update_price_call(benchmark, fed_reference):
    _, ref = fed_reference
    ts = itertools.count(int(ref.last_ts) + 1000)
    p0 = float(ref.last_price[0])
    wiggle = itertools.cycle(np.linspace(-20.0, 20.0, 97))
    benchmark(lambda: ref.update_price(0, next(ts), p0 + next(wiggle)))


# ---- reads -------------------------------------------------------------------------------

@pytest.mark.benchmark(group="heatmap-venue")
def test_heatmap_venue_core(benchmark, fed_reference):
    core, ref = fed_reference
    m = benchmark(core.heatmap, "binance")
    assert m.long.sum() > 0
    _assert_same_maps(core, ref, "binance")


@pytest.mark.benchmark(group="heatmap-venue")
def test_heatmap_venue_reference(benchmark, fed_reference):
    core, ref = fed_reference
    _, lo, _ = benchmark(ref.heatmap, core.venues.index("binance"))
    np.testing.assert_allclose(core.heatmap("binance").long, lo, rtol=1e-9, atol=1e-6 * lo.max())


@pytest.mark.benchmark(group="heatmap-all")
def test_heatmap_all_core(benchmark, fed_reference):
    core, ref = fed_reference
    m = benchmark(core.heatmap)
    assert m.short.sum() > 0
    _assert_same_maps(core, ref, None)


@pytest.mark.benchmark(group="heatmap-all")
def test_heatmap_all_reference(benchmark, fed_reference):
    core, ref = fed_reference
    _, _, sh = benchmark.pedantic(ref.heatmap, rounds=3, iterations=1)
    np.testing.assert_allclose(core.heatmap().short, sh, rtol=1e-9, atol=1e-6 * sh.max())


@pytest.mark.benchmark(group="heatmap-venue")
def test_heatmap_venue_full_stream(benchmark, fed):
    """The same read on the engine fed the whole 6-hour stream (learning on)."""
    m = benchmark(fed.heatmap, "binance")
    assert np.isfinite(m.long).all()


@pytest.mark.benchmark(group="heatmap-all")
def test_heatmap_all_full_stream(benchmark, fed):
    m = benchmark(fed.heatmap)
    assert np.isfinite(m.short).all()


@pytest.mark.benchmark(group="cascade-read")
def test_cascade_10_core(benchmark, fed):
    out = benchmark(fed.cascade, "long", 10)
    assert len(out) >= 1
    assert (np.diff(out["price"]) < 0).all()  # long levels walk down from price


# ---- memory, burst latency ------------------------------------------------------------------

_MEMORY_SCRIPT = r"""
import gc, json, sys
import heatcore as hc

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

import numpy as np
ev = np.load(sys.argv[1])  # the stream, made by the parent (the simulator's own memory is not counted)
gc.collect()
try:
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak (VmHWM) to the current RSS
        f.write("5")
except OSError:
    pass
base = status("VmRSS:")
e = hc.Engine("BTCUSDT", 50.0)
e.ingest(ev)
m = e.heatmap()
c = e.cascade("long", 10)
peak = max(status("VmHWM:"), status("VmRSS:"))
print(json.dumps({"baseline_kib": base, "peak_kib": peak, "engine_kib": status("VmRSS:") - base,
                  "peak_engine_kib": peak - base,
                  "bins": e.diagnostics()["grid"]["bins"], "events": len(ev)}))
"""


def _memory(events_path: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(hc.__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, events_path], check=True, capture_output=True,
                         text=True, env=env, timeout=120)
    return json.loads(out.stdout)


def test_peak_memory_22_venues(benchmark, stream, tmp_path):
    """Resident memory added by one engine (22 venues, $50 bins) fed 6 hours, over
    the process before it (Python, numpy, the stream); reported in extra info.
    (The peak, VmHWM, counts only where the kernel lets it be reset.)"""
    path = tmp_path / "stream.npy"
    np.save(path, stream)
    mem = benchmark.pedantic(_memory, args=(str(path),), rounds=1, iterations=1)
    assert mem["engine_kib"] > 0
    benchmark.extra_info.update(mem)
    print(f"\npeak memory: engine +{mem['engine_kib'] / 1024:.1f} MiB "
          f"(process {mem['peak_kib'] / 1024:.1f} MiB, {mem['bins']} bins)")


def burst_latency(fed: hc.Engine, market: sim.SimResult, rate: float = 25_000.0, seconds: float = 1.0,
                  read_map: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Event-in to map-updated latency (ns) of single updates arriving at ``rate``/s:
    each event is applied through the Python API and, with ``read_map``, its
    venue's map read back. Events are paced on the wall clock; a slow event delays
    the next ones and its queueing counts in their latency. Returns that latency
    and the service time (call plus read, no queueing)."""
    n = int(rate * seconds)
    src = market.events[-n:].copy()
    src["ts"] = src["ts"] - src["ts"][0] + fed.diagnostics()["last_ts"] + 10_000
    names = {hc.venues.venue_id(v): v for v in fed.venues}
    sides = {1: "long", -1: "short"}
    lat = np.empty(n, dtype=np.int64)
    service = np.empty(n, dtype=np.int64)
    period = int(1e9 / rate)
    t0 = time.perf_counter_ns()
    for i, ev in enumerate(src.tolist()):
        ts, price, value, venue, kind, side = ev[:6]
        due = t0 + i * period
        start = time.perf_counter_ns()
        while start < due:
            start = time.perf_counter_ns()
        v = names[venue]
        if kind == 0:
            fed.update_price(v, ts, price)
        elif kind == 1:
            fed.update_open_interest(v, ts, value, price or None)
        else:
            fed.on_liquidation(v, ts, sides[side], price, value)
        if read_map:
            fed.heatmap(v)
        end = time.perf_counter_ns()
        lat[i] = end - due
        service[i] = end - start
    return lat, service


def test_burst_latency_25k_per_s(benchmark, market):
    e = hc.Engine(market.symbol, market.step, venues=market.venues)
    e.ingest(market.events[: len(market.events) // 2])
    seconds = 1.0 if benchmark.enabled else 0.05
    lat, service = benchmark.pedantic(burst_latency, args=(e, market, 25_000.0, seconds), rounds=1, iterations=1)
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9]) / 1e3
    s50, s99 = np.percentile(service, [50, 99]) / 1e3
    benchmark.extra_info.update({"p50_us": p50, "p99_us": p99, "p999_us": p999, "max_us": lat.max() / 1e3,
                                 "service_p50_us": s50, "service_p99_us": s99})
    print(f"\nburst 25k/s: latency p50 {p50:.1f} us, p99 {p99:.1f} us, p99.9 {p999:.1f} us, "
          f"max {lat.max() / 1e3:.0f} us; service p50 {s50:.1f} us, p99 {s99:.1f} us")
    assert (lat > 0).all()


# ---- how cost grows ----------------------------------------------------------------------

def _scaled_stream(hours: float, venues: tuple[str, ...]) -> tuple[np.ndarray, sim.SimResult]:
    r = sim.simulate(hours=hours, seed=11, venues=list(venues))
    return r.events, r


@pytest.fixture(scope="module")
def scaling_market() -> sim.SimResult:
    return sim.simulate(hours=2, seed=11)


@pytest.mark.parametrize("n_venues", [1, 5, 22])
@pytest.mark.benchmark(group="scaling-venues")
def test_ingest_vs_venues(benchmark, scaling_market, n_venues):
    venues = tuple(scaling_market.venues[:n_venues])
    codes = [hc.venues.venue_id(v) for v in venues]
    ev = scaling_market.events[np.isin(scaling_market.events["venue"], codes)]
    counts = benchmark.pedantic(lambda: hc.Engine("BTCUSDT", 50.0, venues=venues).ingest(ev), rounds=3)
    assert counts["rejected"] == 0
    benchmark.extra_info["events"] = len(ev)


@pytest.mark.parametrize("n_tiers", [5, 19, 40])
@pytest.mark.benchmark(group="scaling-tiers")
def test_ingest_vs_tiers(benchmark, scaling_market, n_tiers):
    tiers = np.unique(np.round(np.geomspace(2.0, 125.0, n_tiers), 2)).tolist()
    ev = scaling_market.events
    counts = benchmark.pedantic(lambda: hc.Engine("BTCUSDT", 50.0, tiers=tiers).ingest(ev), rounds=3)
    assert counts["rejected"] == 0


@pytest.mark.parametrize("step", [200.0, 50.0, 10.0])
@pytest.mark.benchmark(group="scaling-bins")
def test_ingest_vs_bins(benchmark, scaling_market, step):
    ev = scaling_market.events
    counts = benchmark.pedantic(lambda: hc.Engine("BTCUSDT", step).ingest(ev), rounds=3)
    assert counts["rejected"] == 0


@pytest.mark.parametrize("step", [200.0, 50.0, 10.0])
@pytest.mark.benchmark(group="scaling-bins-heatmap")
def test_heatmap_vs_bins(benchmark, scaling_market, step):
    e = hc.Engine("BTCUSDT", step)
    e.ingest(scaling_market.events)
    m = benchmark(e.heatmap)
    benchmark.extra_info["bins"] = len(m.prices)


@pytest.mark.parametrize("copies", [1, 4, 16])
@pytest.mark.benchmark(group="scaling-length")
def test_ingest_vs_stream_length(benchmark, scaling_market, copies):
    """The same 2-hour market tiled end to end (timestamps shifted): cost per event
    stays flat, the engine's grid and memory do not grow with length."""
    ev = scaling_market.events
    span = int(ev["ts"][-1] - ev["ts"][0]) + 1000
    tiled = np.concatenate([ev] * copies)
    tiled["ts"] += np.repeat(np.arange(copies, dtype=np.int64) * span, len(ev))
    tiled = tiled.astype(hc.EVENT_DTYPE)

    def run() -> hc.Engine:
        e = hc.Engine("BTCUSDT", 50.0)
        e.ingest(tiled)
        return e

    e = benchmark.pedantic(run, rounds=2 if copies > 4 else 3)
    assert e.diagnostics()["rejected_total"] == 0
    benchmark.extra_info.update({"events": len(tiled), "bins": e.diagnostics()["grid"]["bins"]})
