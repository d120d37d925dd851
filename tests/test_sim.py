"""The synthetic market: reproducible, valid events, and a truth that really drives them."""

from __future__ import annotations

import numpy as np
import pytest
from reference_sim import naive_liquidations

import heatcore as hc
from heatcore import venues as hv
from heatcore.events import FLAG_SAMPLED, KIND_LIQUIDATION, KIND_OI, KIND_PRICE
from heatcore.sim import SimConfig, SimResult, simulate

# A short, volatile market on a few venues (one of each feed type and each departure):
# enough liquidations for statistics in a few seconds of run time.
SMALL_VENUES = ("binance", "bybit", "okx", "htx", "kraken", "hyperliquid", "bitget")
SMALL = dict(hours=6.0, venues=SMALL_VENUES, daily_vol=0.08, keep_positions=True,
             cross_share={"kraken": 0.0})


@pytest.fixture(scope="module")
def small() -> SimResult:
    return simulate(seed=3, **SMALL)


@pytest.fixture(scope="module")
def small_no_impact() -> SimResult:
    return simulate(seed=3, impact_coef=0.0, **SMALL)


def _code(venue: str) -> int:
    return hv.venue_id(venue)


def _liq_events(res: SimResult, venue: str) -> np.ndarray:
    ev = res.events
    return ev[(ev["kind"] == KIND_LIQUIDATION) & (ev["venue"] == _code(venue))]


# ----------------------------------------------------------------------------- basics
def test_api_shape(small: SimResult) -> None:
    assert small.symbol == "BTCUSDT"
    assert small.step == 50.0
    np.testing.assert_array_equal(small.truth.tiers, np.asarray(hv.DEFAULT_TIERS))
    assert small.events.dtype == hc.EVENT_DTYPE
    assert set(small.truth.rate_scale) == set(SMALL_VENUES)
    ts, price = small.truth.price_path
    assert ts.size == price.size == 6 * 3600
    assert small.truth.liquidations.size > 0


def test_reproducible_same_seed() -> None:
    a = simulate(hours=1.0, seed=11, venues=("bybit", "okx"))
    b = simulate(hours=1.0, seed=11, venues=("bybit", "okx"))
    assert a.events.tobytes() == b.events.tobytes()
    assert a.truth.liquidations.tobytes() == b.truth.liquidations.tobytes()
    c = simulate(hours=1.0, seed=12, venues=("bybit", "okx"))
    assert a.events.size != c.events.size or a.events.tobytes() != c.events.tobytes()
    assert not np.allclose(a.truth.mix("bybit", "short"), c.truth.mix("bybit", "short"))


def test_config_object_and_overrides() -> None:
    cfg = SimConfig(hours=0.5, seed=4, venues=("deribit",))
    a = simulate(config=cfg)
    b = simulate(config=cfg, seed=5)
    assert a.config.seed == 4 and b.config.seed == 5
    assert a.venues == ("deribit",)
    with pytest.raises(TypeError, match="unknown simulator option"):
        simulate(hours=0.1, not_an_option=1)
    with pytest.raises(KeyError):
        simulate(hours=0.1, venues=("nowhere",))
    with pytest.raises(ValueError, match="repeat"):
        simulate(hours=0.1, venues=("okx", "okx"))
    with pytest.raises(ValueError, match="hours"):
        simulate(hours=-1.0)
    with pytest.raises(ValueError, match="mix"):
        simulate(hours=0.1, venues=("okx",), mixes={"okx": (1.0, 2.0)})


def test_events_valid_and_ordered(small: SimResult) -> None:
    ev = small.events
    assert np.all(np.diff(ev["ts"]) >= 0)
    assert np.all(np.isfinite(ev["price"])) and np.all(ev["price"] > 0)
    assert np.all(np.isfinite(ev["value"]))
    codes = {_code(v) for v in SMALL_VENUES}
    assert set(np.unique(ev["venue"]).tolist()) <= codes
    price, oi, liq = (ev[ev["kind"] == k] for k in (KIND_PRICE, KIND_OI, KIND_LIQUIDATION))
    assert price.size + oi.size + liq.size == ev.size
    assert np.all(price["side"] == 0) and np.all(oi["side"] == 0)
    assert np.all(oi["value"] > 0) and np.all(liq["value"] > 0)
    assert set(np.unique(liq["side"]).tolist()) == {-1, 1}
    # every venue prices every price_interval_s and reads OI every oi_interval_s
    for v in SMALL_VENUES:
        p = price[price["venue"] == _code(v)]
        assert p.size == 6 * 3600 // 5
        assert np.all(np.diff(p["ts"]) == 5000)
        o = oi[oi["venue"] == _code(v)]
        assert o.size == 6 * 60 + 1
    # the engine accepts the whole stream without rejecting anything
    eng = hc.Engine(symbol=small.symbol, step=small.step, venues=list(SMALL_VENUES))
    counts = eng.ingest(ev)
    assert counts["rejected"] == 0


def test_price_kind_from_registry(small: SimResult) -> None:
    for v in ("binance", "bybit", "okx", "htx", "kraken", "hyperliquid"):
        liq = _liq_events(small, v)
        assert liq.size > 0, v
        expected = hv.PRICE_KINDS.index(hv.get_venue(v).reported_price)
        assert np.all(liq["price_kind"] == expected), v


# ----------------------------------------------------------------------------- feeds
def test_sampled_feeds_keep_one_per_second(small: SimResult) -> None:
    truth = small.truth.liquidations
    for v in ("binance", "okx"):
        assert hv.get_venue(v).liquidation_feed == "sampled"
        liq = _liq_events(small, v)
        secs = liq["ts"] // 1000
        assert np.unique(secs).size == secs.size, f"{v}: two liquidations in one second"
        assert np.all(liq["flags"] & FLAG_SAMPLED)
        # one event for every second that had a true liquidation, and it is the latest one
        t = truth[truth["venue"] == _code(v)]
        tsec = t["ts"] // 1000
        assert np.unique(tsec).size == secs.size
        assert t.size > secs.size  # sampling really dropped events
        for s, ts in zip(secs[:50], liq["ts"][:50], strict=True):
            assert ts == t["ts"][tsec == s].max()


def test_complete_feed_emits_everything(small: SimResult) -> None:
    truth = small.truth.liquidations
    for v in ("bybit", "htx", "kraken", "hyperliquid"):
        liq = _liq_events(small, v)
        t = truth[truth["venue"] == _code(v)]
        assert liq.size == t.size > 0
        assert not np.any(liq["flags"] & FLAG_SAMPLED)
        assert np.isclose(liq["value"].sum(), t["notional"].sum())


def test_feed_none_emits_no_liquidations_but_prices_and_oi(small: SimResult) -> None:
    assert hv.get_venue("bitget").liquidation_feed == "none"
    ev = small.events[small.events["venue"] == _code("bitget")]
    assert np.count_nonzero(ev["kind"] == KIND_LIQUIDATION) == 0
    assert np.count_nonzero(ev["kind"] == KIND_PRICE) > 0
    assert np.count_nonzero(ev["kind"] == KIND_OI) > 0
    assert small.truth.liquidated_usd("bitget", "long") + small.truth.liquidated_usd(
        "bitget", "short") > 0  # they happen, the feed just does not show them


# ----------------------------------------------------------------------------- truth
def test_mixes_sum_to_one_and_differ(small: SimResult) -> None:
    tr = small.truth
    mixes = {}
    for v in SMALL_VENUES:
        for side in ("long", "short"):
            m = tr.mix(v, side)
            assert m.shape == (len(hv.DEFAULT_TIERS),)
            assert np.isclose(m.sum(), 1.0) and np.all(m >= 0)
            assert np.isclose(tr.band_mix(v, side).sum(), 1.0)
            assert np.isclose(tr.open_mix(v, side).sum(), 1.0)
            # nothing above the venue's maximum leverage
            assert m[tr.tiers > hv.get_venue(v).max_leverage].sum() == 0
            mixes[(v, side)] = m
    keys = list(mixes)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert 0.5 * np.abs(mixes[a] - mixes[b]).sum() > 0.05, (a, b)
    # the hidden truth departs from the published archetype
    prior = hv.prior_weights("hyperliquid")
    assert 0.5 * np.abs(tr.mix("hyperliquid", "long") - prior).sum() > 0.2


def test_openings_follow_the_true_mix(small: SimResult) -> None:
    pos = small.truth.positions
    t0 = small.config.start_ts_ms
    for v, side in (("binance", 1), ("hyperliquid", -1)):
        sel = (pos["venue"] == _code(v)) & (pos["side"] == side) & (pos["open_ts"] >= t0)
        lev = pos["leverage"][sel]
        emp = np.array([(lev == t).mean() for t in small.truth.tiers])
        true = small.truth.mix(v, "long" if side == 1 else "short")
        assert sel.sum() > 2000
        assert 0.5 * np.abs(emp - true).sum() < 0.05


def test_open_mix_matches_the_book(small: SimResult) -> None:
    pos = small.truth.positions
    tr = small.truth
    ts = int(tr.oi_ts[60])
    for v in ("bybit", "htx"):
        sel = (pos["venue"] == _code(v)) & (pos["side"] == -1) & (pos["open_ts"] < ts) & (
            pos["end_ts"] >= ts)
        q = np.array([pos["qty"][sel & (pos["leverage"] == t)].sum() for t in tr.tiers])
        np.testing.assert_allclose(tr.open_mix(v, "short", ts), q / q.sum(), atol=1e-9)


def test_oi_readings_equal_the_open_book(small: SimResult) -> None:
    pos = small.truth.positions
    ev = small.events
    for v in ("okx", "kraken", "bitget"):
        oi = ev[(ev["kind"] == KIND_OI) & (ev["venue"] == _code(v))]
        p = pos[pos["venue"] == _code(v)]
        for e in oi[::37]:
            ts = int(e["ts"])
            open_now = (p["open_ts"] < ts) & (p["end_ts"] >= ts)
            longs = p["qty"][open_now & (p["side"] == 1)].sum()
            shorts = p["qty"][open_now & (p["side"] == -1)].sum()
            assert np.isclose(longs, shorts, rtol=1e-9)
            assert np.isclose(e["value"], longs * e["price"], rtol=1e-9)
        # OI moves: openings, closings and liquidations all change it
        assert np.std(oi["value"] / oi["price"]) > 0


def test_initial_book_is_realistic() -> None:
    res = simulate(hours=0.2, seed=2, venues=("binance", "dydx"))
    ev = res.events
    oi0 = ev[(ev["kind"] == KIND_OI) & (ev["ts"] == res.config.start_ts_ms)]
    by = {int(e["venue"]): e["value"] for e in oi0}
    assert 1.5e9 < by[_code("binance")] < 5e9
    assert 0.1e9 < by[_code("dydx")] < 0.4e9
    # the pre-history swept the book: no leg starts with its liquidation price crossed
    # by more than the basis noise
    liq = res.truth.liquidations
    assert np.count_nonzero(liq["ts"] < res.config.start_ts_ms + 1000) < 0.01 * max(1, liq.size)


def test_stale_rate_venue_liquidates_at_true_rate(small: SimResult) -> None:
    assert small.truth.rate_scale["htx"] == 1.6
    liq = small.truth.liquidations
    sel = (liq["venue"] == _code("htx")) & ~liq["cross"]
    assert sel.sum() > 20
    mech = hv.get_venue("htx").mechanics(small.symbol)
    ratio = liq["trigger"][sel] / liq["entry"][sel]
    true = np.array([mech.liquidation_ratio(int(s), float(lev), 1.6)
                     for s, lev in zip(liq["side"][sel], liq["leverage"][sel], strict=True)])
    documented = np.array([mech.liquidation_ratio(int(s), float(lev), 1.0)
                           for s, lev in zip(liq["side"][sel], liq["leverage"][sel], strict=True)])
    np.testing.assert_allclose(ratio, true, rtol=1e-12)
    # a stale table is a measurable difference: the true level sits closer to entry
    assert np.all(np.abs(true - 1) < np.abs(documented - 1))
    assert np.median(np.abs(ratio - documented)) > 1e-3


def test_liquidations_happen_where_price_crossed(small: SimResult) -> None:
    liq = small.truth.liquidations
    long_ = liq["side"] == 1
    assert np.all(liq["mark"][long_] <= liq["trigger"][long_])
    assert np.all(liq["mark"][~long_] >= liq["trigger"][~long_])
    # crossed within the second: the global price one second earlier was on the safe side
    ts, price = small.truth.price_path
    sec = (liq["ts"] - ts[0]) // 1000
    prev = price[np.maximum(sec - 1, 0)]
    ok = np.where(long_, prev > liq["trigger"] * 0.998, prev < liq["trigger"] * 1.002)
    assert ok.mean() > 0.95


def test_undocumented_report_convention(small: SimResult) -> None:
    tr = small.truth
    assert tr.report_convention["kraken"] == "bankruptcy"
    assert hv.get_venue("kraken").reported_price == "trade"
    liq = tr.liquidations
    sel = (liq["venue"] == _code("kraken")) & ~liq["cross"]
    assert sel.sum() > 10
    lev, entry, side = liq["leverage"][sel], liq["entry"][sel], liq["side"][sel]
    np.testing.assert_allclose(liq["reported"][sel], entry * (1 - side / lev), rtol=1e-12)
    # bankruptcy sits beyond the trigger; a trade print would sit at the mark
    assert np.all(side * (liq["reported"][sel] - liq["trigger"][sel]) < 0)
    # a venue that follows its registry (hyperliquid: trade) reports near the mark
    hl = liq[liq["venue"] == _code("hyperliquid")]
    assert np.median(np.abs(hl["reported"] / hl["mark"] - 1)) < 5e-4


def test_cross_margin_dies_farther(small: SimResult) -> None:
    tr = small.truth
    liq = tr.liquidations
    sel = liq["venue"] == _code("hyperliquid")
    reg = hv.get_venue("hyperliquid")
    assert tr.cross_share["hyperliquid"] == reg.cross_share > 0  # the documented prior
    assert tr.cross_distance["hyperliquid"] == reg.cross_distance
    cross = liq[sel & liq["cross"]]
    iso = liq[sel & ~liq["cross"]]
    assert cross.size > 10 and iso.size > 10
    mech = reg.mechanics(small.symbol)
    d_iso = np.array([abs(mech.liquidation_ratio(int(s), float(L)) - 1)
                      for s, L in zip(cross["side"], cross["leverage"], strict=True)])
    d_real = np.abs(cross["trigger"] / cross["entry"] - 1)
    lo = reg.cross_distance * (1 - small.config.cross_spread)
    hi = reg.cross_distance * (1 + small.config.cross_spread)
    assert np.all(d_real >= lo * d_iso - 1e-12) and np.all(d_real <= hi * d_iso + 1e-12)
    # the share of cross legs among openings is the truth's
    pos = tr.positions
    opened = pos[(pos["venue"] == _code("hyperliquid")) & (pos["open_ts"] >= small.config.start_ts_ms)]
    assert abs(opened["cross"].mean() - tr.cross_share["hyperliquid"]) < 0.03
    # no cross legs where the truth says none
    assert tr.cross_share["kraken"] == 0.0
    assert not np.any(pos["cross"][pos["venue"] == _code("kraken")])


def test_crossing_engine_matches_a_naive_scan() -> None:
    res = simulate(hours=0.5, seed=8, venues=("bybit", "okx", "deribit"), oi_scale=0.2,
                   daily_vol=0.25, keep_positions=True)
    liq = res.truth.liquidations
    got = dict(zip(liq["leg"].tolist(), ((liq["ts"] - res.config.start_ts_ms) // 1000).tolist(),
                   strict=True))
    want = naive_liquidations(res)
    assert len(want) > 200
    assert got == want
    # and every liquidated leg's record is its position's
    pos = res.truth.positions[liq["leg"]]
    np.testing.assert_array_equal(pos["liq_price"], liq["trigger"])
    assert np.all(pos["end"] == 2) and np.all(pos["end_ts"] == liq["ts"])


# ----------------------------------------------------------------------------- cascades
def test_liquidation_bursts_move_price(small: SimResult, small_no_impact: SimResult) -> None:
    # same seed, same exogenous path: the ratio of the two price paths is the impact alone
    p1 = small.truth.price_path[1]
    p0 = small_no_impact.truth.price_path[1]
    gap = np.diff(np.log(p1 / p0))  # gap[s] = impact applied between s and s+1
    liq = small.truth.liquidations
    sec = (liq["ts"] - small.config.start_ts_ms) // 1000
    n = p1.size
    long_usd = np.bincount(sec[liq["side"] == 1], liq["notional"][liq["side"] == 1], n)
    short_usd = np.bincount(sec[liq["side"] == -1], liq["notional"][liq["side"] == -1], n)
    only_long = np.flatnonzero((long_usd > 0) & (short_usd == 0))[:-1]
    only_short = np.flatnonzero((short_usd > 0) & (long_usd == 0))[:-1]
    assert only_long.size > 20 and only_short.size > 20
    big_l = only_long[np.argsort(long_usd[only_long])[-20:]]
    big_s = only_short[np.argsort(short_usd[only_short])[-20:]]
    assert np.all(gap[big_l] < 0), "long liquidations must push price down"
    assert np.all(gap[big_s] > 0), "short liquidations must push price up"
    # and the feedback liquidates more than the same path without it
    assert liq["notional"].sum() > small_no_impact.truth.liquidations["notional"].sum()


def test_cascade_chains_are_bursts(small: SimResult) -> None:
    liq = small.truth.liquidations
    chains, counts = np.unique(liq["chain"], return_counts=True)
    assert counts.max() > 50
    big = chains[np.argmax(counts)]
    c = liq[liq["chain"] == big]
    assert np.all(c["side"] == c["side"][0])  # a chain runs in one direction
    secs = np.unique(c["ts"] // 1000)
    assert np.all(np.diff(secs) <= small.config.chain_gap_s)
    assert c["level"].max() >= 1 and c["level"].min() == 0


def test_faithful_market_follows_the_registry() -> None:
    res = simulate(config=SimConfig.faithful(hours=0.2, seed=1, venues=("htx", "kraken")),
                   cross_share=0.0)
    tr = res.truth
    for v in ("htx", "kraken"):
        np.testing.assert_allclose(tr.mix(v, "long"), hv.prior_weights(v), atol=1e-12)
        np.testing.assert_allclose(tr.mix(v, "short"), hv.prior_weights(v), atol=1e-12)
        assert tr.rate_scale[v] == 1.0 and tr.cross_share[v] == 0.0
        assert tr.report_convention[v] == hv.get_venue(v).reported_price
    assert not np.any(tr.liquidations["cross"])


# ----------------------------------------------------------------------------- regime
def test_regime_change_switches_openings_mix() -> None:
    new = (0.0, 0.0, 0.1, 0.3, 0.6)
    res = simulate(hours=2.0, seed=5, venues=("bybit", "deribit"), keep_positions=True,
                   regime_change=("bybit", 1.0, new, "long"))
    tr = res.truth
    t_sw = res.config.start_ts_ms + 3600 * 1000
    assert [(ts, v, s) for ts, v, s, _ in tr.regime_changes] == [(t_sw, "bybit", "long")]
    old_mix = tr.mix("bybit", "long", t_sw - 1)
    new_mix = tr.mix("bybit", "long", t_sw)
    np.testing.assert_allclose(tr.band_mix("bybit", "long", t_sw), new, atol=1e-12)
    assert 0.5 * np.abs(old_mix - new_mix).sum() > 0.3
    np.testing.assert_array_equal(tr.mix("bybit", "short", t_sw - 1), tr.mix("bybit", "short"))
    pos = tr.positions
    sel = (pos["venue"] == _code("bybit")) & (pos["side"] == 1) & (
        pos["open_ts"] >= res.config.start_ts_ms)
    before = pos["leverage"][sel & (pos["open_ts"] < t_sw)]
    after = pos["leverage"][sel & (pos["open_ts"] >= t_sw)]
    for lev, mix in ((before, old_mix), (after, new_mix)):
        emp = np.array([(lev == t).mean() for t in tr.tiers])
        assert lev.size > 1000
        assert 0.5 * np.abs(emp - mix).sum() < 0.06
