"""Replay a recorded event stream through an engine, with map and forecast
snapshots at a chosen cadence, and the open-interest proxy for streams that
carry no open interest.

Snapshots are taken on a clock aligned to multiples of ``every`` seconds since
the epoch: the snapshot at time ``T`` reflects every event with ``ts < T`` and
nothing later. The clock depends only on ``every``, never on the events, so
removing an event cannot move a snapshot (the evaluation relies on this).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Union

import numpy as np

from .engine import Engine, Forecast, HeatMap
from .events import EVENT_DTYPE, KIND_LIQUIDATION, KIND_OI, KIND_PRICE
from .venues import base_asset, venue_name

__all__ = [
    "CADENCES",
    "OIProxy",
    "Progress",
    "ReplayResult",
    "Snapshot",
    "add_oi_proxy",
    "as_events",
    "build_engine",
    "concat_events",
    "default_step",
    "group_by_asset",
    "iter_replay",
    "parse_seconds",
    "replay",
    "snapshot_cadence",
]

#: Defaults of the open-interest proxy (see :func:`add_oi_proxy`).
PROXY_OI_USD = 1e8
PROXY_TURNOVER_S = 86400.0
PROXY_EVERY_S = 900.0


def as_events(events: Any) -> np.ndarray:
    """``events`` as a C-contiguous EVENT_DTYPE array. Structured arrays with the same
    field names (e.g. packed by ``np.concatenate``) are converted; anything else is
    a TypeError."""
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError("events must be a numpy array of dtype heatcore.EVENT_DTYPE")
    if events.dtype != EVENT_DTYPE:
        if tuple(events.dtype.names) != tuple(EVENT_DTYPE.names or ()):
            raise TypeError("events must be a numpy array of dtype heatcore.EVENT_DTYPE")
        events = events.astype(EVENT_DTYPE)
    return np.ascontiguousarray(events)


def concat_events(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate EVENT_DTYPE arrays keeping the exact dtype (``np.concatenate``
    packs structured dtypes and drops the padding the engine relies on)."""
    out = np.zeros(sum(p.size for p in parts), dtype=EVENT_DTYPE)
    i = 0
    for p in parts:
        out[i:i + p.size] = p
        i += p.size
    return out


def default_step(price: float) -> float:
    """A price bin about 0.05 % of ``price``, rounded to 1, 2 or 5 times a power of ten
    (BTC at 90,000 gives 50; SOL at 90 gives 0.05; DOGE at 0.09 gives 0.00005)."""
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be a positive number, got {price!r}")
    target = 5e-4 * price
    exp = math.floor(math.log10(target))
    best = min((m * 10.0**e for e in (exp - 1, exp, exp + 1) for m in (1, 2, 5)),
               key=lambda s: abs(math.log(s / target)))
    return float(f"{best:.12g}")


def parse_seconds(value: Union[float, int, str]) -> float:
    """``300``, ``"300"``, ``"5min"``, ``"1h"``, ``"1d"`` -> seconds (float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h|d)?\s*", str(value))
        if not m:
            raise ValueError(f"cannot read a duration from {value!r} (e.g. 300, '5min', '1h')")
        mult = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
        out = float(m.group(1)) * mult
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return out


class Progress:
    """The one progress bar of heatcore (replay, evaluate, the command line).

    Drawn on stderr with tqdm when it is installed (the ``plot`` and ``test``
    extras bring it), else as a plain text bar; silent when the stream is not a
    terminal, so logs and pipes never see it.

    Parameters
    ----------
    total : int
        Units of work (e.g. events).
    label : str
        Shown before the bar.
    enabled : bool, optional
        Force on or off (default: on when the stream is a TTY).
    stream : file, optional
        Where to draw (default: ``sys.stderr``).
    unit : str
        Name of one unit of work.
    """

    def __init__(self, total: int, label: str = "", *, enabled: bool | None = None,
                 stream: IO[str] | None = None, unit: str = "ev") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(int(total), 1)
        self.label = label
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else bool(enabled)
        self.done = 0
        self._last = 0.0
        self._t0 = time.monotonic()
        self._tqdm: Any = None
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # the plain bar below
                pass
            else:
                self._tqdm = tqdm(total=self.total, desc=label or None, file=self.stream, unit=unit,
                                  unit_scale=True, dynamic_ncols=True, mininterval=0.1, leave=True,
                                  bar_format="{desc} {percentage:5.1f}%|{bar}| {n_fmt}/{total_fmt} "
                                             "[{elapsed}<{remaining}]")

    def update(self, done: int) -> None:
        """Set the amount of work done; redraws at most 10 times a second."""
        done = min(int(done), self.total)
        if self._tqdm is not None:
            if done > self.done:
                self._tqdm.update(done - self.done)
            self.done = done
            return
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% "
                          f"{self.done:,}/{self.total:,} {now - self._t0:6.1f}s")
        self.stream.flush()

    def close(self) -> None:
        """Finish the line (the bar shows the work as complete)."""
        if not self.enabled:
            return
        if self._tqdm is not None:
            self.update(self.total)
            self._tqdm.close()
            self._tqdm = None
            return
        self.update(self.total)
        self.stream.write("\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class OIProxy:
    """What :func:`add_oi_proxy` did: the method and, per venue, how many
    synthetic OI records it added."""

    method: str
    oi_usd: float
    turnover_s: float
    every_s: float
    venues: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One sentence for reports."""
        if self.method == "none" or not self.venues:
            return "none (the stream carries open interest for every venue with liquidations)"
        names = ", ".join(sorted(self.venues))
        return (f"turnover proxy for {names}: constant OI of {self.oi_usd:,.0f} USD; at each price "
                f"record (at most every {self.every_s:g} s) a share dt/{self.turnover_s:g}s of it "
                "closes pro rata and reopens at that price")


def add_oi_proxy(events: np.ndarray, *, method: str = "turnover", oi_usd: float = PROXY_OI_USD,
                 turnover_s: float = PROXY_TURNOVER_S, every_s: float = PROXY_EVERY_S,
                 venues: Sequence[int] | None = None) -> tuple[np.ndarray, OIProxy]:
    """Synthetic open interest for venues whose stream has liquidations but no OI.

    Most public recordings hold liquidations and prices only. The proxy keeps a
    constant open interest of ``oi_usd`` (its level is arbitrary: the forecast's
    fitted reach scale absorbs it, and only the map's shape is scored) and models
    turnover: at each price record of the venue (at most one every ``every_s``
    seconds), a share ``dt / turnover_s`` of the book closes pro rata and reopens
    at that price (two OI records, ``oi * (1 - share)`` then ``oi``). The first
    record seeds the book (see ``Engine(seed_spread=...)``).

    The proxy is built from price records only, so no liquidation influences it.

    Parameters
    ----------
    events : numpy.ndarray
        EVENT_DTYPE, time-ordered, one symbol.
    method : {"turnover", "none"}
        ``"none"`` returns the events unchanged.
    venues : sequence of int, optional
        Venue codes to proxy (default: every venue with liquidations and no OI).

    Returns
    -------
    (events, OIProxy)
        The merged, time-ordered stream and a description.
    """
    if method not in ("turnover", "none"):
        raise ValueError("method must be 'turnover' or 'none'")
    if method == "none":
        return events, OIProxy("none", 0.0, turnover_s, every_s)
    if not (oi_usd > 0 and turnover_s > 0 and every_s >= 0):
        raise ValueError("oi_usd and turnover_s must be positive, every_s >= 0")
    kind, code = events["kind"], events["venue"]
    if venues is None:
        liq = set(np.unique(code[kind == KIND_LIQUIDATION]).tolist())
        has_oi = set(np.unique(code[kind == KIND_OI]).tolist())
        venues = sorted(liq - has_oi)
    price_idx = np.flatnonzero(kind == KIND_PRICE)
    # Venues without a price feed of their own take the stream's prices.
    own = set(np.unique(code[price_idx]).tolist())
    every_ms = max(int(every_s * 1000), 1)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # (after-index, ts, oi, venue)
    counts: dict[str, int] = {}
    for v in venues:
        idx = price_idx[code[price_idx] == v] if v in own else price_idx
        # The first price record of each epoch-aligned bucket of every_s seconds.
        _, first = np.unique(events["ts"][idx] // every_ms, return_index=True)
        idx = idx[first]
        t = events["ts"][idx]
        share = np.minimum(np.diff(t) / (turnover_s * 1000.0), 1.0)
        closing = np.maximum(oi_usd * (1.0 - share), oi_usd * 1e-9)
        # Closings (from the second record on) then the reading back to oi_usd.
        after = np.concatenate([idx[1:], idx])
        ts_rows = np.concatenate([t[1:], t])
        oi = np.concatenate([closing, np.full(idx.size, oi_usd)])
        seq = np.concatenate([np.zeros(idx.size - 1 if idx.size else 0), np.ones(idx.size)])
        order = np.lexsort((seq, after))
        parts.append((after[order], ts_rows[order], oi[order], int(v)))
        counts[venue_name(int(v))] = int(after.size)
    rows = [p for p in parts if p[0].size]
    if not rows:
        return events, OIProxy("turnover", oi_usd, turnover_s, every_s, counts)
    after = np.concatenate([p[0] for p in rows])
    extra = np.zeros(after.size, dtype=EVENT_DTYPE)
    extra["ts"] = np.concatenate([p[1] for p in rows])
    extra["value"] = np.concatenate([p[2] for p in rows])
    extra["price"] = events["price"][after]
    extra["venue"] = np.concatenate([np.full(p[0].size, p[3]) for p in rows])
    extra["kind"] = KIND_OI
    # Each proxy record goes right after the price record it was made from, in order.
    order_key = np.concatenate([2 * np.arange(events.size), 2 * after + 1])
    merged = concat_events([events, extra])
    merged = merged[np.argsort(order_key, kind="stable")]
    return merged, OIProxy("turnover", oi_usd, turnover_s, every_s, counts)


def group_by_asset(streams: Mapping[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """Merge per-symbol streams that trade the same base asset (``BTCUSDT`` on one
    venue, ``BTC-USDT-SWAP`` and ``BTC`` on others): ``{asset: (symbol, events)}``
    where ``symbol`` is one of the originals (used for the venues' tier tables)."""
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for sym, ev in streams.items():
        groups.setdefault(base_asset(sym) if sym else sym, []).append((sym, ev))
    out: dict[str, tuple[str, np.ndarray]] = {}
    for asset, parts in groups.items():
        parts.sort(key=lambda p: -p[1].size)
        ev = concat_events([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        if len(parts) > 1:
            ev = ev[np.argsort(ev["ts"], kind="stable")]
        out[asset] = (parts[0][0], ev)
    return out


def build_engine(events: np.ndarray, *, symbol: str = "BTCUSDT", step: float | None = None,
                 venues: Sequence[str] | None = None, learn: bool = True,
                 forecast: Mapping[str, Any] | None = None, **engine_kwargs: Any) -> Engine:
    """An engine for a stream: its venues (those present), a default step from its
    first price, and optional forecast settings (:meth:`Engine.configure_forecast`)."""
    if venues is None:
        venues = [venue_name(int(c)) for c in np.unique(events["venue"])]
    if step is None:
        px = events["price"][events["price"] > 0]
        if px.size == 0:
            raise ValueError("the stream has no prices: pass step=")
        step = default_step(float(px[0]))
    eng = Engine(symbol=symbol, step=float(step), venues=list(venues), learn=learn, **engine_kwargs)
    if forecast:
        eng.configure_forecast(**dict(forecast))
    return eng


@dataclass(frozen=True)
class Snapshot:
    """The engine's map and forecast at ``ts`` (reflecting every event with ``ts`` earlier)."""

    ts: int
    heatmap: HeatMap | None
    forecast: Forecast | None


@dataclass
class ReplayResult:
    """What :func:`replay` collected."""

    engine: Engine
    snapshots: list[Snapshot]
    counts: dict[str, Any]
    oi_proxy: OIProxy
    every_s: float = 300.0   # the snapshot cadence used (seconds)


def _boundaries(ts: np.ndarray, every_ms: int) -> np.ndarray:
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = (int(ts[0]) // every_ms + 1) * every_ms
    last = (int(ts[-1]) // every_ms + 1) * every_ms
    return np.arange(first, last + 1, every_ms, dtype=np.int64)


#: Cadences (seconds) :func:`snapshot_cadence` lengthens a cadence to.
CADENCES = (60, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def snapshot_cadence(events: np.ndarray, every: Union[float, str] = 300,
                     max_snapshots: int | None = None) -> float:
    """The snapshot cadence (seconds) for ``events``: ``every``, or, when the stream's
    span would give more than ``max_snapshots`` snapshots at that cadence, the shortest
    of :data:`CADENCES` (longer than ``every``) that gives at most that many (the
    longest one if none does). Keeps :func:`replay`'s memory bounded on long files."""
    every_s = parse_seconds(every)
    if max_snapshots is None:
        return every_s
    if isinstance(max_snapshots, bool) or not isinstance(max_snapshots, int) or max_snapshots < 1:
        raise ValueError(f"max_snapshots must be a positive integer, got {max_snapshots!r}")
    ts = np.asarray(events["ts"])
    span_s = float(ts[-1] - ts[0]) / 1000.0 if ts.size else 0.0
    if span_s / every_s <= max_snapshots:
        return every_s
    longer = [float(c) for c in CADENCES if c > every_s]
    return next((c for c in longer if span_s / c <= max_snapshots), longer[-1] if longer else every_s)


def iter_replay(events: np.ndarray, engine: Engine | None = None, *,
                every: Union[float, str] = 300, horizon_s: float = 3600.0,
                what: Sequence[str] = ("map", "forecast"), venue: str | None = None,
                window_pct: float | None = None, progress: bool | None = None,
                counts: dict[str, Any] | None = None, **build: Any) -> Iterator[Snapshot]:
    """Run a time-ordered stream through an engine, yielding snapshots every ``every``
    seconds (clock aligned to the epoch, see the module docstring).

    Parameters
    ----------
    events : numpy.ndarray
        EVENT_DTYPE, time-ordered (one symbol).
    engine : Engine, optional
        Default: :func:`build_engine` with ``build`` keyword arguments.
    every : float or str
        Snapshot cadence in seconds (``"5min"`` style strings accepted).
    horizon_s : float
        Forecast horizon of the forecast snapshots.
    what : sequence of {"map", "forecast"}
        Which snapshots to take.
    venue : str, optional
        One venue's map/forecast (default: summed over venues).
    window_pct : float, optional
        Forecast window around price (default: the whole grid).
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal).
    counts : dict, optional
        Receives the ingest counters, summed over the run.
    """
    events = as_events(events)
    if engine is None:
        engine = build_engine(events, **build)
    elif build:
        raise TypeError(f"unexpected arguments with an engine: {', '.join(build)}")
    bad = set(what) - {"map", "forecast"}
    if bad:
        raise ValueError(f"what: unknown snapshot kinds {sorted(bad)}")
    every_ms = round(parse_seconds(every) * 1000)
    ts = events["ts"]
    bounds = _boundaries(ts, every_ms)
    cuts = np.searchsorted(ts, bounds, side="left")
    bar = Progress(events.size, "replay", enabled=progress)
    total: dict[str, Any] = counts if counts is not None else {}
    start = 0
    try:
        for b, cut in zip(bounds.tolist(), cuts.tolist(), strict=False):
            if cut > start:
                _add_counts(total, engine.ingest(events[start:cut]))
                start = cut
            bar.update(start)
            yield Snapshot(int(b),
                           engine.heatmap(venue) if "map" in what else None,
                           engine.forecast(horizon_s, venue, window_pct=window_pct)
                           if "forecast" in what else None)
        if start < events.size:
            _add_counts(total, engine.ingest(events[start:]))
    finally:
        bar.close()


def _add_counts(total: dict[str, Any], c: Mapping[str, Any]) -> None:
    for k, v in c.items():
        if k == "reasons":
            reasons = total.setdefault("reasons", {})
            for r, n in v.items():
                reasons[r] = reasons.get(r, 0) + int(n)
        else:
            total[k] = total.get(k, 0) + int(v)


def replay(events: np.ndarray, engine: Engine | None = None, *, every: Union[float, str] = 300,
           horizon_s: float = 3600.0, what: Sequence[str] = ("map", "forecast"),
           venue: str | None = None, window_pct: float | None = None,
           oi_proxy: str = "auto", progress: bool | None = None, max_snapshots: int | None = None,
           **build: Any) -> ReplayResult:
    """Run a stream through an engine and collect map/forecast snapshots.

    Parameters
    ----------
    events : numpy.ndarray or path-like
        EVENT_DTYPE array (one symbol, time-ordered) or a normalized JSONL file.
    engine : Engine, optional
        Default: an engine built for the stream (``symbol=``, ``step=``, ``venues=``,
        ``learn=`` as keyword arguments; step defaults to ~0.05 % of the first price).
    every : float or str
        Snapshot cadence in seconds, aligned to the epoch.
    oi_proxy : {"auto", "turnover", "none"}
        ``"auto"``/``"turnover"``: synthetic OI (:func:`add_oi_proxy`) for venues with
        liquidations and no OI records.
    max_snapshots : int, optional
        Keep at most about this many snapshots: on a stream too long for ``every``, the
        cadence is lengthened (:func:`snapshot_cadence`; ``result.every_s`` says which).
        Each map snapshot holds the whole price grid, so a 90-day file at 5 minutes
        would otherwise hold ~26,000 of them (several GB).

    Returns
    -------
    ReplayResult
        ``engine`` (after the whole stream), ``snapshots``, ``counts``, ``oi_proxy``,
        ``every_s`` (the cadence used).
    """
    if isinstance(events, (str, os.PathLike)):
        from .events import read_events
        events = read_events(events)
    events = as_events(events)
    if oi_proxy not in ("auto", "turnover", "none"):
        raise ValueError("oi_proxy must be 'auto', 'turnover' or 'none'")
    stream, proxy = add_oi_proxy(events, method="none" if oi_proxy == "none" else "turnover")
    every_s = snapshot_cadence(events, every, max_snapshots)
    counts: dict[str, Any] = {}
    if engine is None:
        engine = build_engine(events, **build)
        build = {}
    snaps = list(iter_replay(stream, engine, every=every_s, horizon_s=horizon_s, what=what,
                             venue=venue, window_pct=window_pct, progress=progress,
                             counts=counts, **build))
    return ReplayResult(engine, snaps, counts, proxy, every_s)
