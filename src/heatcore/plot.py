"""Figures (optional extra ``heatcore[plot]``: matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["plot_history", "require_matplotlib"]


def require_matplotlib() -> Any:
    """Import matplotlib with a headless backend, or explain how to get it."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError('plotting needs matplotlib: pip install "heatcore[plot]"') from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_history(
    path: str | os.PathLike[str],
    times_ms: Sequence[int] | np.ndarray,
    prices: np.ndarray,
    intensity: np.ndarray,
    price_line: tuple[np.ndarray, np.ndarray],
    *,
    title: str = "heatcore liquidation map",
    liquidations: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Time x price heatmap of liquidation levels with the price line.

    Parameters
    ----------
    path : path-like
        PNG to write.
    times_ms : array of int
        Snapshot times (ms).
    prices : array
        Bin centres (the rows of ``intensity``).
    intensity : array, shape (len(prices), len(times_ms))
        USD per bin at each snapshot (long + short levels).
    price_line : (ts_ms, price)
        The price path to draw over the map.
    liquidations : (ts_ms, price, side), optional
        Observed liquidations to mark (side +1 long, -1 short).
    """
    plt = require_matplotlib()
    t = (np.asarray(times_ms, dtype=float) - float(times_ms[0])) / 3_600_000.0
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=110)
    z = np.asarray(intensity, dtype=float)
    # Only the band around the traded range is drawn; the colour scale is set on
    # that band (square-root scale: clusters stand out, small ones stay visible).
    lo, hi = np.nanmin(price_line[1]), np.nanmax(price_line[1])
    margin = max(0.5 * (hi - lo), 0.03 * hi)
    rows = (prices >= lo - margin) & (prices <= hi + margin)
    prices, z = prices[rows], z[rows]
    pos = z[z > 0]
    vmax = float(np.percentile(pos, 99.0)) if pos.size else 1.0
    from matplotlib.colors import PowerNorm

    mesh = ax.pcolormesh(t, prices, z, shading="nearest", cmap="inferno",
                         norm=PowerNorm(0.5, vmin=0.0, vmax=vmax), rasterized=True)
    cb = fig.colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("USD that would be liquidated per bin")
    pt = (np.asarray(price_line[0], dtype=float) - float(times_ms[0])) / 3_600_000.0
    ax.plot(pt, price_line[1], color="#37c6ff", lw=1.2, label="price")
    if liquidations is not None and len(liquidations[0]):
        lt = (np.asarray(liquidations[0], dtype=float) - float(times_ms[0])) / 3_600_000.0
        side = np.asarray(liquidations[2])
        ax.scatter(lt[side == 1], np.asarray(liquidations[1])[side == 1], s=4, c="#7CFC00",
                   label="long liquidated", alpha=0.6, linewidths=0)
        ax.scatter(lt[side == -1], np.asarray(liquidations[1])[side == -1], s=4, c="#ff4fd8",
                   label="short liquidated", alpha=0.6, linewidths=0)
    ax.set_ylim(lo - margin, hi + margin)
    ax.set_xlabel("hours")
    ax.set_ylabel("price")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.6)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
