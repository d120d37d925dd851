"""Normalized JSONL I/O: round trips, gzip, multi-symbol files, errors with line numbers."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

import heatcore as hc

RECS = [
    {"ts": 1000, "venue": "binance", "symbol": "BTCUSDT", "kind": "price", "price": 100000.5},
    {"ts": 1001, "venue": "okx", "symbol": "BTCUSDT", "kind": "oi", "oi_usd": 2.5e9},
    {"ts": 1002, "venue": "okx", "symbol": "BTCUSDT", "kind": "liquidation", "side": "long",
     "price": 99000.0, "notional_usd": 1234.5, "price_kind": "bankruptcy", "sampled": True},
    {"ts": 1003, "venue": "bybit", "symbol": "BTCUSDT", "kind": "liquidation", "side": "short",
     "price": 101000.0, "notional_usd": 99.0},
]


def write_lines(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        path.write_text(data)


@pytest.mark.parametrize("name", ["ev.jsonl", "ev.jsonl.gz"])
def test_round_trip(tmp_path, name):
    arr = hc.events_from_records(RECS)
    p = tmp_path / name
    hc.write_events(p, arr, "BTCUSDT")
    back = hc.read_events(p)
    assert back.dtype == hc.EVENT_DTYPE
    assert back.tobytes() == arr.tobytes()
    assert arr["side"].tolist() == [0, 0, 1, -1]
    assert arr["flags"].tolist() == [0, 0, 1, 0]
    assert hc.venues.PRICE_KINDS[arr["price_kind"][2]] == "bankruptcy"


def test_multi_symbol_files_need_a_choice(tmp_path):
    recs = [*RECS, {"ts": 999, "venue": "okx", "symbol": "ETHUSDT", "kind": "price", "price": 3000.0}]
    p = tmp_path / "mixed.jsonl"
    write_lines(p, [json.dumps(r) for r in recs])
    with pytest.raises(ValueError, match="several symbols"):
        hc.read_events(p)
    by = hc.read_events_by_symbol(p)
    assert set(by) == {"BTCUSDT", "ETHUSDT"} and len(by["BTCUSDT"]) == 4
    assert len(hc.read_events(p, symbol="ETHUSDT")) == 1


def test_unsorted_input_is_sorted_stably(tmp_path):
    p = tmp_path / "u.jsonl"
    write_lines(p, [json.dumps(r) for r in reversed(RECS)])
    assert np.all(np.diff(hc.read_events(p)["ts"]) >= 0)


@pytest.mark.parametrize(
    "bad,msg",
    [
        ('{"ts": 5, "venue": "binance", "symbol": "BTCUSDT", "kind": "price", "price": 1', "invalid JSON"),
        ('{"ts": 5, "venue": "nowhere", "symbol": "BTCUSDT", "kind": "price", "price": 1}', "unknown venue"),
        ('{"ts": 5, "venue": "binance", "symbol": "BTCUSDT", "kind": "trade", "price": 1}', "unknown kind"),
        ('{"ts": 5, "venue": "binance", "symbol": "BTCUSDT", "kind": "price", "price": "NaN"}', "finite"),
        ('{"ts": 5, "venue": "binance", "symbol": "BTCUSDT", "kind": "price"}', "price must be a number"),
        ('{"ts": -5, "venue": "binance", "symbol": "BTCUSDT", "kind": "price", "price": 1}', "ts must be"),
        ('{"ts": 5, "venue": "binance", "symbol": "BTCUSDT", "kind": "liquidation", "side": "buy", '
         '"price": 1, "notional_usd": 2}', "side"),
        ('[1, 2, 3]', "JSON object"),
    ],
)
def test_malformed_line_names_its_line(tmp_path, bad, msg):
    p = tmp_path / "bad.jsonl"
    write_lines(p, [json.dumps(RECS[0]), json.dumps(RECS[1]), bad, json.dumps(RECS[3])])
    with pytest.raises(hc.EventsFormatError, match=msg) as info:
        hc.read_events(p)
    assert info.value.line == 3
    assert ":3:" in str(info.value)
    # skip mode keeps the other lines and logs the bad one
    assert len(hc.read_events(p, errors="skip")) == 3


def test_truncated_gzip_is_a_clear_error(tmp_path):
    p = tmp_path / "t.jsonl.gz"
    write_lines(p, [json.dumps(RECS[i % 4]) for i in range(2000)], gz=True)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(hc.EventsFormatError, match="truncated"):
        hc.read_events(p)
    part = hc.read_events(p, errors="skip")
    assert 0 < len(part) < 2000


def test_real_recording_reads(shared_data):
    by = hc.read_events_by_symbol(shared_data / "okx_sol_doge_hype_2026-03-04.jsonl")
    assert set(by) == {"SOL-USDT-SWAP", "DOGE-USDT-SWAP", "HYPE-USDT-SWAP"}
    sol = by["SOL-USDT-SWAP"]
    assert int((sol["kind"] == 2).sum()) == 1052 and int((sol["kind"] == 0).sum()) == 25
    hl = hc.read_events(shared_data / "hyperliquid_btc_2025-12_2026-03.jsonl", symbol="BTC")
    assert int((hl["kind"] == 1).sum()) == 2094
