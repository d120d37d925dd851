"""The ``heatcore`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _fmt_usd(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"${x / scale:,.1f}{unit}"
    return f"${x:,.0f}"


def _demo(args: argparse.Namespace) -> int:
    import heatcore as hc
    from heatcore import sim

    t_start = time.perf_counter()
    res = sim.simulate(hours=args.hours, seed=args.seed)
    t_sim = time.perf_counter() - t_start
    events = res.events
    eng = hc.Engine(res.symbol, step=res.step)
    # Replay in slices so that the map can be photographed every few minutes.
    every_ms = int(args.every_min * 60_000)
    ts = events["ts"]
    cuts = np.arange(ts[0], ts[-1] + every_ms, every_ms)
    idx = np.searchsorted(ts, cuts, side="right")
    frames, frame_ts = [], []
    prices_axis: np.ndarray | None = None
    t0 = time.perf_counter()
    start = 0
    for cut, stop in zip(cuts, idx, strict=False):
        eng.ingest(events[start:stop])
        start = stop
        m = eng.heatmap()
        frames.append((m.prices, m.long + m.short))
        frame_ts.append(int(cut))
    t_eng = time.perf_counter() - t0
    last = eng.heatmap()
    price = last.price
    print(f"heatcore demo: {args.hours:g} simulated hours, {len(eng.venues)} venues, "
          f"{len(events):,} events ({int((events['kind'] == 2).sum()):,} liquidations)")
    print(f"simulated in {t_sim:.1f} s, engine replay in {t_eng:.2f} s; last price {price:,.2f}\n")
    header = f"{'venue':<12} {'OI':>10} {'expected L/S':>21} {'observed L/S':>21}  nearest clusters below / above"
    print(header)
    print("-" * len(header))
    for v in eng.venues:
        d = eng.diagnostics(v)
        oi = d["oi_base"] * d["last_price"]
        m = eng.heatmap(v)
        below = [c for c in m.clusters("long", 6) if c[0] < price]
        above = [c for c in m.clusters("short", 6) if c[0] > price]
        below.sort(key=lambda c: -c[0])
        above.sort(key=lambda c: c[0])
        cl = ", ".join(f"{p:,.0f} ({_fmt_usd(u)})" for p, u in below[:1])
        ch = ", ".join(f"{p:,.0f} ({_fmt_usd(u)})" for p, u in above[:1])
        exp = f"{_fmt_usd(d['expected_usd_long'])}/{_fmt_usd(d['expected_usd_short'])}"
        obs = (f"{_fmt_usd(d['observed_usd_long'])}/{_fmt_usd(d['observed_usd_short'])}"
               if hc.get_venue(v).liquidation_feed != "none" else "no public feed")
        print(f"{v:<12} {_fmt_usd(oi):>10} {exp:>21} {obs:>21}  {cl or '-'} / {ch or '-'}")
    if not args.no_plot:
        try:
            from heatcore.plot import plot_history
        except ImportError as e:  # pragma: no cover
            print(f"\n(no plot: {e})")
            return 0
        lo = min(float(p[0]) for p, _ in frames)
        hi = max(float(p[-1]) for p, _ in frames)
        step = res.step
        prices_axis = np.arange(np.floor(lo / step), np.ceil(hi / step) + 1) * step
        grid = np.zeros((prices_axis.size, len(frames)))
        for j, (p, z) in enumerate(frames):
            k = np.rint((p - prices_axis[0]) / step).astype(int)
            ok = (k >= 0) & (k < prices_axis.size)
            grid[k[ok], j] = z[ok]
        pmask = events["kind"] == 0
        liq = events[events["kind"] == 2]
        try:
            plot_history(args.out, frame_ts, prices_axis, grid,
                         (events["ts"][pmask], events["price"][pmask]),
                         title=f"heatcore demo: {res.symbol}, all venues, {args.hours:g} h simulated",
                         liquidations=(liq["ts"], liq["price"], liq["side"]))
        except ImportError as e:
            print(f"\n(no plot: {e})")
            return 0
        print(f"\nwrote {args.out}")
    return 0


def _venues(args: argparse.Namespace) -> int:
    import heatcore as hc

    print(f"{'venue':<12} {'max lev':>7} {'feed':>9} {'reports':>11}  prior mix by band (2-5/5-10/10-25/25-50/50-125)")
    for v in hc.VENUES:
        s = hc.get_venue(v)
        bands = "/".join(f"{x:.2f}" for x in s.prior_bands)
        print(f"{v:<12} {s.max_leverage:>7g} {s.liquidation_feed:>9} {s.reported_price:>11}  {bands}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``heatcore`` command."""
    p = argparse.ArgumentParser(prog="heatcore", description="Liquidation heatmaps that learn.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run a simulated market through the engine and summarise it")
    d.add_argument("--hours", type=float, default=24.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--every-min", type=float, default=10.0, help="map snapshot cadence for the plot")
    d.add_argument("--out", default="heatcore-demo.png")
    d.add_argument("--no-plot", action="store_true")
    d.set_defaults(func=_demo)
    v = sub.add_parser("venues", help="print the venue registry")
    v.set_defaults(func=_venues)
    from .live import register_cli as register_live

    register_live(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``heatcore`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
