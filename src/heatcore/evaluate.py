"""Prequential skill scores of the horizon forecast: learned engine vs static
engine vs a distance-only map vs a uniform map, on the same events.

How a stream is scored (:func:`evaluate`)
------------------------------------------
Two engines read the stream side by side: the learned one (``learn=True``) and
the static one (``learn=False``: documented mechanics and prior mixes; the
forecast machinery is the same). Snapshots are taken on a clock aligned to
multiples of ``every_s`` since the epoch; the snapshot at ``T`` reflects the
events with ``ts < T``. Four forecasts are read at each snapshot, per side, on a
window of bins around the forecast's reference price ``p``:

* ``learned`` / ``static``: :meth:`Engine.forecast` of each engine;
* ``near``: the distance-only baseline, the reach probability over a flat
  exposure (knows nothing but the current price and its volatility);
* ``uniform``: every bin of the window alike.

The window is ``p * (1 -+ window_pct)``, with ``window_pct`` defaulting to
``0.05 * sqrt(max(1, horizon_s / 3600))`` (5 % for one hour).

* ``loglik_*``: each liquidation (venue, side, price, ts) is scored against the
  latest snapshot before it (at most ``every_s`` old): the log of the
  probability of its bin under the side's forecast normalised over the window,
  mixed with a uniform floor, ``p(bin) = (1 - floor) * F[bin] / sum(F) +
  floor / W`` (``floor = 0.01``, ``W`` bins in the window; a forecast that is
  zero on the whole window counts as uniform; an event outside the window
  scores ``log(floor / W)`` under every model). Mean over events, nats.
* ``loglik_next_*``: the same events, each under its snapshot's forecast of the
  next ``every_s`` (the interval the event falls in) instead of the
  ``horizon_s`` one; same window and floor.
* ``loglik_horizon_*``: the ``horizon_s`` forecast against the events of its
  horizon: each liquidation under every snapshot of the top-decile clock
  (``decile_every_s``) in the ``horizon_s`` before it, same window and floor
  (an event outside a snapshot's window scores ``log(floor / W)``); mean over
  (event, snapshot) pairs.

  ``loglik_*`` scores a one-hour forecast by the next minute's events, which
  sit at the price's front; it rewards mass at the front more than knowing
  where the hour's liquidations will be. On :mod:`heatcore.sim` a forecast
  holding the simulator's true open book scores below both engines on it on
  every seed and above them on top-decile precision
  (``tests/eval_truebook.py``). ``loglik_next`` and ``loglik_horizon`` pair each
  forecast with the events of the interval it forecasts.
* ``top_decile_precision_*``: snapshots every ``decile_every_s`` (300 s); each
  liquidation is credited against every snapshot of the ``horizon_s`` before it
  with its notional times the share of its bin in the top 10 % of the window's
  bins by forecast intensity (a bin tied at the threshold gets the fraction of
  the tied bins that fits in the 10 %). Precision = credited notional /
  notional over (event, snapshot) pairs with the event inside the window, so a
  flat map scores 0.10; ``window_coverage`` is the share of pairs inside it.
* ``unexplained_rate``: share of the learned engine's liquidations with no
  exposure of any tier near them (two bins or 1 % of price).

The scoring is leak-free: a snapshot is taken before any event it scores is
ingested, and the snapshot clock does not depend on the events.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .engine import Engine
from .events import KIND_LIQUIDATION, KIND_OI, KIND_PRICE
from .replay import (
    OIProxy,
    Progress,
    add_oi_proxy,
    as_events,
    build_engine,
    default_step,
    group_by_asset,
    parse_seconds,
)
from .venues import venue_id, venue_name

__all__ = [
    "MODELS",
    "DailyCheck",
    "EvaluationReport",
    "daily_volume_check",
    "evaluate",
    "evaluate_file",
    "pre_event_forecasts",
    "register_cli",
]

#: The four forecasts compared, in report order.
MODELS = ("learned", "static", "near", "uniform")
LOGLIK_FLOOR = 0.01
TOP_SHARE = 0.10

PathLike = Union[str, "os.PathLike[str]"]


def _window_pct(horizon_s: float) -> float:
    return 0.05 * math.sqrt(max(1.0, horizon_s / 3600.0))


class _Score:
    """Accumulators of one scope (all venues, or one venue)."""

    __slots__ = ("cov_q", "credit", "hll", "ll", "n", "nll", "pair_q", "pairs_in", "pairs_total")

    def __init__(self) -> None:
        self.n = 0
        self.ll = np.zeros(len(MODELS))
        self.nll = np.zeros(len(MODELS))  # under the forecast of the next every_s
        self.hll = np.zeros(len(MODELS))
        self.credit = np.zeros(len(MODELS))
        self.pair_q = 0.0
        self.pairs_in = 0
        self.pairs_total = 0
        self.cov_q = 0.0


def _top_share(values: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """Per row of ``values`` (..., W): each bin's share of membership in the top
    ``share`` of bins by value; ties at the threshold split what is left."""
    w = values.shape[-1]
    k = share * w
    srt = -np.sort(-values, axis=-1)
    thr_idx = min(max(math.ceil(k) - 1, 0), w - 1)
    thr = srt[..., thr_idx:thr_idx + 1]
    above = values > thr
    tied = values == thr
    n_above = above.sum(axis=-1, keepdims=True)
    n_tied = tied.sum(axis=-1, keepdims=True)
    frac = np.clip((k - n_above) / np.maximum(n_tied, 1), 0.0, 1.0)
    return np.where(above, 1.0, np.where(tied, frac, 0.0))


@dataclass
class EvaluationReport:
    """Skill report of :func:`evaluate`. ``to_dict()`` holds the scores overall and
    under ``per_venue``; ``to_markdown()`` renders them; ``plot(path)`` writes PNG
    figures (needs the ``plot`` extra)."""

    symbol: str
    step: float
    horizon_s: float
    every_s: float
    decile_every_s: float
    window_pct: float
    floor: float
    oi_proxy: OIProxy
    overall: dict[str, Any]
    per_venue: dict[str, dict[str, Any]]
    engine_state: dict[str, Any] = field(default_factory=dict)
    timeline: dict[str, list[float]] = field(default_factory=dict)
    mixes: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tiers: list[float] = field(default_factory=list)
    learner_active: bool = False
    event_scores: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable): overall scores, ``per_venue``, settings."""
        out = dict(self.overall)
        out.update({
            "symbol": self.symbol, "step": self.step, "horizon_s": self.horizon_s,
            "every_s": self.every_s, "decile_every_s": self.decile_every_s,
            "window_pct": self.window_pct, "loglik_floor": self.floor,
            "oi_proxy": self.oi_proxy.describe(), "learner_active": self.learner_active,
            "per_venue": self.per_venue, "forecast_state": self.engine_state,
        })
        return out

    def to_json(self, **kw: Any) -> str:
        """``to_dict()`` as JSON."""
        return json.dumps(self.to_dict(), default=_json_default, **kw)

    def to_markdown(self) -> str:
        """A Markdown summary: the four rows overall, then per venue."""
        o = self.overall
        lines = [
            f"### {self.symbol}: forecast skill, horizon {self.horizon_s:g} s",
            "",
            f"{o['n_liquidations']:,} liquidations scored; step {self.step:g}; window "
            f"+-{100 * self.window_pct:.3g} % of price; snapshots every {self.every_s:g} s "
            f"(top decile: every {self.decile_every_s:g} s); OI: {self.oi_proxy.describe()}.",
            "",
            f"| forecast | log-lik (nats/event) | log-lik, next {self.every_s:g} s | "
            f"log-lik, horizon pairs | top-decile precision |",
            "|---|---:|---:|---:|---:|",
        ]
        for m in MODELS:
            cells = [o[f"{k}_{m}"] for k in ("loglik", "loglik_next", "loglik_horizon",
                                              "top_decile_precision")]
            lines.append(f"| {m} | " + " | ".join(_fmt(x) for x in cells) + " |")
        brier = ("n/a (no resolved cascade forecast)" if o.get("cascade_brier") is None
                 else f"{_fmt(o['cascade_brier'])} learned / {_fmt(o.get('cascade_brier_static'))} static / "
                      f"{_fmt(o['cascade_brier_climatology'])} climatology over "
                      f"{o.get('cascade_occasions', 0)} occasions x levels")
        lines += ["", f"unexplained rate {_fmt(o['unexplained_rate'])}; window coverage "
                  f"{_fmt(o['window_coverage'])}; cascade Brier: {brier}."]
        if not self.learner_active:
            lines.append("The learner has not landed: the learned engine equals the static one.")
        if len(self.per_venue) > 1 or (self.per_venue and o["n_liquidations"] == 0):
            lines += ["", "| venue | n | ll learned | ll static | ll near | ll uniform | "
                      "top10 learned | top10 static | top10 near | top10 uniform |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for v, d in sorted(self.per_venue.items()):
                cells = [_fmt(d[f"loglik_{m}"]) for m in MODELS]
                cells += [_fmt(d[f"top_decile_precision_{m}"]) for m in MODELS]
                lines.append(f"| {v} | {d['n_liquidations']:,} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: PathLike) -> list[str]:
        """Write PNG figures (:mod:`heatcore.plot`): ``<stem>_skill.png`` (cumulative
        log-likelihood gain over the uniform map), ``<stem>_scores.png`` (the scores
        per forecast, overall and per venue) and, when mixes were kept,
        ``<stem>_mix.png`` (the learned leverage mix per venue). Returns the paths."""
        from .plot import plot_report_mix, plot_scores, plot_skill

        base = os.fspath(path)
        stem = base[:-4] if base.endswith(".png") else base
        paths = [stem + "_skill.png", stem + "_scores.png"]
        plot_skill(self, path=paths[0])
        plot_scores(self, path=paths[1])
        if self.mixes:
            paths.append(stem + "_mix.png")
            plot_report_mix(self, path=paths[-1])
        return paths


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.3f}"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _scores_dict(s: _Score, unexplained: float | None) -> dict[str, Any]:
    d: dict[str, Any] = {"n_liquidations": int(s.n)}
    for i, m in enumerate(MODELS):
        d[f"loglik_{m}"] = float(s.ll[i] / s.n) if s.n else None
    for i, m in enumerate(MODELS):
        d[f"top_decile_precision_{m}"] = float(s.credit[i] / s.pair_q) if s.pair_q > 0 else None
    for i, m in enumerate(MODELS):
        d[f"loglik_next_{m}"] = float(s.nll[i] / s.n) if s.n else None
    for i, m in enumerate(MODELS):
        d[f"loglik_horizon_{m}"] = float(s.hll[i] / s.pairs_total) if s.pairs_total else None
    d["cascade_brier"] = None  # overall only: filled by evaluate() from the cascade forecasts
    d["cascade_brier_climatology"] = None
    d["unexplained_rate"] = unexplained
    d["window_coverage"] = float(s.pairs_in / s.pairs_total) if s.pairs_total else None
    return d


def evaluate(events: np.ndarray, symbol: str = "BTCUSDT", step: float | None = None,
             horizon_s: float = 3600.0, *, every_s: float = 60.0, decile_every_s: float = 300.0,
             window_pct: float | None = None, floor: float = LOGLIK_FLOOR,
             venues: Sequence[str] | None = None, oi_proxy: str = "auto",
             forecast: Mapping[str, Any] | None = None,
             engine_kwargs: Mapping[str, Any] | None = None,
             progress: bool | None = None, per_venue: bool = True,
             keep_event_scores: bool = False) -> EvaluationReport:
    """Score the learned engine, the static engine, the distance-only map and the
    uniform map on the same stream, prequentially (see the module docstring).

    Parameters
    ----------
    events : numpy.ndarray
        EVENT_DTYPE, time-ordered, one symbol (several venues allowed).
    symbol : str
        The market; its base asset selects the venues' tier tables.
    step : float, optional
        Bin width (default ~0.05 % of the first price, rounded: :func:`default_step`).
    horizon_s : float
        Forecast horizon.
    every_s : float
        Cadence of the snapshots that log-likelihood is scored against (and the
        horizon of the forecast ``loglik_next`` scores).
    decile_every_s : float
        Cadence of the snapshots of the top-decile precision and of ``loglik_horizon``.
    window_pct : float, optional
        Half-width of the scoring window as a fraction of price.
    floor : float
        Uniform floor mixed into every normalised forecast.
    venues : sequence of str, optional
        Engine venues (default: those in the stream).
    oi_proxy : {"auto", "turnover", "none"}
        Synthetic open interest for venues with liquidations and no OI records.
    forecast : mapping, optional
        Forecast settings for both engines (:meth:`Engine.configure_forecast`).
    engine_kwargs : mapping, optional
        Extra :class:`Engine` arguments for both engines.
    progress : bool, optional
        Progress bar on stderr (default: when it is a terminal).
    per_venue : bool
        Also score each venue's own forecast.
    keep_event_scores : bool
        Keep every liquidation's log-likelihood under each model
        (``report.event_scores``, NaN for events before the first snapshot).

    Returns
    -------
    EvaluationReport
    """
    run = _Run(events, symbol, step, horizon_s, every_s, decile_every_s, window_pct, floor,
               venues, oi_proxy, forecast, engine_kwargs, per_venue)
    stream, learned = run.stream, run.learned
    liq_ts = run.liq_ts
    every_ms, h_ms = run.every_ms, run.h_ms
    scored_venues = run.scored_venues
    scores = {"all": _Score(), **{v: _Score() for v in scored_venues}}
    ts = stream["ts"]
    if ts.size == 0:
        b_ll = np.zeros(0, dtype=np.int64)
        b_dec = b_ll
    else:
        b_ll = run.clock(every_ms)
        b_dec = run.clock(run.dec_ms)
    # Only snapshots that score something are computed.
    b_ll = b_ll[np.searchsorted(liq_ts, b_ll + every_ms) > np.searchsorted(liq_ts, b_ll)]
    b_dec = b_dec[np.searchsorted(liq_ts, b_dec + h_ms) > np.searchsorted(liq_ts, b_dec)]
    # Cascade forecasts on their own clock: every decile_every_s, whatever follows
    # (selecting occasions by the liquidations after them would leak the outcome).
    b_casc = run.clock(run.dec_ms) if ts.size else np.zeros(0, dtype=np.int64)
    bounds = np.union1d(np.union1d(b_ll, b_dec), b_casc)
    is_ll = set(b_ll.tolist())
    is_dec = set(b_dec.tolist())
    is_casc = set(b_casc.tolist())
    casc: list[tuple[int, str, np.ndarray, np.ndarray, np.ndarray]] = []

    # Timeline of log-lik gains over uniform (all venues), bucketed for plots.
    span_s = float(ts[-1] - ts[0]) / 1000.0 if ts.size else 0.0
    bucket_ms = max(every_ms, int(max(3600.0, span_s / 200.0) * 1000))
    tl: dict[int, np.ndarray] = {}
    event_ll = np.full((len(MODELS), liq_ts.size), np.nan) if keep_event_scores else None
    bar = Progress(stream.size, f"evaluate {symbol}", enabled=progress)
    for b, k_lo, w, fc in run.snapshots(bounds, bar, always=is_casc):
        if b in is_casc:
            for side in ("long", "short"):
                cl, cs = learned.cascade(side, 10), run.static.cascade(side, 10)
                n = min(cl.size, cs.size)
                if n:
                    casc.append((b, side, cl["price"][:n].copy(), cl["probability"][:n].copy(),
                                 cs["probability"][:n].copy()))
        if fc is None:
            continue
        if b in is_ll:
            lo = np.searchsorted(liq_ts, b, side="left")
            hi = np.searchsorted(liq_ts, b + every_ms, side="left")
            if hi > lo:
                ll = _score_loglik(fc, slice(lo, hi), k_lo, w, run.floor, run.liq_k, run.liq_side,
                                   run.liq_vrow, scores, scored_venues, tl, liq_ts, bucket_ms)
                if event_ll is not None:
                    event_ll[:, lo:hi] = ll
                # The same events under the forecast of the interval they fall in.
                nxt = run.forecasts(every_ms / 1000.0, k_lo, w)
                _score_loglik(nxt, slice(lo, hi), k_lo, w, run.floor, run.liq_k, run.liq_side,
                              run.liq_vrow, scores, scored_venues, None, liq_ts, bucket_ms, attr="nll")
        if b in is_dec:
            lo = np.searchsorted(liq_ts, b, side="left")
            hi = np.searchsorted(liq_ts, b + h_ms, side="left")
            if hi > lo:
                _score_decile(fc, slice(lo, hi), k_lo, w, run.floor, run.liq_k, run.liq_side, run.liq_vrow,
                              run.liq_q, scores, scored_venues)
    run.finish()
    bar.close()
    names = learned.venues
    static = run.static
    proxy = run.proxy
    step = run.step
    wpct = run.wpct
    dec_ms = run.dec_ms
    floor = run.floor

    # Unexplained events (learned engine's counters), overall and per venue.
    unexplained: dict[str, float | None] = {}
    tot_u = tot_n = 0
    for v in names:
        st = learned.diagnostics(v)
        n = int(st["liquidations"])
        u = int(st["unexplained_long"]) + int(st["unexplained_short"])
        tot_u += u
        tot_n += n
        unexplained[v] = u / n if n else None
    overall = _scores_dict(scores["all"], tot_u / tot_n if tot_n else None)
    overall.update(_cascade_brier(casc, stream, float(learned.cascade_config()["horizon_s"])))
    pv = {v: _scores_dict(scores[v], unexplained.get(v)) for v in scored_venues}
    state = {v: learned.forecast_state(v) for v in scored_venues}
    glob = learned.forecast_state()
    state["_engine"] = {"sigma_1h": float(glob["sigma_1h"]),
                        "calibration_n": float(glob["calibration_n"]),
                        "survival_z1": float(glob["survival_z"][10]),
                        "survival_z3": float(glob["survival_z"][30])}
    mixes = {v: {"long": learned.leverage_mix(v, "long")[1].tolist(),
                 "short": learned.leverage_mix(v, "short")[1].tolist()} for v in scored_venues}
    keys = sorted(tl)
    timeline = {"ts": [float(k) * bucket_ms for k in keys]}
    for i, m in enumerate(MODELS[:3]):
        timeline[m] = [float(tl[k][i]) for k in keys]
    return EvaluationReport(symbol=symbol, step=step, horizon_s=horizon_s, every_s=every_ms / 1000,
                            decile_every_s=dec_ms / 1000, window_pct=wpct, floor=floor,
                            oi_proxy=proxy, overall=overall, per_venue=pv, engine_state=state,
                            timeline=timeline, mixes=mixes, tiers=learned.tiers.tolist(),
                            learner_active=_learner_active(learned, static),
                            event_scores=None if event_ll is None else _event_table(run, event_ll))


def _cascade_brier(casc: list[tuple[int, str, np.ndarray, np.ndarray, np.ndarray]], stream: np.ndarray,
                   horizon_s: float) -> dict[str, Any]:
    """Brier scores of "price reaches cascade level k within the horizon", resolved
    against the stream's own prices, for the learned and the static cascade and
    for climatology (each level's base rate over the whole run, a strict
    baseline that knows the future). Occasions whose horizon runs past the end
    of the stream are dropped."""
    out: dict[str, Any] = {"cascade_brier": None, "cascade_brier_static": None,
                           "cascade_brier_climatology": None, "cascade_occasions": 0}
    prices = stream[stream["kind"] == 0]
    if not casc or prices.size == 0:
        return out
    p_ts, p_px = prices["ts"], prices["price"]
    h_ms = int(horizon_s * 1000)
    rows: list[tuple[int, float, float, float]] = []  # level index, outcome, p learned, p static
    for b, side, lvl, pl, ps in casc:
        if b + h_ms > int(p_ts[-1]):
            continue
        a, z = np.searchsorted(p_ts, b, side="left"), np.searchsorted(p_ts, b + h_ms, side="right")
        if z <= a:
            continue
        seg = p_px[a:z]
        hit = seg.min() <= lvl if side == "long" else seg.max() >= lvl
        rows.extend((k, float(hit[k]), float(pl[k]), float(ps[k])) for k in range(lvl.size))
    if not rows:
        return out
    r = np.array(rows)
    k, y = r[:, 0].astype(int), r[:, 1]
    base = np.bincount(k, weights=y) / np.maximum(np.bincount(k), 1)
    out.update(cascade_brier=float(np.mean((r[:, 2] - y) ** 2)),
               cascade_brier_static=float(np.mean((r[:, 3] - y) ** 2)),
               cascade_brier_climatology=float(np.mean((base[k] - y) ** 2)),
               cascade_occasions=len({(c[0], c[1]) for c in casc if c[0] + h_ms <= int(p_ts[-1])}))
    return out


def _event_table(run: _Run, ll: np.ndarray) -> np.ndarray:
    out = np.zeros(run.liq_ts.size, dtype=[("ts", "<i8"), ("venue", "<u2"), ("side", "i1"),
                                             ("price", "<f8"), ("notional", "<f8")]
                   + [(f"loglik_{m}", "<f8") for m in MODELS])
    out["ts"] = run.liq_ts
    out["venue"] = run.liq["venue"]
    out["side"] = run.liq["side"]
    out["price"] = run.liq["price"]
    out["notional"] = run.liq["value"]
    for i, m in enumerate(MODELS):
        out[f"loglik_{m}"] = ll[i]
    return out


class _Run:
    """The two engines reading one stream, and the forecasts read from them at
    snapshot times (shared by :func:`evaluate` and :func:`pre_event_forecasts`)."""

    def __init__(self, events: Any, symbol: str, step: float | None, horizon_s: float,
                 every_s: float, decile_every_s: float, window_pct: float | None, floor: float,
                 venues: Sequence[str] | None, oi_proxy: str, forecast: Mapping[str, Any] | None,
                 engine_kwargs: Mapping[str, Any] | None, per_venue: bool) -> None:
        events = as_events(events)
        if events.size == 0:
            raise ValueError("no events to evaluate")
        if events.size > 1 and np.any(np.diff(events["ts"]) < 0):
            raise ValueError("events must be time-ordered")
        self.horizon_s = float(horizon_s)
        if not (self.horizon_s > 0):
            raise ValueError("horizon_s must be positive")
        self.every_ms = round(parse_seconds(every_s) * 1000)
        self.dec_ms = round(parse_seconds(decile_every_s) * 1000)
        self.h_ms = round(self.horizon_s * 1000)
        if not (0.0 <= floor < 1.0):
            raise ValueError("floor must be in [0, 1)")
        self.floor = float(floor)
        self.wpct = _window_pct(self.horizon_s) if window_pct is None else float(window_pct)
        if not (0 < self.wpct < 1):
            raise ValueError("window_pct must be in (0, 1)")
        if step is None:
            px = events["price"][(events["price"] > 0) & (events["kind"] != KIND_OI)]
            if px.size == 0:
                raise ValueError("the stream has no prices: pass step=")
            step = default_step(float(px[0]))
        self.step = float(step)
        if oi_proxy not in ("auto", "turnover", "none"):
            raise ValueError("oi_proxy must be 'auto', 'turnover' or 'none'")
        self.stream, self.proxy = add_oi_proxy(
            events, method="none" if oi_proxy == "none" else "turnover")
        kw = dict(engine_kwargs or {})
        self.learned = build_engine(events, symbol=symbol, step=self.step, venues=venues,
                                    learn=True, forecast=forecast, **kw)
        self.static = build_engine(events, symbol=symbol, step=self.step, venues=venues,
                                   learn=False, forecast=forecast, **kw)
        slot_of = {n: i for i, n in enumerate(self.learned.venues)}
        liq = self.stream[self.stream["kind"] == KIND_LIQUIDATION]
        self.liq = liq
        self.liq_ts = liq["ts"]
        present = [venue_name(int(c)) for c in np.unique(liq["venue"])]
        self.scored_venues = [v for v in present if v in slot_of] if per_venue else []
        self.slots = [-1] + [slot_of[v] for v in self.scored_venues]
        # Row of each liquidation's venue in the forecast array (0 = all venues; -1 = none).
        row_by_code = {venue_id(v): i + 1 for i, v in enumerate(self.scored_venues)}
        self.liq_vrow = np.array([row_by_code.get(int(c), -1) for c in liq["venue"]],
                                 dtype=np.int64)
        self.liq_side = np.where(liq["side"] == 1, 0, 1)
        self.liq_q = liq["value"].astype(float)
        self.liq_k = np.rint(liq["price"] / self.step).astype(np.int64)
        self._start = 0
        self._pool: Any = None

    def clock(self, every_ms: int) -> np.ndarray:
        """Snapshot times: multiples of ``every_ms`` since the epoch over the stream."""
        ts = self.stream["ts"]
        return np.arange((int(ts[0]) // every_ms + 1) * every_ms, int(ts[-1]) + every_ms,
                         every_ms, dtype=np.int64)

    def snapshots(self, bounds: np.ndarray, bar: Progress | None = None, always: set[int] | None = None
                  ) -> Iterator[tuple[int, int, int, np.ndarray | None]]:
        """For each time ``b`` in ``bounds`` (ascending): ingest every event with
        ``ts < b`` into both engines, then yield ``(b, k_lo, w, fc)`` with ``fc`` the
        forecasts ``(model, slot row, side, bin)`` on bins ``k_lo .. k_lo+w-1``."""
        stream = self.stream
        cuts = np.searchsorted(stream["ts"], bounds, side="left")
        for b, cut in zip(bounds.tolist(), cuts.tolist(), strict=False):
            if cut > self._start:
                self._ingest(stream[self._start:cut])
                self._start = cut
                if bar is not None:
                    bar.update(cut)
            anchor = float(self.learned.forecast_state()["anchor_price"])
            if not (anchor > 0):
                if always is not None and b in always:
                    yield b, 0, 0, None  # the caller reads the engines itself
                continue
            k_lo = max(math.floor(anchor * (1 - self.wpct) / self.step), 1)
            w = math.ceil(anchor * (1 + self.wpct) / self.step) - k_lo + 1
            yield b, k_lo, w, self.forecasts(self.horizon_s, k_lo, w)

    def forecasts(self, horizon_s: float, k_lo: int, w: int) -> np.ndarray:
        """The four forecasts ``(model, slot row, side, bin)`` of the engines' current
        state over ``horizon_s`` on bins ``k_lo .. k_lo+w-1``."""
        f_l, reach = _forecast(self.learned, self.slots, horizon_s, k_lo, w)
        f_s, _ = _forecast(self.static, self.slots, horizon_s, k_lo, w)
        return np.stack([f_l, f_s, np.broadcast_to(reach, f_l.shape), np.ones_like(f_l)])

    def _ingest(self, chunk: np.ndarray) -> None:
        # The engines are independent and ingest releases the GIL: large chunks
        # go to both at once.
        if chunk.size >= 256:
            from concurrent.futures import ThreadPoolExecutor
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1)
            fut = self._pool.submit(self.static.ingest, chunk)
            self.learned.ingest(chunk)
            fut.result()
        else:
            self.learned.ingest(chunk)
            self.static.ingest(chunk)

    def finish(self) -> None:
        """Ingest the rest of the stream."""
        if self._start < self.stream.size:
            self._ingest(self.stream[self._start:])
            self._start = self.stream.size
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def pre_event_forecasts(events: np.ndarray, ts_ms: int, symbol: str = "BTCUSDT",
                        step: float | None = None, horizon_s: float = 3600.0, *,
                        every_s: float = 60.0, **kwargs: Any) -> tuple[int, int, np.ndarray]:
    """The forecasts :func:`evaluate` scores a liquidation at ``ts_ms`` against:
    ``(snapshot_ts, k_lo, fc)`` with ``fc[model, slot row, side, bin]`` (models in
    :data:`MODELS` order, row 0 = all venues). Same arguments as :func:`evaluate`."""
    run = _Run(events, symbol, step, horizon_s, every_s, kwargs.pop("decile_every_s", 300.0),
               kwargs.pop("window_pct", None), kwargs.pop("floor", LOGLIK_FLOOR),
               kwargs.pop("venues", None), kwargs.pop("oi_proxy", "auto"),
               kwargs.pop("forecast", None), kwargs.pop("engine_kwargs", None),
               kwargs.pop("per_venue", True))
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    b = (int(ts_ms) // run.every_ms) * run.every_ms
    for snap_ts, k_lo, _, fc in run.snapshots(np.array([b], dtype=np.int64)):
        if fc is not None:
            return snap_ts, k_lo, fc
    raise ValueError("no price before that time: nothing to forecast from")


def _learner_active(learned: Engine, static: Engine) -> bool:
    """Whether learning changed anything: a mix moved away from the static prior."""
    for v in learned.venues:
        for side in ("long", "short"):
            if not np.allclose(learned.leverage_mix(v, side)[1], static.leverage_mix(v, side)[1]):
                return True
    return False


def _forecast(eng: Engine, slots: list[int], horizon_s: float, k_lo: int, w: int
              ) -> tuple[np.ndarray, np.ndarray]:
    from . import _core
    with eng._lock:
        out, reach = _core.engine_forecast(eng._core, slots, horizon_s, k_lo, w)
    return out, reach


def _score_loglik(fc: np.ndarray, sel: slice, k_lo: int, w: int, floor: float, liq_k: np.ndarray,
                  liq_side: np.ndarray, liq_vrow: np.ndarray, scores: dict[str, _Score],
                  venues: list[str], tl: dict[int, np.ndarray] | None, liq_ts: np.ndarray,
                  bucket_ms: int, attr: str = "ll") -> np.ndarray:
    # attr: the accumulator of _Score to add to ("ll" or "nll"); the "ll" call also
    # counts the events, and only it feeds the timeline (tl).
    z = fc.sum(axis=-1)  # (model, row, side)
    out = np.zeros((fc.shape[0], sel.stop - sel.start))
    b = liq_k[sel] - k_lo
    inside = (b >= 0) & (b < w)
    bi = np.clip(b, 0, w - 1)
    side = liq_side[sel]
    for row, key in [(0, "all")] + [(i + 1, v) for i, v in enumerate(venues)]:
        if row == 0:
            m = np.ones(b.size, dtype=bool)
        else:
            m = liq_vrow[sel] == row
            if not m.any():
                continue
        f = fc[:, row, side[m], bi[m]]           # (model, events)
        zz = z[:, row, side[m]]
        shape = np.where(zz > 0, f / np.where(zz > 0, zz, 1.0), 1.0 / w)
        p = np.where(inside[m], (1 - floor) * shape + floor / w, floor / w)
        ll = np.log(p)
        sc = scores[key]
        if attr == "ll":
            sc.n += int(m.sum())
        getattr(sc, attr)[:] += ll.sum(axis=1)
        if row == 0:
            out = ll
            if tl is None:
                continue
            buckets = liq_ts[sel] // bucket_ms
            for bk in np.unique(buckets):
                g = ll[:3, buckets == bk] - ll[3:4, buckets == bk]
                tl[int(bk)] = tl.get(int(bk), np.zeros(3)) + g.sum(axis=1)
    return out


def _score_decile(fc: np.ndarray, sel: slice, k_lo: int, w: int, floor: float, liq_k: np.ndarray,
                  liq_side: np.ndarray, liq_vrow: np.ndarray, liq_q: np.ndarray,
                  scores: dict[str, _Score], venues: list[str]) -> None:
    share = _top_share(fc)  # (model, row, side, bin)
    z = fc.sum(axis=-1, keepdims=True)
    logp = np.log((1 - floor) * np.where(z > 0, fc / np.where(z > 0, z, 1.0), 1.0 / w) + floor / w)
    b = liq_k[sel] - k_lo
    inside = (b >= 0) & (b < w)
    bi = np.clip(b, 0, w - 1)
    side = liq_side[sel]
    q = liq_q[sel]
    for row, key in [(0, "all")] + [(i + 1, v) for i, v in enumerate(venues)]:
        m = np.ones(b.size, dtype=bool) if row == 0 else liq_vrow[sel] == row
        if not m.any():
            continue
        sc = scores[key]
        sc.pairs_total += int(m.sum())
        mi = m & inside
        sc.hll += logp[:, row, side[mi], bi[mi]].sum(axis=1) + math.log(floor / w) * int((m & ~inside).sum())
        sc.pairs_in += int(mi.sum())
        if not mi.any():
            continue
        s = share[:, row, side[mi], bi[mi]]      # (model, events)
        sc.credit += (s * q[mi]).sum(axis=1)
        sc.pair_q += float(q[mi].sum())


# -- files and several symbols ----------------------------------------------------

def evaluate_file(path: PathLike, symbol: str | None = None, step: float | None = None,
                  horizon_s: float = 3600.0, **kwargs: Any) -> dict[str, EvaluationReport]:
    """Evaluate a normalized JSONL file (``.gz`` too): one engine per base asset (a
    stream's ``BTCUSDT``, ``BTC-USDT-SWAP`` and ``BTC`` records share one engine),
    skipping assets without liquidations. ``symbol`` selects one asset; ``step``
    applies to every asset evaluated (default: ~0.05 % of each asset's price).

    Returns
    -------
    dict
        ``{asset: EvaluationReport}``.
    """
    from .events import read_events_by_symbol
    from .venues import base_asset

    groups = group_by_asset(read_events_by_symbol(path))
    if symbol is not None:
        want = base_asset(symbol)
        if want not in groups:
            raise ValueError(f"{os.fspath(path)} has no symbol {symbol!r} "
                             f"(assets: {', '.join(sorted(groups))})")
        groups = {want: groups[want]}
    out: dict[str, EvaluationReport] = {}
    for asset, (sym, ev) in sorted(groups.items()):
        if not np.any(ev["kind"] == KIND_LIQUIDATION):
            continue
        out[asset] = evaluate(ev, symbol=sym, step=step, horizon_s=horizon_s, **kwargs)
    return out


# -- expected vs observed daily liquidation volume -----------------------------------

@dataclass
class DailyCheck:
    """Expected vs observed daily liquidation volume per side (see
    :func:`daily_volume_check`)."""

    days: list[str]
    observed: dict[str, list[float]]
    forecast: dict[str, list[float]]
    crossed: dict[str, list[float]]
    summary: dict[str, dict[str, float | None]]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return {"days": self.days, "observed": self.observed, "forecast": self.forecast,
                "crossed": self.crossed, "summary": self.summary}

    def to_markdown(self) -> str:
        """Table of rank correlations and ratios per side."""
        lines = ["| side | expected | Spearman vs observed | sum expected / sum observed | days |",
                 "|---|---|---:|---:|---:|"]
        for key, d in self.summary.items():
            side, kind = key.split(":")
            lines.append(f"| {side} | {kind} | {_fmt(d['spearman'])} | {_fmt(d['ratio'])} | "
                         f"{int(d['days'] or 0)} |")
        return "\n".join(lines) + "\n"


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3:
        return None
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def daily_volume_check(events: np.ndarray, daily_csv: PathLike, coin: str = "BTC", *,
                       venue: str = "hyperliquid", symbol: str | None = None,
                       step: float | None = None, learn: bool = True,
                       forecast: Mapping[str, Any] | None = None) -> DailyCheck:
    """Check a map against a daily liquidation chart, the way a user would.

    The stream's price records (whatever their venue) are applied as ``venue``'s
    prices, its OI records feed the book. For every UTC day in ``daily_csv``
    (columns ``date, ts, venue, coin, long_usd, short_usd``) two expectations per
    side are compared with the observed totals: ``forecast``, the one-day horizon
    forecast at 00:00 UTC (ex ante), and ``crossed``, the exposure price actually
    crossed during the day (the engine's consumed volume, ex post). Reported:
    Spearman rank correlation over days and the ratio of sums.
    """
    import csv

    rows = []
    with open(os.fspath(daily_csv), encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("coin") == coin and r.get("venue", venue) == venue:
                rows.append((int(r["ts"]), r["date"], float(r["long_usd"]), float(r["short_usd"])))
    rows.sort()
    from .venues import venue_id
    ev = events.copy()
    ev["venue"][ev["kind"] == KIND_PRICE] = venue_id(venue)
    ev = ev[ev["venue"] == venue_id(venue)]
    eng = build_engine(ev, symbol=symbol or coin, step=step, venues=[venue], learn=learn,
                       forecast=forecast)
    ts = ev["ts"]
    days, obs_l, obs_s, fc_l, fc_s, cr_l, cr_s = [], [], [], [], [], [], []
    start = 0
    prev = None
    for day_ts, date, lo, sh in rows:
        cut = int(np.searchsorted(ts, day_ts, side="left"))
        if cut > start:
            eng.ingest(ev[start:cut])
            start = cut
        st = eng.diagnostics(venue)
        now = (st["expected_usd_long"], st["expected_usd_short"])
        if prev is not None and days:
            cr_l.append(now[0] - prev[0])
            cr_s.append(now[1] - prev[1])
        prev = now
        if st["oi_updates"] == 0 or not (eng.forecast_state()["anchor_price"] > 0):
            continue
        f = eng.forecast(86400.0, venue, window_pct=0.5)
        days.append(date)
        obs_l.append(lo)
        obs_s.append(sh)
        fc_l.append(float(f.long.sum()))
        fc_s.append(float(f.short.sum()))
    # Crossed volume of the last day.
    if days:
        end = int(np.searchsorted(ts, rows[-1][0] + 86_400_000, side="left"))
        if end > start:
            eng.ingest(ev[start:end])
        st = eng.diagnostics(venue)
        if prev is not None:
            cr_l.append(st["expected_usd_long"] - prev[0])
            cr_s.append(st["expected_usd_short"] - prev[1])
    n = len(days)
    cr_l, cr_s = cr_l[-n:] if n else [], cr_s[-n:] if n else []
    summary: dict[str, dict[str, float | None]] = {}
    for side, obs, fcs, crs in (("long", obs_l, fc_l, cr_l), ("short", obs_s, fc_s, cr_s)):
        o = np.asarray(obs)
        for kind, e in (("forecast", np.asarray(fcs)), ("crossed", np.asarray(crs))):
            ok = np.isfinite(e) & np.isfinite(o) if e.size == o.size else np.zeros(0, dtype=bool)
            summary[f"{side}:{kind}"] = {
                "spearman": _spearman(e[ok], o[ok]) if ok.any() else None,
                "ratio": float(e[ok].sum() / o[ok].sum()) if ok.any() and o[ok].sum() > 0 else None,
                "days": float(ok.sum()),
            }
    return DailyCheck(days, {"long": obs_l, "short": obs_s}, {"long": fc_l, "short": fc_s},
                      {"long": cr_l, "short": cr_s}, summary)


# -- command line ------------------------------------------------------------------

def register_cli(subparsers: Any) -> None:
    """Add the ``replay`` and ``evaluate`` subcommands to an argparse subparsers object."""
    from .plot import SCALES

    p = subparsers.add_parser(
        "replay", help="replay a normalized JSONL stream and draw the time x price map",
        description="Run a recorded stream through an engine, draw the map over time with the "
                    "price and the observed liquidations, and optionally the final profile, the "
                    "forecast, an interactive HTML page and the engine's snapshot.")
    p.add_argument("file", help="normalized JSONL (.gz ok)")
    p.add_argument("--out", default="map.png", help="PNG of the time x price map (default map.png)")
    p.add_argument("--symbol", help="asset/symbol to replay (required if the file holds several)")
    p.add_argument("--step", type=float, help="bin width (default ~0.05 %% of price)")
    p.add_argument("--horizon", default="1h", help="forecast horizon (e.g. 3600, 1h, 1d)")
    p.add_argument("--every", help="snapshot cadence, e.g. 5min (default: 5 min, or longer so that "
                                   "a long file gives at most ~500 snapshots)")
    p.add_argument("--venue", help="one venue (default: all)")
    p.add_argument("--scale", choices=SCALES, default="log", help="colour scaling (default log)")
    p.add_argument("--side", choices=("both", "long", "short"), default="both",
                   help="whose levels to draw (default both)")
    p.add_argument("--no-liquidations", action="store_true", help="no liquidation dots")
    p.add_argument("--profile", metavar="PNG", help="also the final map by leverage band and side")
    p.add_argument("--forecast", metavar="PNG", help="also the final map and horizon forecast")
    p.add_argument("--html", metavar="FILE", help="also the map as interactive HTML (heatcore[html])")
    p.add_argument("--snapshot", metavar="FILE", help="save the engine at the end (for `heatcore inspect`)")
    p.add_argument("--oi-proxy", default="auto", choices=("auto", "turnover", "none"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_replay)

    e = subparsers.add_parser("evaluate",
                              help="score the forecast against the stream's liquidations",
                              description="Score the learned engine, the static one, a "
                                          "distance-only map and a uniform map on a stream's "
                                          "liquidations, prequentially (leak-free).")
    e.add_argument("file", help="normalized JSONL (.gz ok)")
    e.add_argument("--symbol",
                   help="only this asset/symbol (default: every asset with liquidations)")
    e.add_argument("--step", type=float, help="bin width (default ~0.05 %% of each asset's price)")
    e.add_argument("--horizon", default="1h", help="forecast horizon (e.g. 3600, 1h, 1d)")
    e.add_argument("--every", default="60", help="cadence of the log-likelihood snapshots")
    e.add_argument("--json", action="store_true", help="print the reports as JSON")
    e.add_argument("--png", help="write figures with this path prefix (needs matplotlib)")
    e.add_argument("--oi-proxy", default="auto", choices=("auto", "turnover", "none"))
    e.add_argument("--daily-csv", help="also compare expected and observed daily volumes "
                                       "(Hyperliquid daily CSV)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)


def _durations(args: Any, *names: str) -> list[float]:
    from .cli import CLIError

    out = []
    for n in names:
        try:
            out.append(parse_seconds(getattr(args, n)))
        except ValueError as exc:
            raise CLIError(f"--{n}: {exc}") from None
    return out


def _cmd_evaluate(args: Any) -> int:
    import sys

    from .cli import CLIError, _check_in, _check_out, _headless_matplotlib, _need_plotting

    _check_in(args.file)
    if args.daily_csv:
        _check_in(args.daily_csv)
    if args.png:
        _check_out(args.png + "_x.png", "--png")
        _need_plotting(png=True)
    if args.step is not None and not (args.step > 0):
        raise CLIError("--step must be positive")
    horizon, every = _durations(args, "horizon", "every")
    reports = evaluate_file(args.file, symbol=args.symbol, step=args.step, horizon_s=horizon,
                            every_s=every, oi_proxy=args.oi_proxy,
                            progress=False if args.no_progress else None)
    daily = None
    if args.daily_csv:
        from .events import read_events_by_symbol
        from .venues import base_asset
        groups = group_by_asset(read_events_by_symbol(args.file))
        coin = base_asset(args.symbol) if args.symbol else sorted(groups)[0]
        daily = daily_volume_check(groups[coin][1], args.daily_csv, coin=coin, step=args.step)
    if not reports and daily is None:
        print(f"heatcore: error: no liquidations to score in {os.fspath(args.file)}", file=sys.stderr)
        return 1
    if args.json:
        out: dict[str, Any] = {k: r.to_dict() for k, r in reports.items()}
        if daily is not None:
            out["daily_volume_check"] = daily.to_dict()
        print(json.dumps(out, default=_json_default, indent=1))
    else:
        for r in reports.values():
            print(r.to_markdown())
        if daily is not None:
            print("### expected vs observed daily liquidation volume\n")
            print(daily.to_markdown())
    if args.png:
        _headless_matplotlib()
        for asset, r in reports.items():
            for pth in r.plot(f"{args.png}_{asset}"):
                print(f"wrote {pth}", file=sys.stderr)
    return 0


def _fmt_every(every: Any) -> str:
    if isinstance(every, str):
        return every
    s = float(every)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n and s % n == 0:
            return f"{s / n:g}{unit}"
    return f"{s:g}s"


def _cmd_replay(args: Any) -> int:
    import sys

    from .cli import CLIError, _check_in, _check_out, _headless_matplotlib, _need_plotting
    from .events import read_events_by_symbol
    from .replay import replay
    from .venues import base_asset, get_venue

    _check_in(args.file)
    for opt in ("out", "profile", "forecast", "html", "snapshot"):
        _check_out(getattr(args, opt), f"--{opt}")
    _need_plotting(png=bool(args.out or args.profile or args.forecast), html=bool(args.html))
    if args.step is not None and not (args.step > 0):
        raise CLIError("--step must be positive")
    if args.venue is not None:
        try:
            get_venue(args.venue)
        except (KeyError, ValueError):
            raise CLIError(f"--venue: unknown venue {args.venue!r}") from None
    horizon = _durations(args, "horizon")[0]
    if args.every is not None:
        _durations(args, "every")
    groups = group_by_asset(read_events_by_symbol(args.file))
    if not groups:
        print(f"heatcore: error: {args.file} holds no events", file=sys.stderr)
        return 1
    if args.symbol:
        key = base_asset(args.symbol)
        if key not in groups:
            print(f"heatcore: error: no symbol {args.symbol!r} in {args.file} "
                  f"(assets: {', '.join(sorted(groups))})", file=sys.stderr)
            return 2
    elif len(groups) == 1:
        key = next(iter(groups))
    else:
        print(f"heatcore: error: {args.file} holds several assets ({', '.join(sorted(groups))}): "
              "pass --symbol", file=sys.stderr)
        return 2
    sym, ev = groups[key]
    if args.venue is not None:
        present = {venue_name(int(c)) for c in np.unique(ev["venue"])}
        if args.venue not in present:
            print(f"heatcore: error: no {args.venue} events for {key} in {args.file} "
                  f"(venues: {', '.join(sorted(present))})", file=sys.stderr)
            return 2
    # A long file at the default cadence would hold thousands of full-grid maps.
    res = replay(ev, every=args.every if args.every is not None else 300,
                 max_snapshots=None if args.every is not None else 500, horizon_s=horizon,
                 symbol=sym, step=args.step, what=("map",), venue=args.venue,
                 oi_proxy=args.oi_proxy, progress=False if args.no_progress else None)
    every = res.every_s
    eng = res.engine
    print(f"{key}: {res.counts.get('liquidation', 0)} liquidations, {res.counts.get('price', 0)} "
          f"prices, {res.counts.get('oi', 0)} OI records ({res.counts.get('rejected', 0)} "
          f"rejected), {len(res.snapshots)} snapshots; OI proxy: {res.oi_proxy.describe()}")
    from . import plot
    title = f"{sym}: {args.venue or 'all venues'}, snapshots every {_fmt_every(every)}"
    if args.out or args.profile or args.forecast:
        _headless_matplotlib()
    shown = ev if args.venue is None else ev[(ev["venue"] == venue_id(args.venue)) | (ev["kind"] == KIND_PRICE)]
    if args.out:
        plot.plot_heatmap(res, shown, scale=args.scale, side=args.side,
                          liquidations=not args.no_liquidations, title=title, path=args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.profile:
        plot.plot_profile(eng, args.venue, path=args.profile)
        print(f"wrote {args.profile}", file=sys.stderr)
    if args.forecast:
        f = eng.forecast(horizon, args.venue, window_pct=_window_pct(horizon) * 2)
        plot.plot_map_forecast(eng.heatmap(args.venue), f, title=title, path=args.forecast)
        print(f"wrote {args.forecast}", file=sys.stderr)
    if args.html:
        plot.heatmap_html(res, shown, args.html, side=args.side,
                          liquidations=not args.no_liquidations, title=title)
        print(f"wrote {args.html}", file=sys.stderr)
    if args.snapshot:
        eng.save(args.snapshot)
        print(f"wrote {args.snapshot}", file=sys.stderr)
    return 0
