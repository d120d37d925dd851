"""Foundation behaviour of the engine: conservation, crossing, grid growth,
the seeded book, bad input and the static baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

import heatcore as hc
from heatcore.venues import prior_weights, venue_id

T0 = 1_767_225_600_000


def ev(rows):
    """Build an EVENT_DTYPE array from (ts, venue, kind, side, price, value) rows."""
    kinds = {"price": 0, "oi": 1, "liq": 2}
    out = np.zeros(len(rows), dtype=hc.EVENT_DTYPE)
    for i, (ts, venue, kind, side, price, value) in enumerate(rows):
        out[i] = (ts, price, value, venue_id(venue), kinds[kind], side, 0, 0)
    return out


def state(eng: hc.Engine) -> tuple:
    """Everything observable about an engine, for unchanged-state checks."""
    out = []
    for v in eng.venues:
        m = eng.heatmap(v)
        d = eng.diagnostics(v)
        out.append((m.prices.tobytes(), m.long.tobytes(), m.short.tobytes(),
                    tuple(sorted((k, v) for k, v in d.items())),
                    eng.exposure_by_tier(v, "long").tobytes(), eng.exposure_by_tier(v, "short").tobytes()))
    return tuple(out)


@pytest.fixture
def eng() -> hc.Engine:
    e = hc.Engine("BTCUSDT", step=50.0, venues=["binance", "okx", "bybit"])
    for v in e.venues:
        e.update_price(v, T0, 100_000.0)
    return e


def test_oi_additions_conserve_exposure_per_tier_and_side(eng):
    eng.update_open_interest("binance", T0 + 1, 5e8)
    eng.update_open_interest("binance", T0 + 2, 7e8)   # +2e8 opened at the current price
    eng.update_open_interest("binance", T0 + 3, 9e8, price=100_000.0)
    oi_base = 9e8 / 100_000.0
    for side in ("long", "short"):
        per_tier = eng.exposure_by_tier("binance", side)
        np.testing.assert_allclose(per_tier, oi_base, rtol=1e-12)
    d = eng.diagnostics("binance")
    assert d["exposure_base_long"] == pytest.approx(oi_base, rel=1e-12)
    assert d["exposure_base_short"] == pytest.approx(oi_base, rel=1e-12)
    # The map holds the same positions, valued at their liquidation levels.
    m = eng.heatmap("binance")
    _tiers, w = eng.leverage_mix("binance", "long")
    ratios = eng.liquidation_ratios("binance", "long")
    assert m.long.sum() > 0 and m.short.sum() > 0
    assert np.all(m.long[m.prices > 100_000.0 + 100] == 0), "long levels must lie below price"
    assert np.all(m.short[m.prices < 100_000.0 - 100] == 0), "short levels must lie above price"
    assert m.long.sum() < oi_base * 100_000.0 < m.short.sum()
    assert m.long.sum() > oi_base * 100_000.0 * float(w @ ratios) * 0.9


def test_price_crossing_consumes_exactly_what_was_there(eng):
    eng.update_open_interest("okx", T0 + 1, 1e9)
    before = eng.exposure_by_tier("okx", "long").copy()
    m0 = eng.heatmap("okx")
    eng.update_price("okx", T0 + 2, 96_000.0)
    after = eng.exposure_by_tier("okx", "long")
    consumed = before - after
    d = eng.diagnostics("okx")
    m1 = eng.heatmap("okx")
    # consumed + remaining == what was there, per tier
    assert np.all(consumed >= -1e-9)
    np.testing.assert_allclose(after + consumed, before, rtol=1e-12)
    # the expected liquidation volume is the map mass that was crossed
    crossed = m0.long[m0.prices >= 96_000.0].sum()
    assert d["expected_usd_long"] == pytest.approx(crossed, rel=0.02)
    assert m1.long[m1.prices > 96_000.0 + 50].sum() == pytest.approx(0.0, abs=1e-6)
    assert d["expected_usd_short"] == 0.0
    # high leverage dies first: the consumed share grows with leverage
    share = consumed / before
    assert np.all(np.diff(share) >= -1e-9) and share[0] == 0.0 and share[-1] > 0.5


def test_oi_fall_removes_proportionally_and_rise_adds_at_price(eng):
    eng.update_open_interest("bybit", T0 + 1, 1e9)
    m0 = eng.heatmap("bybit")
    eng.update_open_interest("bybit", T0 + 2, 5e8)
    m1 = eng.heatmap("bybit")
    np.testing.assert_allclose(m1.long, m0.long * 0.5, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(m1.short, m0.short * 0.5, rtol=1e-9, atol=1e-6)
    eng.update_price("bybit", T0 + 3, 110_000.0)
    eng.update_open_interest("bybit", T0 + 4, 6e8, price=110_000.0)
    m2 = eng.heatmap("bybit")
    # new openings at 110k put fresh long levels between the old ones and 110k
    assert m2.long[(m2.prices > 100_500) & (m2.prices < 110_000)].sum() > 0
    np.testing.assert_allclose(eng.exposure_by_tier("bybit", "long"), 6e8 / 110_000.0, rtol=1e-9)


def test_oi_reconcile_nets_liquidations(eng):
    """A crossing lowers the book; an OI reading that fell by the same amount removes nothing more."""
    eng.update_open_interest("binance", T0 + 1, 1e9)
    eng.update_price("binance", T0 + 2, 97_000.0)
    left = eng.exposure_by_tier("binance", "long").copy()
    w = eng.leverage_mix("binance", "long")[1]
    gone = (1e9 / 100_000.0) - float(w @ left)
    eng.update_open_interest("binance", T0 + 3, (1e9 / 100_000.0 - gone) * 97_000.0, price=97_000.0)
    np.testing.assert_allclose(eng.exposure_by_tier("binance", "long"),
                               1e9 / 100_000.0 - gone, rtol=1e-9)


def test_seeded_book_has_no_wall_at_the_first_price(eng):
    """The book before the first reading is spread over a range, not stacked at one entry."""
    eng.update_open_interest("binance", T0 + 1, 1e9)
    m = eng.heatmap("binance")
    top = m.long.max() / m.long.sum()
    assert top < 0.05, f"one bin holds {top:.1%} of the long map"
    # only survivors: no long level at or above the current price
    assert m.long[m.prices > 100_000.0].sum() == 0


def test_grid_grows_both_ways_and_keeps_mass(eng):
    eng.update_open_interest("okx", T0 + 1, 1e9)
    n0 = eng.diagnostics()["grid"]["bins"]
    total0 = eng.heatmap("okx").total()
    for i, p in enumerate((150_000.0, 210_000.0, 290_000.0)):
        eng.update_price("okx", T0 + 10 + i, p)
        eng.update_open_interest("okx", T0 + 10 + i, 1e9 / 100_000.0 * p, price=p)
    g = eng.diagnostics()["grid"]
    assert g["bins"] > n0
    assert g["first_bin"] * 50.0 < 60_000.0 and (g["first_bin"] + g["bins"]) * 50.0 > 400_000.0
    np.testing.assert_allclose(eng.exposure_by_tier("okx", "short"), 1e9 / 100_000.0, rtol=1e-9)
    assert total0[0] > 0


def test_doge_small_step():
    e = hc.Engine("DOGEUSDT", step=0.0001, venues=["binance", "okx"])
    e.update_price("binance", T0, 0.1)
    e.update_open_interest("binance", T0 + 1, 2e8)
    m = e.heatmap("binance").trim()
    assert m.step == pytest.approx(0.0001)
    assert 0.04 < m.prices[0] < 0.1 < m.prices[-1] < 0.17
    assert m.long.sum() > 0 and m.short.sum() > 0
    lcl = m.clusters("long", 1)[0][0]
    assert 0.09 < lcl < 0.1
    e.update_price("binance", T0 + 2, 0.097)
    assert e.diagnostics("binance")["expected_usd_long"] > 0


BAD_CALLS = [
    ("update_price", ("binance", T0 + 5, float("nan")), "non_finite"),
    ("update_price", ("binance", T0 + 5, float("inf")), "non_finite"),
    ("update_price", ("binance", T0 + 5, -1.0), "non_positive_price"),
    ("update_price", ("binance", T0 + 5, 0.0), "non_positive_price"),
    ("update_price", ("binance", T0 + 5, 5e6), "absurd_price"),
    ("update_price", ("binance", T0 - 60_000, 100_100.0), "out_of_order"),
    ("update_price", ("nowhere", T0 + 5, 100_100.0), "unknown_venue"),
    ("update_open_interest", ("binance", T0 + 5, float("nan")), "non_finite"),
    ("update_open_interest", ("binance", T0 + 5, 0.0), "non_positive_size"),
    ("update_open_interest", ("binance", T0 + 5, -5.0), "non_positive_size"),
    ("on_liquidation", ("binance", T0 + 5, "long", 99_000.0, -3.0), "non_positive_size"),
    ("on_liquidation", ("binance", T0 + 5, "long", 99_000.0, 0.0), "non_positive_size"),
    ("on_liquidation", ("binance", T0 + 5, "long", float("nan"), 3.0), "non_finite"),
    ("on_liquidation", ("binance", T0 + 5, "long", 99_000.0, float("inf")), "non_finite"),
    ("on_liquidation", ("binance", T0 + 5, "sideways", 99_000.0, 3.0), "unknown_side"),
    ("on_liquidation", ("binance", T0 - 60_000, "long", 99_000.0, 3.0), "out_of_order"),
]


@pytest.mark.parametrize("method,args,reason", BAD_CALLS, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_bad_calls_raise_and_leave_state_unchanged(eng, method, args, reason):
    eng.update_open_interest("binance", T0 + 1, 1e9)
    before = state(eng)
    with pytest.raises(hc.InputError) as info:
        getattr(eng, method)(*args)
    assert info.value.reason == reason
    assert state(eng) == before
    assert eng.diagnostics()["rejected"][reason] == 1


def test_ingest_counts_and_skips_bad_events_without_touching_state():
    good = ev([(T0, "binance", "price", 0, 100_000.0, 0), (T0 + 1, "binance", "oi", 0, 0.0, 1e9),
               (T0 + 2, "binance", "price", 0, 99_000.0, 0)])
    bad = ev([(T0 + 3, "binance", "price", 0, float("nan"), 0),
              (T0 + 3, "binance", "liq", 1, 98_000.0, -5.0),
              (T0 + 3, "binance", "liq", 0, 98_000.0, 5.0),          # no side
              (T0 + 3, "binance", "oi", 0, 0.0, 0.0),               # zero OI is a gap
              (1, "binance", "price", 0, 98_000.0, 0)])              # far out of order
    bad_kind = ev([(T0 + 3, "binance", "price", 0, 98_000.0, 0)])
    bad_kind["kind"] = 7
    unknown_venue = ev([(T0 + 3, "binance", "price", 0, 98_000.0, 0)])
    unknown_venue["venue"] = 999
    a = hc.Engine(venues=["binance", "okx"])
    b = hc.Engine(venues=["binance", "okx"])
    a.ingest(good)
    counts = b.ingest(np.concatenate([good, bad, bad_kind, unknown_venue]))
    assert counts["price"] == 2 and counts["oi"] == 1 and counts["liquidation"] == 0
    assert counts["rejected"] == 7
    assert counts["reasons"] == {"non_finite": 1, "non_positive_size": 2, "unknown_side": 1,
                                 "out_of_order": 1, "unknown_kind": 1, "unknown_venue": 1}
    assert state(a) == state(b)


def test_ingest_rejects_wrong_dtype():
    e = hc.Engine(venues=["binance"])
    with pytest.raises(TypeError):
        e.ingest(np.zeros(3, dtype=[("ts", "i8"), ("price", "f8")]))


def test_ingest_matches_per_call_api():
    rows = [(T0, "binance", "price", 0, 100_000.0, 0), (T0 + 1, "binance", "oi", 0, 0.0, 8e8),
            (T0 + 2, "okx", "price", 0, 100_050.0, 0), (T0 + 3, "okx", "oi", 0, 0.0, 4e8)]
    rows += [(T0 + 10 + i, "binance" if i % 2 else "okx", "price", 0, 100_000.0 - 40.0 * i, 0) for i in range(60)]
    rows += [(T0 + 100, "binance", "liq", 1, 97_700.0, 25_000.0)]
    a = hc.Engine(venues=["binance", "okx"])
    a.ingest(ev(rows))
    b = hc.Engine(venues=["binance", "okx"])
    for ts, venue, kind, side, price, value in rows:
        if kind == "price":
            b.update_price(venue, ts, price)
        elif kind == "oi":
            b.update_open_interest(venue, ts, value)
        else:
            b.on_liquidation(venue, ts, "long" if side == 1 else "short", price, value)
    assert state(a) == state(b)


def test_static_baseline_keeps_the_prior_mix():
    e = hc.Engine(venues=["binance"], learn=False)
    e.update_price("binance", T0, 100_000.0)
    e.update_open_interest("binance", T0 + 1, 1e9)
    w0 = e.leverage_mix("binance", "long")[1]
    np.testing.assert_allclose(w0, prior_weights("binance"), rtol=1e-12)
    for i in range(50):
        e.on_liquidation("binance", T0 + 10 + i, "long", 99_000.0 - i, 10_000.0)
    np.testing.assert_array_equal(e.leverage_mix("binance", "long")[1], w0)


def test_venue_without_own_price_follows_reference_price():
    e = hc.Engine("BTC", venues=["binance", "hyperliquid"])
    e.update_price("binance", T0, 100_000.0)
    e.update_open_interest("hyperliquid", T0 + 1, 2e9)
    e.update_price("binance", T0 + 2, 94_000.0)
    d = e.diagnostics("hyperliquid")
    assert d["last_price"] == 94_000.0 and not d["own_price"]
    assert d["expected_usd_long"] > 0


def test_mix_weights_reweight_the_map():
    e = hc.Engine(venues=["binance"])
    e.update_price("binance", T0, 100_000.0)
    e.update_open_interest("binance", T0 + 1, 1e9)
    n = len(e.tiers)
    only_100x = np.zeros(n)
    only_100x[list(e.tiers).index(100.0)] = 1.0
    e.set_mix("binance", "long", only_100x)
    m = e.heatmap("binance")
    lvl = m.prices[m.long > 0]
    ratio = e.liquidation_ratios("binance", "long")[list(e.tiers).index(100.0)]
    assert lvl.min() >= 95_000 * ratio - 100 and lvl.max() <= 105_000 * ratio + 100
    assert m.long.sum() == pytest.approx(1e4 * float(np.mean(lvl)), rel=0.05)
    with pytest.raises(ValueError):
        e.set_mix("binance", "long", [float("nan")] * n)


def test_engine_rejects_bad_configuration():
    with pytest.raises(ValueError):
        hc.Engine(step=0.0)
    with pytest.raises(ValueError):
        hc.Engine(step=float("nan"))
    with pytest.raises(KeyError):
        hc.Engine(venues=["nowhere"])
    with pytest.raises(ValueError):
        hc.Engine(tiers=[10.0, 5.0])
    with pytest.raises(ValueError):
        hc.Engine(venues=["okx", "okx"])
    assert math.isfinite(hc.Engine().step)
