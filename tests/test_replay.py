"""Replay with snapshots, the OI proxy, the progress bar and the command line."""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated

import heatcore as hc
from heatcore.evaluate import register_cli
from heatcore.events import KIND_LIQUIDATION, KIND_OI, KIND_PRICE
from heatcore.replay import (
    CADENCES,
    Progress,
    add_oi_proxy,
    default_step,
    group_by_asset,
    iter_replay,
    parse_seconds,
    snapshot_cadence,
)
from heatcore.venues import venue_id

OKX = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "okx_sol_doge_hype_2026-03-04.jsonl"


@pytest.fixture(scope="module")
def market() -> hc.sim.SimResult:
    return simulated(3, 11, ("binance", "okx"))


def _liq_price_only(events: np.ndarray) -> np.ndarray:
    return events[events["kind"] != KIND_OI].copy()


def test_default_step_and_durations() -> None:
    assert default_step(90_000) == 50
    assert default_step(90.11) == 0.05
    assert default_step(0.093) == 5e-05
    assert default_step(32.4) == 0.02
    with pytest.raises(ValueError):
        default_step(float("nan"))
    assert parse_seconds("5min") == 300 and parse_seconds("1h") == 3600 and parse_seconds(60) == 60
    for bad in ("soon", "-5", 0):
        with pytest.raises(ValueError):
            parse_seconds(bad)


def test_replay_snapshots_on_an_epoch_clock(market: hc.sim.SimResult) -> None:
    ev = market.events
    res = hc.replay(ev, every=600, symbol=market.symbol, step=market.step)
    ts = [s.ts for s in res.snapshots]
    assert all(t % 600_000 == 0 for t in ts)
    assert ts == sorted(ts) and np.all(np.diff(ts) == 600_000)
    assert ts[0] > ev["ts"][0] and ts[-1] >= ev["ts"][-1]
    assert res.counts["liquidation"] == int(np.sum(ev["kind"] == KIND_LIQUIDATION))
    # The final state equals one plain ingest of the stream.
    ref = hc.Engine(market.symbol, market.step, venues=res.engine.venues)
    ref.ingest(ev)
    assert np.array_equal(ref.heatmap().long, res.engine.heatmap().long)
    assert np.array_equal(ref.forecast(3600).short, res.engine.forecast(3600).short)
    # A snapshot reflects only earlier events: the map at snapshot k equals an
    # engine that ingested events before its time.
    k = len(res.snapshots) // 2
    part = hc.Engine(market.symbol, market.step, venues=res.engine.venues)
    part.ingest(ev[ev["ts"] < res.snapshots[k].ts])
    snap = res.snapshots[k]
    assert np.allclose(part.heatmap().long, snap.heatmap.long[:part.heatmap().long.size])
    f = part.forecast(3600)
    assert np.allclose(f.long, snap.forecast.long[:f.long.size])


def test_max_snapshots_lengthens_the_cadence(market: hc.sim.SimResult) -> None:
    ev = market.events   # 3 simulated hours
    span_s = (int(ev["ts"][-1]) - int(ev["ts"][0])) / 1000
    # 60 s would give ~180 snapshots; capped at 20, the cadence becomes the shortest
    # of the listed cadences that fits
    cadence = snapshot_cadence(ev, 60, max_snapshots=20)
    assert cadence > 60 and span_s / cadence <= 20
    shorter = [c for c in CADENCES if 60 < c < cadence]
    assert all(span_s / c > 20 for c in shorter)
    res = hc.replay(ev, every=60, max_snapshots=20, what=("map",), symbol=market.symbol,
                    step=market.step)
    assert res.every_s == cadence
    assert 0 < len(res.snapshots) <= 21   # the epoch clock may add one at the end
    assert all(s.ts % round(cadence * 1000) == 0 for s in res.snapshots)
    # a cap the stream fits under changes nothing
    assert snapshot_cadence(ev, 600, max_snapshots=10_000) == 600
    assert hc.replay(ev, every=600, max_snapshots=10_000, what=("map",), symbol=market.symbol,
                     step=market.step).every_s == 600
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_snapshots"):
            snapshot_cadence(ev, 60, max_snapshots=bad)


def test_iter_replay_is_lazy_and_validates(market: hc.sim.SimResult) -> None:
    it = iter_replay(market.events, every="30min", what=("map",), symbol=market.symbol)
    first = next(it)
    assert first.heatmap is not None and first.forecast is None
    with pytest.raises(ValueError):
        next(iter_replay(market.events, what=("nope",), symbol=market.symbol))
    with pytest.raises(TypeError):
        next(iter_replay(np.zeros(4), symbol=market.symbol))


def test_oi_proxy_only_where_oi_is_missing(market: hc.sim.SimResult) -> None:
    ev = _liq_price_only(market.events)
    # keep binance's OI, drop okx's
    keep = market.events[(market.events["kind"] == KIND_OI)
                         & (market.events["venue"] == venue_id("binance"))]
    from heatcore.replay import concat_events
    ev = concat_events([ev, keep])
    ev = ev[np.argsort(ev["ts"], kind="stable")]
    out, info = add_oi_proxy(ev, every_s=900)
    added = out[(out["kind"] == KIND_OI) & (out["venue"] == venue_id("okx"))]
    assert set(info.venues) == {"okx"}
    assert added.size == info.venues["okx"] and added.size > 0
    assert np.all(np.diff(out["ts"]) >= 0)
    # constant level with turnover: readings alternate (1 - dt/turnover) * OI and OI
    assert added["value"].max() == pytest.approx(1e8)
    assert added["value"].min() == pytest.approx(1e8 * (1 - 900 / 86400), rel=1e-6)
    # at most one reading pair per 15 min bucket, each right after a price record
    pos = np.flatnonzero((out["kind"] == KIND_OI) & (out["venue"] == venue_id("okx")))
    assert np.all(out["kind"][pos[::2] - 1] == KIND_PRICE) or np.all(
        np.isin(out["kind"][pos - 1], (KIND_PRICE, KIND_OI)))
    # built from prices only: removing liquidations does not change it
    no_liq = ev[ev["kind"] != KIND_LIQUIDATION]
    out2, _ = add_oi_proxy(no_liq, venues=[venue_id("okx")], every_s=900)
    a = out[out["kind"] == KIND_OI]
    b = out2[out2["kind"] == KIND_OI]
    assert np.array_equal(a, b)
    # the engine builds a map from it
    eng = hc.Engine(market.symbol, market.step, venues=("binance", "okx"))
    eng.ingest(out)
    assert sum(eng.heatmap("okx").total()) > 0
    assert "turnover proxy for okx" in info.describe()
    same, none = add_oi_proxy(ev, method="none")
    assert same is ev and none.method == "none"


def test_group_by_asset_merges_venue_symbols() -> None:
    a = np.zeros(2, dtype=hc.EVENT_DTYPE)
    a["ts"] = [1, 5]
    b = np.zeros(2, dtype=hc.EVENT_DTYPE)
    b["ts"] = [2, 3]
    g = group_by_asset({"BTCUSDT": a, "BTC": b, "ETH-USDT-SWAP": a[:1]})
    assert set(g) == {"BTC", "ETH"}
    assert g["BTC"][1]["ts"].tolist() == [1, 2, 3, 5]
    assert g["BTC"][1].dtype == hc.EVENT_DTYPE


def test_progress_bar_only_on_a_terminal() -> None:
    buf = io.StringIO()
    p = Progress(100, "x", stream=buf)
    p.update(50)
    p.close()
    assert buf.getvalue() == ""
    buf = io.StringIO()
    p = Progress(100, "x", stream=buf, enabled=True)
    p.update(50)
    p.close()
    assert "100.0%" in buf.getvalue() and buf.getvalue().endswith("\n")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="heatcore")
    sub = parser.add_subparsers(dest="cmd", required=True)
    register_cli(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_evaluate_json_on_gz(market: hc.sim.SimResult, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stream.jsonl.gz"
    hc.write_events(path, market.events, market.symbol)
    with gzip.open(path, "rt") as fh:
        assert json.loads(fh.readline())["symbol"] == market.symbol
    assert _cli(["evaluate", str(path), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"BTC"}
    d = out["BTC"]
    assert d["step"] == 50.0 and d["n_liquidations"] > 0 and "per_venue" in d
    assert _cli(["evaluate", str(path), "--symbol", "BTCUSDT", "--step", "100",
                 "--no-progress"]) == 0
    md = capsys.readouterr().out
    assert "| uniform |" in md and "step 100" in md


def test_cli_replay_png(market: hc.sim.SimResult, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "s.jsonl"
    hc.write_events(path, market.events, market.symbol)
    out = tmp_path / "map.png"
    assert _cli(["replay", str(path), "--out", str(out)]) == 0
    assert out.stat().st_size > 5000


@pytest.mark.skipif(not OKX.exists(), reason="../shared/data is absent")
def test_cli_on_real_multi_symbol_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _cli(["evaluate", str(OKX), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"SOL", "DOGE", "HYPE"}
    assert _cli(["replay", str(OKX), "--out", str(tmp_path / "m.png")]) == 2  # several assets
    capsys.readouterr()
