"""Snapshots: exact round trip, pickling, the file format's checks, atomic saves."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from persist_stream import synthetic_stream

import heatcore as hc
from heatcore import _core, persist

VENUES = ("binance", "okx", "bybit")


def _engine(learn: bool = True, **kw) -> hc.Engine:
    return hc.Engine("BTCUSDT", venues=VENUES, learn=learn, **kw)


def _observables(eng: hc.Engine) -> dict:
    """Everything a user can read from an engine."""
    out: dict = {"diag": eng.diagnostics(), "events_seen": eng.events_seen,
                 "cascade_config": eng.cascade_config()}
    for side in ("long", "short"):
        out[f"cascade/{side}"] = eng.cascade(side)
    for k, v in eng.cascade_state().items():
        out[f"cascade_state/{k}"] = np.asarray(v)
    for k, v in eng.chains().items():
        out[f"chains/{k}"] = np.asarray(v)
    for k, v in eng.forecast_state().items():
        out[f"forecast_state/{k}"] = np.asarray(v)
    for v in (None, *eng.venues):
        m = eng.heatmap(v)
        out[f"map/{v}"] = (m.prices, m.long, m.short, m.price)
        f = eng.forecast(horizon_s=3600, venue=v)
        out[f"forecast/{v}"] = (f.prices, f.long, f.short, f.reach, f.price, f.sigma)
        if v is not None:
            for k, x in eng.forecast_state(v).items():
                out[f"forecast_state/{v}/{k}"] = np.asarray(x)
        if v is not None:
            out[f"stats/{v}"] = eng.diagnostics(v)
            for side in ("long", "short"):
                out[f"mix/{v}/{side}"] = eng.leverage_mix(v, side)[1]
                for which in ("open_interest", "map"):
                    out[f"mix/{v}/{side}/{which}"] = eng.leverage_mix(v, side, which=which)[1]
            for side, d in eng.learner_diagnostics(v).items():
                for k, x in d.items():
                    out[f"learner/{v}/{side}/{k}"] = x if isinstance(x, (int, float, bool)) else np.asarray(x)
                out[f"tiers/{v}/{side}"] = eng.exposure_by_tier(v, side)
                out[f"ratios/{v}/{side}"] = eng.liquidation_ratios(v, side)
    return out


def _assert_same(a: hc.Engine, b: hc.Engine) -> None:
    """Bit-identical state and identical observables."""
    assert a._core.state_bytes() == b._core.state_bytes()
    oa, ob = _observables(a), _observables(b)
    assert oa.keys() == ob.keys()
    for k in oa:
        va, vb = oa[k], ob[k]
        if isinstance(va, tuple):
            for x, y in zip(va, vb, strict=True):
                np.testing.assert_array_equal(x, y, err_msg=k)
        elif isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=k)
        else:
            assert va == vb, k


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return synthetic_stream(11, 30_000, VENUES, oi_every=60)


@pytest.mark.parametrize("learn", [True, False], ids=["learn", "static"])
@pytest.mark.parametrize("cut", [1, 7_777, 29_999], ids=["start", "middle", "end"])
def test_save_load_continue_equals_never_stopping(tmp_path: Path, stream: np.ndarray, learn: bool, cut: int) -> None:
    straight = _engine(learn)
    straight.ingest(stream[:cut])
    straight.freeze("okx")
    straight.ingest(stream[cut:])

    first = _engine(learn)
    first.ingest(stream[:cut])
    first.freeze("okx")
    first.save(tmp_path / "a.hcsnap")
    resumed = hc.Engine.load(tmp_path / "a.hcsnap")
    assert resumed.symbol == "BTCUSDT" and resumed.venues == VENUES and resumed.learn == learn
    resumed.ingest(stream[cut:])
    _assert_same(resumed, straight)
    assert resumed.heatmap().total()[0] > 0  # the comparison is over a non-trivial map


def test_single_updates_after_load_match(tmp_path: Path, stream: np.ndarray) -> None:
    a = _engine()
    a.ingest(stream[:5000])
    a.save(tmp_path / "s")
    b = hc.Engine.load(tmp_path / "s")
    t = int(stream["ts"][4999])
    for eng in (a, b):
        eng.update_price("okx", t + 1000, 91_000.0)
        eng.update_open_interest("okx", t + 2000, 2.5e9)
        eng.on_liquidation("okx", t + 3000, "short", 91_100.0, 50_000.0, price_kind="bankruptcy")
        eng.update_price("binance", t + 4000, 95_000.0)
        with pytest.raises(hc.InputError, match="duplicate"):
            eng.update_price("binance", t + 4000, 95_000.0)
    _assert_same(a, b)


def test_pickle_and_deepcopy(stream: np.ndarray) -> None:
    a = _engine()
    a.ingest(stream[:10_000])
    for b in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        _assert_same(a, b)
        b.ingest(stream[10_000:12_000])
        assert b._core.state_bytes() != a._core.state_bytes()  # independent copies
    a.ingest(stream[10_000:12_000])
    _assert_same(a, b)


def _continue_in_worker(eng: hc.Engine, events: np.ndarray) -> hc.Engine:
    eng.ingest(events)
    return eng


def test_pickle_through_multiprocessing(stream: np.ndarray) -> None:
    a = _engine()
    a.ingest(stream[:8000])
    ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        b = pool.submit(_continue_in_worker, a, stream[8000:16_000]).result(timeout=60)
    a.ingest(stream[8000:16_000])
    _assert_same(a, b)


# -- the file format --------------------------------------------------------------

def _snapshot(stream: np.ndarray) -> bytes:
    eng = _engine()
    eng.ingest(stream[:3000])
    return eng.__getstate__()


def _split(data: bytes) -> tuple[bytes, list[tuple[bytes, int, int, int, bytes]]]:
    head = persist.read_header(data)
    return data[:head["offset"]], list(persist._sections(data, head["offset"], len(data) - 4))


def _join(head: bytes, sections: list[tuple[bytes, int, int, int, bytes]]) -> bytes:
    body = head + b"".join(persist._section(t, (ma, mi), p, bool(f & 1)) for t, ma, mi, f, p in sections)
    return body + struct.pack("<I", _core.crc32(body))


def test_header_fields(stream: np.ndarray) -> None:
    data = _snapshot(stream)
    assert data[:8] == persist.MAGIC
    head = persist.read_header(data)
    assert head["format"] == persist.FORMAT_VERSION == (1, 0)
    assert head["library"] == hc.__version__
    import zlib

    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])  # our CRC-32 is the standard one
    _, sections = _split(data)
    assert [s[0] for s in sections] == [b"META", b"CORE"]
    assert _join(*_split(data)) == data


def test_corrupt_bytes_are_refused(stream: np.ndarray) -> None:
    data = _snapshot(stream)
    rng = np.random.default_rng(3)
    for pos in rng.integers(0, len(data), 200):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(hc.SnapshotError):
            hc.Engine._from_snapshot(bytes(bad))
    for n in [0, 5, 13, 40, len(data) // 2, len(data) - 5, len(data) - 1]:
        with pytest.raises(hc.SnapshotError):
            hc.Engine._from_snapshot(data[:n])
    with pytest.raises(hc.SnapshotError, match="checksum"):
        hc.Engine._from_snapshot(data[:-4] + bytes(4))


def test_not_a_snapshot(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b'{"ts": 1, "kind": "price"}\n')
    with pytest.raises(hc.SnapshotError, match="magic"):
        hc.Engine.load(p)
    p.write_bytes(b"")
    with pytest.raises(hc.SnapshotError):
        hc.Engine.load(p)


def test_newer_major_version_is_refused(stream: np.ndarray) -> None:
    data = bytearray(_snapshot(stream))
    data[8:10] = struct.pack("<H", 2)
    with pytest.raises(hc.SnapshotError, match=r"format 2\.0 .*newer"):
        hc.Engine._from_snapshot(bytes(data))
    # A known section with a newer major, correctly checksummed: refused too.
    head, sections = _split(_snapshot(stream))
    t, _, mi, f, p = sections[1]
    with pytest.raises(hc.SnapshotError, match="newer"):
        hc.Engine._from_snapshot(_join(head, [sections[0], (t, 2, mi, f, p)]))


def test_newer_minor_optional_sections_are_skipped(stream: np.ndarray) -> None:
    data = _snapshot(stream)
    head, sections = _split(data)
    head = head[:10] + struct.pack("<H", 7) + head[12:]  # format 1.7
    extra = (b"XTRA", 1, 0, 0, b"state of a future learner")
    newer = _join(head, [sections[0], extra, *sections[1:]])
    a, b = hc.Engine._from_snapshot(data), hc.Engine._from_snapshot(newer)
    _assert_same(a, b)
    required = (b"XTRA", 1, 0, 1, b"must not be dropped")
    with pytest.raises(hc.SnapshotError, match="required section"):
        hc.Engine._from_snapshot(_join(head, [*sections, required]))


def test_core_sections_follow_the_same_rules(stream: np.ndarray) -> None:
    """Inside CORE: an unknown optional section (a learner added by a newer minor
    version) is skipped; an unknown required one is refused."""
    data = _snapshot(stream)
    head, sections = _split(data)
    core = sections[1][4]
    for required, ok in ((False, True), (True, False)):
        extra = persist._section(b"LRNX", (1, 3), b"\x00" * 12, required)
        patched = _join(head, [sections[0], (b"CORE", 1, 0, 1, core + extra)])
        if ok:
            _assert_same(hc.Engine._from_snapshot(patched), hc.Engine._from_snapshot(data))
        else:
            with pytest.raises(hc.SnapshotError, match="LRNX"):
                hc.Engine._from_snapshot(patched)


# -- atomic writes ------------------------------------------------------------------

def test_failed_save_leaves_previous_snapshot(tmp_path: Path, stream: np.ndarray, monkeypatch) -> None:
    path = tmp_path / "snap"
    eng = _engine()
    eng.ingest(stream[:2000])
    eng.save(path)
    before = path.read_bytes()
    eng.ingest(stream[2000:4000])
    for victim in ("fsync", "replace"):
        def boom(*a, **k):
            raise OSError("disk gone")

        with monkeypatch.context() as m:
            m.setattr(os, victim, boom)
            with pytest.raises(OSError, match="disk gone"):
                eng.save(path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]  # the temporary file is gone
    eng.save(path)
    assert hc.Engine.load(path)._core.state_bytes() == eng._core.state_bytes()


def test_cascade_options_and_learned_state_survive(tmp_path: Path, stream: np.ndarray) -> None:
    opts = {"horizon_s": 1800.0, "gap_ms": 20_000, "half_life": 50.0}
    a = _engine(cascade=opts)
    a.ingest(stream[:20_000])
    assert a.cascade_state()["chains_total"] > 0  # the cascade learner has state to lose
    a.save(tmp_path / "c")
    b = hc.Engine.load(tmp_path / "c")
    assert b.cascade_config() == a.cascade_config() != _engine().cascade_config()
    for eng in (a, b):
        eng.ingest(stream[20_000:])
    _assert_same(a, b)


def test_repeated_save_load_on_the_simulator(tmp_path: Path) -> None:
    """A simulated market (heatcore.sim): stopping and restarting from a snapshot
    every 2,000 events ends exactly where an uninterrupted run does."""
    from heatcore import sim

    run = sim.simulate(hours=6, seed=4, venues=["binance", "okx", "bybit"])
    straight = hc.Engine(run.symbol, step=run.step, venues=run.venues)
    straight.ingest(run.events)
    eng = hc.Engine(run.symbol, step=run.step, venues=run.venues)
    for i in range(0, len(run.events), 2000):
        eng.ingest(run.events[i:i + 2000])
        eng.save(tmp_path / "sim.hcsnap")
        eng = hc.Engine.load(tmp_path / "sim.hcsnap")
    assert straight.cascade_state()["chains_total"] > 0 and straight.diagnostics()["rejected_total"] == 0
    _assert_same(eng, straight)


# -- the horizon forecast (FCST) -----------------------------------------------------

_FC_DEFAULTS = _core.ForecastConfig()


def _forecasts(eng: hc.Engine) -> dict:
    """The 1 h forecast of every venue and of the total, and the forecast's state."""
    out: dict = {f"state/{k}": np.asarray(v) for k, v in eng.forecast_state().items()}
    for v in (None, *eng.venues):
        f = eng.forecast(horizon_s=3600, venue=v)
        out[f"forecast/{v}"] = (f.prices, f.long, f.short, f.reach, f.price, f.sigma)
        if v is not None:
            out.update({f"state/{v}/{k}": np.asarray(x) for k, x in eng.forecast_state(v).items()})
    return out


def _same_forecasts(a: hc.Engine, b: hc.Engine) -> bool:
    fa, fb = _forecasts(a), _forecasts(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        va, vb = (fa[k], fb[k]) if isinstance(fa[k], tuple) else ((fa[k],), (fb[k],))
        if not all(np.array_equal(x, y) for x, y in zip(va, vb, strict=True)):
            return False
    return True


def _core_sections(core: bytes) -> list[tuple[bytes, int, int, int, bytes]]:
    return list(persist._sections(core, 0, len(core)))


def _with_core(data: bytes, edit) -> bytes:
    """The snapshot `data` with its CORE sections passed through `edit`."""
    head, sections = _split(data)
    meta, (tag, ma, mi, f, core) = sections
    core = b"".join(persist._section(t, (x, y), p, bool(g & 1)) for t, x, y, g, p in edit(_core_sections(core)))
    return _join(head, [meta, (tag, ma, mi, f, core)])


@pytest.fixture(scope="module")
def sim_run():
    from heatcore import sim

    return sim.simulate(hours=6, seed=4, venues=["binance", "okx", "bybit"])


def _sim_engine(run, learn: bool) -> hc.Engine:
    eng = hc.Engine(run.symbol, step=run.step, venues=run.venues, learn=learn)
    if not learn:
        eng.configure_forecast(learn=False)  # the forecast has its own switch
    return eng


@pytest.mark.parametrize("learn", [True, False], ids=["learn", "static"])
@pytest.mark.parametrize("frac", [0.4, 0.8])
def test_forecast_round_trip_on_the_simulator(tmp_path: Path, sim_run, learn: bool, frac: float) -> None:
    """save -> load -> continue gives bit-identical forecasts (every venue and the
    total) and forecast state to a run that never stopped."""
    ev = sim_run.events
    cut = int(len(ev) * frac)
    straight = _sim_engine(sim_run, learn)
    straight.ingest(ev)

    first = _sim_engine(sim_run, learn)
    first.ingest(ev[:cut])
    # The saved state is non-trivial: volatility estimated, refreshes run, bursts
    # under way; with learning, the reach recalibration and the EM have moved.
    st = first.forecast_state()
    assert st["anchor_price"] > 0 and st["now_s"] > 0
    assert (st["calibration_n"] > 0) == learn
    venues = [first.forecast_state(v) for v in first.venues]
    assert sum(v["burst_usd_long"] + v["burst_usd_short"] for v in venues) > 0
    moved = any(v[f"reach_scale_{s}"] != _FC_DEFAULTS.reach_prior for v in venues for s in ("long", "short"))
    assert moved == learn
    first.save(tmp_path / "f.hcsnap")
    data = (tmp_path / "f.hcsnap").read_bytes()
    assert b"FCST" in [t for t, *_ in _core_sections(_split(data)[1][1][4])]

    resumed = hc.Engine.load(tmp_path / "f.hcsnap")
    resumed.ingest(ev[cut:])
    assert _same_forecasts(resumed, straight)
    _assert_same(resumed, straight)
    assert straight.forecast(3600).total()[0] > 0 and straight.forecast(3600).total()[1] > 0

    # The comparison can fail: a snapshot without FCST (an older writer) loads
    # with a fresh forecast, which then does not match.
    stripped = hc.Engine._from_snapshot(_with_core(data, lambda s: [x for x in s if x[0] != b"FCST"]))
    stripped.ingest(ev[cut:])
    assert not _same_forecasts(stripped, straight)


def test_forecast_config_survives(tmp_path: Path, stream: np.ndarray) -> None:
    """Forecast settings travel in FCST, also when only the configuration is loaded."""
    settings = {"burst_tau_s": 900.0, "em_every_s": 120.0, "vol_tau_s": 7200.0, "checkpoint_every_s": 600.0,
                "shift_prior_nats": 0.5}

    def custom() -> hc.Engine:
        eng = _engine()
        eng.configure_forecast(**settings)
        return eng

    a = custom()
    a.ingest(stream[:20_000])
    assert a.forecast_state()["calibration_n"] > 0
    a.save(tmp_path / "c")
    b = hc.Engine.load(tmp_path / "c")
    straight = custom()
    straight.ingest(stream)
    b.ingest(stream[20_000:])
    assert _same_forecasts(b, straight)
    default = _engine()
    default.ingest(stream)
    assert not _same_forecasts(default, straight)  # the settings matter

    # config_only: the settings with a fresh state.
    def replay(eng: hc.Engine) -> np.ndarray:
        core = _core.Engine.from_state(eng._core.state_bytes(), config_only=True)
        assert _core.engine_forecast_state(core, -1)["now_s"] == 0.0
        core.ingest(stream)
        return _core.engine_forecast(core, [-1], 3600.0, 0, 4000)[0]

    np.testing.assert_array_equal(replay(a), replay(custom()))
    assert not np.array_equal(replay(a), replay(_engine()))


def test_forecast_section_1_0_keeps_reading_the_exposure_map(stream: np.ndarray) -> None:
    """FCST 1.1 appends ForecastConfig.generative_map and closing_hazard; a 1.0
    section (written before the forecast could read the learner's generated book)
    loads with both off, so a restored engine forecasts as it did when it was saved."""
    def engine(generative: bool, hazard: bool = True) -> hc.Engine:
        eng = _engine()
        eng.configure_forecast(generative_map=generative, closing_hazard=hazard)
        eng.ingest(stream[:20_000])
        return eng

    def as_1_0(sections):  # drop the two appended flags, claim minor 0
        return [(t, a, 0, f, p[:-2]) if t == b"FCST" else (t, a, b, f, p) for t, a, b, f, p in sections]

    old, new = engine(False), engine(True)
    for eng, keeps in ((old, True), (new, False)):
        loaded = hc.Engine._from_snapshot(_with_core(eng.__getstate__(), as_1_0))
        loaded.ingest(stream[20_000:])
        eng.ingest(stream[20_000:])
        assert _same_forecasts(loaded, eng) is keeps
    # written at 1.1, the flags are kept either way
    for generative, hazard in ((False, True), (True, True), (True, False)):
        eng = engine(generative, hazard)
        loaded = hc.Engine._from_snapshot(eng.__getstate__())
        loaded.ingest(stream[20_000:])
        eng.ingest(stream[20_000:])
        assert _same_forecasts(loaded, eng)


def test_corrupt_forecast_section_is_refused(stream: np.ndarray) -> None:
    """Bad FCST bytes give SnapshotError (never a crash), however they are bad."""
    eng = _engine()
    eng.ingest(stream[:20_000])
    assert eng.forecast_state()["calibration_n"] > 0
    data = eng.__getstate__()

    def patch(fn):
        return _with_core(data, lambda s: [(t, a, b, f, fn(p) if t == b"FCST" else p) for t, a, b, f, p in s])

    fcst = next(p for t, *_, p in _core_sections(_split(data)[1][1][4]) if t == b"FCST")
    for n in range(0, len(fcst), max(1, len(fcst) // 97)):  # truncated anywhere
        with pytest.raises(hc.SnapshotError, match="FCST"):
            hc.Engine._from_snapshot(patch(lambda p, n=n: p[:n]))
    cfg_size = 22 * 8 + 1
    nan = struct.pack("<d", float("nan"))
    ring_head = cfg_size + 8 * 8 + 1 + 8 + 64 * 5 * 8
    for off, value, why in [
        (0, nan, "non-finite forecast setting"),
        (0, struct.pack("<d", -1.0), "invalid forecast config"),          # vol_tau_s
        (cfg_size - 1, b"\x02", "boolean"),                               # learn
        (cfg_size, struct.pack("<d", 0.0), "variance rate"),              # var_rate
        (cfg_size, struct.pack("<d", 1.0), "variance rate"),              # beyond any clamped return
        (ring_head - 5 * 8 + 2 * 8, struct.pack("<d", 1.0), "checkpoint"),  # last slot's sd
        (cfg_size + 3 * 8, struct.pack("<d", 1e300), "price"),            # last_price
        (ring_head, struct.pack("<i", 64), "ring position"),
        (ring_head + 4, struct.pack("<i", -1), "ring position"),
    ]:
        with pytest.raises(hc.SnapshotError, match=why):
            hc.Engine._from_snapshot(patch(lambda p, o=off, v=value: p[:o] + v + p[o + len(v):]))
    # Fields a newer minor version appends are skipped (the forward-compatibility rule).
    _assert_same(hc.Engine._from_snapshot(patch(lambda p: p + b"\x00" * 24)), hc.Engine._from_snapshot(data))
    # Random bit flips load (a plausible state) or are refused, never crash.
    rng = np.random.default_rng(5)
    refused = 0
    for pos in rng.integers(0, len(fcst), 300):
        bad = bytearray(fcst)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            e = hc.Engine._from_snapshot(patch(lambda p, b=bytes(bad): b))
        except hc.SnapshotError:
            refused += 1
            continue
        e.forecast(3600)
        e.ingest(stream[20_000:20_200])
    assert refused > 0


# -- the Leverage Learner (LLRN) -------------------------------------------------------

_SMALL_RINGS = {"buffer_events": 48, "crossing_records": 12, "refresh_events": 8}


def _learner_view(eng: hc.Engine) -> dict:
    out: dict = {}
    for v in eng.venues:
        for side in ("long", "short"):
            for which in ("openings", "open_interest", "map", "prior"):
                out[f"{v}/{side}/{which}"] = eng.leverage_mix(v, side, which=which)[1]
        for side, d in eng.learner_diagnostics(v).items():
            out.update({f"{v}/{side}/{k}": np.asarray(x) for k, x in d.items()})
    return out


def _same_learners(a: hc.Engine, b: hc.Engine) -> bool:
    la, lb = _learner_view(a), _learner_view(b)
    assert la.keys() == lb.keys()
    return all(np.array_equal(la[k], lb[k]) for k in la)


@pytest.mark.parametrize("learn", [True, False], ids=["learn", "static"])
@pytest.mark.parametrize("opts", [None, _SMALL_RINGS], ids=["default", "small_rings"])
def test_leverage_learner_round_trip_on_the_simulator(tmp_path: Path, sim_run, learn: bool, opts) -> None:
    """save -> load -> continue gives bit-identical leverage mixes, learner
    diagnostics, maps and forecasts to a run that never stopped; the learner's
    settings and the venues' cross-margin priors come back with it."""
    ev = sim_run.events
    cut = len(ev) // 2

    def make() -> hc.Engine:
        return hc.Engine(sim_run.symbol, step=sim_run.step, venues=sim_run.venues, learn=learn, learner=opts)

    straight = make()
    straight.ingest(ev)
    first = make()
    first.ingest(ev[:cut])
    diags = [d for v in first.venues for d in first.learner_diagnostics(v).values()]
    assert sum(d["loglik_n"] for d in diags) > 0  # the skill score is state, learning or not
    if learn:  # the EM has run and moved a mix off the prior; with small rings they have wrapped
        assert sum(d["refreshes"] for d in diags) > 0
        assert any(not np.array_equal(first.leverage_mix(v, s)[1], first.leverage_mix(v, s, which="prior")[1])
                   for v in first.venues for s in ("long", "short"))
        if opts:
            assert max(d["n_events"] for d in diags) > opts["buffer_events"]
    first.save(tmp_path / "l.hcsnap")
    data = (tmp_path / "l.hcsnap").read_bytes()
    resumed = hc.Engine.load(tmp_path / "l.hcsnap")
    resumed.ingest(ev[cut:])
    assert _same_learners(resumed, straight)
    assert _same_forecasts(resumed, straight)
    _assert_same(resumed, straight)  # maps, mixes, every observable, the state bytes

    if learn:  # the comparison can fail: without LLRN the learner restarts from its prior
        stripped = hc.Engine._from_snapshot(_with_core(data, lambda s: [x for x in s if x[0] != b"LLRN"]))
        stripped.ingest(ev[cut:])
        assert not _same_learners(stripped, straight)


def _learner_bytes(tiers: int, k: int, b: int) -> int:
    """Length of one learner's LLRN record (LeverageLearner::save) for T tiers, K
    crossing records and B buffered events."""
    arrays = 10 * tiers + 2 * tiers + tiers + 2 * k + k * tiers + b + b * tiers + 10 * tiers
    return 16 + 27 * 8 + 8 * arrays + 2 * 8 + 8 * (k + b) + 9 * 8 + 4 * 8 + 2 + 7 * 8 + 7 * 8 + 5 * 8


def _llrn_v10_length(payload: bytes, venues: int, tiers: int, k: int, b: int) -> int:
    """Bytes of an LLRN payload that version 1.0 wrote: the configuration, the
    venues' cross priors, every learner, then every book's openings rows."""
    off = (12 * 8 + 8 + 8 + 4 + 8 + 8) + 8 + 16 * venues + 2 * venues * _learner_bytes(tiers, k, b)
    rows = 2 * tiers
    for _ in range(2 * venues):
        off += 16 + 2 * (8 + 8 * rows)                       # distance, map sum, otot, ocons
        lo = struct.unpack_from(f"<{rows}q", payload, off + 8)
        hi = struct.unpack_from(f"<{rows}q", payload, off + 16 + 8 * rows)
        off += 2 * (8 + 8 * rows) + 8 * sum(b - a + 1 for a, b in zip(lo, hi, strict=True) if a <= b)
    return off


def test_learner_section_minor_0_still_loads(sim_run) -> None:
    """An LLRN 1.0 section (before minor 1 appended the learners' vintage state
    and the books' recency-weighted openings rows) loads: the 1.0 state comes back
    as it was, the new views start as the one openings book 1.0 had, learning goes
    on, and the engine saves as minor 1 again."""
    ev = sim_run.events
    eng = hc.Engine(sim_run.symbol, step=sim_run.step, venues=sim_run.venues, learner=_SMALL_RINGS)
    half = len(ev) // 2
    eng.ingest(ev[:half])
    data = eng.__getstate__()
    tiers = len(eng.leverage_mix(eng.venues[0], "long")[0])
    k, b = _SMALL_RINGS["crossing_records"], _SMALL_RINGS["buffer_events"]

    def as_minor_0(sections):
        out = []
        for t, ma, mi, f, p in sections:
            if t == b"LLRN":
                assert (ma, mi) == (1, 1)
                n = _llrn_v10_length(p, len(eng.venues), tiers, k, b)
                assert 0 < n < len(p)
                p, mi = p[:n], 0
            out.append((t, ma, mi, f, p))
        return out

    old = hc.Engine._from_snapshot(_with_core(data, as_minor_0))
    assert _same_learners(old, eng)
    # Truncated anywhere in the 1.0 part, it is refused as before.
    with pytest.raises(hc.SnapshotError, match="LLRN"):
        hc.Engine._from_snapshot(_with_core(data, lambda s: [
            (t, a, 0, f, p[: _llrn_v10_length(p, len(eng.venues), tiers, k, b) - 8]) if t == b"LLRN"
            else (t, a, mi, f, p) for t, a, mi, f, p in s]))
    old.ingest(ev[half:])
    for v in old.venues:
        d = old.learner_diagnostics(v)
        for side in ("long", "short"):
            w = old.leverage_mix(v, side)[1]
            assert np.all(np.isfinite(w)) and np.all(w >= 0) and np.isclose(w.sum(), 1.0)
            assert d[side]["n_events"] >= eng.learner_diagnostics(v)[side]["n_events"]
    assert sum(old.learner_diagnostics(v)[s]["refreshes"] for v in old.venues for s in ("long", "short")) > \
        sum(eng.learner_diagnostics(v)[s]["refreshes"] for v in eng.venues for s in ("long", "short"))
    again = hc.Engine._from_snapshot(old.__getstate__())
    assert again._core.state_bytes() == old._core.state_bytes()


def test_corrupt_learner_section_is_refused(sim_run) -> None:
    """Bad LLRN bytes give SnapshotError (never a crash), however they are bad."""
    eng = hc.Engine(sim_run.symbol, step=sim_run.step, venues=sim_run.venues, learner=_SMALL_RINGS)
    half = len(sim_run.events) // 2
    eng.ingest(sim_run.events[:half])
    data = eng.__getstate__()

    def patch(snapshot: bytes, fn) -> bytes:
        return _with_core(snapshot, lambda s: [(t, a, b, f, fn(p) if t == b"LLRN" else p) for t, a, b, f, p in s])

    def put(snapshot: bytes, off: int, value: bytes) -> bytes:
        return patch(snapshot, lambda p: p[:off] + value + p[off + len(value):])

    llrn = next(p for t, *_, p in _core_sections(_split(data)[1][1][4]) if t == b"LLRN")
    for n in range(0, len(llrn), max(1, len(llrn) // 97)):  # truncated anywhere
        with pytest.raises(hc.SnapshotError, match="LLRN"):
            hc.Engine._from_snapshot(patch(data, lambda p, n=n: p[:n]))
    cfg = 12 * 8 + 8 + 8 + 4 + 8 + 8        # LearnerConfig
    first = cfg + 8 + 16 * len(eng.venues)  # the first learner: tau, cross, then its arrays
    for off, value, why in [
        (0, struct.pack("<d", -1.0), "half_life_hours"),
        (12 * 8, struct.pack("<Q", 0), "buffer sizes"),
        (6 * 8, struct.pack("<d", 1e300), "crossing window"),          # crossing_window_s (int64 ms)
        (cfg, struct.pack("<Q", 2), "venue count"),
        (cfg + 8, struct.pack("<d", 1.5), "cross-margin"),             # the first venue's cross_share
        (cfg + 16, struct.pack("<d", 0.5), "cross-margin"),            # ... and its cross_distance
        (first, struct.pack("<d", 0.0), "constants"),                  # tau
        (first + 16, struct.pack("<Q", 7), "size does not match"),     # the prior's length
        (first + 24, struct.pack("<d", float("nan")), "non-finite"),
    ]:
        with pytest.raises(hc.SnapshotError, match=why):
            hc.Engine._from_snapshot(put(data, off, value))
    # A timestamp the learner would subtract with overflow: x_ts[0] of the first learner.
    tiers = len(eng.leverage_mix(eng.venues[0], "long")[0])
    k, b = _SMALL_RINGS["crossing_records"], _SMALL_RINGS["buffer_events"]
    x_ts = first + 16 + 8 * (27 + 10 * tiers + 3 * tiers + 2 * k + k * tiers + b + b * tiers + 10 * tiers) + 8
    assert struct.unpack_from("<q", llrn, x_ts - 8)[0] == k
    with pytest.raises(hc.SnapshotError, match="timestamp"):
        hc.Engine._from_snapshot(put(data, x_ts, struct.pack("<q", -2**63)))

    # An empty openings row comes back empty, whatever (lo > hi) range the bytes
    # give it: otherwise the next opening would stretch it over bins off the grid.
    early = hc.Engine(sim_run.symbol, step=sim_run.step, venues=sim_run.venues, learner=_SMALL_RINGS)
    early.ingest(sim_run.events[:1])  # a price: every openings row is still empty
    snap = early.__getstate__()
    ll = next(p for t, *_, p in _core_sections(_split(snap)[1][1][4]) if t == b"LLRN")
    books = first + 2 * len(early.venues) * _learner_bytes(tiers, k, b)
    olo = books + 16 + 2 * (8 + 8 * 2 * tiers) + 8    # first book: dist, map sum, otot, ocons, olo
    lo, hi = struct.unpack_from("<q", ll, olo)[0], struct.unpack_from("<q", ll, olo + 8 + 16 * tiers)[0]
    assert lo > hi  # the fresh book's sentinels
    bad = put(snap, olo, struct.pack("<q", 0))
    bad = put(bad, olo + 8 + 16 * tiers, struct.pack("<q", -1))
    loaded = hc.Engine._from_snapshot(bad)
    assert loaded._core.state_bytes() == early._core.state_bytes()
    loaded.ingest(sim_run.events[1:4000])

    # Random bit flips load (a plausible state) or are refused, never crash.
    rng = np.random.default_rng(9)
    refused = 0
    for pos in rng.integers(0, len(llrn), 300):
        flipped = bytearray(llrn)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            e = hc.Engine._from_snapshot(patch(data, lambda p, f=bytes(flipped): f))
        except hc.SnapshotError:
            refused += 1
            continue
        e.ingest(sim_run.events[half:half + 300])
        e.leverage_mix(e.venues[0], "long")
    assert refused > 0


# -- the Exchange Calibrator (CALB) ------------------------------------------------------

_CAL_VENUES = ("htx", "gate", "kraken", "okx")


@pytest.fixture(scope="module")
def cal_run():
    from heatcore import sim

    # htx and gate run stale maintenance tables, kraken reports bankruptcy prices
    # while documented as trade prints (the simulator's defaults; tests/test_calibrator.py).
    return sim.simulate(hours=12, seed=12, venues=_CAL_VENUES, oi_usd={"kraken": 1e9, "okx": 2e9, "htx": 6e8})


def _calibrations(eng: hc.Engine) -> dict:
    return {v: eng.calibration(v) for v in eng.venues}


@pytest.mark.parametrize("learn", [True, False], ids=["learn", "static"])
def test_calibrator_round_trip_on_the_simulator(tmp_path: Path, cal_run, learn: bool) -> None:
    """save -> load -> continue gives identical calibration(), maps, mixes and
    forecasts to a run that never stopped."""
    ev = cal_run.events
    cut = len(ev) // 2

    def make() -> hc.Engine:
        return hc.Engine(cal_run.symbol, step=cal_run.step, venues=cal_run.venues, learn=learn)

    straight = make()
    straight.ingest(ev)
    first = make()
    first.ingest(ev[:cut])
    cal = _calibrations(first)
    used = sum(c["events"][s]["used"] for c in cal.values() for s in ("long", "short"))
    if learn:  # evidence gathered, and some venue's levels already re-placed
        assert used > 0
        assert any(c["rate_scale"][s]["applied"] != 1.0 for c in cal.values() for s in ("long", "short"))
    else:
        assert used == 0
    first.save(tmp_path / "c.hcsnap")
    data = (tmp_path / "c.hcsnap").read_bytes()
    resumed = hc.Engine.load(tmp_path / "c.hcsnap")
    assert resumed.calibrate == straight.calibrate == learn
    resumed.ingest(ev[cut:])
    assert _calibrations(resumed) == _calibrations(straight)
    assert _same_learners(resumed, straight)
    assert _same_forecasts(resumed, straight)
    _assert_same(resumed, straight)

    if learn:  # the comparison can fail: without CALB the calibrator restarts from its priors
        stripped = hc.Engine._from_snapshot(_with_core(data, lambda s: [x for x in s if x[0] != b"CALB"]))
        stripped.ingest(ev[cut:])
        assert _calibrations(stripped) != _calibrations(straight)


def test_corrupt_calibrator_section_is_refused(cal_run) -> None:
    """Bad CALB bytes give SnapshotError (never a crash), however they are bad."""
    eng = hc.Engine(cal_run.symbol, step=cal_run.step, venues=cal_run.venues)
    half = len(cal_run.events) // 2
    eng.ingest(cal_run.events[:half])
    data = eng.__getstate__()

    def patch(fn) -> bytes:
        return _with_core(data, lambda s: [(t, a, b, f, fn(p) if t == b"CALB" else p) for t, a, b, f, p in s])

    def put(off: int, value: bytes) -> bytes:
        return patch(lambda p: p[:off] + value + p[off + len(value):])

    calb = next(p for t, *_, p in _core_sections(_split(data)[1][1][4]) if t == b"CALB")
    for n in range(0, len(calb), max(1, len(calb) // 97)):  # truncated anywhere
        with pytest.raises(hc.SnapshotError, match="CALB"):
            hc.Engine._from_snapshot(patch(lambda p, n=n: p[:n]))
    cfg = 8 + 9 * 8 + 4 + 8 + 1 + 1                 # CalibratorConfig, then calibrating
    marks = cfg + 8                                 # per venue: kind u8, mark ts i64, mark price f64
    first = marks + 17 * len(eng.venues)            # the first side's first RobustLocation
    assert struct.unpack_from("<Q", calb, cfg)[0] == len(eng.venues)
    for off, value, why in [
        (8, struct.pack("<d", 0.1), "huber_c"),
        (cfg, struct.pack("<Q", 3), "venue count"),
        (marks, b"\x09", "price kind"),
        (marks + 1, struct.pack("<q", 2**63 - 1), "mark"),
        (marks + 9, struct.pack("<d", float("nan")), "mark"),
        (first, struct.pack("<d", float("nan")), "residual"),     # warm_[0]
        (first + 8 * 9, struct.pack("<d", float("inf")), "residual"),  # ring_[0]
        (first + 8 * 41 + 12, struct.pack("<Q", 32), "estimate"),  # ring position
    ]:
        with pytest.raises(hc.SnapshotError, match=why):
            hc.Engine._from_snapshot(put(off, value))
    rng = np.random.default_rng(13)
    refused = 0
    for pos in rng.integers(0, len(calb), 300):
        flipped = bytearray(calb)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            e = hc.Engine._from_snapshot(patch(lambda p, f=bytes(flipped): f))
        except hc.SnapshotError:
            refused += 1
            continue
        e.ingest(cal_run.events[half:half + 2000])
        e.calibration(e.venues[0])
    assert refused > 0


def _casc_1_1_tail_bytes(eng: hc.Engine) -> int:
    """Bytes CASC 1.1 and 1.2 append to the 1.0 payload. 1.1: consensus price,
    window size, per level a track record (10 f64, 3 u64) and its window of
    resolved forecasts, the candidates (3 x 10 f64) of every pending forecast
    slot. 1.2: the chain impact law (tick i64, f64, bool; per side 3 f64 + i64;
    two grids of 121 f64; 3 f64). 1.3: per side the tick's first-liquidation
    offset (i64) and the waiting interval's admission (bool). 1.4: the volatility
    sums' clock (i64)."""
    import math

    cfg, st = eng.cascade_config(), eng.cascade_state()
    window = min(4096, math.ceil(cfg["calibration_half_life"]))
    stored = np.minimum(st["n_resolved"][1:], window).astype(int)
    slots = min(2 * math.ceil(cfg["horizon_s"] / cfg["record_every_s"]) + 8, 4096)
    v1_1 = 16 + int(np.sum(13 * 8 + 2 * 8 * stored)) + slots * 3 * 10 * 8
    v1_2 = 8 + 8 + 1 + 2 * 32 + 2 * 121 * 8 + 3 * 8
    v1_3 = 2 * (8 + 1)
    v1_4 = 8
    return v1_1 + v1_2 + v1_3 + v1_4


def test_cascade_1_0_section_still_loads(tmp_path: Path, sim_run) -> None:
    """A CASC 1.0 section (before the recalibration's track records and the chain
    impact law) loads: the learned walk is kept, the recalibration and the law
    start fresh (issued = raw walk, prior law) and a bad tail is refused."""
    a = hc.Engine(sim_run.symbol, step=sim_run.step, venues=sim_run.venues)
    a.ingest(sim_run.events)
    st = a.cascade_state()
    assert st["resolved_forecasts"] > 0 and st["n_impact"][0] > 0
    data = a.__getstate__()
    tail = _casc_1_1_tail_bytes(a)

    def as_1_0(secs):
        return [(t, x, 0, g, p[:-tail]) if t == b"CASC" else (t, x, y, g, p) for t, x, y, g, p in secs]

    assert [y for t, _, y, _, _ in _core_sections(_split(data)[1][1][4]) if t == b"CASC"] == [4]
    b = hc.Engine.__new__(hc.Engine)
    b.__setstate__(_with_core(data, as_1_0))
    sb = b.cascade_state()
    for key in ("exponent", "scale", "fraction", "level_time_s", "platt_a", "platt_b", "n_impact", "n_resolved"):
        np.testing.assert_array_equal(sb[key], st[key], err_msg=key)
    assert np.all(sb["brier_raw"][1:] == 0) and np.all(sb["gate_platt"][1:] == 0)
    assert st["n_chain_impact"] > 0 and sb["n_chain_impact"] == 0 and not sb["chain_fitted"]
    for side in ("long", "short"):
        ca, cb = a.cascade(side), b.cascade(side)
        np.testing.assert_array_equal(cb["raw_probability"], ca["raw_probability"])
        np.testing.assert_array_equal(cb["probability"], np.minimum.accumulate(cb["raw_probability"]))
    b.ingest(sim_run.events[-10:])  # and it runs on

    def as_1_1(secs):
        cut = 8 + 8 + 1 + 2 * 32 + 2 * 121 * 8 + 3 * 8 + 2 * (8 + 1) + 8
        return [(t, x, 1, g, p[:-cut]) if t == b"CASC" else (t, x, y, g, p) for t, x, y, g, p in secs]

    d = hc.Engine.__new__(hc.Engine)
    d.__setstate__(_with_core(data, as_1_1))
    sd = d.cascade_state()
    for key in ("brier_raw", "brier_platt", "gate_platt", "base_rate"):
        np.testing.assert_array_equal(sd[key], st[key], err_msg=key)
    assert sd["n_chain_impact"] == 0
    for side in ("long", "short"):
        np.testing.assert_array_equal(d.cascade(side), a.cascade(side))

    def as_1_2(secs):
        return [(t, x, 2, g, p[:-2 * (8 + 1) - 8]) if t == b"CASC" else (t, x, y, g, p) for t, x, y, g, p in secs]

    e12 = hc.Engine.__new__(hc.Engine)
    e12.__setstate__(_with_core(data, as_1_2))
    s12 = e12.cascade_state()
    for key in ("chain_exponent", "chain_scale", "n_chain_impact", "brier_raw"):
        np.testing.assert_array_equal(s12[key], st[key], err_msg=key)

    def as_1_3(secs):  # 1.3: no volatility clock (it restarts at the latest venue mark)
        return [(t, x, 3, g, p[:-8]) if t == b"CASC" else (t, x, y, g, p) for t, x, y, g, p in secs]

    e13 = hc.Engine.__new__(hc.Engine)
    e13.__setstate__(_with_core(data, as_1_3))
    assert e13.__getstate__() == data
    e13.ingest(sim_run.events[-10:])
    a.ingest(sim_run.events[-10:])
    for side in ("long", "short"):
        np.testing.assert_array_equal(e13.cascade(side), a.cascade(side))

    def cut_short(secs):
        return [(t, x, y, g, p[:-tail // 2]) if t == b"CASC" else (t, x, y, g, p) for t, x, y, g, p in secs]

    c = hc.Engine.__new__(hc.Engine)
    with pytest.raises(persist.SnapshotError):
        c.__setstate__(_with_core(data, cut_short))
