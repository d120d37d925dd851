"""Tier tables and liquidation formulas against the exchanges' documented rules and examples."""

from __future__ import annotations

import itertools

import pytest

from heatcore import venues as V

TABLES = [(vid, asset) for vid in V.VENUES for asset in V.get_venue(vid).tiers]
REQUIRED = ["binance", "bybit", "okx", "bitget", "gate", "hyperliquid", "deribit", "dydx", "bitmex"]


def _ids(p):
    return f"{p[0]}-{p[1]}"


def test_required_venues_have_btc_and_eth_tables_with_source_and_date():
    for vid in REQUIRED:
        v = V.get_venue(vid)
        for asset in ("BTC", "ETH"):
            t = v.tiers[asset]
            assert t["source"].strip() and t["date"].strip(), (vid, asset)
            assert v.tier_table(f"{asset}USDT") is t


@pytest.mark.parametrize("key", TABLES, ids=_ids)
def test_every_table_is_monotone(key):
    b = V.get_venue(key[0]).brackets(None if key[1] == "default" else key[1])
    assert b[0].floor == 0
    for lo, hi in itertools.pairwise(b):
        assert hi.floor == pytest.approx(lo.cap)
        assert hi.floor > lo.floor
        assert hi.rate >= lo.rate
        assert hi.max_leverage <= lo.max_leverage


@pytest.mark.parametrize("key", TABLES, ids=_ids)
def test_maintenance_is_continuous_or_documented_stepwise(key):
    vid, asset = key
    table = V.get_venue(vid).tiers[asset]
    b = V.get_venue(vid).brackets(None if asset == "default" else asset)
    if table.get("mm_model", "marginal") == "stepwise":
        # BitMEX: each risk step adds the base maintenance rate to the whole position.
        assert vid == "bitmex" and "stepwise" in table["source"].lower()
        for n, br in enumerate(b):
            assert br.rate == pytest.approx(b[0].rate * (n + 1))
            assert br.deduction == 0
        return
    for lo, hi in itertools.pairwise(b):
        x = hi.floor
        left, right = lo.rate * x - lo.deduction, hi.rate * x - hi.deduction
        assert left == pytest.approx(right, rel=1e-6, abs=1.0), (vid, asset, x)


def test_published_deductions_satisfy_the_continuity_rule_exactly():
    # Binance cum and Bybit mmDeduction are published numbers, not computed by heatcore.
    for vid in ("binance", "bybit"):
        b = V.get_venue(vid).brackets("BTC")
        recomputed = V.continuity_deductions(b)
        assert [r["deduction"] for r in recomputed] == pytest.approx([x.deduction for x in b])


def test_binance_tier1_worked_example_long_and_short():
    # exchanges.md 3.1: MMR 0.4 %, no deduction, 1 BTC at 100,000 with 100x (M = 1,000).
    v = V.get_venue("binance")
    q, ep, lev = 1.0, 100_000.0, 100.0
    m = q * ep / lev
    expected_long = (ep - m / q) / (1 - 0.004)
    assert expected_long == pytest.approx(99_397.6, abs=0.05)
    lp = v.liquidation_price("long", ep, lev, "BTCUSDT")
    assert lp == pytest.approx(expected_long, rel=1e-12)
    assert v.liquidation_price("short", ep, lev, "BTCUSDT") == pytest.approx(
        (ep + m / q) / (1 + 0.004), rel=1e-12)
    # bankruptcy price: zero margin left
    assert ep - m / q == 99_000.0


def test_binance_formula_with_cum_matches_wallet_balance_form():
    # Binance LP = (WB + cum - s*Q*EP) / (Q*MMR - s*Q), on a position in tier 2 (cum 50).
    v = V.get_venue("binance")
    b = v.brackets("BTC")[1]
    q, ep, lev, s = 2.0, 100_000.0, 50.0, 1
    wb = q * ep / lev
    lp = (wb + b.deduction - s * q * ep) / (q * b.rate - s * q)
    d = b.deduction / (q * ep)
    assert lp == pytest.approx(ep * (1 - 1 / lev - d) / (1 - b.rate), rel=1e-12)


def test_bybit_docs_example_classic_formula():
    # Bybit help centre: 1 BTC at 20,000, 50x, MMR 0.5 % -> LP 19,700 (MM at entry,
    # no close-fee term; the 2026 UTA article adds an estimated close fee to IM and MM).
    v = V.get_venue("bybit")
    assert v.formula == "mm_at_entry" and v.fee_in_mm == 0.0
    assert v.liquidation_price("long", 20_000.0, 50.0, "BTCUSDT") == pytest.approx(19_700.0)
    assert v.liquidation_price("short", 20_000.0, 50.0, "BTCUSDT") == pytest.approx(20_300.0)


def test_inverse_formula_matches_bybit_coin_formula():
    # Bybit inverse: LP_long = C / (C/EP + IM - MM), LP_short = C / (C/EP - IM + MM), in coin.
    v = V.get_venue("bitmex")
    assert v.inverse
    m = v.brackets("BTC")[0].rate
    contracts, ep = 10_000.0, 50_000.0
    for lev in (5.0, 25.0, 100.0):
        im, mm = contracts / ep / lev, contracts / ep * m
        assert v.liquidation_price("long", ep, lev, "XBTUSD") == pytest.approx(
            contracts / (contracts / ep + im - mm), rel=1e-12)
        assert v.liquidation_price("short", ep, lev, "XBTUSD") == pytest.approx(
            contracts / (contracts / ep - im + mm), rel=1e-12)


def test_short_mirrors_long_for_the_generic_formula():
    v = V.get_venue("hyperliquid")
    m = v.brackets("BTC")[0].rate
    for lev in (2.0, 10.0, 40.0):
        lo = v.liquidation_price("long", 1.0, lev, "BTC")
        hi = v.liquidation_price("short", 1.0, lev, "BTC")
        assert lo == pytest.approx((1 - 1 / lev) / (1 - m))
        assert hi == pytest.approx((1 + 1 / lev) / (1 + m))


def test_fee_in_maintenance_moves_liquidation_toward_entry():
    okx = V.get_venue("okx")
    assert okx.fee_in_mm > 0
    lp = okx.liquidation_price("long", 100.0, 20.0, "BTC-USDT-SWAP")
    m = okx.brackets("BTC")[0].rate
    assert lp == pytest.approx(100.0 * (1 - 0.05) / (1 - m - okx.fee_in_mm))
    assert lp > 100.0 * (1 - 0.05) / (1 - m)


def test_hyperliquid_tiers_follow_half_initial_margin_rule():
    for asset, levs in (("BTC", (40, 20)), ("ETH", (25, 15))):
        b = V.get_venue("hyperliquid").brackets(asset)
        assert [x.max_leverage for x in b] == list(levs)
        for x in b:
            assert x.rate == pytest.approx(1 / (2 * x.max_leverage))


def test_deribit_piecewise_table_is_exact_at_breakpoints():
    # Deribit BTC MM = 1 % + size_BTC * 0.005 % (since 2022-01-11), at 100,000 USD/BTC.
    ref, k = 100_000.0, 0.00005
    for br in V.get_venue("deribit").brackets("BTC"):
        for x in (br.floor, br.cap):
            q = x / ref
            exact = x * (0.01 + k * q)
            assert br.rate * x - br.deduction == pytest.approx(exact, rel=1e-9, abs=1e-6)


def test_default_table_rule():
    for lev in (20.0, 50.0, 100.0, 125.0):
        t = V.default_tier_table(lev)
        b = V.validate_tier_table(t["brackets"], where="default")
        assert b[0]["max_leverage"] == lev
        assert all(r["rate"] == pytest.approx(0.5 / r["max_leverage"]) for r in b)
    with pytest.raises(ValueError):
        V.default_tier_table(0.5)


@pytest.mark.parametrize("key", TABLES, ids=_ids)
def test_rate_scale_is_the_table_scaled_so_it_stays_monotone_and_continuous(key):
    """The calibrator's stale-tier correction (``liquidation_ratio(side, L, s)``) is exactly
    the venue's table with every rate and deduction multiplied by ``s``: the corrected
    table keeps monotone rates and a continuous maintenance amount, and liquidation
    prices stay monotone in leverage."""
    from heatcore import _core

    vid, asset = key
    spec = V.get_venue(vid)
    symbol = None if asset == "default" else asset
    mech = spec.mechanics(symbol)
    levs = [x for x in V.DEFAULT_TIERS if x <= spec.max_leverage]
    for s in (0.7, 1.6):
        scaled_b = [_core.Bracket(b.floor, b.cap, b.rate * s, b.deduction * s, b.max_leverage)
                    for b in spec.brackets(symbol)]
        scaled = _core.Mechanics(scaled_b, fee_in_mm=spec.fee_in_mm, max_leverage=spec.max_leverage,
                                 representative_notional=spec.representative_notional,
                                 inverse=spec.inverse, formula=1 if spec.formula == "mm_at_entry" else 0)
        for side in (1, -1):
            got = [mech.liquidation_ratio(side, lev, s) for lev in levs]
            assert got == pytest.approx([scaled.liquidation_ratio(side, lev) for lev in levs], rel=1e-12)
            # long: higher leverage liquidates closer to entry (ratio rises toward 1); short mirrored
            assert all((b - a) * side >= 0 for a, b in itertools.pairwise(got)), (vid, asset, s, side)
        if spec.tiers[asset].get("mm_model", "marginal") != "stepwise":
            for lo, hi in itertools.pairwise(scaled_b):
                x = hi.floor
                assert lo.rate * x - lo.deduction == pytest.approx(hi.rate * x - hi.deduction, rel=1e-6, abs=1.0)
