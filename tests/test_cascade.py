"""Cascades: chain tracking, the cluster rule, the forecast walk's invariants,
bounded memory under a liquidation burst, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import heatcore as hc
from heatcore.venues import venue_id

T0 = 1_767_225_600_000


def liq_events(ts, sides, prices, notionals, venue="hyperliquid"):
    out = np.zeros(len(ts), dtype=hc.EVENT_DTYPE)
    out["ts"] = ts
    out["price"] = prices
    out["value"] = notionals
    out["venue"] = venue_id(venue)
    out["kind"] = 2
    out["side"] = sides
    return out


def seeded(venues=("binance", "okx"), tiers=None, price=100_000.0, **kw) -> hc.Engine:
    e = hc.Engine("BTCUSDT", step=50.0, venues=list(venues), tiers=tiers, **kw)
    for i, v in enumerate(venues):
        e.update_price(v, T0, price)
        e.update_open_interest(v, T0, 1e9 * (i + 1))
    return e


def reference_chains(ts, sides, gap_ms):
    """Chains by the gap rule, per side, in closing order: (side, first index, count)."""
    out = []
    for s in (1, -1):
        idx = np.flatnonzero(sides == s)
        if idx.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(ts[idx]) > gap_ms) + 1
        for part in np.split(idx, breaks):
            out.append((s, int(ts[part[0]]), part.size))
    return out


def reference_clusters(m: hc.HeatMap, side: str, price: float, cfg: dict) -> np.ndarray:
    """The documented cluster rule in numpy: peak prices, nearest first."""
    step = m.step
    k = np.rint(m.prices / step).astype(np.int64)
    kp = price / step
    if side == "long":
        sel = (k <= np.ceil(kp) - 1) & (k >= np.floor(kp * (1 - cfg["max_distance"])))
        raw, pr = m.long[sel][::-1], m.prices[sel][::-1]
    else:
        sel = (k >= np.floor(kp) + 1) & (k <= np.ceil(kp * (1 + cfg["max_distance"])))
        raw, pr = m.short[sel], m.prices[sel]
    if raw.sum() < 1.0:
        return np.empty(0)
    h = max(1, int(np.floor(cfg["smooth_frac"] * price / step + 0.5)))  # llround
    cs = np.concatenate([[0.0], np.cumsum(raw)])
    j = np.arange(raw.size)
    smooth = cs[np.minimum(j + h + 1, raw.size)] - cs[np.maximum(j - h, 0)]
    thr = cfg["min_share"] * raw.sum()
    peaks: list[int] = []
    for i in range(raw.size):
        s = smooth[i]
        if not (s >= thr and s > 0):
            continue
        rises = i == 0 or s > smooth[i - 1]
        falls = i == raw.size - 1 or s >= smooth[i + 1]
        if not (rises and falls):
            continue
        if peaks and i - peaks[-1] <= 2 * h:
            if s > smooth[peaks[-1]]:
                peaks[-1] = i
            continue
        peaks.append(i)
        if len(peaks) > 10:
            break
    return pr[np.array(peaks[:10], dtype=int)]


# -- the forecast -------------------------------------------------------------------

def test_no_exposure_gives_an_empty_cascade():
    e = hc.Engine("BTCUSDT", venues=["binance"])
    assert e.cascade("long").size == 0  # no price at all
    e.update_price("binance", T0, 100_000.0)
    for side in ("long", "short"):
        c = e.cascade(side)
        assert c.dtype == hc.CASCADE_DTYPE and c.size == 0


def test_one_empty_side_is_empty_not_an_error():
    # High leverage only: every short level sits within a few % above entry, so a
    # 10 % rally consumes the whole short side and leaves the longs.
    e = seeded(venues=("binance",), tiers=[50.0, 100.0], seed_spread=0.01)
    assert e.cascade("short").size > 0
    e.update_price("binance", T0 + 1000, 110_000.0)
    assert e.heatmap().short.sum() < 1.0   # rounding residue of the crossing only
    assert e.cascade("short").size == 0
    assert e.cascade("long").size > 0


@pytest.mark.parametrize("side", ["long", "short"])
def test_levels_are_ordered_and_probability_confidence_fall(side):
    e = seeded()
    c = e.cascade(side, 10)
    assert 2 <= c.size <= 10
    price = e.heatmap().price
    d = np.diff(c["price"])
    if side == "long":
        assert np.all(c["price"] < price) and np.all(d < 0)
    else:
        assert np.all(c["price"] > price) and np.all(d > 0)
    assert np.all(np.diff(c["probability"]) <= 0)
    assert np.all(np.diff(c["confidence"]) < 0)
    assert np.all((c["probability"] >= 0) & (c["probability"] <= 1))
    assert np.all((c["confidence"] > 0) & (c["confidence"] <= 1))
    assert np.all(np.diff(c["eta_s"]) >= 0)
    assert np.all(c["notional"] > 0)
    assert e.cascade(side, 3).size == min(3, c.size)
    np.testing.assert_array_equal(e.cascade(side, 3), c[:3])


def test_deterministic_for_a_given_state():
    a, b = seeded(), seeded()
    for side in ("long", "short"):
        np.testing.assert_array_equal(a.cascade(side), a.cascade(side))
        np.testing.assert_array_equal(a.cascade(side), b.cascade(side))


@pytest.mark.parametrize("side", ["long", "short"])
def test_levels_follow_the_documented_cluster_rule(side):
    e = seeded(venues=("binance", "okx", "bybit"))
    e.update_price("binance", T0 + 60_000, 99_300.0)  # consume some levels, move off the grid centre
    m = e.heatmap()
    ref = reference_clusters(m, side, m.price, e.cascade_config())
    got = e.cascade(side)["price"]
    assert ref.size >= 2
    np.testing.assert_allclose(got, ref)


def test_learning_off_uses_priors_and_never_recalibrates():
    from heatcore import sim

    r = sim.simulate(hours=4, seed=3, venues=["binance", "bybit", "hyperliquid"])
    on = hc.Engine(r.symbol, r.step, venues=r.venues, learn=True, cascade={"horizon_s": 1800})
    off = hc.Engine(r.symbol, r.step, venues=r.venues, learn=False, cascade={"horizon_s": 1800})
    on.ingest(r.events)
    off.ingest(r.events)
    s_on, s_off = on.cascade_state(), off.cascade_state()
    assert s_on["chains_total"] == s_off["chains_total"] > 0   # chains are tracked either way
    assert s_off["n_impact"].sum() == 0 and s_off["n_resolved"].sum() == 0
    assert np.all(s_off["platt_b"] == 1.0) and np.all(s_off["platt_a"] == 0.0)
    assert s_on["n_impact"][0] > 0 and s_on["resolved_forecasts"] > 0
    # no lookahead: the recalibration has seen only forecasts whose horizon has passed
    span_s = (r.events["ts"][-1] - r.events["ts"][0]) / 1000
    assert s_on["resolved_forecasts"] <= 2 * (span_s - 1800) / 300 + 2
    c_off = off.cascade("long")
    np.testing.assert_array_equal(c_off["probability"], c_off["raw_probability"])


# -- chains ---------------------------------------------------------------------------

def test_chains_follow_the_gap_rule_per_side():
    rng = np.random.default_rng(5)
    e = seeded(venues=("hyperliquid",), cascade={"gap_ms": 2000})
    gaps = rng.choice([100, 500, 1999, 2001, 5000], size=400)
    ts = T0 + 10_000 + np.cumsum(gaps)
    sides = rng.choice([1, -1], size=400).astype(np.int8)
    prices = 100_000 - sides * rng.uniform(0, 500, 400)
    notionals = rng.uniform(1e3, 1e5, 400)
    e.ingest(liq_events(ts, sides, prices, notionals))
    ch = e.chains()
    ref = reference_chains(ts, sides, 2000)
    got = sorted(zip(ch["side"].tolist(), ch["start_ts"].tolist(), ch["events"].tolist(), strict=True))
    assert got == sorted(ref)
    assert ch["notional"].sum() == pytest.approx(notionals.sum())
    assert ch["open"].sum() == 2   # the last chain of each side is still open


def test_a_chain_records_the_levels_it_crosses():
    e = seeded(venues=("binance",), tiers=[10.0, 20.0, 50.0])
    origin = 99_900.0
    levels = e.cascade_clusters("long", origin)[:, 0]
    assert levels.size >= 2
    # A long chain walking down through the first two levels, one event per 500 ms.
    target = levels[1] - 60.0
    prices = np.linspace(origin, target, 60)
    ts = T0 + 5_000 + 500 * np.arange(60)
    e.ingest(liq_events(ts, np.ones(60, np.int8), prices, np.full(60, 2e5), venue="binance"))
    ch = e.chains()
    assert ch["side"].size == 1 and ch["open"][0]
    assert ch["reached"][0] == 2
    np.testing.assert_allclose(ch["level_price"][0, :levels.size], levels)
    hit = ts[np.searchsorted(-prices, -levels[:2])]      # first event at or beyond each level
    np.testing.assert_array_equal(ch["level_ts"][0, :2], hit)
    assert ch["level_ts"][0, 2] == 0
    st = e.cascade_state()
    assert st["n_impact"][1] == 1 and st["n_impact"][2] == 1 and st["n_time"][0] == 2
    # The gap closes the chain at the next price update; the unfinished segment
    # is a censored impact observation for level 3.
    e.update_price("binance", int(ts[-1]) + 120_000, target)
    ch = e.chains()
    assert ch["side"].size == 1 and not ch["open"][0]
    assert e.cascade_state()["n_impact"][3] == 1


def test_burst_keeps_chains_exact_and_memory_bounded():
    # ~25,000 liquidations per second for 4 s (the 10 Oct 2025 Hyperliquid peak
    # second saw ~22,500), in bursts separated by gaps that close chains.
    rng = np.random.default_rng(11)
    e = seeded(venues=("hyperliquid",), cascade={"gap_ms": 50, "history": 64})
    before = e.cascade_state()["memory_bytes"]
    n = 100_000
    dt = rng.choice([0, 0, 0, 1, 2, 51, 80], size=n, p=[0.5, 0.2, 0.1, 0.1, 0.07, 0.02, 0.01])
    ts = T0 + 1000 + np.cumsum(dt)
    sides = np.where(rng.random(n) < 0.7, 1, -1).astype(np.int8)
    prices = 100_000 - sides * rng.uniform(0, 3000, n)
    notionals = rng.lognormal(9, 1, n)
    counts = e.ingest(liq_events(ts, sides, prices, notionals))
    assert counts["liquidation"] == n and counts["rejected"] == 0
    ref = reference_chains(ts, sides, 50)
    st = e.cascade_state()
    closed = len(ref) - int(st["open_long"]) - int(st["open_short"])
    assert closed > 64                                 # the ring has wrapped
    assert st["chains_total"] == closed
    assert st["history_size"] == st["history_capacity"] == 64
    assert st["memory_bytes"] == before
    ch = e.chains()
    assert ch["events"].sum() <= n and ch["side"].size <= 66
    # The history holds exactly the 64 most recently closed chains.
    ref_by_start = {(s, t): c for s, t, c in ref}
    for s, t, c in zip(ch["side"], ch["start_ts"], ch["events"], strict=True):
        assert ref_by_start[(int(s), int(t))] == int(c)


# -- bad input --------------------------------------------------------------------------

def test_bad_arguments_are_clear_errors():
    e = seeded()
    with pytest.raises(ValueError, match="side"):
        e.cascade("sideways")
    with pytest.raises(ValueError, match="levels"):
        e.cascade("long", 11)
    with pytest.raises(KeyError):
        hc.Engine("BTCUSDT", venues=["binance"], cascade={"no_such_option": 1})
    with pytest.raises(ValueError):
        hc.Engine("BTCUSDT", venues=["binance"], cascade={"horizon_s": -1})
    with pytest.raises(ValueError):
        hc.Engine("BTCUSDT", venues=["binance"], cascade={"min_share": float("nan")})


def test_cascade_state_and_config_are_inspectable():
    e = seeded(cascade={"half_life": 50, "gap_ms": 1234})
    cfg = e.cascade_config()
    assert cfg["half_life"] == 50 and cfg["gap_ms"] == 1234
    st = e.cascade_state()
    for key in ("exponent", "scale", "residual", "fraction", "level_time_s", "platt_a", "platt_b"):
        assert st[key].shape == (11,)
    assert np.all(st["exponent"] == cfg["prior_exponent"])
    assert np.all(st["fraction"] == cfg["prior_fraction"])
