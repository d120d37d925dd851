"""Figures (optional extra ``heatcore[plot]``: matplotlib; ``heatcore[html]``: plotly).

Every ``plot_*`` function returns the matplotlib ``Figure`` (nothing is shown or
written unless asked: ``path=`` saves a PNG and closes the figure), so users can
adjust titles, limits or colours before saving.

* :func:`plot_heatmap` - time x price map from a replay, with the price line and
  the observed liquidations (dots sized by notional, long and short apart);
* :func:`plot_profile` - the current map by price, split by leverage band and side;
* :func:`plot_leverage_mix` - the learned leverage mix per venue against its prior;
* :func:`plot_cascade` - the cascade ladder (levels, probability, confidence);
* :func:`plot_skill`, :func:`plot_scores`, :func:`plot_report_mix` - the
  evaluation's figures (:class:`heatcore.EvaluationReport`);
* :func:`heatmap_html` - the time x price map as a self-contained interactive
  HTML page (plotly).

The numbers behind the figures come from functions that need numpy only:
:func:`history_grid` and :func:`map_by_band`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .events import KIND_LIQUIDATION, KIND_PRICE
from .venues import BANDS, band_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .engine import Engine, Forecast, HeatMap
    from .evaluate import EvaluationReport
    from .replay import ReplayResult, Snapshot

__all__ = [
    "SCALES",
    "heatmap_figure",
    "heatmap_html",
    "history_grid",
    "map_by_band",
    "plot_cascade",
    "plot_heatmap",
    "plot_history",
    "plot_leverage_mix",
    "plot_map_forecast",
    "plot_profile",
    "plot_report_mix",
    "plot_scores",
    "plot_skill",
    "require_matplotlib",
    "require_plotly",
    "save",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Colour scalings of the heatmaps: ``log`` (default) and ``quantile`` keep one big
#: cluster from washing out the rest; ``sqrt`` and ``linear`` are plain.
SCALES = ("log", "quantile", "sqrt", "linear")

LONG_COLOR = "#2fd18b"   # long positions liquidated (price fell)
SHORT_COLOR = "#ff4fd8"  # short positions liquidated (price rose)
PRICE_COLOR = "#37c6ff"
BAND_LABELS = tuple(f"{lo:g}-{hi:g}x" for lo, hi in BANDS)


def require_matplotlib(*, headless: bool = False) -> Any:
    """Import ``matplotlib.pyplot``, or explain how to get it.

    matplotlib picks its own backend (Agg where there is no display); ``headless``
    forces Agg (the command line, which only writes files)."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError('plotting needs matplotlib: pip install "heatcore[plot]"') from None
    if headless:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def require_plotly() -> Any:
    """Import plotly's graph objects, or explain how to get them."""
    try:
        import plotly.graph_objects as go
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError('interactive HTML needs plotly: pip install "heatcore[html]"') from None
    return go


def save(fig: Figure, path: PathLike, *, dpi: float = 110) -> str:
    """Write ``fig`` as an image (format from the extension) and close it. Returns the path."""
    plt = require_matplotlib()
    out = os.fspath(path)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _finish(fig: Any, path: PathLike | None) -> Any:
    if path is not None:
        save(fig, path)
    return fig


# -- the numbers ----------------------------------------------------------------------

def history_grid(snapshots: Iterable[Snapshot] | ReplayResult, *, side: str = "both"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The map snapshots of a replay on one price axis.

    Parameters
    ----------
    snapshots : ReplayResult or iterable of Snapshot
        Snapshots with a map (``hc.replay(..., what=("map",))`` or the default).
    side : {"both", "long", "short"}
        Which positions' levels to sum.

    Returns
    -------
    (times_ms, prices, grid)
        Snapshot times (int64), bin centres (ascending) and USD per bin and
        snapshot, shape ``(len(prices), len(times_ms))`` (0 where a snapshot's grid
        did not reach).
    """
    if side not in ("both", "long", "short"):
        raise ValueError("side must be 'both', 'long' or 'short'")
    snaps = _snapshots(snapshots)
    maps = [(int(s.ts), s.heatmap) for s in snaps if s.heatmap is not None]
    if not maps:
        raise ValueError("no map snapshots (replay with what=('map', ...))")
    step = next((m.step for _, m in maps if m.prices.size > 1), 0.0)
    sized = [m for _, m in maps if m.prices.size]
    if not sized or step <= 0:
        return (np.array([t for t, _ in maps], dtype=np.int64), np.zeros(0),
                np.zeros((0, len(maps))))
    k_lo = min(round(float(m.prices[0]) / step) for m in sized)
    k_hi = max(round(float(m.prices[-1]) / step) for m in sized)
    prices = (k_lo + np.arange(k_hi - k_lo + 1, dtype=np.float64)) * step
    grid = np.zeros((prices.size, len(maps)))
    for j, (_, m) in enumerate(maps):
        if not m.prices.size:
            continue
        z = m.long + m.short if side == "both" else (m.long if side == "long" else m.short)
        k0 = round(float(m.prices[0]) / step) - k_lo
        grid[k0:k0 + z.size, j] = z
    return np.array([t for t, _ in maps], dtype=np.int64), prices, grid


def map_by_band(engine: Engine, venue: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The current map split by leverage band (:data:`heatcore.venues.BANDS`).

    The map is linear in each venue's tier weights, so the share of one band is the
    map of a copy of the engine whose mixes keep only that band's tiers, scaled by
    the band's weight. The engine itself is not changed.

    Returns
    -------
    (prices, long, short)
        ``long`` and ``short`` have shape ``(len(BANDS), len(prices))`` and sum over
        bands to ``engine.heatmap(venue)``.
    """
    ref = engine.heatmap(venue)
    bands = np.array([band_of(float(t)) for t in engine.tiers])
    long = np.zeros((len(BANDS), ref.prices.size))
    short = np.zeros_like(long)
    venues = list(engine.venues) if venue is None else [venue]
    weights = {(v, s): engine.leverage_mix(v, s, which="map")[1] for v in venues
               for s in ("long", "short")}
    copy = pickle.loads(pickle.dumps(engine))
    for b in range(len(BANDS)):
        keep = bands == b
        if not keep.any():
            continue
        share = {}
        for v in venues:
            for s in ("long", "short"):
                w = weights[(v, s)]
                total = float(w.sum())
                part = np.where(keep, w, 0.0)
                share[(v, s)] = float(part.sum()) / total if total > 0 else 0.0
                copy.set_mix(v, s, part if part.sum() > 0 else keep.astype(float))
        for v in venues:
            m = copy.heatmap(v)
            if m.prices.size != ref.prices.size:  # pragma: no cover - one grid per engine
                raise RuntimeError("venue maps are not on the engine's grid")
            long[b] += share[(v, "long")] * m.long
            short[b] += share[(v, "short")] * m.short
    return ref.prices, long, short


def _snapshots(result: Any) -> list[Any]:
    return list(getattr(result, "snapshots", result))


def _scale_norm(z: np.ndarray, scale: str) -> Any:
    from matplotlib import colors

    pos = z[np.isfinite(z) & (z > 0)]
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if pos.size:
        pos = pos[pos >= pos.max() * 1e-7]  # numerical dust is not a level
    if pos.size == 0:
        return colors.Normalize(0.0, 1.0)
    vmax = float(np.percentile(pos, 99.5))
    if scale == "log":
        vmin = max(float(np.percentile(pos, 2.0)), vmax * 1e-4)
        return colors.LogNorm(vmin=min(vmin, vmax / 10), vmax=vmax, clip=True)
    if scale == "quantile":
        edges = np.unique(np.percentile(pos, np.linspace(0, 100, 33)))
        if edges.size < 2:
            return colors.Normalize(0.0, float(edges[0]) or 1.0)
        return colors.BoundaryNorm(np.concatenate([[0.0], edges]), 256, clip=True)
    if scale == "sqrt":
        return colors.PowerNorm(0.5, vmin=0.0, vmax=vmax, clip=True)
    return colors.Normalize(0.0, vmax, clip=True)


def _dates(ts_ms: np.ndarray) -> np.ndarray:
    from matplotlib import dates

    return np.asarray(dates.date2num(np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]")))


def _liquidations(events: np.ndarray | None) -> np.ndarray | None:
    if events is None:
        return None
    return events[events["kind"] == KIND_LIQUIDATION]


def _price_line(events: np.ndarray | None, snaps: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    if events is not None:
        px = events[(events["kind"] == KIND_PRICE) & (events["price"] > 0)]
        if px.size:
            return px["ts"].astype(np.int64), px["price"].astype(float)
    rows = [(int(s.ts), float(s.heatmap.price)) for s in snaps
            if s.heatmap is not None and s.heatmap.price > 0]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    a = np.array(rows)
    return a[:, 0].astype(np.int64), a[:, 1]


def _dot_sizes(notional: np.ndarray) -> np.ndarray:
    """Marker areas proportional to notional: the median event is 8 pt^2, capped at 200."""
    q = np.asarray(notional, dtype=float)
    med = float(np.median(q[q > 0])) if np.any(q > 0) else 1.0
    return np.clip(8.0 * q / med, 2.0, 200.0)


# -- time x price ---------------------------------------------------------------------

def heatmap_figure(times_ms: Sequence[int] | np.ndarray, prices: np.ndarray, grid: np.ndarray,
                   price_line: tuple[np.ndarray, np.ndarray] | None = None,
                   liquidations: np.ndarray | None = None, *, scale: str = "log",
                   title: str = "heatcore liquidation map", window: tuple[float, float] | None = None,
                   cmap: str = "inferno", figsize: tuple[float, float] = (12, 6.5),
                   path: PathLike | None = None) -> Figure:
    """Time x price heatmap from arrays (see :func:`plot_heatmap` for a replay).

    Parameters
    ----------
    times_ms : array of int
        Snapshot times (ms, UTC): the columns of ``grid``.
    prices : array
        Bin centres: the rows of ``grid``.
    grid : array, shape (len(prices), len(times_ms))
        USD that would be liquidated per bin at each snapshot.
    price_line : (ts_ms, price), optional
        The price path drawn over the map.
    liquidations : structured array, optional
        Observed liquidations (fields ``ts``, ``price``, ``side`` +1 long / -1 short,
        ``value`` notional USD), drawn as dots with area proportional to notional.
    scale : {"log", "quantile", "sqrt", "linear"}
        Colour scaling (``log`` and ``quantile`` keep small clusters visible).
    window : (lo, hi), optional
        Price range shown (default: the traded range plus half of it on each side).
    path : path-like, optional
        Also save the figure there (and close it).
    """
    plt = require_matplotlib()
    t = _dates(np.asarray(times_ms))
    prices = np.asarray(prices, dtype=float)
    z = np.asarray(grid, dtype=float)
    if z.shape != (prices.size, t.size):
        raise ValueError(f"grid must have shape (len(prices), len(times)) = {(prices.size, t.size)}, "
                         f"got {z.shape}")
    if window is None:
        ref = price_line[1] if price_line is not None and len(price_line[1]) else None
        if ref is None and z.size and np.any(z > 0):
            ref = prices[np.any(z > 0, axis=1)]
        if ref is not None and len(ref):
            lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref))
            margin = max(0.5 * (hi - lo), 0.03 * hi)
            window = (lo - margin, hi + margin)
    if window is not None:
        rows = (prices >= window[0]) & (prices <= window[1])
        prices, z = prices[rows], z[rows]
    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    cm = plt.get_cmap(cmap).with_extremes(bad=plt.get_cmap(cmap)(0.0), under=plt.get_cmap(cmap)(0.0))
    norm = _scale_norm(z, scale)
    shown = np.ma.masked_less_equal(z, 0.0) if scale == "log" else z
    if prices.size and t.size:
        mesh = ax.pcolormesh(t, prices, shown, shading="nearest", cmap=cm, norm=norm, rasterized=True)
        cb = fig.colorbar(mesh, ax=ax, pad=0.01)
        cb.set_label(f"USD liquidated at this level, per bin ({scale} scale)")
        from matplotlib.ticker import FuncFormatter, NullFormatter
        if scale == "quantile" and hasattr(norm, "boundaries"):
            cb.set_ticks(norm.boundaries[1::4])
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _usd(v)))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_facecolor(cm(0.0))
    if price_line is not None and len(price_line[0]):
        ax.plot(_dates(price_line[0]), price_line[1], color=PRICE_COLOR, lw=1.1, label="price",
                gid="price")
    if liquidations is not None and liquidations.size:
        lt = _dates(liquidations["ts"])
        sizes = _dot_sizes(liquidations["value"])
        for code, label, color, marker in ((1, "long liquidated", LONG_COLOR, "v"),
                                           (-1, "short liquidated", SHORT_COLOR, "^")):
            sel = liquidations["side"] == code
            if sel.any():
                ax.scatter(lt[sel], liquidations["price"][sel], s=sizes[sel], c=color, marker=marker,
                           label=label, alpha=0.7, linewidths=0.3, edgecolors="black", gid=label)
    if window is not None:
        ax.set_ylim(*window)
    ax.xaxis_date()
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("price")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8, framealpha=0.6)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _finish(fig, path)


def plot_heatmap(result: ReplayResult | Sequence[Snapshot], events: np.ndarray | None = None, *,
                 scale: str = "log", side: str = "both", liquidations: bool = True,
                 title: str | None = None, window: tuple[float, float] | None = None,
                 path: PathLike | None = None, **kwargs: Any) -> Figure:
    """Time x price heatmap of a replay (``hc.replay(events, what=("map",))``).

    Parameters
    ----------
    result : ReplayResult or sequence of Snapshot
        The replay's map snapshots.
    events : numpy.ndarray, optional
        The replayed stream: its price records draw the price line (default: the
        engine's price at each snapshot) and its liquidations the dots.
    scale : {"log", "quantile", "sqrt", "linear"}
        Colour scaling of the map.
    side : {"both", "long", "short"}
        Which positions' levels to show.
    liquidations : bool
        Draw the observed liquidations (needs ``events``).
    path : path-like, optional
        Also save the figure (and close it).
    kwargs
        Passed to :func:`heatmap_figure` (``cmap``, ``figsize``).
    """
    snaps = _snapshots(result)
    times, prices, grid = history_grid(snaps, side=side)
    if title is None:
        eng = getattr(result, "engine", None)
        what = f"{eng.symbol}, {len(eng.venues)} venue(s)" if eng is not None else "replay"
        title = f"heatcore liquidation map: {what}"
    return heatmap_figure(times, prices, grid, _price_line(events, snaps),
                          _liquidations(events) if liquidations else None, scale=scale,
                          title=title, window=window, path=path, **kwargs)


def plot_history(path: PathLike, times_ms: Sequence[int] | np.ndarray, prices: np.ndarray,
                 intensity: np.ndarray, price_line: tuple[np.ndarray, np.ndarray], *,
                 title: str = "heatcore liquidation map",
                 liquidations: tuple[np.ndarray, ...] | np.ndarray | None = None,
                 scale: str = "log") -> None:
    """Write the time x price heatmap of arrays to ``path`` (PNG).

    ``liquidations`` is a structured array (see :func:`heatmap_figure`) or a tuple
    ``(ts_ms, price, side[, notional])``."""
    liq = liquidations
    if isinstance(liq, tuple):
        arr = np.zeros(len(liq[0]), dtype=[("ts", "<i8"), ("price", "<f8"), ("side", "i1"),
                                           ("value", "<f8")])
        arr["ts"], arr["price"], arr["side"] = liq[0], liq[1], liq[2]
        arr["value"] = liq[3] if len(liq) > 3 else 1.0
        liq = arr
    heatmap_figure(times_ms, prices, intensity, price_line, liq, title=title, scale=scale,
                   path=path)


# -- the current map ------------------------------------------------------------------

def plot_profile(engine: Engine, venue: str | None = None, *, window_pct: float = 0.08,
                 max_rows: int = 160, title: str | None = None,
                 path: PathLike | None = None) -> Figure:
    """The current map by price, split by leverage band and side.

    Longs (liquidated if price falls) extend to the left, shorts to the right, each
    stacked by leverage band; the dashed line is the current price.

    Parameters
    ----------
    engine : Engine
    venue : str, optional
        One venue (default: the sum over venues).
    window_pct : float
        Price range shown, as a fraction of the current price on each side.
    max_rows : int
        Bins are merged so that at most this many rows are drawn.
    """
    plt = require_matplotlib()
    prices, long, short = map_by_band(engine, venue)
    price = float(engine.heatmap(venue).price)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    if prices.size and price > 0:
        sel = (prices >= price * (1 - window_pct)) & (prices <= price * (1 + window_pct))
        prices, long, short = prices[sel], long[:, sel], short[:, sel]
    if prices.size:
        k = max(1, int(np.ceil(prices.size / max_rows)))
        n = prices.size // k * k if prices.size >= k else prices.size
        if k > 1 and n:
            prices = prices[:n].reshape(-1, k).mean(axis=1)
            long = long[:, :n].reshape(len(BANDS), -1, k).sum(axis=2)
            short = short[:, :n].reshape(len(BANDS), -1, k).sum(axis=2)
        height = float(prices[1] - prices[0]) if prices.size > 1 else 1.0
        colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.95, len(BANDS)))
        left_l = np.zeros(prices.size)
        left_s = np.zeros(prices.size)
        for b in range(len(BANDS)):
            ax.barh(prices, -long[b], height=height, left=-left_l, color=colors[b],
                    label=BAND_LABELS[b], linewidth=0)
            ax.barh(prices, short[b], height=height, left=left_s, color=colors[b], linewidth=0,
                    hatch="//", edgecolor="white")
            left_l += long[b]
            left_s += short[b]
        lim = float(max(left_l.max(), left_s.max(), 1.0)) * 1.05
        ax.set_xlim(-lim, lim)
    if price > 0:
        ax.axhline(price, color=PRICE_COLOR, ls="--", lw=1.2, label=f"price {price:,.6g}", gid="price")
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: _usd(abs(x))))
    ax.set_xlabel("USD liquidated at this level:  longs (price falls)  |  shorts (price rises, hatched)")
    ax.set_ylabel("price")
    ax.set_title(title or f"current map by leverage band: {venue or 'all venues'} ({engine.symbol})")
    ax.legend(loc="upper right", fontsize=8, title="leverage", title_fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


def _band_weights(w: np.ndarray, tiers: np.ndarray) -> np.ndarray:
    out = np.zeros(len(BANDS))
    for t, x in zip(tiers.tolist(), np.asarray(w, dtype=float).tolist(), strict=False):
        out[band_of(float(t))] += x
    s = out.sum()
    return out / s if s > 0 else out


def _learning_venues(engine: Engine) -> list[str]:
    out = []
    for v in engine.venues:
        d = engine.learner_diagnostics(v)
        if any(d[s]["n_events"] > 0 for s in ("long", "short")):
            out.append(v)
    return out


def plot_leverage_mix(engine: Engine, venues: Sequence[str] | None = None, *,
                      which: str = "openings", title: str | None = None,
                      path: PathLike | None = None) -> Figure:
    """The learned leverage mix per venue next to its static prior, by leverage band.

    Two panels (long, short); per venue a hatched bar (the registry's prior) and a
    solid one (the learned mix, ``which`` as in :meth:`Engine.leverage_mix`),
    each stacked by band. Default venues: those whose learner has seen
    liquidations (all of the engine's if none has).
    """
    plt = require_matplotlib()
    if venues is None:
        venues = _learning_venues(engine) or list(engine.venues)
    venues = list(venues)
    tiers = engine.tiers
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.95, len(BANDS)))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.9 * len(venues) + 3), 6.5), dpi=100,
                             sharex=True)
    x = np.arange(len(venues))
    for ax, side in zip(axes, ("long", "short"), strict=True):
        prior = np.array([_band_weights(engine.leverage_mix(v, side, which="prior")[1], tiers)
                          for v in venues]).reshape(len(venues), len(BANDS))
        learned = np.array([_band_weights(engine.leverage_mix(v, side, which=which)[1], tiers)
                            for v in venues]).reshape(len(venues), len(BANDS))
        for off, mix, hatch in ((-0.2, prior, "//"), (0.2, learned, None)):
            bottom = np.zeros(len(venues))
            for b in range(len(BANDS)):
                ax.bar(x + off, mix[:, b], width=0.38, bottom=bottom, color=colors[b], hatch=hatch,
                       edgecolor="white" if hatch else colors[b], linewidth=0.4,
                       label=BAND_LABELS[b] if off > 0 else None)
                bottom += mix[:, b]
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"share of {side} OI")
        ax.set_title(f"{side}: prior (hatched, left) vs learned {which} mix (right)", fontsize=10)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(venues, rotation=30 if len(venues) > 6 else 0)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="leverage",
                   title_fontsize=8)
    fig.suptitle(title or f"leverage mix per venue ({engine.symbol})")
    fig.tight_layout()
    return _finish(fig, path)


#: Probabilities below this are drawn at it on the cascade ladder's log axis.
CASCADE_P_FLOOR = 1e-4


def plot_cascade(engine: Engine, levels: int = 10, *, title: str | None = None,
                 path: PathLike | None = None) -> Figure:
    """The cascade ladder: on each side, the levels a cascade would walk through.

    Each level is a dot at its price and at the probability that price reaches
    it within the cascade horizon (log axis; below 1e-4 drawn at 1e-4), coloured
    by the forecast's confidence, its area proportional to the USD mapped there,
    and labelled; the dashed line is the current price.
    """
    plt = require_matplotlib()
    price = float(engine.heatmap().price)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), dpi=100)
    horizon = float(engine.cascade_config().get("horizon_s", 3600.0))
    dots = None
    all_rows = [engine.cascade(side, levels) for side in ("long", "short")]
    q_all = np.concatenate([r["notional"] for r in all_rows])
    q_ref = float(np.median(q_all)) if q_all.size and np.median(q_all) > 0 else 1.0
    for ax, side, where, rows in zip(axes, ("long", "short"), ("below", "above"), all_rows, strict=True):
        if rows.size:
            p = np.maximum(rows["probability"], CASCADE_P_FLOOR)
            ax.plot(p, rows["price"], color="grey", lw=0.8, zorder=1)
            dots = ax.scatter(p, rows["price"], s=np.clip(80.0 * rows["notional"] / q_ref, 10, 600),
                              c=rows["confidence"], cmap="viridis", vmin=0.0, vmax=1.0,
                              edgecolors="black", linewidths=0.5, zorder=2, gid=f"{side} levels")
            for i, r in enumerate(rows):
                ax.annotate(f"L{i + 1} {_usd(float(r['notional']))}  p={float(r['probability']):.2g}",
                            (float(p[i]), float(r["price"])), xytext=(9, 0), textcoords="offset points",
                            va="center", fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {side} levels", transform=ax.transAxes, ha="center")
        if price > 0:
            ax.axhline(price, color=PRICE_COLOR, ls="--", lw=1.2, label=f"price {price:,.6g}",
                       gid="price")
            ax.legend(loc="upper right" if side == "long" else "lower right", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(CASCADE_P_FLOOR / 2, 40.0)
        ax.set_xticks([1e-4, 1e-3, 1e-2, 0.1, 1.0])
        ax.set_xticklabels(["≤1e-4", "0.001", "0.01", "0.1", "1"])
        ax.set_xlabel(f"probability of reaching the level within {horizon / 3600:g} h")
        ax.set_ylabel("price")
        ax.set_title(f"{side} positions (levels {where} price)", fontsize=10)
    if dots is not None:
        fig.colorbar(dots, ax=list(axes), label="confidence", pad=0.02)
    fig.suptitle(title or f"cascade ladder ({engine.symbol}): dot area = USD at the level")
    return _finish(fig, path)


def plot_map_forecast(heatmap: HeatMap, forecast: Forecast, *, title: str = "map and forecast",
                      path: PathLike | None = None) -> Figure:
    """Two panels over the forecast's window: the map (USD per bin, long and short)
    and the forecast (expected liquidated USD per bin within the horizon)."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, dpi=100)
    m, f = heatmap, forecast
    if f.prices.size:
        lo, hi = f.prices[0], f.prices[-1]
        sel = (m.prices >= lo) & (m.prices <= hi)
    else:
        sel = np.ones(m.prices.size, dtype=bool)
    ax1.bar(m.prices[sel], m.long[sel], width=m.step or 1, color=LONG_COLOR, label="long")
    ax1.bar(m.prices[sel], m.short[sel], width=m.step or 1, color=SHORT_COLOR, label="short")
    ax1.axvline(m.price, color="k", lw=0.8, gid="price")
    ax1.set_ylabel("map, USD per bin")
    ax1.set_title(title)
    ax1.legend()
    step = float(f.prices[1] - f.prices[0]) if f.prices.size > 1 else 1.0
    ax2.bar(f.prices, f.long, width=step, color=LONG_COLOR, label="long")
    ax2.bar(f.prices, f.short, width=step, color=SHORT_COLOR, label="short")
    ax2.axvline(f.price, color="k", lw=0.8)
    ax2.set_ylabel(f"expected in {f.horizon_s:g} s, USD")
    ax2.set_xlabel("price")
    fig.tight_layout()
    return _finish(fig, path)


# -- evaluation -----------------------------------------------------------------------

def plot_skill(report: EvaluationReport, *, path: PathLike | None = None) -> Figure:
    """Cumulative log-likelihood gain over the uniform map (learned, static,
    distance-only) along the evaluated stream."""
    from .evaluate import MODELS

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    t = np.asarray(report.timeline.get("ts", []), dtype=float) / 3.6e6
    for m in MODELS[:3]:
        gain = np.asarray(report.timeline.get(m, []), dtype=float)
        if gain.size:
            ax.plot(t - t[0], np.cumsum(gain), label=m, gid=m)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("hours since start")
    ax.set_ylabel("cumulative log-lik gain vs uniform (nats)")
    ax.set_title(f"{report.symbol}: forecast skill over time (horizon {report.horizon_s:g} s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


def plot_scores(report: EvaluationReport, *, path: PathLike | None = None) -> Figure:
    """The report's scores as bars: log-likelihood gain over the uniform map (left)
    and top-decile precision (right), per forecast, overall and per venue."""
    from .evaluate import MODELS

    plt = require_matplotlib()
    scopes = [("all", report.overall), *sorted(report.per_venue.items())]
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.4 * len(scopes) + 5), 4), dpi=100)
    x = np.arange(len(scopes))
    colors = plt.get_cmap("tab10")(np.arange(len(MODELS)))
    for i, m in enumerate(MODELS):
        gain = [_nan(d.get(f"loglik_{m}")) - _nan(d.get("loglik_uniform")) for _, d in scopes]
        top = [_nan(d.get(f"top_decile_precision_{m}")) for _, d in scopes]
        off = (i - (len(MODELS) - 1) / 2) * 0.2
        axes[0].bar(x + off, gain, width=0.2, color=colors[i], label=m)
        axes[1].bar(x + off, top, width=0.2, color=colors[i], label=m)
    axes[1].axhline(0.1, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("log-lik gain vs uniform (nats/event)")
    axes[1].set_ylabel("top-decile precision")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels([s for s, _ in scopes], rotation=30 if len(scopes) > 5 else 0)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{report.symbol}: forecast skill, horizon {report.horizon_s:g} s "
                 f"({report.overall.get('n_liquidations', 0):,} liquidations)")
    fig.tight_layout()
    return _finish(fig, path)


def plot_report_mix(report: EvaluationReport, *, path: PathLike | None = None) -> Figure:
    """The learned leverage mix per venue at the end of an evaluation, by tier."""
    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, dpi=100)
    x = np.arange(len(report.tiers))
    n = max(len(report.mixes), 1)
    for ax, side in zip(axes, ("long", "short"), strict=True):
        for i, (v, mix) in enumerate(sorted(report.mixes.items())):
            ax.bar(x + (i - n / 2) * 0.8 / n, mix[side], width=0.8 / n, label=v)
        ax.set_xticks(x[::2])
        ax.set_xticklabels([f"{t:g}x" for t in report.tiers][::2], rotation=60)
        ax.set_xlabel("leverage tier")
        ax.set_title(f"learned mix, {side}")
    axes[0].set_ylabel("weight")
    if report.mixes:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _finish(fig, path)


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _usd(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"${x / scale:,.3g}{unit}"
    return f"${x:,.0f}" if abs(x) >= 1 or x == 0 else f"${x:.2g}"


# -- interactive HTML -----------------------------------------------------------------

def heatmap_html(result: ReplayResult | Sequence[Snapshot], events: np.ndarray | None = None,
                 path: PathLike | None = None, *, side: str = "both", liquidations: bool = True,
                 title: str | None = None, window: tuple[float, float] | None = None,
                 include_plotlyjs: bool | str = True, max_points: int = 20000) -> Any:
    """The time x price heatmap as an interactive plotly figure (log colour scale:
    the colour is log10 of USD per bin, the hover shows USD).

    ``path`` writes a self-contained HTML page (``include_plotlyjs=True`` embeds
    plotly.js, about 4.6 MB, so the page works offline; ``"cdn"`` links it
    instead). Returns the plotly ``Figure``. Needs ``heatcore[html]``.
    """
    go = require_plotly()
    snaps = _snapshots(result)
    times, prices, grid = history_grid(snaps, side=side)
    line_t, line_p = _price_line(events, snaps)
    if window is None and line_p.size:
        lo, hi = float(line_p.min()), float(line_p.max())
        margin = max(0.5 * (hi - lo), 0.03 * hi)
        window = (lo - margin, hi + margin)
    if window is not None:
        rows = (prices >= window[0]) & (prices <= window[1])
        prices, grid = prices[rows], grid[rows]
    with np.errstate(divide="ignore"):
        logz = np.where(grid > 0, np.log10(np.where(grid > 0, grid, 1.0)), np.nan)
    pos = logz[np.isfinite(logz)]
    zmax = float(np.percentile(pos, 99.5)) if pos.size else 1.0
    zmin = max(float(np.percentile(pos, 2.0)), zmax - 4.0) if pos.size else 0.0
    x = times.astype("datetime64[ms]")
    fig = go.Figure()
    # rounded: the page stays small (3 decimals of log10 = 0.7 % of USD; the hover shows whole USD)
    fig.add_trace(go.Heatmap(
        x=x, y=prices, z=np.round(logz, 3).astype(np.float32),
        customdata=np.round(grid).astype(np.float32), zmin=zmin, zmax=zmax,
        colorscale="Inferno",
        colorbar={"title": {"text": "USD per bin (log10)"}}, name="map",
        hovertemplate="%{x}<br>price %{y:,.6g}<br>USD %{customdata:,.0f}<extra></extra>"))
    if line_t.size:
        k = max(1, int(np.ceil(line_t.size / max_points)))
        fig.add_trace(go.Scatter(x=line_t[::k].astype("datetime64[ms]"), y=line_p[::k], mode="lines",
                                 name="price", line={"color": PRICE_COLOR, "width": 1.2}))
    liq = _liquidations(events) if liquidations else None
    if liq is not None and liq.size:
        area = _dot_sizes(liq["value"])
        for code, label, color, symbol in ((1, "long liquidated", LONG_COLOR, "triangle-down"),
                                           (-1, "short liquidated", SHORT_COLOR, "triangle-up")):
            sel = liq["side"] == code
            if sel.any():
                fig.add_trace(go.Scatter(
                    x=liq["ts"][sel].astype("datetime64[ms]"), y=liq["price"][sel], mode="markers",
                    name=label, customdata=liq["value"][sel],
                    marker={"color": color, "symbol": symbol, "size": np.sqrt(area[sel]) * 1.6,
                            "line": {"width": 0.3, "color": "black"}, "opacity": 0.75},
                    hovertemplate="%{x}<br>price %{y:,.6g}<br>USD %{customdata:,.0f}<extra>"
                                  + label + "</extra>"))
    if title is None:
        eng = getattr(result, "engine", None)
        title = f"heatcore liquidation map: {eng.symbol}" if eng is not None else "heatcore liquidation map"
    fig.update_layout(title=title, xaxis_title="time (UTC)", yaxis_title="price",
                      template="plotly_dark", legend={"orientation": "h", "y": -0.15})
    if window is not None:
        fig.update_yaxes(range=list(window))
    if path is not None:
        fig.write_html(os.fspath(path), include_plotlyjs=include_plotlyjs, full_html=True)
    return fig
