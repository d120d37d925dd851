"""The venue registry: 22 venues, sources, priors, tier replacement and symbol parsing."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import heatcore as hc
from heatcore import venues as V

EXPECTED = ("binance", "bybit", "okx", "bitget", "gate", "bitmex", "deribit", "hyperliquid",
            "dydx", "htx", "kraken", "kucoin", "mexc", "bingx", "bitfinex", "coinex", "phemex",
            "bitmart", "cryptocom", "woox", "coinbase", "bitunix")
FIELDS = ("max_leverage", "fee_in_mm", "formula", "inverse", "trigger_price", "reported_price",
          "liquidation_feed", "prior_mix", "cross_share", "cross_distance")


@pytest.fixture
def restore_registry():
    saved = dict(V._REGISTRY)
    ids = list(V._IDS)
    yield
    V._REGISTRY.clear()
    V._REGISTRY.update(saved)
    V._IDS[:] = ids


def test_twenty_two_venues_in_stable_order():
    assert hc.VENUES == EXPECTED
    assert [V.venue_id(v) for v in EXPECTED] == list(range(22))
    assert V.venue_name(7) == "hyperliquid"
    with pytest.raises(KeyError, match="unknown venue"):
        V.get_venue("nope")


@pytest.mark.parametrize("vid", EXPECTED)
def test_every_number_has_a_source_and_date(vid):
    v = V.get_venue(vid)
    for key in FIELDS:
        assert v.sources.get(key, "").strip(), (vid, key)
        assert re.search(r"(19|20)\d\d", v.dates.get(key, "")), (vid, key)
    for asset, t in v.tiers.items():
        assert t["source"].strip() and re.search(r"(19|20)\d\d", t["date"]), (vid, asset)


@pytest.mark.parametrize("vid", EXPECTED)
def test_prior_sums_to_one_and_is_zero_above_max_leverage(vid):
    v = V.get_venue(vid)
    w = V.prior_weights(vid)
    t = np.asarray(V.DEFAULT_TIERS)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all()
    assert np.all(w[t > v.max_leverage] == 0)
    assert sum(v.prior_bands) == pytest.approx(1.0, abs=0.011)


def test_feed_and_price_kinds_are_known_values():
    for vid in EXPECTED:
        v = V.get_venue(vid)
        assert v.liquidation_feed in V.FEEDS
        assert v.reported_price in (*V.PRICE_KINDS, "none")
        assert (v.liquidation_feed == "none") == (v.reported_price == "none")
    assert V.get_venue("binance").liquidation_feed == "sampled"
    assert V.get_venue("okx").reported_price == "bankruptcy"
    assert V.get_venue("deribit").reported_price == "trade"


def _share(vid, lo, hi):
    t = np.asarray(V.DEFAULT_TIERS)
    return V.prior_weights(vid)[(t >= lo) & (t < hi)].sum()


def test_priors_follow_the_archetypes():
    assert _share("deribit", 2, 10.5) >= 0.8          # Deribit mostly 2x-10x
    for vid in ("binance", "bybit"):                  # peak at 10x-25x
        assert _share(vid, 10, 26) > max(_share(vid, 2, 10), _share(vid, 26, 126))
    for vid in ("mexc", "kucoin", "gate"):            # heavy in 50x-125x
        assert _share(vid, 50, 126) >= 0.4
    hl = V.get_venue("hyperliquid")                   # 36 % <=3x, 48 % 3-7x, 15 % >7x
    assert _share("hyperliquid", 2, 3.5) == pytest.approx(0.36 / 0.99)
    assert _share("hyperliquid", 3.5, 7.5) == pytest.approx(0.48 / 0.99)
    assert _share("hyperliquid", 7.5, 41) == pytest.approx(0.15 / 0.99)
    assert hl.max_leverage == 40


def test_cross_margin_priors_are_documented_fields():
    for vid in EXPECTED:
        v = V.get_venue(vid)
        assert 0 <= v.cross_share <= 1 and v.cross_distance >= 1
        assert "not learned from liquidations alone" in v.sources["cross_share"]
    assert V.get_venue("deribit").cross_share > V.get_venue("binance").cross_share


@pytest.mark.parametrize("symbol,asset", [
    ("BTCUSDT", "BTC"), ("BTC-USDT-SWAP", "BTC"), ("XBTUSD", "BTC"), ("PF_XBTUSD", "BTC"),
    ("tBTCF0:USTF0", "BTC"), ("BTC_USDT", "BTC"), ("BTC-PERPETUAL", "BTC"), ("BTC-USD", "BTC"),
    ("ETHUSDT", "ETH"), ("1000PEPEUSDT", "PEPE"), ("kPEPE", "PEPE"), ("1INCHUSDT", "1INCH"),
    ("ETH/USDT:USDT", "ETH"), ("tETHF0:USTF0", "ETH"), ("ETH-PERPETUAL", "ETH"), ("BTC", "BTC"),
    ("KSMUSDT", "KSM"), ("SOL-USD", "SOL"), ("BTCPERP", "BTC"),
])
def test_base_asset(symbol, asset):
    assert V.base_asset(symbol) == asset


@pytest.mark.parametrize("bad", ["", "   ", None, 5])
def test_base_asset_rejects_non_symbols(bad):
    with pytest.raises(ValueError):
        V.base_asset(bad)


def test_set_tier_table_changes_mechanics(restore_registry):
    before = V.get_venue("okx").liquidation_price("long", 100.0, 20.0, "BTC-USDT-SWAP")
    V.set_tier_table("okx", "BTC", [
        {"floor": 0, "cap": 1e6, "rate": 0.02, "deduction": 0, "max_leverage": 25},
        {"floor": 1e6, "cap": 1e7, "rate": 0.03, "deduction": 10_000, "max_leverage": 20},
    ], source="test", date="2026-11-25")
    after = V.get_venue("okx").liquidation_price("long", 100.0, 20.0, "BTC-USDT-SWAP")
    assert after == pytest.approx(100.0 * 0.95 / (1 - 0.02 - V.get_venue("okx").fee_in_mm))
    assert after > before
    assert V.get_venue("okx").tiers["BTC"]["source"] == "test"


@pytest.mark.parametrize("rows,msg", [
    ([], "at least one tier"),
    ([{"floor": 0, "cap": 1e6, "rate": 0.5, "max_leverage": 100}], "below maintenance"),
    ([{"floor": 0, "cap": 1e6, "rate": 0.01, "max_leverage": 50},
      {"floor": 2e6, "cap": 3e6, "rate": 0.02, "max_leverage": 25, "deduction": 1e4}],
     "contiguous"),
    ([{"floor": 0, "cap": 1e6, "rate": 0.02, "max_leverage": 25},
      {"floor": 1e6, "cap": 3e6, "rate": 0.01, "max_leverage": 25}], "non-decreasing"),
    ([{"floor": 0, "cap": 1e6, "rate": 0.01, "max_leverage": 25},
      {"floor": 1e6, "cap": 3e6, "rate": 0.01, "max_leverage": 50}], "non-increasing"),
    ([{"floor": 0, "cap": 1e6, "rate": 0.01, "max_leverage": 50},
      {"floor": 1e6, "cap": 3e6, "rate": 0.02, "max_leverage": 25, "deduction": 0}], "jumps"),
    ([{"floor": 0, "cap": 1e6, "rate": float("nan"), "max_leverage": 50}], "non-finite"),
    ([{"floor": 0, "cap": 1e6, "max_leverage": 50}], "lacks field 'rate'"),
    ([{"floor": 10, "cap": 1e6, "rate": 0.01, "max_leverage": 50}], "start at notional 0"),
])
def test_bad_tables_raise_clear_errors(restore_registry, rows, msg):
    with pytest.raises(ValueError, match=msg):
        V.set_tier_table("binance", "BTC", rows, source="x", date="2026")
    assert V.get_venue("binance").tiers["BTC"]["date"] == "2024-10-24"  # unchanged


def test_set_tier_table_requires_source_and_date_and_known_venue(restore_registry):
    rows = [{"floor": 0, "cap": 1e6, "rate": 0.01, "max_leverage": 50}]
    with pytest.raises(ValueError, match="source"):
        V.set_tier_table("binance", "BTC", rows, source="", date="2026")
    with pytest.raises(ValueError, match="date"):
        V.set_tier_table("binance", "BTC", rows, source="x", date=" ")
    with pytest.raises(KeyError):
        V.set_tier_table("nope", "BTC", rows, source="x", date="2026")


def test_fill_deduction_makes_a_table_continuous(restore_registry):
    rows = [{"floor": 0, "cap": 1e6, "rate": 0.01, "max_leverage": 50},
            {"floor": 1e6, "cap": 3e6, "rate": 0.02, "max_leverage": 25}]
    V.set_tier_table("gate", "SOL_USDT", rows, source="x", date="2026", fill_deduction=True)
    assert V.get_venue("gate").brackets("SOLUSDT")[1].deduction == pytest.approx(1e4)


def test_load_user_heatcore_file(tmp_path, restore_registry):
    p = tmp_path / "tiers.json"
    p.write_text(json.dumps({"source": "my desk", "date": "2026-11-01", "brackets": [
        {"floor": 0, "cap": 2e5, "rate": 0.005, "deduction": 0, "max_leverage": 100},
        {"floor": 2e5, "cap": 1e6, "rate": 0.01, "deduction": 1000, "max_leverage": 50}]}))
    b = V.load_tier_table(p, "kucoin", "BTC")
    assert [x.rate for x in b] == [0.005, 0.01]
    assert V.get_venue("kucoin").tier_table("XBTUSDTM")["source"] == "my desk"


def test_load_binance_bracket_download(restore_registry):
    download = [{"symbol": "ETHUSDT", "brackets": [
        {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
         "maintMarginRatio": 0.004, "cum": 0.0},
        {"bracket": 2, "initialLeverage": 100, "notionalCap": 600000, "notionalFloor": 50000,
         "maintMarginRatio": 0.005, "cum": 50.0}]},
        {"symbol": "BTCUSDT", "brackets": []}]
    b = V.load_tier_table(download, "binance", "ETH", source="binance api", date="2026-11-25")
    assert [(x.cap, x.rate, x.deduction, x.max_leverage) for x in b] == [
        (50000, 0.004, 0, 125), (600000, 0.005, 50, 100)]
    web = [{"bracketNotionalFloor": "0", "bracketNotionalCap": "300000",
            "bracketMaintenanceMarginRate": "0.004", "cumFastMaintenanceAmount": "0",
            "maxOpenPosLeverage": "150"}]
    assert V.load_tier_table(web, "binance", "BTC", date="2025-08-19")[0].max_leverage == 150


def test_load_bybit_risk_limit_download_fraction_and_percent(restore_registry):
    rows = [{"id": 1, "symbol": "ETHUSDT", "riskLimitValue": "1000000",
             "maintenanceMargin": "0.005",
             "initialMargin": "0.01", "maxLeverage": "100.00", "mmDeduction": ""},
            {"id": 2, "symbol": "ETHUSDT", "riskLimitValue": "2000000", "maintenanceMargin": "0.01",
             "initialMargin": "0.02", "maxLeverage": "50.00", "mmDeduction": ""}]
    b = V.load_tier_table({"result": {"list": rows}}, "bybit", "ETH", date="2026-11-25")
    assert [(x.floor, x.cap, x.rate) for x in b] == [(0, 1e6, 0.005), (1e6, 2e6, 0.01)]
    assert b[1].deduction == pytest.approx(5000)  # continuity: 1e6 * (1 % - 0.5 %)
    assert "continuity" in V.get_venue("bybit").tiers["ETH"]["source"]
    pct = [{**r, "maintenanceMargin": str(float(r["maintenanceMargin"]) * 100),
            "initialMargin": str(float(r["initialMargin"]) * 100)} for r in rows]
    b2 = V.load_tier_table(pct, "bybit", "ETH", date="2026-11-25")
    assert [x.rate for x in b2] == pytest.approx([0.005, 0.01])


def test_load_okx_position_tiers_needs_contract_size(restore_registry):
    data = {"code": "0", "data": [
        {"instFamily": "BTC-USDT", "tier": "1", "minSz": "0", "maxSz": "1000", "mmr": "0.004",
         "imr": "0.01", "maxLever": "100"},
        {"instFamily": "BTC-USDT", "tier": "2", "minSz": "1001", "maxSz": "5000", "mmr": "0.006",
         "imr": "0.0133", "maxLever": "75"}]}
    with pytest.raises(ValueError, match="contract_value"):
        V.load_tier_table(data, "okx", "BTC", date="2026-11-25")
    b = V.load_tier_table(data, "okx", "BTC", date="2026-11-25", contract_value=0.01,
                          price=100_000)
    assert [(x.cap, x.max_leverage) for x in b] == [(1e6, 100), (5e6, 75)]
    assert b[1].deduction == pytest.approx(1e6 * 0.002)


def test_load_gate_bitget_hyperliquid_formats(restore_registry):
    gate = [{"tier": 1, "risk_limit": "500000", "initial_rate": "0.01", "maintenance_rate": "0.005",
             "leverage_max": "100", "deduction": "0"},
            {"tier": 2, "risk_limit": "1000000", "initial_rate": "0.015",
             "maintenance_rate": "0.0075", "leverage_max": "66.66", "deduction": "1250"}]
    assert V.load_tier_table(gate, "gate", "BTC", date="2026")[1].deduction == 1250
    bitget = {"data": [{"level": "1", "startUnit": "0", "endUnit": "50000", "leverage": "125",
                        "keepMarginRate": "0.004"},
                       {"level": "2", "startUnit": "50000", "endUnit": "200000", "leverage": "100",
                        "keepMarginRate": "0.005"}]}
    assert V.load_tier_table(bitget, "bitget", "BTC", date="2023-09-27")[1].deduction == \
        pytest.approx(50)
    hl = {"description": "tiered 40x",
          "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 40},
                          {"lowerBound": "150000000.0", "maxLeverage": 20}]}
    b = V.load_tier_table(hl, "hyperliquid", "BTC", date="2026-09-27")
    assert b[1].deduction == pytest.approx(1_875_000)


def test_load_rejects_garbage(tmp_path, restore_registry):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        V.load_tier_table(p, "binance", "BTC", date="2026")
    with pytest.raises(ValueError, match="unrecognised"):
        V.load_tier_table([{"foo": 1}], "binance", "BTC", date="2026")
    with pytest.raises(ValueError, match="date"):
        V.load_tier_table([{"floor": 0, "cap": 1, "rate": 0.01, "max_leverage": 2}],
                          "binance", "BTC")


def test_register_venue(restore_registry):
    base = V.get_venue("binance")
    new = replace(base, id="aster", name="Aster", tiers={"BTC": base.tiers["BTC"]})
    V.register_venue(new)
    assert V.venue_id("aster") == 22
    assert "default" in V.get_venue("aster").tiers
    assert V.get_venue("aster").liquidation_price("long", 100_000, 100, "BTCUSDT") == \
        pytest.approx(99_397.59, abs=0.01)
    with pytest.raises(ValueError, match="already registered"):
        V.register_venue(new)
    with pytest.raises(ValueError, match="liquidation_feed"):
        V.register_venue(replace(new, id="x1", liquidation_feed="sometimes"))
    with pytest.raises(ValueError, match="cross_distance"):
        V.register_venue(replace(new, id="x2", cross_distance=0.5))
    with pytest.raises(TypeError):
        V.register_venue({"id": "x3"})  # type: ignore[arg-type]


def test_registry_rows_cover_all_venues():
    rows = V.registry_rows()
    assert [r["id"] for r in rows] == list(EXPECTED)
    assert all({"feed", "reported_price", "max_leverage", "archetype"} <= set(r) for r in rows)
