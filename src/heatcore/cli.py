"""The ``heatcore`` command line (also ``python -m heatcore``).

Exit codes, for scripts:

====  ==============================================================================
0     done
1     nothing to do or no data: no liquidations to score, no message received from
      any venue, a missing optional dependency
2     usage or bad input: unknown option or value, missing or unreadable file, a
      file that is not what the command reads (bad JSONL, not a snapshot), unknown
      symbol or venue
130   interrupted (Ctrl-C); ``live`` and ``record`` still write their last snapshot
      or close their file first
====  ==============================================================================

Errors are one line on stderr, ``heatcore: error: ...``, without a traceback
(``HEATCORE_DEBUG=1`` shows it). ``--json`` (demo, evaluate, inspect, venues)
prints one JSON document on stdout; progress bars go to stderr and only when it
is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

__all__ = ["EXIT_DATA", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CLIError", "build_parser", "main"]

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user-facing failure: printed as ``heatcore: error: <message>``, exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def error(message: str) -> None:
    """Print the one-line error on stderr."""
    print(f"heatcore: error: {message}", file=sys.stderr)


def note(message: str) -> None:
    """A remark for the user (stderr, so stdout stays machine-readable)."""
    print(message, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``heatcore: error: ...``), exit 2."""

    commands: dict[str, argparse.ArgumentParser] | None = None

    def error(self, message: str) -> NoReturn:
        print(f"heatcore: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            # name the command whose --help to read, not the top level
            sub = (self.commands or {}).get(getattr(parsed, "command", None) or "", self)
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _fmt_usd(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"${x / scale:,.1f}{unit}"
    return f"${x:,.0f}"


def _headless_matplotlib() -> Any:
    from .plot import require_matplotlib

    return require_matplotlib(headless=True)


def _need_plotting(png: bool, html: bool = False) -> None:
    """Fail at once (exit 1) when a requested figure needs an extra that is missing."""
    if png:
        _headless_matplotlib()
    if html:
        from .plot import require_plotly
        require_plotly()


def _check_out(path: str | None, what: str) -> None:
    """Refuse an output path whose directory does not exist, before any long work."""
    if path is None:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CLIError(f"{what} {path}: directory {d} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path} is a directory")


def _check_in(path: str) -> None:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a file")


def _positive(kind: type = float) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (v > 0):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return v

    parse.__name__ = kind.__name__
    return parse


# -- demo ---------------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    import heatcore as hc
    from heatcore import sim

    from .replay import as_events, iter_replay

    _check_out(None if args.no_plot else args.out, "--out")
    _check_out(args.html, "--html")
    _need_plotting(png=not args.no_plot, html=bool(args.html))
    progress = False if args.no_progress else None
    t_start = time.perf_counter()
    res = sim.simulate(hours=args.hours, seed=args.seed)
    t_sim = time.perf_counter() - t_start
    events = as_events(res.events)
    eng = hc.Engine(res.symbol, step=res.step)
    t0 = time.perf_counter()
    snaps = list(iter_replay(events, eng, every=args.every_min * 60.0, what=("map",),
                             progress=progress))
    t_eng = time.perf_counter() - t0
    price = eng.heatmap().price
    rows: list[dict[str, Any]] = []
    for v in eng.venues:
        d = eng.diagnostics(v)
        m = eng.heatmap(v)
        below = sorted((c for c in m.clusters("long", 6) if c[0] < price), key=lambda c: -c[0])
        above = sorted((c for c in m.clusters("short", 6) if c[0] > price), key=lambda c: c[0])
        feed = hc.get_venue(v).liquidation_feed != "none"
        rows.append({
            "venue": v, "oi_usd": float(d["oi_base"] * d["last_price"]),
            "expected_usd_long": float(d["expected_usd_long"]),
            "expected_usd_short": float(d["expected_usd_short"]),
            "observed_usd_long": float(d["observed_usd_long"]) if feed else None,
            "observed_usd_short": float(d["observed_usd_short"]) if feed else None,
            "cluster_below": list(below[0]) if below else None,
            "cluster_above": list(above[0]) if above else None,
        })
    n_liq = int((events["kind"] == 2).sum())
    figures: list[str] = []
    if not args.no_plot:
        from .plot import plot_heatmap
        _headless_matplotlib()
        plot_heatmap(snaps, events, scale=args.scale, path=args.out,
                     title=f"heatcore demo: {res.symbol}, all venues, {args.hours:g} h simulated")
        figures.append(args.out)
    if args.html:
        from .plot import heatmap_html
        heatmap_html(snaps, events, args.html,
                     title=f"heatcore demo: {res.symbol}, {args.hours:g} h simulated")
        figures.append(args.html)
    if args.json:
        print(json.dumps({"symbol": res.symbol, "hours": args.hours, "seed": args.seed,
                          "step": res.step, "events": int(events.size), "liquidations": n_liq,
                          "venues": rows, "last_price": float(price), "snapshots": len(snaps),
                          "simulate_s": t_sim, "replay_s": t_eng, "figures": figures}, indent=1))
        return EXIT_OK
    print(f"heatcore demo: {args.hours:g} simulated hours, {len(eng.venues)} venues, "
          f"{len(events):,} events ({n_liq:,} liquidations)")
    print(f"simulated in {t_sim:.1f} s, engine replay in {t_eng:.2f} s; last price {price:,.2f}\n")
    header = f"{'venue':<12} {'OI':>10} {'expected L/S':>21} {'observed L/S':>21}  nearest clusters below / above"
    print(header)
    print("-" * len(header))
    for r in rows:
        exp = f"{_fmt_usd(r['expected_usd_long'])}/{_fmt_usd(r['expected_usd_short'])}"
        obs = (f"{_fmt_usd(r['observed_usd_long'])}/{_fmt_usd(r['observed_usd_short'])}"
               if r["observed_usd_long"] is not None else "no public feed")
        cl = f"{r['cluster_below'][0]:,.0f} ({_fmt_usd(r['cluster_below'][1])})" if r["cluster_below"] else "-"
        ch = f"{r['cluster_above'][0]:,.0f} ({_fmt_usd(r['cluster_above'][1])})" if r["cluster_above"] else "-"
        print(f"{r['venue']:<12} {_fmt_usd(r['oi_usd']):>10} {exp:>21} {obs:>21}  {cl} / {ch}")
    if figures:
        print()
        for f in figures:
            print(f"wrote {f}")
    return EXIT_OK


# -- venues -------------------------------------------------------------------------

def _venues(args: argparse.Namespace) -> int:
    import heatcore as hc
    from heatcore.venues import BANDS

    if args.json:
        out = []
        for v in hc.VENUES:
            s = hc.get_venue(v)
            out.append({"venue": v, "max_leverage": float(s.max_leverage),
                        "liquidation_feed": s.liquidation_feed, "reported_price": s.reported_price,
                        "prior_bands": dict(zip([f"{lo:g}-{hi:g}" for lo, hi in BANDS],
                                                [float(x) for x in s.prior_bands], strict=False))})
        print(json.dumps(out, indent=1))
        return EXIT_OK
    print(f"{'venue':<12} {'max lev':>7} {'feed':>9} {'reports':>11}  prior mix by band (2-5/5-10/10-25/25-50/50-125)")
    for v in hc.VENUES:
        s = hc.get_venue(v)
        bands = "/".join(f"{x:.2f}" for x in s.prior_bands)
        print(f"{v:<12} {s.max_leverage:>7g} {s.liquidation_feed:>9} {s.reported_price:>11}  {bands}")
    return EXIT_OK


# -- inspect ------------------------------------------------------------------------

def _band_mix(w: np.ndarray, tiers: np.ndarray) -> list[float]:
    from .venues import BANDS, band_of

    out = [0.0] * len(BANDS)
    for t, x in zip(tiers.tolist(), np.asarray(w, dtype=float).tolist(), strict=False):
        out[band_of(float(t))] += x
    s = sum(out)
    return [x / s if s > 0 else 0.0 for x in out]


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def inspect_snapshot(path: str, venues: Sequence[str] | None = None, levels: int = 10) -> dict[str, Any]:
    """What ``heatcore inspect`` reports about a snapshot, as a plain dict: the
    engine, per venue the leverage mixes (tiers and bands; prior, learned
    openings, the map's) with the learner's evidence, the calibration, and the
    cascade ladder on each side."""
    from . import persist
    from .engine import Engine
    from .venues import BANDS

    data = persist.read_file(path)
    header = persist.read_header(data)
    eng = Engine._from_snapshot(data)
    if venues is None:
        venues = [v for v in eng.venues
                  if eng.diagnostics(v)["liquidations"] or eng.diagnostics(v)["oi_updates"]]
    else:
        unknown = [v for v in venues if v not in eng.venues]
        if unknown:
            raise CLIError(f"{path}: no venue {', '.join(unknown)} in the snapshot "
                           f"(venues: {', '.join(eng.venues)})")
    glob = eng.diagnostics()
    m = eng.heatmap()
    lo, sh = m.total()
    tiers = eng.tiers
    mixes: dict[str, Any] = {}
    for v in venues:
        d = eng.learner_diagnostics(v)
        mixes[v] = {}
        for side in ("long", "short"):
            prior = eng.leverage_mix(v, side, which="prior")[1]
            learned = eng.leverage_mix(v, side, which="openings")[1]
            applied = eng.leverage_mix(v, side, which="map")[1]
            mixes[v][side] = {
                "prior": prior.tolist(), "learned": learned.tolist(), "map": applied.tolist(),
                "prior_bands": _band_mix(prior, tiers), "learned_bands": _band_mix(learned, tiers),
                "n_events": int(d[side]["n_events"]),
                "effective_events": float(d[side]["effective_events"]),
                "untested_bands": [list(b) for b in d[side]["untested_bands"]],
                "learning": bool(d[side]["learning"]),
            }
    cascade = {}
    for side in ("long", "short"):
        rows = eng.cascade(side, levels)
        cascade[side] = [{k: float(r[k]) for k in rows.dtype.names or ()} for r in rows]
    return _jsonable({
        "file": os.fspath(path), "format": list(header["format"]), "library": header["library"],
        "symbol": eng.symbol, "step": eng.step, "learn": eng.learn, "venues": list(eng.venues),
        "events_seen": eng.events_seen, "last_ts": glob["last_ts"], "price": float(m.price),
        "rejected_total": glob["rejected_total"],
        "map_usd": {"long": float(lo), "short": float(sh)},
        "tiers": tiers.tolist(), "bands": [list(b) for b in BANDS],
        "mixes": mixes,
        "calibration": {v: eng.calibration(v) for v in venues},
        "cascade_horizon_s": float(eng.cascade_config()["horizon_s"]),
        "cascade": cascade,
    })


def _inspect(args: argparse.Namespace) -> int:
    _check_in(args.snapshot)
    venues = None
    if args.venue:
        venues = [v.strip() for item in args.venue for v in item.split(",") if v.strip()]
    if args.png:
        _check_out(args.png + "_profile.png", "--png")
        _need_plotting(png=True)
    from .persist import SnapshotError
    try:
        info = inspect_snapshot(args.snapshot, venues, args.levels)
    except SnapshotError as e:
        raise CLIError(f"{args.snapshot}: {e}") from None
    if args.png:
        from . import plot
        from .engine import Engine
        _headless_matplotlib()
        eng = Engine.load(args.snapshot)
        pre = args.png
        plot.plot_profile(eng, path=f"{pre}_profile.png")
        plot.plot_leverage_mix(eng, venues, path=f"{pre}_mix.png")
        plot.plot_cascade(eng, args.levels, path=f"{pre}_cascade.png")
        for name in ("profile", "mix", "cascade"):
            note(f"wrote {pre}_{name}.png")
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    bands = "/".join(f"{lo:g}-{hi:g}" for lo, hi in info["bands"])
    last = (np.datetime64(int(info["last_ts"]), "ms").astype(str).replace("T", " ")[:19] + " UTC"
            if info["last_ts"] is not None else "-")
    print(f"{info['file']}: heatcore snapshot format {info['format'][0]}.{info['format'][1]}, "
          f"written by heatcore {info['library']}")
    print(f"{info['symbol']}, step {info['step']:g}, {len(info['venues'])} venues, "
          f"{'learning' if info['learn'] else 'static'}; {info['events_seen']:,} events seen "
          f"({info['rejected_total']:,} refused), last event {last}, price {info['price']:,.6g}")
    print(f"map: {_fmt_usd(info['map_usd']['long'])} long / {_fmt_usd(info['map_usd']['short'])} short")
    if not info["mixes"]:
        print("\nno venue has seen data yet")
    else:
        print(f"\nleverage mix by band ({bands}x): prior -> learned (learner events)")
        for v, sides in info["mixes"].items():
            for side, d in sides.items():
                pr = "/".join(f"{x:.2f}" for x in d["prior_bands"])
                le = "/".join(f"{x:.2f}" for x in d["learned_bands"])
                print(f"  {v:<12} {side:<5} {pr}  ->  {le}   ({d['n_events']:,} events, "
                      f"{d['effective_events']:.1f} effective)")
        print("\ncalibration (rate scale: effective maintenance rate / documented; report offset in bins)")
        for v, c in info["calibration"].items():
            parts = []
            for side in ("long", "short"):
                rs, ro = c["rate_scale"][side], c["report_offset"][side]
                parts.append(f"{side} scale {rs['value']:.2f} ({rs['source']}), offset "
                             f"{ro['bins']:+.1f} ({ro['looks_like']}, n_eff {ro['n_eff']:.0f})")
            print(f"  {v:<12} {c['status']:<8} " + "; ".join(parts))
    print(f"\ncascade ladder (probability of reaching each level within "
          f"{info['cascade_horizon_s'] / 3600:g} h)")
    for side in ("long", "short"):
        rows = info["cascade"][side]
        if not rows:
            print(f"  {side}: no levels")
            continue
        for i, r in enumerate(rows):
            print(f"  {side:<5} L{i + 1:<2} {r['price']:>12,.6g}  {_fmt_usd(r['notional']):>9}  "
                  f"p={r['probability']:.3f}  confidence={r['confidence']:.2f}  eta={r['eta_s']:.0f}s")
    return EXIT_OK


# -- the parser ---------------------------------------------------------------------

EPILOG = ("exit codes: 0 ok, 1 nothing to do / no data, 2 usage or bad input, 130 interrupted. "
          "HEATCORE_DEBUG=1 shows tracebacks.")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``heatcore`` command."""
    from .plot import SCALES

    p = _Parser(prog="heatcore", description="Liquidation heatmaps that learn.", epilog=EPILOG)
    from . import __version__
    p.add_argument("--version", action="version", version=f"heatcore {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="run a simulated market through the engine and summarise it",
                       description="Simulate a market on every venue, replay it through the engine, "
                                   "print a per-venue summary and draw the time x price map.",
                       epilog=EPILOG)
    d.add_argument("--hours", type=_positive(), default=24.0, help="simulated hours (default 24)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--every-min", type=_positive(), default=10.0, help="map snapshot cadence for the plot")
    d.add_argument("--out", default="heatcore-demo.png", help="PNG of the map (default heatcore-demo.png)")
    d.add_argument("--scale", choices=SCALES, default="log", help="colour scaling (default log)")
    d.add_argument("--html", help="also write the map as interactive HTML (needs heatcore[html])")
    d.add_argument("--no-plot", action="store_true", help="no PNG")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=_demo)
    v = sub.add_parser("venues", help="print the venue registry", epilog=EPILOG)
    v.add_argument("--json", action="store_true", help="as JSON")
    v.set_defaults(func=_venues)
    i = sub.add_parser("inspect", help="show what a snapshot has learned",
                       description="Read an engine snapshot (Engine.save, `heatcore live`, "
                                   "`heatcore replay --snapshot`) and print its learned leverage "
                                   "mixes, calibration and cascade ladder.", epilog=EPILOG)
    i.add_argument("snapshot", help="snapshot file")
    i.add_argument("--venue", action="append", help="venues to show (comma-separated or repeated; "
                                                    "default: those that have seen data)")
    i.add_argument("--levels", type=int, choices=range(0, 11), default=10, metavar="0..10",
                   help="cascade levels per side (default 10)")
    i.add_argument("--json", action="store_true", help="as JSON")
    i.add_argument("--png", metavar="PREFIX", help="also write PREFIX_profile.png, PREFIX_mix.png, "
                                                   "PREFIX_cascade.png (needs heatcore[plot])")
    i.set_defaults(func=_inspect)
    from .evaluate import register_cli as register_evaluate
    from .live import register_cli as register_live

    register_evaluate(sub)
    register_live(sub)
    for parser in sub.choices.values():
        if parser.epilog is None:
            parser.epilog = EPILOG
    p.commands = dict(sub.choices)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``heatcore`` console script: returns the exit code."""
    from .events import EventsFormatError
    from .persist import SnapshotError

    debug = bool(os.environ.get("HEATCORE_DEBUG"))
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    except CLIError as e:
        if debug:
            raise
        error(str(e))
        return e.code
    except BrokenPipeError:  # e.g. `heatcore evaluate --json | head`
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more reaches the pipe
        except OSError:  # pragma: no cover
            pass
        return EXIT_OK
    except ImportError as e:
        if debug:
            raise
        error(str(e))
        return EXIT_DATA
    except (EventsFormatError, SnapshotError) as e:
        if debug:
            raise
        error(str(e))
        return EXIT_USAGE
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        error(f"{where}{e.strerror or e}")
        return EXIT_USAGE
    except ValueError as e:
        if debug:
            raise
        error(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
