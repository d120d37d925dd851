"""Regenerate every picture of the README from the code at this commit.

    PYTHONPATH=src python docs/make_figures.py        # or, installed: python docs/make_figures.py

Writes docs/*.png (each kept under ~150 kB: 256-colour PNGs). The simulated
figures are deterministic (fixed seeds); the real-data figure needs the shared
recordings next to the checkout (../shared/data) and is skipped without them.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import heatcore as hc
from heatcore import plot
from heatcore.replay import as_events, group_by_asset, iter_replay
from heatcore.sim import simulate

DOCS = Path(__file__).resolve().parent
SHARED = DOCS.parent.parent / "shared" / "data"
LIMIT = 150_000


def save_small(fig, name: str, dpi: float = 100) -> None:
    """Save ``fig`` as a 256-colour PNG under docs/ and check its size."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path = DOCS / name
    img.save(path, optimize=True)
    size = path.stat().st_size
    print(f"{path.relative_to(DOCS.parent)}: {size / 1000:.0f} kB")
    if size > LIMIT:
        sys.exit(f"{name} is {size} bytes, over the {LIMIT} byte budget: lower its dpi")


def demo_figures() -> None:
    """What `heatcore demo` draws (24 simulated hours, seed 0, every venue), and the
    current map, learned mixes and cascade ladder at its end."""
    res = simulate(hours=24, seed=0)
    events = as_events(res.events)
    eng = hc.Engine(res.symbol, step=res.step)
    snaps = list(iter_replay(events, eng, every=600, what=("map",), progress=False))
    save_small(plot.plot_heatmap(snaps, events, title="heatcore demo: BTCUSDT, all venues, 24 h simulated"),
               "demo_map.png")
    save_small(plot.plot_profile(eng), "profile.png")
    save_small(plot.plot_leverage_mix(eng, ["binance", "bybit", "okx", "gate", "htx", "hyperliquid"]),
               "leverage_mix.png")
    save_small(plot.plot_cascade(eng), "cascade.png")


def evaluation_figures() -> None:
    """The evaluation on the simulator (12 h, four venues, seed 1)."""
    res = simulate(hours=12, seed=1, venues=("binance", "bybit", "okx", "hyperliquid"))
    rep = hc.evaluate(as_events(res.events), symbol=res.symbol, step=res.step, progress=False)
    save_small(plot.plot_scores(rep), "evaluation_scores.png")
    save_small(plot.plot_skill(rep), "evaluation_skill.png")


def real_data_figure() -> None:
    """`heatcore replay ../shared/data/okx_sol_doge_hype_2026-03-04.jsonl --symbol SOL`."""
    path = SHARED / "okx_sol_doge_hype_2026-03-04.jsonl"
    if not path.exists():
        print(f"skipped okx_sol.png: {path} is not present")
        return
    sym, ev = group_by_asset(hc.read_events_by_symbol(path))["SOL"]
    r = hc.replay(ev, every="5min", what=("map",), symbol=sym, progress=False)
    save_small(plot.plot_heatmap(r, ev, scale="quantile",
                                 title="OKX SOL-USDT-SWAP, 2026-03-04/05 (real liquidations; OI proxy)"),
               "okx_sol.png")


if __name__ == "__main__":
    demo_figures()
    evaluation_figures()
    real_data_figure()
