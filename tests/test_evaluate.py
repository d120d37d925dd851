"""Prequential evaluation: scores, leak-freedom, per-venue reports, real data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated

import heatcore as hc
from heatcore.evaluate import (
    MODELS,
    _top_share,
    daily_volume_check,
    evaluate_file,
    pre_event_forecasts,
)
from heatcore.events import KIND_LIQUIDATION

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
OKX = DATA / "okx_sol_doge_hype_2026-03-04.jsonl"
HL = DATA / "hyperliquid_btc_2025-12_2026-03.jsonl"
HL_DAILY = DATA / "hyperliquid_daily_liq.csv"

VENUES = ("binance", "bybit", "okx", "hyperliquid")


@pytest.fixture(scope="module")
def market() -> hc.sim.SimResult:
    return simulated(24, 1, VENUES)


@pytest.fixture(scope="module")
def report(market: hc.sim.SimResult) -> hc.EvaluationReport:
    return hc.evaluate(market.events, symbol=market.symbol, step=market.step,
                       keep_event_scores=True)


def test_report_keys_overall_and_per_venue(report: hc.EvaluationReport,
                                           market: hc.sim.SimResult) -> None:
    d = report.to_dict()
    keys = ["n_liquidations", "cascade_brier", "cascade_brier_climatology", "unexplained_rate"]
    keys += [f"{k}_{m}" for m in MODELS
             for k in ("loglik", "loglik_next", "loglik_horizon", "top_decile_precision")]
    for k in keys:
        assert k in d
        for v in d["per_venue"].values():
            assert k in v
    # The cascade forecast is scored overall (resolved against the stream's prices):
    # learned beats the static cascade and the per-level climatology on this market.
    assert d["cascade_occasions"] > 100
    assert d["cascade_brier"] < d["cascade_brier_climatology"]
    assert d["cascade_brier"] < d["cascade_brier_static"]
    assert all(v["cascade_brier"] is None for v in d["per_venue"].values())
    n_liq = int(np.sum(market.events["kind"] == KIND_LIQUIDATION))
    # every liquidation after the first snapshot is scored
    assert 0.95 * n_liq <= d["n_liquidations"] <= n_liq
    assert sum(v["n_liquidations"] for v in d["per_venue"].values()) == d["n_liquidations"]
    assert set(d["per_venue"]) <= set(VENUES)
    json.loads(report.to_json())
    md = report.to_markdown()
    for m in MODELS:
        assert f"| {m} |" in md


def test_uniform_scores_are_exact(report: hc.EvaluationReport) -> None:
    d = report.to_dict()
    # ties share credit: a flat map scores exactly the top share
    assert d["top_decile_precision_uniform"] == pytest.approx(0.10, abs=1e-9)
    # log-lik of the uniform map: log(1/W) inside the window, W = bins of the window
    ev = report.event_scores
    ok = np.isfinite(ev["loglik_uniform"])
    w_bins = 2 * report.window_pct / (report.step / ev["price"][ok])
    assert np.allclose(-ev["loglik_uniform"][ok], np.log(w_bins + 2), atol=0.02)
    # A flat map has no horizon: scored under the next interval's forecast, the same.
    assert d["loglik_next_uniform"] == pytest.approx(d["loglik_uniform"], abs=1e-12)
    # Horizon pairs: log(1/W) for a pair inside the window, log(floor/W) outside.
    log_w = float(np.log(w_bins + 2).mean())
    cov = d["window_coverage"]
    expect = -log_w + (1 - cov) * math.log(report.floor)
    assert d["loglik_horizon_uniform"] == pytest.approx(expect, abs=0.02)
    for m in ("learned", "static", "near"):
        assert d[f"loglik_horizon_{m}"] != pytest.approx(d["loglik_horizon_uniform"], abs=1e-3)


def test_forecast_beats_distance_only_and_uniform_on_sim(report: hc.EvaluationReport) -> None:
    d = report.to_dict()
    for eng in ("learned", "static"):
        assert d[f"loglik_{eng}"] > d["loglik_near"] + 0.3
        assert d[f"loglik_{eng}"] > d["loglik_uniform"] + 1.0
        assert d[f"top_decile_precision_{eng}"] > d["top_decile_precision_near"] + 0.1
        assert d[f"top_decile_precision_{eng}"] > 0.3


def test_event_scores_match_the_pre_event_forecast(report: hc.EvaluationReport,
                                                   market: hc.sim.SimResult) -> None:
    """The score recorded for an event is the log of its bin's share of the snapshot
    forecast that pre_event_forecasts() reconstructs."""
    ev = report.event_scores
    i = int(np.flatnonzero(np.isfinite(ev["loglik_static"]))[len(ev) // 2])
    snap, k_lo, fc = pre_event_forecasts(market.events, int(ev["ts"][i]), symbol=market.symbol,
                                         step=market.step)
    assert snap <= ev["ts"][i] < snap + 60_000
    side = 0 if ev["side"][i] == 1 else 1
    b = round(ev["price"][i] / market.step) - k_lo
    for j, m in enumerate(MODELS):
        f = fc[j, 0, side]
        w = f.size
        p = 0.99 * f[b] / f.sum() + 0.01 / w
        assert math.log(p) == pytest.approx(ev[f"loglik_{m}"][i], rel=1e-9, abs=1e-9)


def test_scoring_is_leak_free(market: hc.sim.SimResult) -> None:
    """Removing an event leaves the forecast it is scored against unchanged; removing
    an earlier one (which the forecast has seen) changes it."""
    events = market.events
    liq = np.flatnonzero(events["kind"] == KIND_LIQUIDATION)
    i = int(liq[len(liq) // 2])
    ts = int(events["ts"][i])
    kw = {"symbol": market.symbol, "step": market.step}
    snap, k_lo, with_it = pre_event_forecasts(events, ts, **kw)
    snap2, k_lo2, without = pre_event_forecasts(np.delete(events, i), ts, **kw)
    assert (snap, k_lo) == (snap2, k_lo2)
    assert np.array_equal(with_it, without)
    # Sensitivity: a liquidation before the snapshot does move the forecast.
    before = liq[events["ts"][liq] < snap - 1000]
    j = int(before[-1])
    _, _, seen = pre_event_forecasts(np.delete(events, j), ts, **kw)
    assert not np.array_equal(with_it, seen)
    # And so does later data once the snapshot is after it.
    _, _, later = pre_event_forecasts(events, ts + 3_600_000, **kw)
    assert not np.array_equal(later, with_it)


def test_top_share_ties_and_order() -> None:
    flat = np.ones(37)
    assert _top_share(flat).sum() == pytest.approx(3.7)
    assert np.allclose(_top_share(flat), 0.1)
    x = np.arange(20, dtype=float)
    s = _top_share(x)
    assert s[-2:].tolist() == [1.0, 1.0] and s[:-2].sum() == 0
    tied = np.array([5.0, 5.0, 5.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # one slot in the top 10 %, three bins tied for it: each gets a third
    assert np.allclose(_top_share(tied)[:3], 1 / 3) and _top_share(tied)[3:].sum() == 0


def test_learned_beats_near_on_loglik(report: hc.EvaluationReport) -> None:
    d = report.to_dict()
    assert d["loglik_learned"] > d["loglik_near"]
    assert d["loglik_static"] > d["loglik_near"]


def test_generated_open_book_improves_the_learned_forecast(market: hc.sim.SimResult) -> None:
    """The learned forecast reads the open book the Leverage Learner's model
    generates, less what closes before price gets there (forecast.hpp, H),
    instead of the exposure book weighted by the openings mix. Measured, seeds
    1-5: log-likelihood +0.170 -0.040 +0.014 +0.092 +0.095 nats/event, top-decile
    precision +0.005 +0.048 -0.003 +0.024 +0.004. The static engine has no fitted
    model and is unchanged."""
    ll, td = [], []
    for seed in (1, 2, 3, 4, 5):
        r = market if seed == 1 else simulated(24, seed, VENUES)
        d = {gm: hc.evaluate(r.events, symbol=r.symbol, step=r.step, progress=False,
                             forecast={"generative_map": gm}).to_dict() for gm in (False, True)}
        assert d[True]["loglik_static"] == d[False]["loglik_static"]
        ll.append(d[True]["loglik_learned"] - d[False]["loglik_learned"])
        td.append(d[True]["top_decile_precision_learned"] - d[False]["top_decile_precision_learned"])
    assert sum(x > 0 for x in ll) >= 4 and np.mean(ll) > 0.05, ll
    assert sum(x > 0 for x in td) >= 4 and np.mean(td) > 0.01, td


def test_learned_beats_static_on_loglik(report: hc.EvaluationReport) -> None:
    """The project's claim on a market with a known hidden mix (seed 1, measured
    -2.593 vs -2.701 nats/event)."""
    assert report.learner_active
    d = report.to_dict()
    assert d["loglik_learned"] > d["loglik_static"]


@pytest.mark.xfail(strict=True, reason="not met: seeds 1-5 (4 venues, 24 h) learned - static "
                   "log-likelihood +0.108 -0.122 -0.089 +0.133 +0.027 nats/event (3 of 5 won; 48 h runs "
                   "2 of 5). This pairing scores the 1 h forecast by the next minute's events; a forecast "
                   "holding the simulator's true open book loses it to static on every seed "
                   "(tests/eval_truebook.py), while learned wins loglik_next on 5 of 5 "
                   "(issue 7 closing note)")
def test_learned_beats_static_on_loglik_on_every_seed(market: hc.sim.SimResult) -> None:
    for seed in (1, 2, 3, 4, 5):
        r = market if seed == 1 else simulated(24, seed, VENUES)
        d = hc.evaluate(r.events, symbol=r.symbol, step=r.step, progress=False).to_dict()
        assert d["loglik_learned"] > d["loglik_static"], seed


def test_learned_beats_static_on_next_interval_loglik_on_every_seed(market: hc.sim.SimResult) -> None:
    """Each liquidation under its snapshot's forecast of the interval it falls in
    (``loglik_next``: the next 60 s). Measured, seeds 1-5 (24 h): learned - static
    +0.083 +0.117 +0.084 +0.085 +0.037 nats/event (48 h runs: +0.066 +0.103 +0.043
    +0.148 +0.055)."""
    for seed in (1, 2, 3, 4, 5):
        r = market if seed == 1 else simulated(24, seed, VENUES)
        d = hc.evaluate(r.events, symbol=r.symbol, step=r.step, progress=False).to_dict()
        assert d["loglik_next_learned"] > d["loglik_next_static"], seed
        assert d["loglik_next_learned"] > d["loglik_next_near"], seed


def test_next_minute_pairing_does_not_reward_knowing_the_book() -> None:
    """A forecast holding the simulator's true open book (tests/eval_truebook.py)
    scores below the static engine when one-hour forecasts are scored by the next
    minute's events (``loglik``), and above it when they are scored by the hour's
    (``loglik_horizon``, top-decile precision). Measured, seed 1: loglik -3.140 vs
    -2.701, loglik_horizon -3.518 vs -3.557, top-decile 0.816 vs 0.777."""
    from eval_truebook import scores

    d = scores(1)
    truth, static = d["true_book"], d["static"]
    assert truth["loglik"] < static["loglik"] - 0.2
    assert truth["loglik_horizon"] > static["loglik_horizon"]
    assert truth["top_decile_precision"] > static["top_decile_precision"]


def test_learned_beats_static_and_near_on_top_decile(report: hc.EvaluationReport) -> None:
    if not report.learner_active:
        pytest.skip("the Leverage Learner has not landed: learned == static")
    d = report.to_dict()
    assert d["top_decile_precision_learned"] > d["top_decile_precision_near"]
    assert d["top_decile_precision_learned"] > d["top_decile_precision_static"]


def test_evaluate_refuses_bad_input(market: hc.sim.SimResult) -> None:
    ev = market.events
    with pytest.raises(ValueError, match="time-ordered"):
        hc.evaluate(ev[::-1].copy(), symbol=market.symbol)
    with pytest.raises(TypeError):
        hc.evaluate(np.zeros(3), symbol=market.symbol)
    with pytest.raises(ValueError):
        hc.evaluate(ev, symbol=market.symbol, horizon_s=0)
    with pytest.raises(ValueError):
        hc.evaluate(ev, symbol=market.symbol, oi_proxy="magic")
    with pytest.raises(ValueError, match="no events"):
        hc.evaluate(ev[:0], symbol=market.symbol, step=50.0)


def test_plots(report: hc.EvaluationReport, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = report.plot(tmp_path / "rep.png")
    assert len(paths) == 3  # skill, scores, mix
    for p in paths:
        assert os.path.getsize(p) > 5000


needs_data = pytest.mark.skipif(not OKX.exists(), reason="../shared/data is absent")


@needs_data
def test_real_okx_data_end_to_end() -> None:
    reports = evaluate_file(OKX)
    assert set(reports) == {"SOL", "DOGE", "HYPE"}
    n_file = {"SOL": 1052, "DOGE": 1422, "HYPE": 99}
    for asset, r in reports.items():
        d = r.to_dict()
        assert 0.9 * n_file[asset] <= d["n_liquidations"] <= n_file[asset]
        for m in MODELS:
            assert math.isfinite(d[f"loglik_{m}"])
            assert 0.0 <= d[f"top_decile_precision_{m}"] <= 1.0
        assert d["top_decile_precision_uniform"] == pytest.approx(0.1)
        assert "turnover proxy for okx" in d["oi_proxy"]
        assert d["step"] == {"SOL": 0.05, "DOGE": 5e-05, "HYPE": 0.02}[asset]
    # The forecast places liquidations better than a uniform map on the liquid coins.
    for asset in ("SOL", "DOGE"):
        d = reports[asset].to_dict()
        assert d["loglik_static"] > d["loglik_uniform"] + 0.5
        assert d["top_decile_precision_static"] > 0.15


@pytest.mark.skipif(not (HL.exists() and HL_DAILY.exists()), reason="../shared/data is absent")
def test_hyperliquid_daily_volume_check() -> None:
    ev = hc.read_events_by_symbol(HL)
    from heatcore.replay import group_by_asset
    btc = group_by_asset(ev)["BTC"][1]
    chk = daily_volume_check(btc, HL_DAILY, coin="BTC", step=50.0)
    assert len(chk.days) >= 45
    for key in ("long:forecast", "short:forecast", "long:crossed", "short:crossed"):
        s = chk.summary[key]
        assert s["days"] >= 45
        assert s["ratio"] is not None and s["ratio"] > 0
        assert s["spearman"] is not None and -1 <= s["spearman"] <= 1
    assert "Spearman" in chk.to_markdown()


def test_map_shift_learns_the_reported_price_offset(report: hc.EvaluationReport,
                                                   market: hc.sim.SimResult) -> None:
    """Known truth: bybit and okx report bankruptcy prices ~0.5 % beyond the trigger,
    binance and hyperliquid report near it. The forecast's map shift must find it."""
    liq = market.truth.liquidations
    checked = 0
    for venue, st in report.engine_state.items():
        if venue.startswith("_"):
            continue
        for code, side in ((1, "long"), (-1, "short")):
            m = liq[(liq["venue"] == hc.venues.venue_id(venue)) & (liq["side"] == code)]
            if m.size < 300:
                continue
            truth = np.median(m["reported"] - m["trigger"]) / market.step
            assert abs(st[f"map_shift_bins_{side}"] - truth) <= 2.0, (venue, side, truth)
            checked += 1
    assert checked >= 3
