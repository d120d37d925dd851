"""Adapters: every documented message layout parsed field by field (fixtures in
tests/fixtures/adapters/, constructed from exchanges.md), malformed variants
refused with the documented reason, and records that round-trip through
hc.events_from_records."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

import heatcore as hc
from heatcore import adapters
from heatcore.adapters import AdapterError, Instrument, Parser
from heatcore.events import records_from_events

FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
VENUES = sorted(p.stem for p in FIXTURES.glob("*.json"))
RECV_TS = 1767225600999


def _cases():
    for venue in VENUES:
        data = json.loads((FIXTURES / f"{venue}.json").read_text())
        assert data["venue"] == venue
        for case in data["cases"]:
            yield pytest.param(venue, case, id=f"{venue}-{case['id']}")


def _message(case, m):
    return gzip.compress(json.dumps(m).encode()) if case.get("gzip") else m


def _assert_records(got, expected):
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected, strict=False):
        assert set(g) == set(e), (g, e)
        for key, want in e.items():
            if isinstance(want, float):
                assert isinstance(g[key], float), (key, g)
                assert g[key] == pytest.approx(want, rel=1e-12), (key, g, e)
            else:
                assert g[key] == want and type(g[key]) is type(want), (key, g, e)


def test_every_adapter_has_fixtures():
    assert set(VENUES) == set(adapters.ADAPTERS)
    for venue in VENUES:
        cases = json.loads((FIXTURES / f"{venue}.json").read_text())["cases"]
        recs = [r for c in cases for r in (c.get("expect") or [])]
        liqs = [r for r in recs if r["kind"] == "liquidation"]
        # both sides, price and open interest, and malformed variants for every venue
        assert {r["side"] for r in liqs} == {"long", "short"}, venue
        assert any(r["kind"] == "price" for r in recs), venue
        assert any(r["kind"] == "oi" for r in recs), venue
        assert sum(1 for c in cases if c.get("error")) >= 3, venue


@pytest.mark.parametrize(("venue", "case"), list(_cases()))
def test_fixture(venue, case):
    parser = Parser(venue, user=case.get("user"))
    msgs = [_message(case, m) for m in case["messages"]]
    if case.get("error"):
        for m in msgs[:-1]:
            parser.parse(m, RECV_TS)
        with pytest.raises(AdapterError) as info:
            parser.parse(msgs[-1], RECV_TS)
        assert info.value.reason == case["error"], str(info.value)
        assert info.value.venue == venue
        # lenient mode: same message counted by reason, nothing emitted
        lenient = Parser(venue, user=case.get("user"))
        for m in msgs[:-1]:
            lenient.feed(m, RECV_TS)
        assert lenient.feed(msgs[-1], RECV_TS) == []
        assert lenient.errors == {case["error"]: 1}
        return
    got = [r for m in msgs for r in parser.parse(m, RECV_TS)]
    _assert_records(got, case["expect"])
    for reason, n in (case.get("skipped") or {}).items():
        assert parser.skipped.get(reason) == n, parser.skipped
    if got:
        ev = hc.events_from_records(got)
        assert len(ev) == len(got)
        by_kind = {}
        for r in got:
            by_kind.setdefault(r["kind"], []).append(r)
        back = list(records_from_events(ev, "X"))
        for r, b in zip(sorted(got, key=lambda r: r["ts"]), back, strict=False):
            assert b["kind"] == r["kind"] and b["ts"] == r["ts"]
            for key in ("price", "notional_usd", "oi_usd", "side", "price_kind", "sampled"):
                if key in r:
                    assert b[key] == r[key], key


def test_batch_keeps_good_items_in_lenient_mode():
    msg = {
        "topic": "allLiquidation.BTCUSDT",
        "type": "snapshot",
        "ts": 1767225600500,
        "data": [
            {"T": 1767225600431, "s": "BTCUSDT", "S": "Buy", "v": "0.120", "p": "86890.50"},
            {"T": 1767225600432, "s": "BTCUSDT", "S": "Up", "v": "0.5", "p": "86890.50"},
            {"T": 1767225600433, "s": "BTCUSDT", "S": "Sell", "v": "0.5", "p": "87000"},
        ],
    }
    with pytest.raises(AdapterError):
        Parser("bybit").parse(msg)
    p = Parser("bybit")
    recs = p.feed(msg)
    assert [r["side"] for r in recs] == ["long", "short"]
    assert p.errors == {"bad_side": 1}
    assert p.messages == 1 and p.records == 2


def test_instrument_table_is_per_parser_and_extensible():
    msg = {
        "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
        "data": [
            {
                "instId": "PEPE-USDT-SWAP",
                "instType": "SWAP",
                "details": [
                    {
                        "side": "buy",
                        "posSide": "net",
                        "bkPx": "0.00001",
                        "sz": "3",
                        "ts": "1767225600250",
                    }
                ],
            }
        ],
    }
    with pytest.raises(AdapterError) as info:
        adapters.parse("okx", msg)
    assert info.value.reason == "unknown_instrument"
    p = Parser("okx", instruments=[Instrument("okx", "PEPE-USDT-SWAP", 10_000_000.0)])
    [rec] = p.parse(msg)
    assert rec["notional_usd"] == pytest.approx(3 * 10_000_000 * 0.00001)
    assert rec["side"] == "short"
    # another parser did not see the addition
    with pytest.raises(AdapterError):
        Parser("okx").parse(msg)
    # an override replaces a documented default
    p2 = Parser("okx", instruments=[Instrument("okx", "BTC-USDT-SWAP", 0.001)])
    msg2 = json.loads(json.dumps(msg).replace("PEPE", "BTC"))
    assert p2.parse(msg2)[0]["notional_usd"] == pytest.approx(3 * 0.001 * 0.00001)
    with pytest.raises(ValueError):
        Instrument("okx", "X", 0.0)


def test_symbol_filter_counts_other_symbols():
    p = Parser("bybit", symbols=["BTCUSDT"])
    msg = {
        "topic": "allLiquidation.ETHUSDT",
        "type": "snapshot",
        "ts": 1767225600500,
        "data": [{"T": 1767225600431, "s": "ETHUSDT", "S": "Buy", "v": "1", "p": "3000"}],
    }
    assert p.parse(msg) == []
    assert p.skipped == {"other_symbol": 1}


def test_unknown_venue_and_types():
    with pytest.raises(AdapterError) as info:
        Parser("nosuchvenue")
    assert info.value.reason == "unknown_venue"
    with pytest.raises(AdapterError) as info:
        adapters.parse("binance", 12345)  # type: ignore[arg-type]
    assert info.value.reason == "malformed"
    with pytest.raises(AdapterError) as info:
        adapters.parse("htx", b"\x1f\x8b\x08\x00garbage")
    assert info.value.reason == "bad_compression"


def test_bytes_and_str_give_same_records():
    raw = (
        '{"e":"forceOrder","E":1767225600123,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT",'
        '"f":"IOC","q":"0.250","p":"86950.10","ap":"87012.40","X":"FILLED","l":"0.250",'
        '"z":"0.250","T":1767225600120}}'
    )
    a = adapters.parse("binance", raw)
    b = adapters.parse("binance", raw.encode())
    c = adapters.parse("binance", json.loads(raw))
    assert a == b == c and len(a) == 1


def test_native_symbols_parse_back_to_the_base_asset():
    from heatcore.venues import base_asset

    for venue in adapters.ADAPTERS:
        assert base_asset(adapters.native_symbol(venue, "BTC")) == "BTC", venue
        assert base_asset(adapters.native_symbol(venue, "ETH")) == "ETH", venue


def test_recorded_okx_file_matches_adapter_notional():
    """The shared OKX recording was converted with notional = sz * ctVal * bkPx;
    the adapter's instrument table reproduces it for SOL (ctVal 1)."""
    path = Path("/work/shared/data/okx_sol_doge_hype_2026-03-04.jsonl")
    if not path.exists():
        pytest.skip("shared recording not available")
    with path.open() as fh:
        rec = next(
            r
            for r in map(json.loads, fh)
            if r["kind"] == "liquidation" and r["symbol"].startswith("SOL")
        )
    sz = rec["notional_usd"] / rec["price"]  # ctVal 1: contracts = coins
    msg = {
        "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
        "data": [
            {
                "instId": "SOL-USDT-SWAP",
                "instType": "SWAP",
                "details": [
                    {
                        "side": "sell" if rec["side"] == "long" else "buy",
                        "posSide": "net",
                        "bkPx": str(rec["price"]),
                        "sz": str(round(sz, 6)),
                        "ts": str(rec["ts"]),
                    }
                ],
            }
        ],
    }
    [got] = adapters.parse("okx", msg)
    assert got["side"] == rec["side"] and got["price"] == rec["price"]
    assert math.isclose(got["notional_usd"], rec["notional_usd"], rel_tol=1e-6)
    assert got["sampled"] is True and got["price_kind"] == "bankruptcy"
    assert np.all(hc.events_from_records([got])["flags"] == 1)
