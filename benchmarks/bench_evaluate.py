"""Evaluation speed on a one-million-event stream (22 venues, simulated).

Run: PYTHONPATH=src python3 -m pytest benchmarks/bench_evaluate.py --benchmark-only
The baseline in the same group is one plain ``Engine.ingest`` of the same stream:
``evaluate`` runs two engines (learned, static) plus the forecast snapshots, so
its ratio to the baseline is the price of scoring.
"""

from __future__ import annotations

import numpy as np
import pytest

import heatcore as hc
from heatcore.events import KIND_LIQUIDATION
from heatcore.replay import as_events
from heatcore.sim import simulate


@pytest.fixture(scope="module")
def stream() -> tuple[np.ndarray, float]:
    res = simulate(hours=58, seed=5)
    ev = as_events(res.events)
    assert ev.size >= 1_000_000
    return ev, res.step


@pytest.mark.benchmark(group="evaluate-1M")
def test_ingest_baseline(benchmark, stream) -> None:
    ev, step = stream

    def run() -> dict:
        eng = hc.Engine("BTCUSDT", step)
        return eng.ingest(ev)

    counts = benchmark.pedantic(run, rounds=1, iterations=1)
    assert counts["liquidation"] == int(np.sum(ev["kind"] == KIND_LIQUIDATION))


@pytest.mark.benchmark(group="evaluate-1M")
def test_evaluate_1m(benchmark, stream) -> None:
    ev, step = stream
    rep = benchmark.pedantic(lambda: hc.evaluate(ev, symbol="BTCUSDT", step=step, progress=False),
                             rounds=1, iterations=1)
    d = rep.to_dict()
    liq_ts = ev["ts"][ev["kind"] == KIND_LIQUIDATION]
    first_snapshot = (int(ev["ts"][0]) // 60_000 + 1) * 60_000
    assert d["n_liquidations"] == int(np.sum(liq_ts >= first_snapshot))
    assert d["top_decile_precision_uniform"] == pytest.approx(0.1)
    assert d["loglik_static"] > d["loglik_uniform"]


def _busy(generative_map: bool) -> hc.Engine:
    res = simulate(hours=12, seed=9)
    eng = hc.Engine("BTCUSDT", res.step)
    eng.configure_forecast(generative_map=generative_map)
    eng.ingest(as_events(res.events))
    return eng


@pytest.fixture(scope="module")
def busy_engine() -> hc.Engine:
    return _busy(True)


@pytest.fixture(scope="module")
def busy_engine_exposure_map() -> hc.Engine:
    return _busy(False)


@pytest.mark.benchmark(group="forecast-22-venues")
def test_heatmap_baseline(benchmark, busy_engine) -> None:
    m = benchmark(busy_engine.heatmap)
    assert m.long.sum() > 0


@pytest.mark.benchmark(group="forecast-22-venues")
def test_forecast_all_venues(benchmark, busy_engine) -> None:
    """What a bot calls every minute: the summed forecast and every venue's."""
    def run() -> list:
        return [busy_engine.forecast(3600.0)] + [busy_engine.forecast(3600.0, v)
                                                 for v in busy_engine.venues]
    out = benchmark(run)
    total = out[0]
    assert np.allclose(total.long, sum(f.long for f in out[1:]))
    assert total.long.sum() > 0 and total.short.sum() > 0


@pytest.mark.benchmark(group="forecast-22-venues")
def test_forecast_all_venues_exposure_map(benchmark, busy_engine_exposure_map) -> None:
    """The same with every venue's forecast reading the exposure book's map (the
    generated open book's cost is the difference)."""
    eng = busy_engine_exposure_map
    out = benchmark(lambda: [eng.forecast(3600.0)] + [eng.forecast(3600.0, v) for v in eng.venues])
    assert np.allclose(out[0].long, sum(f.long for f in out[1:]))


@pytest.mark.benchmark(group="evaluate-1M")
def test_evaluate_file_1m(benchmark, stream, tmp_path_factory) -> None:
    """The command-line path: read a 1M-event JSONL.gz, then evaluate."""
    from heatcore.evaluate import evaluate_file

    ev, step = stream
    path = tmp_path_factory.mktemp("bench") / "stream.jsonl.gz"
    hc.write_events(path, ev, "BTCUSDT")
    reports = benchmark.pedantic(lambda: evaluate_file(path, progress=False), rounds=1,
                                 iterations=1)
    d = reports["BTC"].to_dict()
    assert d["step"] == step and d["n_liquidations"] > 0
