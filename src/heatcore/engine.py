"""The public engine: one symbol, many venues, a density map that learns."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from . import persist as _persist
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

__all__ = ["CASCADE_DTYPE", "Engine", "Forecast", "HeatMap", "InputError"]

_SIDE_CODE = {"long": 1, "short": -1}
_PRICE_KIND_CODE = {k: i for i, k in enumerate(PRICE_KINDS)}

#: Leverage Learner settings accepted by ``Engine(learner={...})`` and their defaults
#: (see :class:`Engine` and cpp/heatcore/leverage_learner.hpp).
LEARNER_DEFAULTS: dict[str, float] = {
    "half_life_hours": 5.0,
    "lifetime_hours": 24.0,
    "lifetime_exponent": 1.0,
    "buffer_events": 512,
    "refresh_events": 32,
    "refresh_hours": 0.5,
    "em_iterations": 3,
    "kernel_bins": 2.0,
    "kernel_frac": 0.0035,
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


# [forecast] begin ------------------------------------------------------------
@dataclass(frozen=True)
class Forecast:
    """Expected liquidation notional per price bin within a horizon.

    ``long[i]`` is the USD of long positions expected to be liquidated at
    ``prices[i]`` within ``horizon_s`` seconds: exposure there times the
    probability that price reaches it (``reach``), scaled by an online-fitted
    factor and shifted to where the venue reports its liquidations, plus a
    continuation part for liquidations that keep coming near the last one during
    a cascade and a background part spread like the distance-only map; the three
    scales are fitted online per venue and side (see ``cpp/heatcore/forecast.hpp``).

    Attributes
    ----------
    prices : numpy.ndarray
        Bin centres.
    long, short : numpy.ndarray
        Expected liquidated USD per bin within the horizon, by liquidated side.
    reach : numpy.ndarray
        Probability that price touches each bin within the horizon.
    venue : str or None
        The venue, or None for the sum over venues.
    price : float
        The price reach is measured from (0 if none yet).
    horizon_s : float
        The horizon in seconds.
    sigma : float
        Log-price standard deviation over the horizon (realised volatility).
    """

    prices: np.ndarray
    long: np.ndarray
    short: np.ndarray
    reach: np.ndarray
    venue: str | None
    price: float
    horizon_s: float
    sigma: float

    def total(self) -> tuple[float, float]:
        """Expected liquidated USD within the horizon, long and short."""
        return float(self.long.sum()), float(self.short.sum())
# [forecast] end


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
    calibrate : bool, optional
        Run the Exchange Calibrator (effective maintenance rate, reported-price
        offset, size cap per venue and side; see :meth:`calibration`). Default:
        the value of ``learn``. It only acts on venues that are learning.
    learn_mix : bool
        Run the Leverage Learner (default True). False keeps every venue's mix at
        its prior while the calibrator, the forecast's online fits and the cascade
        statistics still learn: ``Engine(learn_mix=False)`` against
        ``Engine(learn=False)`` isolates what the calibrator adds. Kept in snapshots.
    learner : mapping, optional
        Leverage Learner settings (defaults in ``heatcore.engine.LEARNER_DEFAULTS``):
        ``half_life_hours`` (5: evidence half-life, counted from the opening of
        the positions the evidence is about; the step size starts at 1/n and
        floors at this forgetting rate), ``lifetime_hours`` /
        ``lifetime_exponent`` (24 / 1: mean position lifetime at 10x and its fall
        with leverage, the closing hazard of the learner's openings book),
        ``buffer_events`` (512: recent events re-attributed at each refresh),
        ``refresh_events`` / ``refresh_hours`` (32 / 0.5: refresh cadence per venue
        and side; the map's weights change only then), ``kernel_bins`` /
        ``kernel_frac`` (2 / 0.0035: half-width of the window around an event in
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
    maps while another ingests; calls are serialised, never interleaved: a map
    read during an ingest is the map before or after the whole batch, never a
    mix. The private ``_core`` object has no lock of its own; use it from one
    thread only.

    Persistence: :meth:`save` / :meth:`load` (atomic, versioned, checksummed
    snapshot files), pickling (the same bytes), and :meth:`autosnapshot` /
    :meth:`resume` for continuous operation (see :mod:`heatcore.persist`).
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
        calibrate: bool | None = None,
        learn_mix: bool = True,
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
        self._prices_cache: tuple[int, int, np.ndarray] | None = None
        self._unknown_venues = 0  # refusals the Python layer makes before reaching the core
        # [calibrator] begin
        self._calibrate = bool(learn) if calibrate is None else bool(calibrate)
        self._core.set_calibrating(self._calibrate)
        self._core.set_learning_mix(bool(learn_mix))
        for slot, name in enumerate(names):
            spec = get_venue(name)
            kind = spec.reported_price
            self._core.set_documented_kind(slot, PRICE_KINDS.index(kind) if kind in PRICE_KINDS else 0)
            # no public feed: whatever liquidations arrive for it, its priors stay
            self._core.set_has_feed(slot, spec.liquidation_feed != "none")
        # [calibrator] end
        if cascade:  # cascade
            self._core.configure_cascade(dict(cascade))
        self._persist_init(0, "")  # persist

    # -- persistence (heatcore.persist) -------------------------------------------
    def _persist_init(self, events_seen: int, journal_token: str) -> None:
        self._events_seen = events_seen  # inputs offered to the core, accepted or refused
        self._journal_token = journal_token
        self._auto: _persist.AutoSnapshot | None = None

    def _persist_meta(self) -> dict[str, Any]:
        """What the Python wrapper needs to rebuild itself around a loaded core."""
        return {"symbol": self._symbol, "step": self._step, "venues": list(self._venues),
                "tiers": [float(x) for x in self._tiers], "learn": self._learn,
                "unknown_venues": self._unknown_venues, "events_seen": self._events_seen,
                "journal_token": self._journal_token, "library": _persist._library_version()}

    @classmethod
    def _from_snapshot(cls, data: bytes) -> Engine:
        meta, core = _persist.loads(data)
        eng = cls.__new__(cls)
        eng._restore(meta, core)
        return eng

    def _restore(self, meta: Mapping[str, Any], core: Any) -> None:
        try:
            names = tuple(str(v) for v in meta["venues"])
            tiers = np.array([float(x) for x in meta["tiers"]])
            if core.venue_count != len(names) or not np.array_equal(core.tiers, tiers):
                raise _persist.SnapshotError("META does not match the CORE section (venues or tiers)")
            self._core = core
            self._symbol = str(meta["symbol"])
            self._step = float(meta["step"])
            self._venues = names
            self._slot = {n: i for i, n in enumerate(names)}
            self._tiers = tiers
            self._learn = bool(meta["learn"])
            self._lock = threading.RLock()
            self._prices_cache = None
            self._unknown_venues = int(meta["unknown_venues"])
            self._persist_init(int(meta["events_seen"]), str(meta.get("journal_token", "")))
            # [calibrator] on/off and estimates come from the core's CALB section; a
            # snapshot without one gets the registry's documented report kinds
            self._calibrate = bool(core.calibrating())
            for slot, name in enumerate(names):
                if core.calibration(slot)["documented_kind"] == "unknown":
                    kind = get_venue(name).reported_price
                    core.set_documented_kind(slot, PRICE_KINDS.index(kind) if kind in PRICE_KINDS else 0)
                if get_venue(name).liquidation_feed == "none":  # snapshots from before the flag
                    core.set_has_feed(slot, False)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, _persist.SnapshotError):
                raise
            raise _persist.SnapshotError(f"META section is incomplete: {e!r}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot of the whole state to ``path``, atomically.

        The file carries a magic header, the format version, the library version
        and a CRC-32; a crash during the save leaves the previous file intact.
        """
        with self._lock:
            if self._auto is not None and os.path.abspath(os.fspath(path)) == self._auto.path:
                self._auto.snapshot(self)  # the autosnapshot path: its journal must restart too
                return
            data = _persist.dumps(self)
        _persist.write_atomic(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Engine:
        """Rebuild an engine from a snapshot written by :meth:`save` (any earlier
        format version). Raises :class:`heatcore.SnapshotError` when the file is
        not a snapshot, corrupt, truncated or written by a newer format."""
        return cls._from_snapshot(_persist.read_file(path))

    def __getstate__(self) -> bytes:
        with self._lock:
            return _persist.dumps(self)

    def __setstate__(self, state: bytes) -> None:
        meta, core = _persist.loads(state)
        self._restore(meta, core)

    def autosnapshot(self, path: str | os.PathLike[str] | None, *, every_events: int | None = None,
                     every_seconds: float | None = None, fsync_journal: bool = False) -> None:
        """Keep a snapshot at ``path`` up to date for continuous operation.

        Writes a snapshot now, then again after every ``every_events`` inputs or
        ``every_seconds`` seconds (checked at each input call), whichever comes
        first. Between snapshots every input is appended to ``<path>.journal``
        before it is applied, so :meth:`resume` rebuilds exactly the state of a
        run that never stopped. ``fsync_journal=True`` also survives a machine
        crash (each append is fsync'ed) at a cost per call. ``path=None`` stops.
        """
        with self._lock:
            if self._auto is not None:
                self._auto.close()
                self._auto = None
            if path is None:
                return
            auto = _persist.AutoSnapshot(path, every_events, every_seconds, fsync_journal)
            _persist.remove_stale_temporaries(auto.path)
            _persist.remove_stale_temporaries(auto.journal_path)
            auto.snapshot(self)
            self._auto = auto

    @classmethod
    def resume(cls, path: str | os.PathLike[str], *, every_events: int | None = None,
               every_seconds: float | None = None, fsync_journal: bool = False) -> Engine:
        """Restart a run kept by :meth:`autosnapshot`: load the snapshot at ``path``
        and replay the journal recorded after it. Autosnapshot continues when
        ``every_events`` or ``every_seconds`` is given. ``events_seen`` tells the
        feeder how many inputs the engine has taken."""
        eng = cls.load(path)
        records, _ = _persist.read_journal(os.fspath(path) + ".journal", eng._journal_token)
        for _kind, events in records:
            if events is None:
                eng._unknown_venues += 1
            else:
                eng._events_seen += len(events)
                eng._core.ingest(events)
        if every_events is not None or every_seconds is not None:
            eng.autosnapshot(path, every_events=every_events, every_seconds=every_seconds,
                             fsync_journal=fsync_journal)
        return eng

    @property
    def events_seen(self) -> int:
        """Inputs (events and single updates) offered to the engine, accepted or refused."""
        return self._events_seen

    def _journal_one(self, kind: int, venue: str, ts_ms: int, price: float, value: float = 0.0,
                     side: int = 0, price_kind: int = 0, flags: int = 0) -> None:
        """Before a single update reaches the core: count it and journal it (autosnapshot)."""
        self._events_seen += 1
        if self._auto is not None:
            rec = np.zeros(1, dtype=EVENT_DTYPE)
            rec[0] = (ts_ms, price, value, venue_id(venue), kind, side, price_kind, flags)
            self._auto.record_events(rec)

    def _after_input(self, n: int) -> None:
        if self._auto is not None:
            self._auto.after(self, n)

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
                if self._auto is not None:
                    self._auto.record_unknown_venue()
            raise InputError("unknown_venue", f"{venue!r} is not one of this engine's venues") from None

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code >= 0:
            raise InputError(_core.reject_name(code), what)

    def update_price(self, venue: str, ts_ms: int, price: float) -> None:
        """Apply a price (mark) update: levels crossed by the move are consumed."""
        # Hot path (bots call it per tick): no work beyond the core call unless refused.
        slot = self._slot.get(venue)
        if slot is None:
            slot = self._slot_of(venue)
        ts, p = int(ts_ms), float(price)
        with self._lock:
            if self._auto is None:
                self._events_seen += 1
                code = self._core.update_price(slot, ts, p)
            else:
                self._journal_one(0, venue, ts, p)
                try:
                    code = self._core.update_price(slot, ts, p)
                finally:
                    self._after_input(1)
        if code >= 0:
            self._check(code, f"price {price!r} for {venue} at {ts_ms}")

    def update_open_interest(self, venue: str, ts_ms: int, oi_usd: float,
                             price: float | None = None) -> None:
        """Apply an open-interest reading in USD (converted to base units at
        ``price``, default the venue's last price). Zero or missing readings are
        refused as gaps, never read as "everything closed"."""
        slot = self._slot.get(venue)
        if slot is None:
            slot = self._slot_of(venue)
        if price is not None and not (float(price) > 0):
            raise InputError("non_positive_price", f"price {price!r} for the OI reading")
        ts, oi, p = int(ts_ms), float(oi_usd), 0.0 if price is None else float(price)
        with self._lock:
            if self._auto is None:
                self._events_seen += 1
                code = self._core.update_open_interest(slot, ts, oi, p)
            else:
                self._journal_one(1, venue, ts, p, oi)
                try:
                    code = self._core.update_open_interest(slot, ts, oi, p)
                finally:
                    self._after_input(1)
        if code >= 0:
            self._check(code, f"open interest {oi_usd!r} for {venue} at {ts_ms}")

    def on_liquidation(self, venue: str, ts_ms: int, side: str, price: float, notional_usd: float,
                       *, price_kind: str = "unknown", sampled: bool = False) -> None:
        """Feed one observed liquidation (``side`` = the liquidated position).

        The event is scored against the map as it stood before it, then updates
        the learners.
        """
        slot = self._slot.get(venue)
        if slot is None:
            slot = self._slot_of(venue)
        kind = _PRICE_KIND_CODE.get(price_kind)
        if kind is None:
            raise InputError("unknown_kind", f"price_kind must be one of {PRICE_KINDS}")
        ts, p, q = int(ts_ms), float(price), float(notional_usd)
        # An unknown side goes to the core as 0 so that it is refused and counted there.
        code, pk, fl = _SIDE_CODE.get(side, 0), kind, 1 if sampled else 0
        with self._lock:
            if self._auto is None:
                self._events_seen += 1
                rc = self._core.on_liquidation(slot, ts, code, p, q, pk, fl)
            else:
                self._journal_one(2, venue, ts, p, q, code, pk, fl)
                try:
                    rc = self._core.on_liquidation(slot, ts, code, p, q, pk, fl)
                finally:
                    self._after_input(1)
        if rc >= 0:
            self._check(rc, f"liquidation {side} {notional_usd!r} @ {price!r} on {venue} at {ts_ms}")

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
            self._events_seen += len(arr)
            if self._auto is not None:
                self._auto.record_events(arr)
            counts = dict(self._core.ingest(arr))
            self._after_input(len(arr))
            return counts

    # -- reads -----------------------------------------------------------------
    def heatmap(self, venue: str | None = None) -> HeatMap:
        """The current map of one venue, or the sum over venues (``venue=None``)."""
        slot = -1 if venue is None else self._slot_of(venue)
        with self._lock:
            k0, n, lo, sh, price = self._core.map_arrays(slot)
        return HeatMap(self._bin_prices(k0, n), lo, sh, venue, price)

    def open_book(self, venue: str | None = None) -> HeatMap:
        """The open book the horizon forecast reads, of one venue or summed over venues.

        Where the Leverage Learner has fitted a venue side, this is the book its
        model generates: each tier's openings since the first OI reading at the
        fitted opening rate, aged by the tier's closing hazard and crossed by
        price, plus the book older than that reading. :meth:`heatmap` reads the
        exposure book, whose rows keep all open interest as if at each tier, so
        old high-leverage entries stay near price until price crosses them; on
        :mod:`heatcore.sim` this book is much closer to the true open book (see
        the README). Elsewhere (``learn=False``, a frozen venue, before the
        learner's first fit, or the forecast's ``generative_map`` off) it equals
        :meth:`heatmap`. USD at each trigger level, like :meth:`heatmap`.
        """
        slot = -1 if venue is None else self._slot_of(venue)
        with self._lock:
            k0, n, lo, sh, price = self._core.open_book_arrays(slot)
        return HeatMap(self._bin_prices(k0, n), lo, sh, venue, price)

    def _bin_prices(self, k0: int, n: int) -> np.ndarray:
        """Bin centres of the grid, shared read-only between maps until the grid grows."""
        cached = self._prices_cache
        if cached is None or cached[0] != k0 or cached[1] != n:
            prices = (k0 + np.arange(n, dtype=np.float64)) * self._step
            prices.flags.writeable = False
            cached = self._prices_cache = (k0, n, prices)
        return cached[2]

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
            if self._auto is not None:  # not an event: the journal cannot replay it
                self._auto.snapshot(self)

    def freeze(self, venue: str, frozen: bool = True) -> None:
        """Stop (or resume) learning for one venue."""
        slot = self._slot_of(venue)
        with self._lock:
            self._core.set_learning(slot, (not frozen) and self._learn)
            if self._auto is not None:  # not an event: the journal cannot replay it
                self._auto.snapshot(self)

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
                        "events_seen": self._events_seen,
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

    # [calibrator] begin ------------------------------------------------------
    def configure_calibrator(self, **settings: Any) -> None:
        """Change the Exchange Calibrator's settings; forgets its estimates.

        Names as in ``CalibratorConfig`` (``cpp/heatcore/calibrator.hpp``):
        ``fresh_ms``, ``huber_c``, ``sigma_floor``, ``systematic_sd``, ``max_n_eff``, ``scale_min``,
        ``scale_max``, ``scale_prior_sd``, ``ref_leverage``, ``apply_rel``,
        ``apply_every``, ``depart_z``.
        """
        with self._lock:
            cfg = self._core.calibrator_config()
            for key, value in settings.items():
                if key.startswith("_") or not hasattr(cfg, key):
                    raise ValueError(f"unknown calibrator setting {key!r}")
                setattr(cfg, key, value)
            try:
                self._core.configure_calibrator(cfg)
            except ValueError as exc:
                raise ValueError(str(exc)) from None

    @property
    def learn_mix(self) -> bool:
        """Whether the Leverage Learner runs (False: mixes stay at their priors)."""
        return bool(self._core.learning_mix())

    @property
    def calibrate(self) -> bool:
        """Whether the Exchange Calibrator runs (on venues that are learning)."""
        return self._calibrate

    def calibration(self, venue: str) -> dict[str, Any]:
        """The Exchange Calibrator's current correction factors for one venue.

        The structure is stable (new keys may be added, none removed or renamed)::

            {"venue": str,
             "has_feed": bool,          # the venue publishes liquidations
             "feed": "complete" | "sampled" | "none",
             "calibrating": bool,       # estimates can move (calibrate on, venue learning)
             "status": "no_feed" | "prior" | "learning",
             "note": str,               # why the estimates are (or are not) priors
             "reported_price": str,     # documented kind of the feed's price
             "rate_scale": {side: {"value", "std", "n_eff", "prior", "prior_std",
                                   "departs", "source", "applied"}},
             "maintenance_rate": {side: {"value", "documented"}},
             "report_offset": {side: {"value", "std", "n_eff", "prior", "prior_std",
                                      "departs", "price_kind", "bins", "events",
                                      "looks_like"}},
             "report_offset_by_kind": {side: {kind: {...same keys...}}},
             "size_cap": {side: {"p99_usd", "median_usd", "max_usd", "n_eff",
                                 "max_leverage_at_p99"}},
             "level_sigma": {side: float},
             "cross_margin": {"share": float, "distance": float,
                              "learned": False, "note": str},
             "events": {side: {"used": int, "no_reference": int}}}

        ``side`` is ``"long"`` / ``"short"``. ``rate_scale`` is the effective
        maintenance rate over the registry's (1 = documented); ``source`` says what
        it rests on: ``"prior"`` (no separable evidence: the registry's value),
        ``"bankruptcy_offset"`` (measured from bankruptcy/order reports against the
        mark), or ``"convention_departs"`` (the venue's reports are not at the
        bankruptcy price it documents, so they say nothing about the rate).
        ``applied`` is the scale the venue's levels are currently placed with:
        levels move only once the estimate departs significantly from the
        registry's (``departs``), so a documented venue keeps its placement.
        ``looks_like`` classifies the measured offset: ``"at_trigger"`` (a trade
        print, mark or fill with little slippage), ``"bankruptcy"`` (within the
        bankruptcy offsets of the plausible rate range), ``"between"``, or
        ``"unknown"`` (no evidence yet).
        ``report_offset.value`` is ``ln(reported price / trigger price)`` for the
        documented price kind (``bins``: the same in price bins at the venue's
        last price). ``std`` is the posterior standard deviation and ``n_eff`` the
        effective number of events behind it (0: the value is the prior).
        ``cross_margin`` is the registry's prior (share of open interest in cross
        margin; ``distance``, the multiple of the isolated liquidation distance at
        which such positions die), never learned from liquidations: from
        liquidation prices alone a cross-margined position dying far from entry
        cannot be told from a lower-leverage isolated one.
        """
        slot = self._slot_of(venue)
        spec = get_venue(venue)
        with self._lock:
            raw = self._core.calibration(slot)
            price = float(self._core.venue_stats(slot)["last_price"] or self._core.reference_price)
            learning = bool(self._core.learning(slot))
        feed = spec.liquidation_feed
        has_feed = feed != "none"
        doc_kind = raw["documented_kind"]
        used = sum(int(raw[s]["used"]) for s in ("long", "short"))
        calibrating = self._calibrate and learning
        if not has_feed:
            status, note = "no_feed", ("the venue publishes no liquidations: every factor is the "
                                       "registry's prior and stays so")
        elif used == 0:
            status, note = "prior", ("no liquidation with a fresh mark of the venue yet: every factor "
                                     "is the registry's prior" if calibrating else
                                     "calibration is off: every factor is the registry's prior")
        else:
            status, note = "learning", "factors move on evidence; n_eff says how much"
        out: dict[str, Any] = {
            "venue": venue, "has_feed": has_feed, "feed": feed, "calibrating": calibrating,
            "status": status, "note": note, "reported_price": doc_kind,
            "rate_scale": {}, "maintenance_rate": {}, "report_offset": {},
            "report_offset_by_kind": {}, "size_cap": {}, "level_sigma": {}, "events": {},
        }
        for side in ("long", "short"):
            r = raw[side]
            out["rate_scale"][side] = dict(r["rate_scale"])
            out["maintenance_rate"][side] = {"value": r["maintenance_rate"], "documented": r["documented_rate"]}
            by_kind = {}
            for kind, est in r["offsets"].items():
                e = {k: est[k] for k in ("value", "std", "n_eff", "prior", "prior_std", "departs")}
                e.update(price_kind=kind, events=int(est["events"]),
                         bins=float(est["value"]) * price / self._step if price > 0 else 0.0)
                by_kind[kind] = e
            out["report_offset_by_kind"][side] = by_kind
            out["report_offset"][side] = by_kind[doc_kind]
            code = _SIDE_CODE[side]
            with self._lock:
                cfg = self._core.calibrator_config()
                bk_range = sorted(self._core.documented_offset(slot, code, 1, x)
                                  for x in (cfg.scale_min, cfg.scale_max))
            for e in by_kind.values():
                e["looks_like"] = _convention_of(e, bk_range)
            out["size_cap"][side] = dict(r["size"])
            out["level_sigma"][side] = float(r["level_sigma"])
            out["events"][side] = {"used": int(r["used"]), "no_reference": int(r["no_reference"])}
        out["cross_margin"] = {
            "share": float(spec.cross_share),
            "distance": float(spec.cross_distance),
            "learned": False,
            "note": ("documented prior; not learned from liquidations (a cross position dying far "
                     "away is indistinguishable from a lower-leverage isolated one)"),
        }
        return out
    # [calibrator] end
    # [forecast] begin ---------------------------------------------------------
    def configure_forecast(self, **settings: Any) -> None:
        """Change the forecast's settings before the first event (names as in
        ``ForecastConfig`` in ``cpp/heatcore/forecast.hpp``: ``burst_tau_s``,
        ``vol_tau_s``, ``ref_horizon_s``, ``em_prior_n``, ``cont_prior``, ``learn``...)."""
        cfg = _core.ForecastConfig()
        for key, value in settings.items():
            if key.startswith("_") or not hasattr(cfg, key):
                raise ValueError(f"unknown forecast setting {key!r}")
            setattr(cfg, key, value)
        with self._lock:
            try:
                _core.engine_configure_forecast(self._core, cfg)
            except RuntimeError as exc:  # std::logic_error: events already applied
                raise ValueError(str(exc)) from None

    def forecast(self, horizon_s: float = 3600.0, venue: str | None = None, *,
                 window_pct: float | None = None) -> Forecast:
        """Expected liquidation notional per bin within ``horizon_s`` seconds.

        Parameters
        ----------
        horizon_s : float
            Forecast horizon in seconds (3600 = the next hour).
        venue : str, optional
            One venue, or None for the sum over the engine's venues.
        window_pct : float, optional
            Only bins within this fraction of the current price (e.g. 0.1 = +-10 %);
            default: the whole grid, like :meth:`heatmap`.

        Returns
        -------
        Forecast
        """
        if not (float(horizon_s) >= 0.0):
            raise ValueError("horizon_s must be >= 0")
        slot = -1 if venue is None else self._slot_of(venue)
        with self._lock:
            state = _core.engine_forecast_state(self._core, -1)
            anchor = float(state["anchor_price"])
            if window_pct is None or anchor <= 0:
                _, k0, n = self._core.grid
            else:
                if not (0 < float(window_pct) < 1):
                    raise ValueError("window_pct must be in (0, 1)")
                k0 = max(int(np.floor(anchor * (1 - window_pct) / self._step)), 0)
                n = int(np.ceil(anchor * (1 + window_pct) / self._step)) - k0 + 1
            out, reach = _core.engine_forecast(self._core, [slot], float(horizon_s), int(k0),
                                               int(n))
        prices = (np.arange(int(n), dtype=float) + int(k0)) * self._step
        sigma = float(np.sqrt(state["variance_rate"] * float(horizon_s)))
        return Forecast(prices, out[0, 0], out[0, 1], reach, venue, anchor, float(horizon_s), sigma)

    def forecast_state(self, venue: str | None = None) -> dict[str, Any]:
        """The forecast's online state.

        Engine-wide (``venue=None``): ``anchor_price`` (where reach is measured from),
        ``variance_rate`` and ``sigma_1h`` (realised volatility), ``survival_z`` (the
        calibrated probability that price moves z sigmas within a horizon, z = 0, 0.1,
        ..., 10) and ``calibration_n``. Per venue, by side (``_long``/``_short``):
        ``reach_scale`` (a, on the map part), ``continuation`` (b, the branching
        ratio of the cascade term), ``background`` (c), ``map_shift_bins`` (reported
        minus trigger price), ``continuation_kernel`` (offsets -64..64 bins),
        ``burst_usd``, ``anchor``, ``events`` and ``unexplained``."""
        slot = -1 if venue is None else self._slot_of(venue)
        with self._lock:
            return dict(_core.engine_forecast_state(self._core, slot))
    # [forecast] end -----------------------------------------------------------
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
        # Rows of six float64 are exactly CASCADE_DTYPE's layout: reinterpret, no copy.
        return np.ascontiguousarray(rows, dtype=np.float64).view(CASCADE_DTYPE).reshape(-1)

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
        from one level to the next; ``platt_a``/``platt_b`` the MAP Platt fit
        of the recalibration; ``n_*`` the evidence behind each. The
        recalibration's per-level columns (index 0 is NaN): ``base_rate``,
        the running Brier scores of the engine's own resolved forecasts
        ``brier_raw``/``brier_platt``/``brier_base``/``brier_issued`` (raw walk,
        Platt fit, base rate, the issued probability) and ``gate_platt``/
        ``gate_base`` (in [0, 1]: how far the issued probability moves from the
        raw walk towards that candidate). ``consensus_price``: the median of
        the venues' marks, against which the engine resolves its forecasts.
        The chain impact law ``return = chain_scale * Q**chain_exponent``
        (Q: a chain's cumulative observed USD; fitted from price ticks against
        the liquidations before them): ``chain_residual`` (sd of a tick's
        return around it), ``n_chain_impact`` (ticks with liquidations seen),
        ``chain_fitted`` (False: the priors, too few ticks yet).
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


def _convention_of(est: Mapping[str, Any], bk_range: Sequence[float]) -> str:
    """What a measured report offset looks like (see :meth:`Engine.calibration`)."""
    if not est["n_eff"]:
        return "unknown"
    v, lo, hi = float(est["value"]), float(bk_range[0]), float(bk_range[1])
    if lo <= v <= hi:
        return "bankruptcy"
    if abs(v) < 0.5 * min(abs(lo), abs(hi)):
        return "at_trigger"
    return "between"


def _side(side: str) -> int:
    try:
        return _SIDE_CODE[side]
    except KeyError:
        raise ValueError(f"side must be 'long' or 'short', got {side!r}") from None
