"""The Leverage Learner against the simulator's known truth (issue 4).

Mixes are compared on leverage bands (:data:`heatcore.venues.BANDS`) by total
variation; bands that price never tested on a side carry no evidence of their
own and are scored merged (``tv_bands``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import heatcore as hc
from heatcore import _core, sim
from heatcore.venues import BANDS, DEFAULT_TIERS, band_of, venue_id

TIER_BAND = np.array([band_of(x) for x in DEFAULT_TIERS])
HOURS = 48.0


def bands(w: np.ndarray) -> np.ndarray:
    return np.bincount(TIER_BAND, weights=np.asarray(w, float), minlength=len(BANDS))


def tv_bands(a: np.ndarray, b: np.ndarray, untested: list[tuple[float, float]] = ()) -> float:
    """Band TV, with the untested bands merged into one."""
    ba, bb = bands(a), bands(b)
    merged = [BANDS.index(tuple(x)) for x in untested]
    keep = [i for i in range(len(BANDS)) if i not in merged]
    return 0.5 * (np.abs(ba[keep] - bb[keep]).sum() + abs(ba[merged].sum() - bb[merged].sum()))


def as_events(res: sim.SimResult) -> np.ndarray:
    ev = np.zeros(len(res.events), dtype=hc.EVENT_DTYPE)
    for name in res.events.dtype.names:
        ev[name] = res.events[name]
    return ev


@functools.cache
def market(seed: int, venues: tuple[str, ...],
           regime: bool = False) -> tuple[sim.SimResult, np.ndarray]:
    kw = {"regime_change": ("bybit", 12.0, (0.02, 0.08, 0.2, 0.35, 0.35))} if regime else {}
    res = sim.simulate(hours=HOURS, seed=seed, venues=list(venues), **kw)
    return res, as_events(res)


def replay(res: sim.SimResult, ev: np.ndarray, learn: bool, checkpoints: int = 1,
           **kw) -> tuple[hc.Engine, list[tuple[int, hc.Engine]]]:
    eng = hc.Engine(venues=res.venues, step=res.step, learn=learn, **kw)
    marks = []
    for part in np.array_split(np.arange(len(ev)), checkpoints):
        eng.ingest(ev[part])
        marks.append(int(ev["ts"][part[-1]]))
    return eng, marks


# -- the rate solver ------------------------------------------------------------

def test_untested_tiers_share_the_rest_in_prior_proportions() -> None:
    # Two tested tiers with plenty of evidence, three untested ones (c = 0).
    a = np.array([0.0, 0.0, 0.0, 40.0, 10.0])
    c = np.array([0.0, 0.0, 0.0, 200.0, 400.0])
    p = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    n = np.array([10.0, 10.0, 10.0, 2.0, 1.0])
    b = 1e-6 * p
    u = _core.solve_rates(a, c, b, n, 100.0)
    assert np.isclose((u * n).sum(), 100.0)
    # tested tiers follow their Poisson rates a / c when the prior is weak
    assert np.allclose(u[3:] / u[3:].sum(), np.array([0.2, 0.025]) / 0.225, rtol=1e-3)
    # the untested total is what the OI leaves, split as the prior says
    assert np.allclose(u[:3] / u[:3].sum(), p[:3] / p[:3].sum())


def test_without_evidence_the_prior_stands() -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1])
    n = np.full(4, 5.0)
    u = _core.solve_rates(np.zeros(4), np.zeros(4), 10.0 * p, n, 7.0)
    assert np.allclose(u / u.sum(), p)
    assert np.isclose((u * n).sum(), 7.0)


# -- convergence -----------------------------------------------------------------

FAR_SIDES = (("bybit", "long"), ("hyperliquid", "long"), ("hyperliquid", "short"))


def test_far_from_archetype_ends_well_below_static() -> None:
    # In the simulator bybit longs and both hyperliquid sides are far more
    # leveraged than their published archetypes.
    learned, static = [], []
    for seed in (1, 2):
        res, ev = market(seed, ("bybit", "hyperliquid"))
        eng, _ = replay(res, ev, True)
        st, _ = replay(res, ev, False)
        for v, s in FAR_SIDES:
            truth = res.truth.mix(v, s)
            untested = eng.learner_diagnostics(v)[s]["untested_bands"]
            learned.append(tv_bands(eng.leverage_mix(v, s)[1], truth, untested))
            static.append(tv_bands(st.leverage_mix(v, s)[1], truth, untested))
    assert np.mean(learned) < 0.7 * np.mean(static)
    assert np.mean(learned) < 0.18


def tv_curve(seed: int, checkpoints: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Band TV to the truth, averaged over the far sides, after each of ``checkpoints``
    equal slices of a 48 h stream, and the liquidations seen by then. Every
    checkpoint is scored on the same band partition: the bands price never tested
    in the whole run are merged (scoring early checkpoints with the bands untested
    *so far* merged would make the start of the curve look better than it is)."""
    res, ev = market(seed, ("bybit", "hyperliquid"))
    eng = hc.Engine(venues=res.venues, step=res.step)
    mixes, seen = [], []
    for part in np.array_split(np.arange(len(ev)), checkpoints):
        eng.ingest(ev[part])
        mixes.append({(v, s): eng.leverage_mix(v, s)[1] for v, s in FAR_SIDES})
        seen.append(int((ev["kind"][:part[-1] + 1] == 2).sum()))
    untested = {(v, s): eng.learner_diagnostics(v)[s]["untested_bands"] for v, s in FAR_SIDES}
    curve = [np.mean([tv_bands(m[k], res.truth.mix(*k), untested[k]) for k in FAR_SIDES]) for m in mixes]
    return np.array(curve), np.array(seen)


def test_tv_falls_as_events_accumulate() -> None:
    # Mean over seeds (one seed's curve can rise for a while: measured seed 1
    # 0.07 -> 0.09 -> 0.05, seeds 2 and 3 0.19 -> 0.07 and 0.13 -> 0.04; see the README).
    curve = np.mean([tv_curve(seed)[0] for seed in (1, 2, 3)], axis=0)
    assert curve[-1] < 0.8 * curve[0], curve
    # and it falls for good: the second day ends below every checkpoint of the first half day
    assert curve[-1] < curve[:2].min(), curve


def test_complete_feed_venues_end_below_ten_percent() -> None:
    venues = ("bybit", "bitmex", "deribit", "hyperliquid", "dydx", "bitfinex")
    tvs, static = [], []
    for seed in (1, 2):
        res, ev = market(seed, venues)
        eng, _ = replay(res, ev, True)
        st, _ = replay(res, ev, False)
        for v in venues:
            for s in ("long", "short"):
                d = eng.learner_diagnostics(v)[s]
                learned = eng.leverage_mix(v, s)[1]
                tvs.append(tv_bands(learned, res.truth.mix(v, s), d["untested_bands"]))
                static.append(tv_bands(st.leverage_mix(v, s)[1], res.truth.mix(v, s),
                                       d["untested_bands"]))
    assert np.mean(tvs) < 0.10
    assert np.mean(tvs) < np.mean(static)


# -- regime change -------------------------------------------------------------

def regime_day_after(seed: int = 1) -> list[tuple[str, float, float, float]]:
    """(side, share of liquidated notional after the change, learned TV, static TV) a day
    after bybit's opening mix switches at hour 12."""
    res, ev = market(seed, ("bybit", "hyperliquid"), regime=True)
    t_change, venue = res.truth.regime_changes[0][0], res.truth.regime_changes[0][1]
    assert venue == "bybit"
    day_after = t_change + 24 * 3_600_000
    cut = int(np.searchsorted(ev["ts"], day_after))
    eng = hc.Engine(venues=res.venues, step=res.step)
    st = hc.Engine(venues=res.venues, step=res.step, learn=False)
    eng.ingest(ev[:cut])
    st.ingest(ev[:cut])
    liq = (ev["kind"] == 2) & (ev["venue"] == venue_id("bybit"))
    out = []
    for side, sign in (("long", 1), ("short", -1)):
        sel = liq & (ev["side"] == sign)
        after = ev["value"][sel & (ev["ts"] >= t_change)].sum() / ev["value"][sel].sum()
        truth = res.truth.mix("bybit", side, day_after)
        out.append((side, after, tv_bands(eng.leverage_mix("bybit", side)[1], truth),
                    tv_bands(st.leverage_mix("bybit", side)[1], truth)))
    return out


def test_follows_a_regime_change_better_than_static() -> None:
    rows = [r for r in regime_day_after() if r[1] >= 0.2]
    assert rows
    for side, _, learned, static in rows:
        assert learned < static - 0.1, (side, learned, static)
    assert min(learned for _, _, learned, _ in rows) <= 0.20


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_follows_a_regime_change_on_every_side(seed: int) -> None:
    # Measured a day after the change (learned, long / short): seed 1 0.14 / 0.09,
    # seed 2 0.07 / 0.19, seed 3 0.09 / 0.19, seed 4 0.16 / 0.14; static 0.45
    # throughout (seeds 5-8, not asserted: at most 0.19). Every side has more than a
    # fifth of its liquidated notional after the change.
    rows = [r for r in regime_day_after(seed) if r[1] >= 0.2]
    assert rows
    for side, _, learned, static in rows:
        assert learned <= 0.20 and static >= 1.8 * learned, (side, learned, static)


# -- skill, venues, robustness ---------------------------------------------------

def test_learned_map_scores_liquidations_better_than_static() -> None:
    res, ev = market(1, ("bybit", "hyperliquid"))
    eng, _ = replay(res, ev, True)
    st, _ = replay(res, ev, False)
    learned, static = eng.skill(), st.skill()
    assert learned["events"] == static["events"] > 1000
    assert learned["loglik_mean"] > static["loglik_mean"] + 0.1


def test_venues_differ() -> None:
    res, ev = market(1, ("bybit", "hyperliquid"))
    eng, _ = replay(res, ev, True)
    a, b = eng.leverage_mix("bybit", "long")[1], eng.leverage_mix("hyperliquid", "long")[1]
    ta, tb = res.truth.mix("bybit", "long"), res.truth.mix("hyperliquid", "long")
    assert tv_bands(a, ta) < tv_bands(a, tb)
    assert tv_bands(b, tb) < tv_bands(b, ta)


def test_outliers_do_not_wreck_the_mix_and_nan_never_enters() -> None:
    res, ev = market(1, ("bybit", "hyperliquid"))
    clean, _ = replay(res, ev, True)
    rng = np.random.default_rng(7)
    liq = np.flatnonzero(ev["kind"] == 2)
    bad = ev[rng.choice(liq, 400, replace=False)].copy()
    bad["value"][:100] *= 1e6                         # bogus sizes
    bad["price"][100:200] *= rng.choice([0.5, 1.8], 100)   # far from any exposure
    bad["value"][200:250] = np.nan                    # refused
    bad["price"][250:300] = -1.0                      # refused
    bad["ts"][300:] += 1                              # duplicates a little later
    dirty = np.zeros(len(ev) + len(bad), dtype=hc.EVENT_DTYPE)
    dirty[: len(ev)] = ev
    dirty[len(ev):] = bad
    dirty = dirty[np.argsort(dirty["ts"], kind="stable")]
    eng = hc.Engine(venues=res.venues, step=res.step)
    counts = eng.ingest(dirty)
    assert counts["rejected"] >= 100
    for v in res.venues:
        for s in ("long", "short"):
            for which in ("openings", "open_interest", "map"):
                w = eng.leverage_mix(v, s, which=which)[1]
                assert np.all(np.isfinite(w)) and np.all(w >= 0) and np.isclose(w.sum(), 1.0)
    truth = res.truth.mix("bybit", "long")
    assert tv_bands(eng.leverage_mix("bybit", "long")[1], truth) < \
        tv_bands(clean.leverage_mix("bybit", "long")[1], truth) + 0.05
    d = eng.learner_diagnostics("bybit")
    assert d["long"]["unexplained"] + d["short"]["unexplained"] > 0
    assert d["long"]["clipped"] > 0


def test_static_engine_and_freeze_keep_the_mix() -> None:
    res, ev = market(1, ("bybit", "hyperliquid"))
    half = len(ev) // 2
    st = hc.Engine(venues=res.venues, step=res.step, learn=False)
    st.ingest(ev)
    prior = st.leverage_mix("bybit", "long", which="prior")[1]
    assert np.array_equal(st.leverage_mix("bybit", "long")[1], prior)
    assert np.array_equal(st.leverage_mix("bybit", "long", which="map")[1], prior)
    eng = hc.Engine(venues=res.venues, step=res.step)
    eng.ingest(ev[:half])
    eng.freeze("bybit")
    before = eng.leverage_mix("bybit", "long")[1]
    n_before = eng.learner_diagnostics("bybit")["long"]["n_events"]
    eng.ingest(ev[half:])
    assert np.array_equal(eng.leverage_mix("bybit", "long")[1], before)
    assert eng.learner_diagnostics("bybit")["long"]["n_events"] == n_before
    assert not np.array_equal(eng.leverage_mix("hyperliquid", "long")[1],
                              eng.leverage_mix("hyperliquid", "long", which="prior")[1])


def test_diagnostics_report_the_learner() -> None:
    res, ev = market(1, ("bybit", "hyperliquid"))
    eng, _ = replay(res, ev, True)
    flat = eng.diagnostics("bybit")
    for key in ("learner_n_events_long", "learner_effective_events_short", "learner_unexplained_long",
                "learner_prior_strength_long", "learner_untested_bands_short", "learner_loglik_mean_long"):
        assert key in flat
    d = eng.learner_diagnostics("bybit")["long"]
    for key in ("n_events", "effective_events", "unexplained", "untested_tiers", "untested_bands",
                "prior_strength", "loglik_mean", "crossed_events", "attributed_events"):
        assert key in d
    assert d["n_events"] > 1000
    assert 0 < d["effective_events"] <= d["n_events"]
    assert d["prior_strength"] > 0
    # bybit longs: price fell about 5 %, so the lowest bands were never tested
    assert (2, 5) in d["untested_bands"]
    assert 2.0 in d["untested_tiers"] and 100.0 not in d["untested_tiers"]


def test_learner_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        hc.Engine(venues=["bybit"], learner={"half_life": 3})
    with pytest.raises(ValueError, match="half_life_hours"):
        hc.Engine(venues=["bybit"], learner={"half_life_hours": -1})
    with pytest.raises(ValueError, match="which"):
        hc.Engine(venues=["bybit"]).leverage_mix("bybit", "long", which="liquidated")
    eng = hc.Engine(venues=["bybit"], learner={"half_life_hours": 6, "buffer_events": 64})
    assert np.isclose(eng.leverage_mix("bybit", "long")[1].sum(), 1.0)
