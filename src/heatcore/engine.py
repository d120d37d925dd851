"""The public engine: one symbol, many venues, a density map that learns."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from .events import EVENT_DTYPE
from .venues import (
    BANDS,
    DEFAULT_TIERS,
    PRICE_KINDS,
    VENUES,
    band_of,
    get_venue,
    prior_weights,
    venue_id,
)

__all__ = ["CASCADE_DTYPE", "Engine", "HeatMap", "InputError"]

_SIDE_CODE = {"long": 1, "short": -1}

#: Leverage Learner settings accepted by ``Engine(learner={...})`` and their defaults
#: (see :class:`Engine` and cpp/heatcore/leverage_learner.hpp).
LEARNER_DEFAULTS: dict[str, float] = {
    "half_life_hours": 24.0,
    "lifetime_hours": 24.0,
    "lifetime_exponent": 1.0,
    "buffer_events": 512,
    "refresh_events": 32,
    "refresh_hours": 0.5,
    "em_iterations": 3,
    "kernel_bins": 2.0,
    "kernel_frac": 0.002,
    "crossing_window_s": 300.0,
    "crossing_records": 64,
    "tier_smoothing": 0.5,
    "size_cap": 20.0,
    "sample_window_ms": 1000,
    "prior_min": 0.5,
    "prior_max": 5000.0,
    "loglik_floor": 1e-6,
}
_LEARNER_INT = {"buffer_events", "refresh_events", "em_iterations", "crossing_records",
                "sample_window_ms"}
_MIX_KINDS = ("openings", "open_interest", "map", "prior")


def _learner_config(options: Mapping[str, Any] | None) -> Any:
    cfg = _core.LearnerConfig()
    for key, value in (options or {}).items():
        if key not in LEARNER_DEFAULTS:
            raise ValueError(f"learner: unknown setting {key!r} "
                             f"(known: {sorted(LEARNER_DEFAULTS)})")
        setattr(cfg, key, int(value) if key in _LEARNER_INT else float(value))
    cfg.validate()
    return cfg
# ---- cascade ----
#: One row of :meth:`Engine.cascade`: a level's price, expected observed notional
#: (USD), probability of being reached within the horizon, confidence in (0, 1],
#: expected seconds until reached, and the probability before recalibration.
CASCADE_DTYPE = np.dtype([("price", "f8"), ("notional", "f8"), ("probability", "f8"),
                          ("confidence", "f8"), ("eta_s", "f8"), ("raw_probability", "f8")])
# ---- end cascade ----


class InputError(ValueError):
    """An input the engine refused. ``reason`` is the counted reason (see
    :meth:`Engine.diagnostics`); the engine state is unchanged."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class HeatMap:
    """A liquidation map: USD that would be liquidated per price bin.

    Attributes
    ----------
    prices : numpy.ndarray
        Bin centres.
    long, short : numpy.ndarray
        Long liquidations (below price) and short liquidations (above price), USD per bin.
    venue : str or None
        The venue, or None for the sum over the engine's venues.
    price : float
        The last price the engine applied (0 if none yet).
    """

    prices: np.ndarray
    long: np.ndarray
    short: np.ndarray
    venue: str | None
    price: float

    @property
    def step(self) -> float:
        """Bin width."""
        return float(self.prices[1] - self.prices[0]) if self.prices.size > 1 else 0.0

    def total(self) -> tuple[float, float]:
        """Total USD on the long and short side."""
        return float(self.long.sum()), float(self.short.sum())

    def trim(self, pad: int = 2) -> HeatMap:
        """The map cut to the bins that hold exposure (plus ``pad`` bins each side)."""
        nz = np.flatnonzero((self.long > 0) | (self.short > 0))
        if nz.size == 0:
            return self
        lo, hi = max(0, nz[0] - pad), min(self.prices.size, nz[-1] + pad + 1)
        return HeatMap(self.prices[lo:hi], self.long[lo:hi], self.short[lo:hi], self.venue, self.price)

    def clusters(self, side: str, n: int = 3, *, width: int = 5) -> list[tuple[float, float]]:
        """The ``n`` largest clusters on a side, as ``(price, usd)`` with ``usd`` summed
        over ``width`` bins around the peak, nearest-first ordering not implied."""
        values = self.long if side == "long" else self.short if side == "short" else None
        if values is None:
            raise ValueError("side must be 'long' or 'short'")
        if values.size == 0:
            return []
        kernel = np.ones(width)
        smooth = np.convolve(values, kernel, mode="same")
        out: list[tuple[float, float]] = []
        taken = np.zeros(values.size, dtype=bool)
        for i in np.argsort(smooth)[::-1]:
            if len(out) >= n or smooth[i] <= 0:
                break
            if taken[max(0, i - width):i + width + 1].any():
                continue
            taken[i] = True
            out.append((float(self.prices[i]), float(smooth[i])))
        return out


class Engine:
    """Liquidation map of one symbol across venues, learned from observed liquidations.

    Parameters
    ----------
    symbol : str
        Market symbol; its base asset selects the venues' tier tables.
    step : float
        Price bin width (50 for BTC; 0.0001 suits DOGE).
    venues : sequence of str, optional
        Venue ids (default: all of :data:`heatcore.VENUES`).
    tiers : sequence of float, optional
        Leverage support (default :data:`heatcore.venues.DEFAULT_TIERS`, 2x..125x).
    learn : bool
        False gives the static baseline: documented mechanics and prior mixes, never updated.
    priors : mapping, optional
        ``{venue: weights}`` or ``{venue: (long_weights, short_weights)}`` over the tiers,
        replacing the registry's prior mix.
    seed_spread : float
        The book before the first OI reading (its entry prices are unknown) is
        spread uniformly over the prices seen so far, widened to at least
        ``+-seed_spread`` around the current price; of it, only positions that
        would have survived every price seen since are kept.
    ts_tolerance_ms : int
        Events older than the newest accepted one by more than this are refused
        as ``out_of_order``; later ones within it are applied in arrival order.
    max_price_ratio : float
        A price more than this factor away from the venue's last price is refused
        as ``absurd_price``.
    learner : mapping, optional
        Leverage Learner settings (defaults in ``heatcore.engine.LEARNER_DEFAULTS``):
        ``half_life_hours`` (24: evidence half-life; the step size starts at 1/n
        and floors at this forgetting rate), ``lifetime_hours`` /
        ``lifetime_exponent`` (24 / 1: mean position lifetime at 10x and its fall
        with leverage, the closing hazard of the learner's openings book),
        ``buffer_events`` (512: recent events re-attributed at each refresh),
        ``refresh_events`` / ``refresh_hours`` (32 / 0.5: refresh cadence per venue
        and side; the map's weights change only then), ``kernel_bins`` /
        ``kernel_frac`` (2 / 0.002: half-width of the window around an event in
        which a tier's exposure explains it), ``tier_smoothing`` (0.5: evidence
        lent to neighbouring tested tiers), ``size_cap`` (20: an event weighs at
        most this many typical sizes), ``prior_min`` / ``prior_max`` (empirical-Bayes
        range of the prior strength, in expected liquidation events),
        ``loglik_floor`` (floor of the per-bin probability in the skill score).
    cascade : mapping, optional
        Options of the chain tracker, Cascade Learner and cascade walk (see
        :meth:`cascade_config` for the names and defaults), e.g.
        ``{"gap_ms": 60000, "horizon_s": 3600, "half_life": 200}``.

    Notes
    -----
    Thread safety: every method takes the engine's lock, so one thread may read
    maps while another ingests; calls are serialised, never interleaved.
    """

    def __init__(
        self,
        symbol: str = "BTCUSDT",
        step: float = 50.0,
        venues: Sequence[str] | None = None,
        tiers: Sequence[float] | None = None,
        learn: bool = True,
        *,
        priors: Mapping[str, Any] | None = None,
        seed_spread: float = 0.05,
        ts_tolerance_ms: int = 5000,
        max_price_ratio: float = 10.0,
        learner: Mapping[str, Any] | None = None,
        cascade: Mapping[str, float] | None = None,
    ) -> None:
        names = tuple(VENUES if venues is None else venues)
        if not names:
            raise ValueError("venues must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("venues must not repeat")
        tier_list = [float(x) for x in (DEFAULT_TIERS if tiers is None else tiers)]
        configs = []
        for name in names:
            spec = get_venue(name)
            if priors and name in priors:
                p = priors[name]
                if isinstance(p, tuple) and len(p) == 2:
                    pl, ps = (np.asarray(x, dtype=float) for x in p)
                else:
                    pl = ps = np.asarray(p, dtype=float)
            else:
                pl = ps = prior_weights(spec, tier_list)
            configs.append(_core.VenueConfig(name, venue_id(name), spec.mechanics(symbol),
                                             list(map(float, pl)), list(map(float, ps)),
                                             cross_share=float(spec.cross_share),
                                             cross_distance=float(spec.cross_distance)))
        self._core = _core.Engine(float(step), tier_list, configs, bool(learn),
                                  seed_spread=float(seed_spread),
                                  ts_tolerance_ms=int(ts_tolerance_ms),
                                  max_price_ratio=float(max_price_ratio),
                                  learner=_learner_config(learner))
        self._symbol = symbol
        self._step = float(step)
        self._venues = names
        self._slot = {n: i for i, n in enumerate(names)}
        self._tiers = np.array(tier_list)
        self._learn = bool(learn)
        self._lock = threading.RLock()
        self._unknown_venues = 0  # refusals the Python layer makes before reaching the core
        if cascade:  # cascade
            self._core.configure_cascade(dict(cascade))

    # -- properties ---------------------------------------------------------
    @property
    def symbol(self) -> str:
        """The engine's symbol."""
        return self._symbol

    @property
    def step(self) -> float:
        """Price bin width."""
        return self._step

    @property
    def venues(self) -> tuple[str, ...]:
        """Venue ids, in slot order."""
        return self._venues

    @property
    def tiers(self) -> np.ndarray:
        """The leverage support."""
        return self._tiers.copy()

    @property
    def learn(self) -> bool:
        """Whether the engine learns (False: static baseline)."""
        return self._learn

    # -- updates -------------------------------------------------------------
    def _slot_of(self, venue: str) -> int:
        try:
            return self._slot[venue]
        except KeyError:
            with self._lock:
                self._unknown_venues += 1
            raise InputError("unknown_venue", f"{venue!r} is not one of this engine's venues") from None

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code >= 0:
            raise InputError(_core.reject_name(code), what)

    def update_price(self, venue: str, ts_ms: int, price: float) -> None:
        """Apply a price (mark) update: levels crossed by the move are consumed."""
        slot = self._slot_of(venue)
        with self._lock:
            self._check(self._core.update_price(slot, int(ts_ms), float(price)),
                        f"price {price!r} for {venue} at {ts_ms}")

    def update_open_interest(self, venue: str, ts_ms: int, oi_usd: float,
                             price: float | None = None) -> None:
        """Apply an open-interest reading in USD (converted to base units at
        ``price``, default the venue's last price). Zero or missing readings are
        refused as gaps, never read as "everything closed"."""
        slot = self._slot_of(venue)
        if price is not None and not (float(price) > 0):
            raise InputError("non_positive_price", f"price {price!r} for the OI reading")
        with self._lock:
            self._check(self._core.update_open_interest(slot, int(ts_ms), float(oi_usd),
                                                        0.0 if price is None else float(price)),
                        f"open interest {oi_usd!r} for {venue} at {ts_ms}")

    def on_liquidation(self, venue: str, ts_ms: int, side: str, price: float, notional_usd: float,
                       *, price_kind: str = "unknown", sampled: bool = False) -> None:
        """Feed one observed liquidation (``side`` = the liquidated position).

        The event is scored against the map as it stood before it, then updates
        the learners.
        """
        slot = self._slot_of(venue)
        if price_kind not in PRICE_KINDS:
            raise InputError("unknown_kind", f"price_kind must be one of {PRICE_KINDS}")
        with self._lock:
            # An unknown side goes to the core as 0 so that it is refused and counted there.
            self._check(self._core.on_liquidation(slot, int(ts_ms), _SIDE_CODE.get(side, 0), float(price),
                                                  float(notional_usd), PRICE_KINDS.index(price_kind),
                                                  1 if sampled else 0),
                        f"liquidation {side} {notional_usd!r} @ {price!r} on {venue} at {ts_ms}")

    def ingest(self, events: np.ndarray) -> dict[str, Any]:
        """Apply a time-ordered EVENT_DTYPE array in C++ (the GIL is released).

        Bad events are skipped and counted, never applied: the returned dict has
        the applied counts per kind, ``rejected`` and ``reasons``.
        """
        if not isinstance(events, np.ndarray) or events.dtype.names != EVENT_DTYPE.names:
            raise TypeError("events must be a numpy array of dtype heatcore.EVENT_DTYPE")
        if events.ndim != 1:
            raise ValueError("events must be one-dimensional")
        # numpy drops the dtype's padding in e.g. concatenate(); repack such arrays once.
        arr = np.ascontiguousarray(events if events.dtype == EVENT_DTYPE else events.astype(EVENT_DTYPE))
        with self._lock:
            return dict(self._core.ingest(arr))

    # -- reads -----------------------------------------------------------------
    def heatmap(self, venue: str | None = None) -> HeatMap:
        """The current map of one venue, or the sum over venues (``venue=None``)."""
        slot = -1 if venue is None else self._slot_of(venue)
        with self._lock:
            prices, lo, sh = self._core.heatmap(slot)
            price = (self._core.venue_stats(slot)["last_price"] if slot >= 0
                     else self._core.reference_price)
        return HeatMap(prices, lo, sh, venue, float(price))

    def leverage_mix(self, venue: str, side: str, *,
                     which: str = "openings") -> tuple[np.ndarray, np.ndarray]:
        """``(tiers, weights)``: the venue's learned leverage mix on a side.

        Parameters
        ----------
        venue, side : str
            The venue and the side (``"long"`` or ``"short"``).
        which : str
            ``"openings"`` (default): the learned mix of new openings (the
            leverage traders choose; it follows a change of regime);
            ``"open_interest"``: the learned mix of what is open now (high
            leverage dies and closes sooner, so it holds less of it); ``"map"``:
            the weights the map currently applies to the exposure book (the
            openings mix as of the last refresh, or a mix set with
            :meth:`set_mix`); ``"prior"``: the published archetype. Static
            engines (``learn=False``) return the prior or the set mix.
        """
        slot = self._slot_of(venue)
        if which not in _MIX_KINDS:
            raise ValueError(f"which must be one of {_MIX_KINDS}, got {which!r}")
        with self._lock:
            if which == "map":
                return self._tiers.copy(), self._core.mix(slot, _side(side))
            return self._tiers.copy(), _core.learner_mix(self._core, slot, _side(side), which)

    def set_mix(self, venue: str, side: str, weights: Sequence[float]) -> None:
        """Override a venue's mix on a side (normalised)."""
        slot = self._slot_of(venue)
        with self._lock:
            self._core.set_mix(slot, _side(side), [float(x) for x in weights])

    def freeze(self, venue: str, frozen: bool = True) -> None:
        """Stop (or resume) learning for one venue."""
        slot = self._slot_of(venue)
        with self._lock:
            self._core.set_learning(slot, (not frozen) and self._learn)

    def exposure_by_tier(self, venue: str, side: str) -> np.ndarray:
        """Open exposure per tier in base units, each tier counted as if it held the whole
        book (the unweighted ``D``); equals the OI after every OI reading."""
        slot = self._slot_of(venue)
        with self._lock:
            return self._core.tier_totals(slot, _side(side))

    def liquidation_ratios(self, venue: str, side: str) -> np.ndarray:
        """Liquidation price / entry price per tier under the venue's current mechanics."""
        slot = self._slot_of(venue)
        with self._lock:
            return self._core.ratios(slot, _side(side))

    def diagnostics(self, venue: str | None = None) -> dict[str, Any]:
        """Counters: refused inputs by reason (engine-wide) or one venue's statistics
        (updates seen, observed vs expected liquidations, unexplained events)."""
        with self._lock:
            if venue is None:
                rej = {k: int(v) for k, v in self._core.rejected().items()}
                rej["unknown_venue"] += self._unknown_venues
                return {"rejected": rej, "rejected_total": sum(rej.values()),
                        "last_ts": int(self._core.last_ts) if self._core.last_ts > -2**62 else None,
                        "grid": dict(zip(("step", "first_bin", "bins"), self._core.grid, strict=False))}
            slot = self._slot_of(venue)
            out = dict(self._core.venue_stats(slot))
            # The Leverage Learner's summary, flat (one key per side, like the
            # venue statistics); learner_diagnostics() has the per-tier detail.
            for side in ("long", "short"):
                d = self._learner_diagnostics(slot, side)
                for key in ("n_events", "effective_events", "unexplained", "prior_strength",
                            "loglik_mean"):
                    out[f"learner_{key}_{side}"] = d[key]
                out[f"learner_untested_bands_{side}"] = tuple(d["untested_bands"])
            return out

    def learner_diagnostics(self, venue: str) -> dict[str, dict[str, Any]]:
        """The Leverage Learner's state on each side of a venue.

        Returns ``{"long": {...}, "short": {...}}`` with, per side: ``n_events``
        (liquidations seen while learning), ``effective_events`` (Kish effective
        sample size of the decayed evidence), ``unexplained`` (no exposure of any
        tier near the event: counted, never forced onto a tier), ``preexisting``
        (explained by the map but by no opening the learner has seen),
        ``sampled`` / ``clipped`` (sampled-feed events, clipped bogus sizes),
        ``prior_strength`` (empirical-Bayes kappa, in expected liquidation
        events), ``mean_event_usd``, ``opening_rate_usd_h``, ``crossed_events`` /
        ``attributed_events`` (per tier, in expected events at the prior's rate),
        ``untested_tiers`` / ``untested_bands`` (crossings worth less than one
        expected liquidation: they carry no evidence of their own), the skill
        accumulators ``loglik_sum`` / ``loglik_n`` / ``loglik_mean``, ``refreshes``
        and ``learning``.
        """
        slot = self._slot_of(venue)
        with self._lock:
            return {side: self._learner_diagnostics(slot, side) for side in ("long", "short")}

    def _learner_diagnostics(self, slot: int, side: str) -> dict[str, Any]:
        d = dict(_core.learner_diagnostics(self._core, slot, _side(side)))
        tested = np.asarray(d.pop("tested"), dtype=bool)
        # plain lists keep diagnostics comparable with == (snapshots of state)
        d["crossed_events"] = [float(x) for x in d["crossed_events"]]
        d["attributed_events"] = [float(x) for x in d["attributed_events"]]
        d["untested_tiers"] = [float(x) for x in self._tiers[~tested]]
        bands_tested = {band_of(float(x)) for x in self._tiers[tested]}
        d["untested_bands"] = [BANDS[b] for b in range(len(BANDS)) if b not in bands_tested]
        n = d["loglik_n"]
        d["loglik_mean"] = d["loglik_sum"] / n if n else None
        d["learning"] = bool(self._core.learning(slot))
        return d

    def skill(self, venue: str | None = None) -> dict[str, float]:
        """Mean log-likelihood of each observed liquidation's price bin under the
        side's normalised map just before it (kernel-averaged, per-bin probability
        floored at ``learner["loglik_floor"]``), over one venue or all venues.

        Returns ``{"loglik_mean": ..., "events": ...}``; learned and static
        engines score the same way, so the two can be compared on one stream.
        """
        slots = range(len(self._venues)) if venue is None else [self._slot_of(venue)]
        total, n = 0.0, 0
        with self._lock:
            for slot in slots:
                for side in (1, -1):
                    d = _core.learner_diagnostics(self._core, slot, side)
                    total += d["loglik_sum"]
                    n += d["loglik_n"]
        return {"loglik_mean": total / n if n else float("nan"), "events": float(n)}

    # ---- cascade ----------------------------------------------------------------
    def cascade(self, side: str, levels: int = 10) -> np.ndarray:
        """Cascade forecast on one side, walked over the summed map from the current price.

        Level 1 is the nearest significant cluster beyond price on ``side``
        (``"long"``: below, ``"short"``: above); each next level is reached by the
        modelled impact of the previous levels' liquidations or by volatility.

        Parameters
        ----------
        side : {"long", "short"}
            The side whose positions would be liquidated.
        levels : int
            At most this many levels (0..10).

        Returns
        -------
        numpy.ndarray
            :data:`CASCADE_DTYPE` rows, nearest level first; empty when the side
            holds no exposure. ``probability`` (reached within the configured
            horizon) and ``confidence`` do not increase with depth. Deterministic
            for a given state.
        """
        code = _side(side)
        if not 0 <= int(levels) <= 10:
            raise ValueError("levels must be in 0..10")
        with self._lock:
            rows = self._core.cascade(code, int(levels))
        out = np.empty(rows.shape[0], dtype=CASCADE_DTYPE)
        for i, name in enumerate(CASCADE_DTYPE.names or ()):
            out[name] = rows[:, i]
        return out

    def cascade_clusters(self, side: str, origin: float | None = None) -> np.ndarray:
        """The significant clusters the walk uses, as rows ``(price, map_usd, catchment_end)``.

        A cluster is a local peak of the summed map smoothed over
        ``+-smooth_frac`` of price that holds at least ``min_share`` of the
        side's USD within ``max_distance`` of ``origin`` (default: current price).
        """
        code = _side(side)
        with self._lock:
            o = self._core.reference_price if origin is None else float(origin)
            return self._core.cascade_clusters(code, float(o), 10)

    def cascade_state(self) -> dict[str, Any]:
        """The Cascade Learner's parameters and counters, for inspection.

        Per-level arrays have 11 entries: index 0 pools every level, index k is
        level k. ``exponent``/``scale``/``residual`` give the impact
        ``move = scale * notional**exponent`` (relative move, log-sd residual);
        ``fraction`` is observed over mapped notional; ``level_time_s`` the time
        from one level to the next; ``platt_a``/``platt_b`` the online
        recalibration; ``n_*`` the evidence behind each.
        """
        with self._lock:
            return dict(self._core.cascade_state())

    def cascade_config(self) -> dict[str, Any]:
        """The cascade options in force."""
        with self._lock:
            return dict(self._core.cascade_config())

    def chains(self, include_open: bool = True) -> dict[str, np.ndarray]:
        """Chain history (oldest first, bounded ring) plus the open chains.

        Columns: ``start_ts``, ``end_ts``, ``side`` (+1 long, -1 short),
        ``start_price``, ``extreme_price``, ``notional``, ``events``, ``n_levels``,
        ``reached``, ``open``, and per level (n x 10) ``level_price``,
        ``level_exposure`` (map USD at the chain's start), ``level_notional``
        (observed USD), ``level_ts`` (when crossed, 0 if not).
        """
        with self._lock:
            return dict(self._core.chains(bool(include_open)))
    # ---- end cascade ----

    def __repr__(self) -> str:
        return (f"Engine(symbol={self._symbol!r}, step={self._step}, venues={len(self._venues)}, "
                f"tiers={len(self._tiers)}, learn={self._learn})")


def _side(side: str) -> int:
    try:
        return _SIDE_CODE[side]
    except KeyError:
        raise ValueError(f"side must be 'long' or 'short', got {side!r}") from None
