"""heatcore.plot: the numbers behind the figures, and figures with the expected
axes, labels, image data and price line; the interactive HTML page, structurally
and (where a Chromium is installed) rendered in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated

import heatcore as hc
from heatcore import plot
from heatcore.venues import BANDS, band_of

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.colors import BoundaryNorm, LogNorm, PowerNorm  # noqa: E402

VENUES = ("binance", "bybit", "okx", "hyperliquid")


@pytest.fixture(scope="module")
def market() -> hc.sim.SimResult:
    return simulated(3, 4, VENUES)


@pytest.fixture(scope="module")
def replayed(market: hc.sim.SimResult) -> hc.replay.ReplayResult:
    return hc.replay(market.events, every="10min", what=("map",), symbol=market.symbol,
                     step=market.step, oi_proxy="none", progress=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _main_axes(fig):
    """The axes that are not colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# -- numbers ----------------------------------------------------------------------

def test_history_grid_holds_every_snapshot(replayed) -> None:
    times, prices, grid = plot.history_grid(replayed)
    snaps = [s for s in replayed.snapshots if s.heatmap is not None]
    assert times.tolist() == [s.ts for s in snaps]
    assert grid.shape == (prices.size, len(snaps))
    assert np.all(np.diff(prices) > 0)
    for j, s in enumerate(snaps):
        total = s.heatmap.long.sum() + s.heatmap.short.sum()
        assert grid[:, j].sum() == pytest.approx(total, rel=1e-12)
        if s.heatmap.prices.size:
            # each snapshot lands on its own bins
            k = np.searchsorted(prices, s.heatmap.prices[0])
            assert np.allclose(prices[k:k + s.heatmap.prices.size], s.heatmap.prices)
    _, _, only_long = plot.history_grid(replayed, side="long")
    assert only_long.sum() == pytest.approx(sum(s.heatmap.long.sum() for s in snaps))
    with pytest.raises(ValueError):
        plot.history_grid(replayed, side="up")
    with pytest.raises(ValueError, match="no map snapshots"):
        plot.history_grid([])


def test_map_by_band_sums_to_the_map_and_leaves_the_engine_alone(replayed) -> None:
    eng = replayed.engine
    before = eng.heatmap()
    mixes = {(v, s): eng.leverage_mix(v, s, which="map")[1].copy() for v in eng.venues
             for s in ("long", "short")}
    prices, long, short = plot.map_by_band(eng)
    assert long.shape == (len(BANDS), prices.size) == short.shape
    assert np.allclose(long.sum(axis=0), before.long, rtol=1e-9, atol=1e-6)
    assert np.allclose(short.sum(axis=0), before.short, rtol=1e-9, atol=1e-6)
    assert np.all(long >= -1e-9) and np.all(short >= -1e-9)
    # each band sits at its own distance: higher leverage, closer to price (longs below)
    p_okx, l1, s1 = plot.map_by_band(eng, "okx")
    ref = eng.heatmap("okx").price
    dist_long = [np.average(ref - p_okx, weights=l1[b]) / ref for b in range(len(BANDS)) if l1[b].sum() > 0]
    dist_short = [np.average(p_okx - ref, weights=s1[b]) / ref for b in range(len(BANDS)) if s1[b].sum() > 0]
    assert len(dist_long) == len(BANDS) == len(dist_short)
    assert np.all(np.diff(dist_long) < 0) and np.all(np.diff(dist_short) < 0), (dist_long, dist_short)
    assert dist_long[0] > 4 * dist_long[-1], dist_long
    after = eng.heatmap()
    assert np.array_equal(after.long, before.long) and np.array_equal(after.short, before.short)
    for key, m in mixes.items():
        assert np.array_equal(eng.leverage_mix(*key, which="map")[1], m)


# -- time x price -------------------------------------------------------------------

@pytest.mark.parametrize("scale,norm", [("log", LogNorm), ("quantile", BoundaryNorm),
                                        ("sqrt", PowerNorm)])
def test_heatmap_figure(replayed, market, scale, norm) -> None:
    fig = plot.plot_heatmap(replayed, market.events, scale=scale)
    assert isinstance(fig, mpl.figure.Figure)
    axes = _main_axes(fig)
    assert len(axes) == 1 and len(fig.axes) == 2  # the map and its colorbar
    ax = axes[0]
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "price"
    assert "BTCUSDT" in ax.get_title()
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(mesh) == 1 and isinstance(mesh[0].norm, norm)
    data = np.ma.filled(np.ma.asarray(mesh[0].get_array()), 0.0)
    assert data.size > 0 and np.count_nonzero(data > 0) > 0.1 * data.size
    line = [ln for ln in ax.get_lines() if ln.get_label() == "price"]
    assert len(line) == 1
    px = market.events["price"][market.events["kind"] == 0]
    assert len(line[0].get_ydata()) == px.size
    # dots: long and short apart, area growing with notional
    dots = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert set(dots) == {"long liquidated", "short liquidated"}
    liq = market.events[market.events["kind"] == 2]
    assert len(dots["long liquidated"].get_offsets()) == int((liq["side"] == 1).sum())
    assert len(dots["short liquidated"].get_offsets()) == int((liq["side"] == -1).sum())
    sizes = dots["long liquidated"].get_sizes()
    notional = liq["value"][liq["side"] == 1]
    assert np.corrcoef(np.argsort(np.argsort(sizes)), np.argsort(np.argsort(notional)))[0, 1] > 0.9


def test_log_scale_keeps_small_clusters_visible(replayed) -> None:
    """The log scale spreads the map's values over the colours: with a linear scale
    most cells would sit in the lowest few colours."""
    _times, _prices, grid = plot.history_grid(replayed)
    pos = grid[grid > 0]
    log_norm = plot._scale_norm(grid, "log")
    lin_norm = plot._scale_norm(grid, "linear")
    c_log = np.clip(np.ma.filled(log_norm(pos), 0.0), 0, 1)
    c_lin = np.clip(np.ma.filled(lin_norm(pos), 0.0), 0, 1)
    assert np.median(c_log) > np.median(c_lin)
    assert np.std(c_log) > 0.1 and np.std(c_lin) > 0
    with pytest.raises(ValueError, match="scale"):
        plot._scale_norm(grid, "cubic")


def test_heatmap_without_events_uses_snapshot_prices(replayed, tmp_path: Path) -> None:
    path = tmp_path / "h.png"
    fig = plot.plot_heatmap(replayed, path=path, side="short")
    assert path.stat().st_size > 10_000
    ax = _main_axes(fig)[0]
    line = [ln for ln in ax.get_lines() if ln.get_label() == "price"]
    assert len(line) == 1 and len(line[0].get_ydata()) == len(replayed.snapshots)
    assert not [c for c in ax.collections if isinstance(c, PathCollection)]


def test_plot_history_compat(replayed, market, tmp_path: Path) -> None:
    times, prices, grid = plot.history_grid(replayed)
    liq = market.events[market.events["kind"] == 2]
    px = market.events[market.events["kind"] == 0]
    out = tmp_path / "hist.png"
    plot.plot_history(out, times, prices, grid, (px["ts"], px["price"]),
                      liquidations=(liq["ts"], liq["price"], liq["side"]))
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="shape"):
        plot.heatmap_figure(times, prices, grid[:, :-1])


# -- the current map ----------------------------------------------------------------

def test_profile_by_band_and_side(replayed) -> None:
    eng = replayed.engine
    fig = plot.plot_profile(eng, window_pct=0.05, max_rows=10_000)
    axes = fig.axes
    assert len(axes) == 1
    ax = axes[0]
    assert ax.get_ylabel() == "price" and "longs" in ax.get_xlabel() and "shorts" in ax.get_xlabel()
    m = eng.heatmap()
    sel = (m.prices >= m.price * 0.95) & (m.prices <= m.price * 1.05)
    widths = np.array([p.get_width() for p in ax.patches])
    assert widths.size > 0
    # longs drawn to the left, shorts to the right; together they are the map in the window
    assert -widths[widths < 0].sum() == pytest.approx(m.long[sel].sum(), rel=1e-6)
    assert widths[widths > 0].sum() == pytest.approx(m.short[sel].sum(), rel=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == list(plot.BAND_LABELS)
    price = [ln for ln in ax.get_lines() if ln.get_gid() == "price"]
    assert len(price) == 1 and price[0].get_ydata()[0] == pytest.approx(m.price)


def test_leverage_mix_prior_vs_learned(replayed) -> None:
    eng = replayed.engine
    fig = plot.plot_leverage_mix(eng)
    axes = fig.axes
    assert len(axes) == 2
    learning = [v for v in eng.venues if eng.learner_diagnostics(v)["long"]["n_events"]
                or eng.learner_diagnostics(v)["short"]["n_events"]]
    assert learning
    assert [t.get_text() for t in axes[1].get_xticklabels()] == learning
    for ax, side in zip(axes, ("long", "short"), strict=True):
        assert side in ax.get_ylabel()
        # two stacks per venue (prior, learned) of len(BANDS) bars, each stack summing to 1
        assert len(ax.patches) == 2 * len(BANDS) * len(learning)
        tops = {}
        for p in ax.patches:
            x = round(p.get_x(), 6)
            tops[x] = max(tops.get(x, 0.0), p.get_y() + p.get_height())
        assert len(tops) == 2 * len(learning)
        assert np.allclose(list(tops.values()), 1.0)
    # the learned stack is the learned mix, by band
    v = learning[0]
    w = eng.leverage_mix(v, "long")[1]
    bands = np.array([band_of(float(t)) for t in eng.tiers])
    want = [w[bands == b].sum() / w.sum() for b in range(len(BANDS))]
    x_learned = 0.2  # venue 0, right-hand stack
    got = [p.get_height() for p in axes[0].patches if abs(p.get_x() + p.get_width() / 2 - x_learned) < 1e-9]
    assert np.allclose(got, want)


def test_cascade_ladder(replayed) -> None:
    eng = replayed.engine
    fig = plot.plot_cascade(eng, levels=6)
    main = _main_axes(fig)
    assert len(main) == 2 and len(fig.axes) == 3  # two sides and the confidence colorbar
    n = 0
    for ax, side in zip(main, ("long", "short"), strict=True):
        rows = eng.cascade(side, 6)
        assert ax.get_ylabel() == "price" and "probability" in ax.get_xlabel()
        assert ax.get_xscale() == "log"
        dots = [c for c in ax.collections if c.get_gid() == f"{side} levels"]
        if rows.size:
            assert len(dots) == 1
            xy = dots[0].get_offsets()
            assert np.allclose(xy[:, 0], np.maximum(rows["probability"], plot.CASCADE_P_FLOOR))
            assert np.allclose(xy[:, 1], rows["price"])
            assert np.allclose(dots[0].get_array(), rows["confidence"])
            # area grows with the USD at the level
            order = np.argsort(rows["notional"])
            assert np.all(np.diff(dots[0].get_sizes()[order]) >= 0)
        assert len(ax.texts) == (rows.size if rows.size else 1)
        assert any(ln.get_gid() == "price" for ln in ax.get_lines())
        n += rows.size
    assert n > 0


def test_map_forecast_panels(replayed) -> None:
    eng = replayed.engine
    f = eng.forecast(3600, window_pct=0.05)
    fig = plot.plot_map_forecast(eng.heatmap(), f)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "price"
    assert sum(p.get_height() for p in fig.axes[1].patches) == pytest.approx(
        f.long.sum() + f.short.sum(), rel=1e-9)


# -- evaluation -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(market) -> hc.EvaluationReport:
    return hc.evaluate(market.events, symbol=market.symbol, step=market.step, progress=False)


def test_evaluation_figures(report, tmp_path: Path) -> None:
    fig = plot.plot_skill(report)
    ax = fig.axes[0]
    assert {ln.get_label() for ln in ax.get_lines()} >= {"learned", "static", "near"}
    gain = np.cumsum(report.timeline["learned"])
    learned = next(ln for ln in ax.get_lines() if ln.get_label() == "learned")
    assert np.allclose(learned.get_ydata(), gain)
    fig = plot.plot_scores(report)
    assert len(fig.axes) == 2
    n_scopes = 1 + len(report.per_venue)
    assert len(fig.axes[1].patches) == 4 * n_scopes
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert report.overall["top_decile_precision_learned"] == pytest.approx(heights[0])
    fig = plot.plot_report_mix(report)
    assert len(fig.axes) == 2
    paths = report.plot(tmp_path / "rep.png")
    assert [os.path.basename(p) for p in paths] == ["rep_skill.png", "rep_scores.png", "rep_mix.png"]
    assert all(os.path.getsize(p) > 5000 for p in paths)


# -- interactive HTML -------------------------------------------------------------------

def _write_html(replayed, market, tmp_path: Path) -> Path:
    pytest.importorskip("plotly")
    path = tmp_path / "map.html"
    fig = plot.heatmap_html(replayed, market.events, path)
    kinds = [t.type for t in fig.data]
    assert kinds == ["heatmap", "scatter", "scatter", "scatter"]
    assert [t.name for t in fig.data] == ["map", "price", "long liquidated", "short liquidated"]
    return path


def test_html_structure(replayed, market, tmp_path: Path) -> None:
    path = _write_html(replayed, market, tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<html") or text.lstrip().lower().startswith("<!doctype")
    assert "Plotly.newPlot" in text
    assert not re.search(r"<script[^>]*\bsrc=", text)  # plotly.js embedded: works offline
    import plotly.io as pio
    fig = plot.heatmap_html(replayed, market.events)
    z = np.array(fig.data[0].z, dtype=float)
    _, _, grid = plot.history_grid(replayed)
    # colour = log10 of USD per bin (zeros left blank), the hover keeps the USD
    custom = np.array(fig.data[0].customdata, dtype=float)
    assert custom.shape == z.shape and np.isfinite(z).sum() > 0.1 * z.size
    fin = np.isfinite(z)
    # rounded for a small page: 3 decimals of log10 (< 0.7 %), whole USD, float32
    assert np.all(np.abs(10 ** z[fin] - custom[fin]) <= 0.01 * custom[fin] + 1.0)
    assert np.all(custom[~fin] == 0) and custom.max() <= grid.max() * (1 + 1e-6) + 0.5  # float32
    assert pio.to_json(fig)  # serialisable


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(replayed, market, tmp_path: Path) -> None:
    path = _write_html(replayed, market, tmp_path)
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
           f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*cmd, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    # plotly.js ran: it drew the plot's SVG, the heatmap layer and the legend
    assert 'class="main-svg"' in dom and "heatmaplayer" in dom
    for name in ("price", "long liquidated", "short liquidated"):
        assert f'data-unformatted="{name}"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd, "--window-size=1000,700", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = plt.imread(shot)[..., :3]
    colours = np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert colours.shape[0] > 200  # a drawn heatmap, not a blank page


def test_readme_pictures_exist_and_are_small() -> None:
    """Every picture the README shows is committed under docs/, under ~150 kB, and
    made by docs/make_figures.py."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    pictures = re.findall(r"\((docs/[\w.-]+\.png)\)", readme)
    assert len(pictures) >= 6
    maker = (root / "docs" / "make_figures.py").read_text(encoding="utf-8")
    for rel in pictures:
        path = root / rel
        assert path.is_file(), rel
        assert 5_000 < path.stat().st_size < 150_000, (rel, path.stat().st_size)
        assert f'"{path.name}"' in maker, rel
        img = plt.imread(path)
        assert img.shape[0] > 300 and img.shape[1] > 600
