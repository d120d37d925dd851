"""Input validation where data enters: refused inputs are counted by reason and
change nothing else; random streams with bad values never crash or leak NaN."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from persist_stream import synthetic_stream

import heatcore as hc
from heatcore.venues import venue_id

VENUES = ("binance", "okx")
_SECTION = struct.Struct("<4sHHIQ")


def state_without_counters(eng: hc.Engine) -> bytes:
    """The engine's exact core state with the reject counters blanked: everything
    a refused input must leave untouched."""
    data = bytearray(eng._core.state_bytes())
    pos = 0
    while pos < len(data):
        tag, _, _, _, length = _SECTION.unpack_from(data, pos)
        if tag == b"ENGN":
            (n,) = struct.unpack_from("<Q", data, pos + _SECTION.size)
            start = pos + _SECTION.size + 8
            data[start:start + 8 * n] = bytes(8 * n)
        pos += _SECTION.size + length
    return bytes(data)


def outputs_finite(eng: hc.Engine) -> None:
    """Every numeric output of the engine is finite (and maps are non-negative)."""
    for v in (None, *eng.venues):
        m = eng.heatmap(v)
        for a in (m.prices, m.long, m.short):
            assert np.isfinite(a).all()
        assert (m.long >= 0).all() and (m.short >= 0).all() and np.isfinite(m.price)
        assert np.isfinite(m.total()).all()
        if v is None:
            continue
        for side in ("long", "short"):
            assert np.isfinite(eng.leverage_mix(v, side)[1]).all()
            assert np.isfinite(eng.exposure_by_tier(v, side)).all()
            assert np.isfinite(eng.liquidation_ratios(v, side)).all()
        for k, x in eng.diagnostics(v).items():
            if x is None or isinstance(x, (tuple, list, str)):  # e.g. untested bands, no score yet
                continue
            assert np.isfinite(float(x)), k


@pytest.fixture
def live() -> hc.Engine:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.ingest(synthetic_stream(1, 400, VENUES))
    return eng


def _last(eng: hc.Engine, venue: str) -> tuple[int, float, float]:
    d = eng.diagnostics(venue)
    return int(eng.diagnostics()["last_ts"]), float(d["last_price"]), float(d["oi_base"] * d["last_price"])


def test_liquidation_above_open_interest_is_absurd(live: hc.Engine) -> None:
    ts, price, oi_usd = _last(live, "okx")
    before = state_without_counters(live)
    with pytest.raises(hc.InputError) as info:
        live.on_liquidation("okx", ts + 1, "long", price, oi_usd * 1.01)
    assert info.value.reason == "absurd_size"
    assert state_without_counters(live) == before
    assert live.diagnostics()["rejected"]["absurd_size"] == 1
    live.on_liquidation("okx", ts + 1, "long", price, oi_usd * 0.01)  # large but possible: accepted


@pytest.mark.parametrize("method,args", [("update_open_interest", ("okx", 2000, 1.7e308)),
                                         ("on_liquidation", ("okx", 2000, "long", 90_000.0, 2e15))])
def test_sizes_beyond_any_market_are_absurd(method: str, args: tuple) -> None:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.update_price("okx", 1000, 90_000.0)
    with pytest.raises(hc.InputError, match="absurd_size"):
        getattr(eng, method)(*args)


def test_liquidation_before_any_oi_is_not_judged_by_size() -> None:
    eng = hc.Engine("BTCUSDT", venues=VENUES)
    eng.update_price("okx", 1000, 90_000.0)
    eng.on_liquidation("okx", 2000, "short", 90_100.0, 5e9)  # OI unknown: nothing to compare with
    assert eng.diagnostics()["rejected_total"] == 0


def test_duplicates_are_counted_not_applied(live: hc.Engine) -> None:
    ts, price, _ = _last(live, "binance")
    calls = [("update_price", ("binance", ts + 10, price * 1.001)),
             ("update_open_interest", ("binance", ts + 20, 2.2e9)),
             ("on_liquidation", ("binance", ts + 30, "short", price * 1.001, 12_345.0))]
    for method, args in calls:
        getattr(live, method)(*args)
        before = state_without_counters(live)
        with pytest.raises(hc.InputError) as info:
            getattr(live, method)(*args)
        assert info.value.reason == "duplicate"
        assert state_without_counters(live) == before
    assert live.diagnostics()["rejected"]["duplicate"] == 3
    # The same values at another time, or on another venue, are new events.
    live.on_liquidation("binance", ts + 31, "short", price * 1.001, 12_345.0)
    live.on_liquidation("okx", ts + 30, "short", price * 1.001, 12_345.0)


def test_python_level_refusals_leave_state_unchanged(live: hc.Engine) -> None:
    ts, price, _ = _last(live, "okx")
    before = state_without_counters(live)
    with pytest.raises(hc.InputError, match="unknown_kind"):
        live.on_liquidation("okx", ts + 1, "long", price, 10.0, price_kind="rumour")
    with pytest.raises(hc.InputError, match="non_positive_price"):
        live.update_open_interest("okx", ts + 1, 1e9, price=-5.0)
    with pytest.raises(hc.InputError, match="unknown_venue"):
        live.update_price("not-a-venue", ts + 1, price)
    with pytest.raises(ValueError):
        live.update_price("okx", float("nan"), price)  # a NaN timestamp is not a time
    assert state_without_counters(live) == before
    assert live.diagnostics()["rejected"]["unknown_venue"] == 1


def test_jsonl_bad_values_are_refused_with_their_line(tmp_path: Path) -> None:
    recs = [{"ts": 1000, "venue": "okx", "symbol": "BTCUSDT", "kind": "price", "price": 90_000.0},
            {"ts": 2000, "venue": "okx", "symbol": "BTCUSDT", "kind": "oi", "oi_usd": 1e9},
            {"ts": 3000, "venue": "okx", "symbol": "BTCUSDT", "kind": "liquidation", "side": "long",
             "price": 89_000.0, "notional_usd": -4.0},
            {"ts": 4000, "venue": "okx", "symbol": "BTCUSDT", "kind": "liquidation", "side": "long",
             "price": 89_000.0, "notional_usd": 5e12}]
    lines = [json.dumps(r) for r in recs]
    lines.insert(2, '{"ts": 2500, "venue": "okx", "symbol": "BTCUSDT", "kind": "price", "price": Infinity}')
    p = tmp_path / "ev.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(hc.EventsFormatError, match="finite") as info:
        hc.read_events(p)
    assert info.value.line == 3
    ev = hc.read_events(p, errors="skip")
    assert len(ev) == 4
    eng = hc.Engine("BTCUSDT", venues=("okx",))
    counts = eng.ingest(ev)
    # Well-formed but impossible values reach the engine and are refused there.
    assert counts["reasons"] == {"non_positive_size": 1, "absurd_size": 1}


# -- fuzzing --------------------------------------------------------------------------

BAD_KINDS = ("nan_price", "inf_value", "neg_price", "zero_oi", "neg_liq", "unknown_venue", "bad_side",
             "bad_kind", "late", "absurd_price", "absurd_size", "duplicate")
REASON = {"nan_price": "non_finite", "inf_value": "non_finite", "neg_price": "non_positive_price",
          "zero_oi": "non_positive_size", "neg_liq": "non_positive_size", "unknown_venue": "unknown_venue",
          "bad_side": "unknown_side", "bad_kind": "unknown_kind", "late": "out_of_order",
          "absurd_price": "absurd_price", "absurd_size": "absurd_size", "duplicate": "duplicate"}


def _bad_event(kind: str, prev: np.ndarray) -> np.ndarray:
    """A bad event made from the accepted event before it: refused whatever the state."""
    e = prev.copy()
    if kind in ("inf_value", "neg_liq", "bad_side", "absurd_size"):
        e["kind"], e["side"], e["value"] = 2, 1, 10_000.0
    if kind == "nan_price":
        e["kind"], e["price"] = 0, np.nan
    elif kind == "inf_value":
        e["value"] = np.inf
    elif kind == "neg_price":
        e["kind"], e["price"] = 0, -e["price"]
    elif kind == "zero_oi":
        e["kind"], e["value"] = 1, 0.0
    elif kind == "neg_liq":
        e["value"] = -100.0
    elif kind == "unknown_venue":
        e["venue"] = venue_id("bybit")
    elif kind == "bad_side":
        e["side"] = 0
    elif kind == "bad_kind":
        e["kind"] = 5
    elif kind == "late":
        e["ts"] -= 60_000
    elif kind == "absurd_price":
        e["kind"], e["price"] = 0, 1e12
    elif kind == "absurd_size":
        e["value"] = 1e16
    return e


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       bad=st.lists(st.tuples(st.integers(5, 1499), st.sampled_from(BAD_KINDS)), max_size=60))
def test_fuzz_injected_bad_events_are_counted_and_change_nothing(seed: int, bad: list[tuple[int, str]]) -> None:
    base = synthetic_stream(seed, 1500, VENUES, vol=2e-3, oi_every=10, liq_rate=0.1)
    rows, expected = [], dict.fromkeys(REASON.values(), 0)
    by_pos: dict[int, list[str]] = {}
    for pos, kind in bad:
        by_pos.setdefault(pos, []).append(kind)
    for i in range(len(base)):
        for kind in by_pos.get(i, []):
            rows.append(_bad_event(kind, base[i - 1:i]))
            expected[REASON[kind]] += 1
        rows.append(base[i:i + 1])
    mixed = np.concatenate(rows).astype(hc.EVENT_DTYPE)
    clean, dirty = hc.Engine("BTCUSDT", venues=VENUES), hc.Engine("BTCUSDT", venues=VENUES)
    assert clean.ingest(base)["rejected"] == 0
    counts = dirty.ingest(mixed)
    assert counts["rejected"] == len(bad)
    assert {k: v for k, v in dirty.diagnostics()["rejected"].items() if v} == {k: v for k, v in expected.items() if v}
    assert state_without_counters(dirty) == state_without_counters(clean)
    outputs_finite(dirty)


_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(1e3, 2e5), st.floats(1e3, 2e5),
                    st.floats(1e5, 1e12), st.sampled_from([0.0, -1.0, 1e300, 1.7e308, 5e-324]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5_000, 60_000), _floats, _floats, st.sampled_from([0, 1, 2, 3, 999]),
                          st.integers(0, 4), st.integers(-2, 2)), min_size=1, max_size=300))
def test_fuzz_random_streams_never_crash_or_produce_nan(rows: list) -> None:
    venue_ids = [venue_id(v) for v in VENUES]
    ev = np.zeros(len(rows), dtype=hc.EVENT_DTYPE)
    ts = 1_700_000_000_000
    for i, (dt, price, value, venue, kind, side) in enumerate(rows):
        ts += dt
        ev[i] = (ts, price, value, venue_ids[venue] if venue < 2 else venue, kind, side, 0, 0)
    eng = hc.Engine("BTCUSDT", venues=VENUES, tiers=(2, 5, 10, 25, 50, 100))
    counts = eng.ingest(ev)
    assert counts["price"] + counts["oi"] + counts["liquidation"] + counts["rejected"] == len(ev)
    assert counts["rejected"] == sum(counts["reasons"].values())
    outputs_finite(eng)
    # The state it reached survives a snapshot round trip exactly.
    again = hc.Engine._from_snapshot(eng.__getstate__())
    assert again._core.state_bytes() == eng._core.state_bytes()


def test_adapter_messages_bad_values_and_replays() -> None:
    """Native messages: a non-finite field is a clear AdapterError; a message
    delivered twice (a reconnect replay) reaches the engine as a counted duplicate."""
    from heatcore.adapters import AdapterError, Parser

    def force_order(price: str, qty: str, t: int) -> dict:
        return {"e": "forceOrder", "E": t + 3, "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC",
                                                   "q": qty, "p": price, "ap": price, "X": "FILLED",
                                                   "l": qty, "z": qty, "T": t}}

    parser = Parser("binance")
    with pytest.raises(AdapterError) as info:
        parser.parse(force_order("NaN", "0.5", 1_767_225_600_000))
    assert info.value.reason == "bad_number"
    good = force_order("87000.5", "0.25", 1_767_225_601_000)
    recs = parser.parse(good) + parser.parse(json.dumps(good))  # delivered twice
    assert len(recs) == 2  # the binance adapter passes both on
    eng = hc.Engine("BTCUSDT", venues=("binance",))
    eng.update_price("binance", 1_767_225_599_000, 87_100.0)
    counts = eng.ingest(hc.events_from_records(recs))
    assert counts["liquidation"] == 1
    assert counts["reasons"] == {"duplicate": 1}
