"""The Exchange Calibrator against the simulator's known truth (issue 5).

One simulated day on seven venues covers every case: stale maintenance tables
(htx 1.6x, gate 0.7x the registry's rate), undocumented reported prices (kraken
reports the bankruptcy price while documented as a trade print; bitmex a fill
while documented as the order price), documented venues (okx, bybit, deribit)
and a venue with no public feed (bitget).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from calib_scoring import replay_loglik

import heatcore as hc
from heatcore.sim import simulate

VENUES = ("htx", "gate", "kraken", "bitmex", "okx", "bybit", "deribit", "bitget")
SIDES = ("long", "short")
# Small venues get more open interest so that one simulated day liquidates enough
# on both sides of the venues under test.
OI_USD = {"kraken": 1e9, "deribit": 1e9, "okx": 2e9, "htx": 6e8, "bitmex": 6e8}
MIN_EVENTS = 9   # a side with fewer events with a fresh mark carries no evidence


@pytest.fixture(scope="module")
def market():
    return simulate(hours=24, seed=12, venues=VENUES, oi_usd=OI_USD)


@pytest.fixture(scope="module")
def calibrated(market):
    eng = hc.Engine(symbol=market.symbol, step=market.step, venues=VENUES)
    eng.ingest(market.events)
    return eng


# The accuracy and no-drift tests also run on two more simulated days.
ACCURACY_SEEDS = (12, 3, 21)


@pytest.fixture(scope="module")
def day(market):
    """The simulated day of a seed, simulated once per module (seed 12 is ``market``)."""
    cache = {12: market}

    def get(seed: int):
        if seed not in cache:
            cache[seed] = simulate(hours=24, seed=seed, venues=VENUES, oi_usd=OI_USD)
        return cache[seed]
    return get


@pytest.fixture(scope="module", params=ACCURACY_SEEDS, ids=[f"seed{s}" for s in ACCURACY_SEEDS])
def seeded(request, market, calibrated, day):
    """``(seed, market, calibrated engine)``; seed 12 shares the module's run."""
    if request.param == 12:
        return 12, market, calibrated
    m = day(request.param)
    eng = hc.Engine(symbol=m.symbol, step=m.step, venues=VENUES)
    eng.ingest(m.events)
    return request.param, m, eng


def _true_offset(market, venue: str, side: str) -> float:
    """Median ln(reported / trigger) of the venue's emitted liquidations (the truth)."""
    liq = market.truth.liquidations
    sel = ((liq["venue"] == hc.venues.venue_id(venue)) & (liq["side"] == (1 if side == "long" else -1))
           & liq["emitted"])
    assert sel.sum() >= 5, "the simulated day must liquidate something on this venue and side"
    return float(np.median(np.log(liq["reported"][sel] / liq["trigger"][sel])))


@pytest.mark.parametrize("venue", ["htx", "gate"])
def test_stale_tier_rate_is_recovered(seeded, venue):
    _, market, calibrated = seeded
    truth = market.truth.rate_scale[venue]
    assert abs(truth - 1.0) > 0.2, "the simulator's default departure is what this test is about"
    cal = calibrated.calibration(venue)
    mech = hc.get_venue(venue).mechanics(market.symbol)
    for side in SIDES:
        rs = cal["rate_scale"][side]
        assert rs["source"] == "bankruptcy_offset"
        assert abs(rs["value"] / truth - 1.0) < 0.15, (side, rs)
        assert rs["departs"] and rs["n_eff"] >= 20 and 0 < rs["std"] < 0.1
        # The levels were moved: the book's ratios follow the applied scale.
        code = 1 if side == "long" else -1
        want = [mech.liquidation_ratio(code, float(t), rs["applied"]) for t in calibrated.tiers]
        np.testing.assert_allclose(calibrated.liquidation_ratios(venue, side), want, rtol=1e-12)
        assert abs(rs["applied"] / truth - 1.0) < 0.15
        eff = cal["maintenance_rate"][side]
        assert eff["value"] == pytest.approx(eff["documented"] * rs["value"])


@pytest.mark.parametrize("venue", ["kraken", "bitmex"])
def test_reported_convention_departure_offset_within_one_bin(seeded, venue):
    _, market, calibrated = seeded
    documented = hc.get_venue(venue).reported_price
    assert market.truth.report_convention[venue] != documented
    cal = calibrated.calibration(venue)
    price = calibrated.heatmap(venue).price
    for side in SIDES:
        off = cal["report_offset"][side]
        truth = _true_offset(market, venue, side)
        err_bins = abs(off["value"] - truth) * price / calibrated.step
        prior_err_bins = abs(off["prior"] - truth) * price / calibrated.step
        assert err_bins < 1.0, (side, off, truth)
        assert prior_err_bins > 3.0, "the documented offset must be visibly wrong here"
        assert off["n_eff"] > 0 and off["price_kind"] == documented
        assert off["looks_like"] == {"kraken": "bankruptcy", "bitmex": "at_trigger"}[venue]
    # kraken's documented trade print says nothing about the rate; bitmex's documented
    # order price would, but its reports are not at the bankruptcy price: both keep the
    # registry's rate rather than reading a convention error as a stale table.
    for side in SIDES:
        rs = cal["rate_scale"][side]
        assert rs["value"] == 1.0 and rs["applied"] == 1.0
        assert rs["source"] == ("prior" if venue == "kraken" else "convention_departs")


@pytest.mark.parametrize("venue", ["okx", "bybit", "deribit"])
def test_documented_venues_do_not_drift(seeded, venue):
    seed, market, calibrated = seeded
    assert market.truth.rate_scale.get(venue, 1.0) == 1.0
    assert market.truth.report_convention.get(venue, hc.get_venue(venue).reported_price) == \
        hc.get_venue(venue).reported_price
    cal = calibrated.calibration(venue)
    price = calibrated.heatmap(venue).price
    judged = [side for side in SIDES if cal["report_offset"][side]["n_eff"] >= MIN_EVENTS]
    # deribit liquidates little: seeds 3 and 21 give it fewer than MIN_EVENTS a side
    assert judged or (venue == "deribit" and seed != 12), \
        "the simulated day must give the venue some evidence"
    for side in SIDES:  # with or without evidence, the levels stay where the registry puts them
        rs = cal["rate_scale"][side]
        assert rs["applied"] == 1.0 and not rs["departs"], (side, rs)
    for side in judged:
        off = cal["report_offset"][side]
        assert abs(off["value"] - off["prior"]) * price / calibrated.step < 0.5, (side, off)
        assert off["looks_like"] == ("at_trigger" if off["price_kind"] == "trade" else "bankruptcy")
        rs = cal["rate_scale"][side]
        # within its stated uncertainty, and close in absolute terms
        assert abs(rs["value"] - 1.0) < max(0.03, 2 * rs["std"]) and abs(rs["value"] - 1.0) < 0.05, (side, rs)
        assert rs["applied"] == 1.0 and not rs["departs"]   # levels stay where the registry puts them
        if hc.get_venue(venue).reported_price == "trade":
            # a trade print carries no separable information on the rate
            assert rs["source"] == "prior" and rs["value"] == 1.0


def test_venue_without_feed_keeps_priors_and_says_so(calibrated):
    cal = calibrated.calibration("bitget")
    assert cal["has_feed"] is False and cal["feed"] == "none"
    assert cal["status"] == "no_feed" and "prior" in cal["note"]
    for side in SIDES:
        assert cal["rate_scale"][side]["value"] == 1.0 and cal["rate_scale"][side]["n_eff"] == 0
        off = cal["report_offset"][side]
        assert off["value"] == off["prior"] and off["n_eff"] == 0
        assert cal["events"][side]["used"] == 0
    np.testing.assert_array_equal(
        calibrated.liquidation_ratios("bitget", "long"),
        [hc.get_venue("bitget").mechanics("BTCUSDT").liquidation_ratio(1, float(t)) for t in calibrated.tiers])


def test_calibration_structure_is_stable(calibrated):
    cal = calibrated.calibration("okx")
    assert set(cal) >= {"venue", "has_feed", "feed", "calibrating", "status", "note", "reported_price",
                        "rate_scale", "maintenance_rate", "report_offset", "report_offset_by_kind",
                        "size_cap", "level_sigma", "cross_margin", "events"}
    for side in SIDES:
        assert set(cal["rate_scale"][side]) >= {"value", "std", "n_eff", "prior", "source", "applied"}
        assert set(cal["report_offset"][side]) >= {"value", "std", "n_eff", "prior", "price_kind", "bins"}
        assert set(cal["size_cap"][side]) >= {"p99_usd", "max_usd", "n_eff", "max_leverage_at_p99"}
        assert 0 < cal["level_sigma"][side] < 0.01
        assert all(math.isfinite(v) for v in cal["rate_scale"][side].values() if isinstance(v, float))
    cm = cal["cross_margin"]
    assert cm["learned"] is False and cm["share"] == hc.get_venue("okx").cross_share
    assert cm["distance"] == hc.get_venue("okx").cross_distance
    with pytest.raises(hc.InputError):
        calibrated.calibration("nowhere")


def test_size_statistics_follow_the_notional_distribution(market, calibrated):
    liq = market.truth.liquidations
    sel = (liq["venue"] == hc.venues.venue_id("htx")) & (liq["side"] == 1) & liq["emitted"]
    sizes = liq["notional"][sel]
    cap = calibrated.calibration("htx")["size_cap"]["long"]
    assert cap["max_usd"] == pytest.approx(sizes.max())
    assert cap["median_usd"] == pytest.approx(np.exp(np.log(sizes).mean()), rel=0.05)
    assert 0.5 < cap["p99_usd"] / np.quantile(sizes, 0.99) < 2.0
    assert cap["max_leverage_at_p99"] <= hc.get_venue("htx").max_leverage


def test_static_and_calibrate_off_keep_priors(market):
    for kw in (dict(learn=False), dict(learn=True, calibrate=False)):
        eng = hc.Engine(symbol=market.symbol, step=market.step, venues=("htx", "kraken"), **kw)
        assert eng.calibrate is False
        eng.ingest(market.events)
        for venue in ("htx", "kraken"):
            cal = eng.calibration(venue)
            assert cal["calibrating"] is False and cal["status"] == "prior"
            for side in SIDES:
                assert cal["rate_scale"][side]["value"] == 1.0
                assert cal["report_offset"][side]["value"] == cal["report_offset"][side]["prior"]
    frozen = hc.Engine(symbol=market.symbol, step=market.step, venues=("htx",))
    frozen.freeze("htx")
    frozen.ingest(market.events)
    assert frozen.calibration("htx")["rate_scale"]["long"]["value"] == 1.0


@pytest.mark.parametrize("learn_mix", [True, False], ids=["learning", "calibrator_alone"])
@pytest.mark.parametrize("venue", ["htx", "gate", "kraken", "bitmex"])
def test_loglik_beats_static_on_departing_venues(market, venue, learn_mix):
    # Engines of the scored venue alone: a venue's map depends on its own events only.
    # learn_mix=False: the Leverage Learner off, so the gain is the calibrator's.
    static = replay_loglik(hc.Engine(symbol=market.symbol, step=market.step, venues=(venue,), learn=False),
                           market.events, venue)
    calib = replay_loglik(hc.Engine(symbol=market.symbol, step=market.step, venues=(venue,),
                                    learn_mix=learn_mix), market.events, venue)
    assert static.size == calib.size >= 50
    gain = calib.mean() - static.mean()
    # paired: the calibrated forecast is better on most events, not just on average
    assert gain > 1.0, gain
    assert np.mean(calib > static) > 0.6


@pytest.fixture
def scaled_tables():
    """``scale(venue, symbol, s)``: the venue's registry table for the symbol with every
    rate and deduction times ``s`` (from the original each time); restored after."""
    saved: dict[str, hc.venues.Venue] = {}

    def scale(venue: str, symbol: str, s: float) -> None:
        spec = saved.setdefault(venue, hc.get_venue(venue))
        table = spec.tier_table(symbol)
        key = next(k for k, t in spec.tiers.items() if t is table)
        rows = [{**b, "rate": b["rate"] * s, "deduction": b["deduction"] * s} for b in table["brackets"]]
        hc.venues.set_tier_table(venue, key, rows, source="test: scaled", date="2026-12-07",
                                 mm_model=table.get("mm_model", "marginal"))
    yield scale
    hc.venues._REGISTRY.update(saved)


@pytest.mark.parametrize("venue", ["okx", "gate", "htx"])
def test_replay_score_peaks_at_the_true_rate(market, scaled_tables, venue):
    """The map-based score the loglik tests use is a proper score of level placement:
    static engines on tables scaled x0.7, x1, x1.6 score best at the venue's true rate
    (okx 1, gate 0.7, htx 1.6). (hc.evaluate's is not: see the README.)"""
    scores = {}
    for s in (0.7, 1.0, 1.6):
        scaled_tables(venue, market.symbol, s)
        eng = hc.Engine(symbol=market.symbol, step=market.step, venues=(venue,), learn=False)
        scores[s] = replay_loglik(eng, market.events, venue).mean()
    assert max(scores, key=lambda k: scores[k]) == market.truth.rate_scale.get(venue, 1.0), scores


def test_loglik_no_worse_on_documented_venue(market):
    static = replay_loglik(hc.Engine(symbol=market.symbol, step=market.step, venues=("okx",), learn=False),
                           market.events, "okx")
    calib = replay_loglik(hc.Engine(symbol=market.symbol, step=market.step, venues=("okx",)),
                          market.events, "okx")
    assert calib.mean() > static.mean() - 0.05


DEPARTING = ("htx", "gate", "kraken", "bitmex")


def _band_tv(eng, market, venue, side, untested) -> float:
    bands = np.array([hc.venues.band_of(x) for x in eng.tiers])
    a = np.bincount(bands, weights=eng.leverage_mix(venue, side)[1], minlength=len(hc.venues.BANDS))
    b = np.bincount(bands, weights=market.truth.mix(venue, side), minlength=len(hc.venues.BANDS))
    merged = [hc.venues.BANDS.index(tuple(x)) for x in untested]
    keep = [i for i in range(len(a)) if i not in merged]
    return 0.5 * (np.abs(a[keep] - b[keep]).sum() + abs(a[merged].sum() - b[merged].sum()))


@pytest.mark.parametrize("seed", [12, 3])
def test_learner_band_tv_no_worse_with_calibration(day, seed):
    """The Leverage Learner on corrected levels and offsets: its band TV against the
    true mix, averaged over the departing venues' sides, falls with calibration on;
    on documented venues the two runs agree within 0.02 band TV."""
    m = day(seed)
    off = hc.Engine(symbol=m.symbol, step=m.step, venues=VENUES, calibrate=False)
    on = hc.Engine(symbol=m.symbol, step=m.step, venues=VENUES)
    for eng in (off, on):
        eng.ingest(m.events)
    tv = {name: [_band_tv(eng, m, v, s, off.learner_diagnostics(v)[s]["untested_bands"])
                 for v in DEPARTING for s in SIDES] for name, eng in (("off", off), ("on", on))}
    assert np.mean(tv["on"]) < np.mean(tv["off"]) - 0.02, tv
    for v in ("okx", "bybit"):
        for s in SIDES:
            u = off.learner_diagnostics(v)[s]["untested_bands"]
            assert abs(_band_tv(on, m, v, s, u) - _band_tv(off, m, v, s, u)) < 0.02


def test_project_forecast_with_calibration_on_vs_off(day):
    """The project's pre-event forecast (hc.evaluate), learning engine with the
    calibrator on vs off: log-likelihood rises on a stale-tier venue (htx) and on a
    venue whose reports are not the documented price (kraken); documented venues are
    untouched. (This run also learns the mix; the calibrator alone, mix frozen, is
    test_calibrator_alone_raises_project_forecast_loglik, with its measured exceptions.)
    Measured gains (seeds 12, 3, 21), nats/event: htx -0.015 -0.001 +0.151, kraken
    +0.086 +0.079 +0.297: on htx a single day can go either way (see the README)."""
    gains: dict[str, list[float]] = {v: [] for v in ("htx", "kraken", "okx", "bybit")}
    for seed in (12, 3, 21):
        m = day(seed)
        kw = dict(symbol=m.symbol, step=m.step, progress=False)
        off = hc.evaluate(m.events, engine_kwargs={"calibrate": False}, **kw).to_dict()["per_venue"]
        on = hc.evaluate(m.events, **kw).to_dict()["per_venue"]
        for v, g in gains.items():
            g.append(on[v]["loglik_learned"] - off[v]["loglik_learned"])
    assert np.mean(gains["htx"]) > 0.02, gains["htx"]
    assert min(gains["kraken"]) > 0.02, gains["kraken"]
    for venue in ("okx", "bybit"):
        assert max(abs(x) for x in gains[venue]) < 0.01, (venue, gains[venue])


# ---- the calibrator alone under the project's forecast (hc.evaluate) ----------------
# The learning engine with the Leverage Learner off (learn_mix=False, the mixes stay at
# the registry's priors) and the calibrator on, against the static engine (learn=False),
# on six simulated days: the only difference between the two engines is the calibrator.
# Two forecast horizons: evaluate's default (1 h) and 60 s, the cadence at which its
# snapshots are scored (each liquidation against the forecast at most 60 s before it).
ISOLATION_SEEDS = (12, 3, 7, 21, 5, 8)
HORIZONS = (3600.0, 60.0)


@pytest.fixture(scope="module")
def isolated(day):
    """``{horizon: {venue: array of (static, calibrated, events) per seed}}``."""
    out: dict[float, dict[str, list[tuple[float, float, float]]]] = {h: {} for h in HORIZONS}
    for seed in ISOLATION_SEEDS:
        m = day(seed)
        for h in HORIZONS:
            rep = hc.evaluate(m.events, symbol=m.symbol, step=m.step, horizon_s=h, progress=False,
                              engine_kwargs={"learn_mix": False}).to_dict()["per_venue"]
            for venue, d in rep.items():
                out[h].setdefault(venue, []).append(
                    (d["loglik_static"], d["loglik_learned"], d["n_liquidations"]))
    return {h: {v: np.array(r) for v, r in rows.items()} for h, rows in out.items()}


def _gain(rows: np.ndarray) -> tuple[float, int]:
    """Event-weighted mean loglik gain (calibrated - static) over the seeds, and the seeds won."""
    gain, n = rows[:, 1] - rows[:, 0], rows[:, 2]
    return float((gain * n).sum() / n.sum()), int((gain > 0).sum())


def test_isolation_is_exact_without_the_calibrator(market):
    """learn_mix=False with calibrate=False scores exactly like the static engine: what
    the isolated comparison measures is the calibrator and nothing else."""
    rep = hc.evaluate(market.events, symbol=market.symbol, step=market.step, progress=False,
                      engine_kwargs={"learn_mix": False, "calibrate": False}).to_dict()["per_venue"]
    for venue in (*DEPARTING, "okx", "bybit"):
        assert rep[venue]["loglik_learned"] == rep[venue]["loglik_static"], venue


_SEEDS = "seeds 12,3,7,21,5,8"
_ISOLATION_XFAIL = {
    (3600.0, "htx"): f"measured over {_SEEDS}: event-weighted gain -0.016 nats, 2/6 seeds won "
                     "(+0.044 -0.027 -0.015 +0.049 -0.032 -0.142); the oracle (true rate 1.6x injected "
                     "into the static engine) gains -0.051 (1/6): with a 1 h horizon scored on the next "
                     "60 s the forecast is too wide to reward correct placement (at 60 s htx passes)",
    (3600.0, "gate"): f"measured over {_SEEDS}: event-weighted gain -0.000 nats, 3/6 seeds won "
                      "(-0.087 -0.012 +0.023 +0.079 -0.040 +0.039); the oracle (true rate 0.7x "
                      "injected) gains +0.028 (3/6: -0.072 -0.009 -0.059 +0.256 ...)",
    (3600.0, "bitmex"): f"measured over {_SEEDS}: event-weighted gain +0.000 nats, 3/6 seeds won "
                        "(+0.001 -0.066 +0.156 -0.023 -0.120 +0.034); the true offset (fill vs order) "
                        "is 2-4 bp = 0.4-0.9 bin and the forecast shifts whole bins",
    (60.0, "gate"): f"measured over {_SEEDS}: event-weighted gain -0.051 nats, 0/6 seeds won "
                    "(-0.096 -0.023 -0.090 -0.040 -0.036 -0.016); the ceiling is lower still: the "
                    "oracle (true rate 0.7x injected into the static engine) gains -0.145 (0/6), "
                    "-0.137 with the true mix injected too: true levels score worse than the "
                    "registry's on this venue",
    (60.0, "kraken"): f"measured over {_SEEDS}: event-weighted gain +0.020 nats, 3/6 seeds won "
                      "(-0.023 -0.354 +0.652 -0.287 +0.000 +0.388): the static forecast learns the "
                      "same map shift by likelihood (+-21 bins vs the calibrator's +-20.5); what "
                      "remains is the days before it has, and noise (some days have <200 events)",
    (60.0, "bitmex"): f"measured over {_SEEDS}: event-weighted gain -0.025 nats, 2/6 seeds won "
                      "(-0.122 +0.017 -0.189 -0.002 +0.250 -0.011); the true offset is 0.4-0.9 bin "
                      "and the forecast shifts whole bins",
}


def _isolation_params():
    for h in HORIZONS:
        for v in DEPARTING:
            reason = _ISOLATION_XFAIL.get((h, v))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(h, v, marks=marks, id=f"{v}-{h:g}s")


@pytest.mark.parametrize(("horizon", "venue"), list(_isolation_params()))
def test_calibrator_alone_raises_project_forecast_loglik(isolated, horizon, venue):
    """Must-show 2 under hc.evaluate, the calibrator isolated: on a departing venue the
    pre-event forecast's log-likelihood is higher with calibration than the static
    engine's, on average over six days (event-weighted) and on most of them.

    Caveat (measured, README): at 60 s hc.evaluate rewards levels nearer the price than
    the truth (tables scaled x1.6 score higher on okx and bybit, true scale 1), which is
    htx's direction (x1.6) and against gate's (x0.7); the map-based replay above peaks
    at the true scale and is the calibrator's evidence."""
    gain, won = _gain(isolated[horizon][venue])
    assert gain > 0.01 and won > len(ISOLATION_SEEDS) / 2, (venue, gain, won, isolated[horizon][venue])


@pytest.mark.parametrize("horizon", HORIZONS, ids=[f"{h:g}s" for h in HORIZONS])
@pytest.mark.parametrize("venue", ["okx", "bybit", "deribit"])
def test_calibrator_alone_leaves_documented_venues(isolated, venue, horizon):
    gain, _ = _gain(isolated[horizon][venue])
    assert abs(gain) < 0.01, (venue, gain)
