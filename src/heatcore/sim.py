"""A reproducible synthetic multi-venue perpetual-futures market with a known hidden truth.

Every test, the demo, the benchmarks and the learners' acceptance tests run on
this market: it emits the same normalized events a real recording would
(:data:`heatcore.EVENT_DTYPE`: price, open interest and liquidations) and keeps
the truth the learners are meant to recover (:class:`Truth`).

The model
---------
* **Positions are agents.** Every opening creates a long *and* a short of the
  same base quantity (a contract has two holders). Each leg draws its leverage
  from that venue's and side's true mix over :data:`heatcore.venues.DEFAULT_TIERS`
  (capped at the venue's maximum leverage), enters at the venue's mark price,
  and gets its liquidation price from the venue's *true* mechanics
  (``Venue.mechanics(symbol).liquidation_ratio(side, L, rate_scale)``).
  Cross-margined legs (a share ``cross_share`` of each venue's legs; default
  the registry's documented prior) die farther away: their distance is
  multiplied by ``cross_distance x U(1 - cross_spread, 1 + cross_spread)``
  (default: the registry's ``cross_distance``, 2-2.5). Notionals are lognormal
  (median ``notional_median``).
  A pair closes voluntarily after an exponential lifetime whose mean falls with
  leverage (``lifetime_h * (max_leg_leverage / 10) ** -lifetime_lev_exponent``:
  24 h at 10x, 45 min at 100x, 11 days at 2x by default).
  When one leg is liquidated its partner is closed in the same second (the
  counter-side trader takes profit against the liquidation order), so open
  long quantity always equals open short quantity: that quantity is the
  venue's open interest.
* **Initial book.** The market starts with the survivors of ``history_days`` of
  openings on a pre-history price path (legs whose liquidation price the
  pre-history crossed are gone), so OI at t=0 is realistic (``oi_usd`` per venue,
  $0.2-3B by default) and the book near the price is already thinned out.
* **Price.** One global true mark price at 1 s resolution: GBM (``daily_vol``)
  plus Poisson jumps (``jumps_per_day``, Laplace sizes ``jump_size``) plus the
  impact of liquidations. Each venue's mark adds a small basis
  (``basis_bp``, interpolated noise). Liquidations move the price like one
  metaorder per cascade: a chain of same-direction liquidations (gaps of at
  most ``chain_gap_s``) with cumulative notional Q has moved the price by
  ``impact_coef * (Q / $1M) ** impact_exponent`` (log return, exponent 0.87;
  long liquidations push down, short ones up), applied second by second as Q
  grows; a share ``impact_permanent`` is permanent, the rest decays with
  ``impact_halflife_s``. Liquidations at the new price trigger more
  (cascades). The default coefficient keeps the feedback sub-critical on the
  default book (about +10-25 % liquidated notional against the same path
  without impact); raising it a few times makes runaway crashes.
* **Crossing is event-driven.** Per venue and side the legs sit in an array
  sorted by liquidation price plus a small unsorted buffer of recent openings;
  the run advances in chunks of up to 60 s and only compares the chunk's venue
  marks with each venue's nearest liquidation price, stepping second by second
  only where something is crossed. Nothing scans all positions per tick.
* **Feeds like the real venues.** Price events every ``price_interval_s``, OI
  readings (``oi = open base qty x venue mark``) every ``oi_interval_s``.
  Liquidations are emitted per the registry's ``liquidation_feed``: ``complete``
  venues emit every liquidation, ``sampled`` venues (Binance, OKX, Gate) keep
  only the latest liquidation in each second and flag it sampled, ``none``
  venues emit no liquidations (but still price and OI). The event's
  ``price_kind`` is the registry's ``reported_price``; the price actually
  reported follows the venue's *true* convention: ``bankruptcy`` (the leg's
  bankruptcy price), ``order`` (the liquidation order's limit at the bankruptcy
  price, rounded to the tick), ``fill`` (mark minus adverse slippage),
  ``trade`` (mark plus noise) or ``mark``. The event's notional is base qty x
  reported price.

Departures from the registry (defaults, so the learners have something to find)
------------------------------------------------------------------------------
* Hidden mixes: every venue's and side's true band mix is drawn (from ``seed``)
  from a Dirichlet around the registry's prior (``mix_concentration``), spread
  over tiers with extra weight on round leverages (3x, 5x, 10x, 20x, 25x, 50x,
  100x, 125x). On top, **bybit longs** are much more leveraged than the
  archetype (bands 0.05/0.12/0.28/0.30/0.25 against 0.10/0.25/0.40/0.17/0.08)
  and so are **hyperliquid**'s (longs 0.25/0.30/0.30/0.15/0, shorts
  0.30/0.30/0.28/0.12/0 against roughly 0.48/0.38/0.08/0.06/0). ``mixes=`` replaces
  these (5 band weights or 19 tier weights, per venue or per venue and side).
* Stale maintenance table: **htx** liquidates at 1.6x the documented maintenance
  rate (``rate_scale["htx"] = 1.6``); **gate** at 0.7x.
* Undocumented reported price: **kraken**'s registry says ``trade`` but the feed
  really reports the **bankruptcy** price; **bitmex**'s says ``order`` but it
  reports the **fill**.
* Cross margin follows the registry's documented priors by default (50-95 % of
  legs, dying 2-2.5x farther than isolated): from liquidations alone it looks
  like a lower-leverage mix, so heatcore treats it as a prior, not something to
  learn. ``cross_share={"okx": 0.2}`` / ``cross_distance=`` make a venue depart.
* Regime change: off by default; ``regime_change=("bybit", 12.0, band_mix)``
  (optionally a 4th element ``"long"``/``"short"``) switches that venue's
  opening mix at hour 12 (rounded to the chunk grid).

``SimConfig.faithful()`` turns every departure off (the registry is then the truth).

Everything is reproducible from ``seed`` (one :class:`numpy.random.Generator`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence, Tuple, Union

import numpy as np

from . import venues as _venues
from .events import EVENT_DTYPE, FLAG_SAMPLED, KIND_LIQUIDATION, KIND_OI, KIND_PRICE

__all__ = ["LIQUIDATION_DTYPE", "POSITION_DTYPE", "SimConfig", "SimResult", "Truth", "simulate"]

_TIERS = np.asarray(_venues.DEFAULT_TIERS, dtype=float)
_NT = len(_TIERS)
_TIER_BAND = np.array([_venues.band_of(x) for x in _TIERS])
_NB = len(_venues.BANDS)
#: Leverages traders like; they get extra weight inside their band.
_POPULAR = np.isin(_TIERS, (3.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 125.0))
_CONVENTIONS = ("bankruptcy", "order", "fill", "trade", "mark")

#: Default open interest at t=0 (USD) by venue, roughly scaled to venue size.
DEFAULT_OI_USD: dict[str, float] = {
    "binance": 3.0e9, "bybit": 1.8e9, "okx": 1.2e9, "bitget": 1.5e9, "gate": 0.8e9,
    "bitmex": 0.3e9, "deribit": 0.6e9, "hyperliquid": 1.5e9, "dydx": 0.2e9, "htx": 0.3e9,
    "kraken": 0.2e9, "kucoin": 0.3e9, "mexc": 0.6e9, "bingx": 0.3e9, "bitfinex": 0.2e9,
    "coinex": 0.2e9, "phemex": 0.2e9, "bitmart": 0.2e9, "cryptocom": 0.2e9, "woox": 0.2e9,
    "coinbase": 0.3e9, "bitunix": 0.2e9,
}
_FALLBACK_OI = 0.2e9

#: One row per true liquidation (before feed sampling).
LIQUIDATION_DTYPE = np.dtype([
    ("ts", "<i8"),            # ms since epoch
    ("venue", "<u2"),         # registry code
    ("side", "i1"),           # +1 long, -1 short (the liquidated leg)
    ("trigger", "<f8"),       # the leg's true liquidation price (the level crossed)
    ("mark", "<f8"),          # venue mark price in the second it was crossed
    ("reported", "<f8"),      # price the feed reports (venue's true convention)
    ("notional", "<f8"),      # base qty x reported price (USD)
    ("qty", "<f8"),           # base quantity
    ("entry", "<f8"),         # entry price
    ("leverage", "<f8"),
    ("cross", "?"),           # cross-margined leg
    ("chain", "<i4"),         # cascade chain id (per direction, gaps <= chain_gap_s)
    ("level", "<i2"),         # index of this second within its chain (0 = chain start)
    ("emitted", "?"),         # appears in the event stream (feed not none, survived sampling)
    ("leg", "<i8"),           # row in Truth.positions (when kept)
])

#: One row per leg (only with ``keep_positions=True``). Rows ``2k`` (long) and
#: ``2k + 1`` (short) are the two legs of one opening; ``close_ts`` is the planned
#: voluntary close, ``end_ts`` when the leg really ended.
POSITION_DTYPE = np.dtype([
    ("venue", "<u2"), ("side", "i1"), ("leverage", "<f8"), ("cross", "?"), ("entry", "<f8"),
    ("qty", "<f8"), ("liq_price", "<f8"), ("open_ts", "<i8"), ("close_ts", "<i8"),
    ("end_ts", "<i8"),
    # 0 still open, 1 closed, 2 liquidated, 3 closed against its partner's liquidation
    ("end", "u1"),
])
_NEVER = np.iinfo(np.int64).max

SideLike = Union[str, int]


def _factory(d: Mapping[str, Any]) -> Any:
    return field(default_factory=lambda: dict(d))


@dataclass(frozen=True)
class SimConfig:
    """All knobs of the synthetic market (the module docstring explains the model).

    Attributes
    ----------
    hours, seed, venues, symbol, start_price, start_ts_ms
        Length of the run, the seed of everything, simulated venues (``None``: all
        registry venues), symbol (selects the tier tables), price and time at t=0.
    daily_vol, jumps_per_day, jump_size, basis_bp
        Diffusion volatility per day, Poisson jump rate per day, Laplace scale of a
        jump (log), per-venue basis noise (basis points).
    price_interval_s, oi_interval_s
        Whole seconds between price events and between OI readings per venue.
    oi_usd, oi_scale
        Target OI at t=0 per venue (USD; missing venues use :data:`DEFAULT_OI_USD`)
        and a factor on all of them. OI then moves with openings, closes and
        liquidations.
    notional_median, notional_sigma
        Lognormal notional of an opening (USD; both legs carry it).
    lifetime_h, lifetime_lev_exponent, history_days
        Mean pair lifetime at 10x, its power-law fall with the larger leg leverage,
        and the pre-history that builds the initial book.
    mix_concentration, mixes
        Dirichlet concentration of the hidden mixes around the registry priors
        (lower = farther; ``None``: exactly :func:`heatcore.venues.prior_weights`),
        and explicit mixes: ``{venue: weights}`` or
        ``{venue: {"long": weights, "short": weights}}`` with 5 band or 19 tier
        weights.
    rate_scale, report_convention
        Per-venue true maintenance rate over the registry's, and the price the feed
        really reports (``bankruptcy``, ``order``, ``fill``, ``trade``, ``mark``).
    cross_share, cross_distance, cross_spread
        Per-venue share of cross-margined legs (a number: every venue) and their
        mean distance multiple (missing: the registry's priors); each cross leg
        draws its multiple from
        ``mean x U(1 - cross_spread, 1 + cross_spread)``.
    regime_change
        ``(venue, hour, mix)`` or ``(venue, hour, mix, side)``: the opening mix
        switches at that hour (rounded to the 60 s chunk grid).
    impact_coef, impact_exponent, impact_permanent, impact_halflife_s, chain_gap_s
        Cascade impact: log move ``coef * (Q / $1M) ** exponent`` for a chain's
        cumulative liquidated notional Q, its permanent share, the half-life of the
        rest, and the largest gap (s) inside one chain.
    fill_slippage, trade_noise, tick
        Noise of ``fill`` (adverse, half-normal) and ``trade`` (normal) reports as a
        fraction of the mark; price tick of ``order`` reports (default about 1e-6 of
        the start price).
    keep_positions
        Keep every leg in :attr:`Truth.positions` (memory: ~80 bytes per leg).
    """

    hours: float = 24.0
    seed: int = 0
    venues: Tuple[str, ...] | None = None
    symbol: str = "BTCUSDT"
    start_price: float = 100_000.0
    start_ts_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    # price path
    daily_vol: float = 0.03
    jumps_per_day: float = 3.0
    jump_size: float = 0.005
    basis_bp: float = 1.5
    # feeds
    price_interval_s: int = 5
    oi_interval_s: int = 60
    # book
    oi_usd: Mapping[str, float] | None = None
    oi_scale: float = 1.0
    notional_median: float = 20_000.0
    notional_sigma: float = 1.1
    lifetime_h: float = 24.0
    lifetime_lev_exponent: float = 1.5
    history_days: float = 5.0
    # hidden truth
    mix_concentration: float | None = 30.0
    mixes: Mapping[str, Any] | None = _factory({
        "bybit": {"long": (0.05, 0.12, 0.28, 0.30, 0.25)},
        "hyperliquid": {"long": (0.25, 0.30, 0.30, 0.15, 0.0),
                        "short": (0.30, 0.30, 0.28, 0.12, 0.0)},
    })
    rate_scale: Mapping[str, float] = _factory({"htx": 1.6, "gate": 0.7})
    report_convention: Mapping[str, str] = _factory({"kraken": "bankruptcy", "bitmex": "fill"})
    cross_share: Mapping[str, float] | float = _factory({})
    cross_distance: Mapping[str, float] = _factory({})
    cross_spread: float = 0.25
    regime_change: Tuple[Any, ...] | None = None
    # cascades
    impact_coef: float = 1.5e-5
    impact_exponent: float = 0.87
    impact_permanent: float = 0.5
    impact_halflife_s: float = 300.0
    chain_gap_s: int = 10
    # reported-price noise
    fill_slippage: float = 3e-4
    trade_noise: float = 2e-4
    tick: float | None = None
    keep_positions: bool = False

    @classmethod
    def faithful(cls, **overrides: Any) -> SimConfig:
        """A market that follows the registry exactly: the prior mixes
        (:func:`heatcore.venues.prior_weights`), documented maintenance rates and
        reported prices, the registry's cross-margin priors. The static engine's
        assumptions are then true; ``overrides`` set any other field."""
        base: dict[str, Any] = dict(mixes=None, mix_concentration=None, rate_scale={},
                                    report_convention={})
        base.update(overrides)
        return cls(**base)


def _side_index(side: SideLike) -> int:
    if side in ("long", 1):
        return 0
    if side in ("short", -1):
        return 1
    raise ValueError(f"unknown side {side!r}: expected 'long' or 'short' (or +1/-1)")


def _nice_step(x: float) -> float:
    """Round ``x`` to 1, 2 or 5 times a power of ten."""
    if not (x > 0 and math.isfinite(x)):
        return 1.0
    e = math.floor(math.log10(x))
    best = min((1.0, 2.0, 5.0, 10.0), key=lambda m: abs(math.log(x / (m * 10.0**e))))
    return best * 10.0**e


def _band_mix_to_tiers(band_mix: Sequence[float] | np.ndarray, max_lev: float,
                       shape: np.ndarray | None = None) -> np.ndarray:
    """Spread a band mix over the tiers allowed at ``max_lev``.

    ``shape`` (a tier vector) gives the split inside each band; equal split
    where it has no mass. A band above the venue's maximum passes its share to
    the highest allowed tier.
    """
    bm = np.asarray(band_mix, dtype=float)
    if bm.shape != (_NB,) or not np.all(np.isfinite(bm)) or np.any(bm < 0) or bm.sum() <= 0:
        raise ValueError(f"a band mix needs {_NB} non-negative weights with a positive sum")
    allowed = _TIERS <= max_lev + 1e-9
    w = np.zeros(_NT)
    for b in range(_NB):
        members = np.flatnonzero((_TIER_BAND == b) & allowed)
        if members.size == 0:
            members = np.array([np.flatnonzero(allowed).max()])
            w[members] += bm[b]
            continue
        inner = shape[members] if shape is not None else np.zeros(members.size)
        if inner.sum() > 0:
            inner = inner / inner.sum()
        else:
            inner = np.full(members.size, 1.0 / members.size)
        w[members] += bm[b] * inner
    return w / w.sum()


def _to_tier_mix(spec: Sequence[float], max_lev: float,
                 shape: np.ndarray | None = None) -> np.ndarray:
    arr = np.asarray(spec, dtype=float)
    if arr.shape == (_NB,):
        return _band_mix_to_tiers(arr, max_lev, shape)
    if arr.shape == (_NT,):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError("a tier mix needs non-negative finite weights")
        arr = np.where(_TIERS <= max_lev + 1e-9, arr, 0.0)
        if arr.sum() <= 0:
            raise ValueError("the tier mix has no weight at or below the venue's maximum leverage")
        return arr / arr.sum()
    raise ValueError(f"a mix needs {_NB} band weights or {_NT} tier weights, got shape {arr.shape}")


def _bands_of(mix: np.ndarray) -> np.ndarray:
    return np.bincount(_TIER_BAND, weights=mix, minlength=_NB)


class Truth:
    """The hidden truth of a simulated market.

    Attributes
    ----------
    tiers : numpy.ndarray
        The tier support (:data:`heatcore.venues.DEFAULT_TIERS`).
    venues : tuple of str
        Simulated venues.
    rate_scale, report_convention, cross_share, cross_distance : dict
        Per venue: true maintenance rate over the registry's, the price the feed
        really reports, share of cross-margined legs, their mean distance multiple.
    regime_changes : list of (ts_ms, venue, side, new_mix)
    liquidations : numpy.ndarray
        Every true liquidation (:data:`LIQUIDATION_DTYPE`), time-ordered.
    price_path : (numpy.ndarray, numpy.ndarray)
        Timestamps (ms, one per second) and the true global mark price.
    oi_ts : numpy.ndarray
        Times of the open-book snapshots (the OI readings).
    positions : numpy.ndarray or None
        Every leg (:data:`POSITION_DTYPE`) when the run kept them.
    """

    def __init__(self, *, venues: tuple[str, ...], mixes: dict[tuple[str, int], list],
                 rate_scale: dict[str, float], report_convention: dict[str, str],
                 cross_share: dict[str, float], cross_distance: dict[str, float],
                 regime_changes: list,
                 liquidations: np.ndarray, price_path: tuple[np.ndarray, np.ndarray],
                 basis: np.ndarray, oi_ts: np.ndarray, open_qty: np.ndarray, end_ts: int,
                 positions: np.ndarray | None):
        self.tiers = _TIERS.copy()
        self.venues = venues
        self._mixes = mixes  # (venue, side index) -> [(from_ts_ms, mix), ...]
        self.rate_scale = rate_scale
        self.report_convention = report_convention
        self.cross_share = cross_share
        self.cross_distance = cross_distance
        self.regime_changes = regime_changes
        self.liquidations = liquidations
        self.price_path = price_path
        self._basis = basis
        self.oi_ts = oi_ts
        self._open_qty = open_qty  # (snapshots, venues, 2, tiers) base qty
        self._end_ts = end_ts
        self.positions = positions

    def _vi(self, venue: str) -> int:
        try:
            return self.venues.index(venue)
        except ValueError:
            raise KeyError(f"venue {venue!r} was not simulated; simulated: {self.venues}") from None

    def mix(self, venue: str, side: SideLike, at_ts: int | None = None) -> np.ndarray:
        """True mix of new openings over :attr:`tiers` in force at ``at_ts`` (default: the end)."""
        self._vi(venue)
        regimes = self._mixes[(venue, _side_index(side))]
        ts = self._end_ts if at_ts is None else int(at_ts)
        current = regimes[0][1]
        for start, m in regimes:
            if ts >= start:
                current = m
        return current.copy()

    def band_mix(self, venue: str, side: SideLike, at_ts: int | None = None) -> np.ndarray:
        """:meth:`mix` summed over :data:`heatcore.venues.BANDS`."""
        return _bands_of(self.mix(venue, side, at_ts))

    def open_mix(self, venue: str, side: SideLike, at_ts: int | None = None) -> np.ndarray:
        """Leverage mix of the open book (by base qty) at the last OI reading at or before
        ``at_ts`` (default: the end)."""
        v = self._vi(venue)
        ts = self._end_ts if at_ts is None else int(at_ts)
        i = max(0, int(np.searchsorted(self.oi_ts, ts, side="right")) - 1)
        q = self._open_qty[i, v, _side_index(side)]
        s = q.sum()
        return q / s if s > 0 else np.zeros(_NT)

    def open_qty(self, venue: str, side: SideLike, at_ts: int | None = None) -> np.ndarray:
        """Open base quantity per tier at the last OI reading at or before ``at_ts``."""
        v = self._vi(venue)
        ts = self._end_ts if at_ts is None else int(at_ts)
        i = max(0, int(np.searchsorted(self.oi_ts, ts, side="right")) - 1)
        return self._open_qty[i, v, _side_index(side)].copy()

    @property
    def marks(self) -> np.ndarray:
        """Venue mark prices, one row per simulated venue (order of :attr:`venues`),
        one column per second of :attr:`price_path`: the prices liquidations trigger on."""
        return self.price_path[1][None, :] * (1.0 + self._basis)

    def liquidated_usd(self, venue: str, side: SideLike) -> float:
        """True total liquidated notional (before feed sampling)."""
        code = _venues.venue_id(venue)
        sign = 1 if _side_index(side) == 0 else -1
        liq = self.liquidations
        sel = (liq["venue"] == code) & (liq["side"] == sign)
        return float(liq["notional"][sel].sum())


@dataclass
class SimResult:
    """Output of :func:`simulate`.

    Attributes
    ----------
    events : numpy.ndarray
        :data:`heatcore.EVENT_DTYPE` events, time-ordered (stable).
    symbol : str
    step : float
        Suggested bin width (about 0.05 % of the start price, rounded to 1/2/5).
    truth : Truth
    config : SimConfig
    venues : tuple of str
    """

    events: np.ndarray
    symbol: str
    step: float
    truth: Truth
    config: SimConfig
    venues: tuple[str, ...]


_UNSET: Any = object()


def simulate(hours: float = _UNSET, seed: int = _UNSET, venues: Sequence[str] | None = _UNSET,
             symbol: str = _UNSET, start_price: float = _UNSET, *,
             config: SimConfig | None = None, **config_overrides: Any) -> SimResult:
    """Run the synthetic market.

    Parameters
    ----------
    hours, seed, venues, symbol, start_price
        Shortcuts for the :class:`SimConfig` fields (defaults 24.0, 0, all 22
        venues, ``"BTCUSDT"``, 100000.0). ``venues=None`` simulates every
        registry venue.
    config : SimConfig, optional
        A full configuration; the other arguments override its fields.
    **config_overrides
        Any other :class:`SimConfig` field.

    Returns
    -------
    SimResult
    """
    cfg = config if config is not None else SimConfig()
    over = dict(config_overrides)
    for name, val in (("hours", hours), ("seed", seed), ("venues", venues), ("symbol", symbol),
                      ("start_price", start_price)):
        if val is not _UNSET:
            over[name] = val
    known = {f.name for f in fields(SimConfig)}
    unknown = sorted(set(over) - known)
    if unknown:
        raise TypeError(f"unknown simulator option(s): {', '.join(unknown)}")
    if over.get("venues") is not None:
        over["venues"] = tuple(over["venues"])
    cfg = replace(cfg, **over)
    return _Market(cfg).run()


class _Market:
    """The state of one run. Legs live in flat arrays; leg ``i`` and ``i ^ 1`` are a pair
    (even = long, odd = short)."""

    def __init__(self, cfg: SimConfig):
        self._validate(cfg)
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.names: tuple[str, ...] = (cfg.venues if cfg.venues is not None
                                       else tuple(_venues.VENUES))
        self.V = len(self.names)
        self.reg = [_venues.get_venue(n) for n in self.names]
        self.codes = np.array([_venues.venue_id(n) for n in self.names], dtype=np.uint16)
        self.S = max(1, round(cfg.hours * 3600))
        self.chunk = math.gcd(60, int(cfg.oi_interval_s))
        self._setup_truth()

    @staticmethod
    def _validate(cfg: SimConfig) -> None:
        if not (cfg.hours > 0 and math.isfinite(cfg.hours)):
            raise ValueError("hours must be positive")
        if not (cfg.start_price > 0 and math.isfinite(cfg.start_price)):
            raise ValueError("start_price must be positive")
        if int(cfg.price_interval_s) < 1 or int(cfg.oi_interval_s) < 1:
            raise ValueError("price_interval_s and oi_interval_s must be >= 1 s")
        if cfg.venues is not None:
            if len(cfg.venues) == 0:
                raise ValueError("venues must not be empty")
            for n in cfg.venues:
                _venues.get_venue(n)
            if len(set(cfg.venues)) != len(cfg.venues):
                raise ValueError("venues must not repeat")
        for n, c in cfg.report_convention.items():
            if c not in _CONVENTIONS:
                raise ValueError(f"report_convention[{n!r}] must be one of {_CONVENTIONS}")
        shares = (cfg.cross_share.items() if isinstance(cfg.cross_share, Mapping)
                  else [("every venue", cfg.cross_share)])
        for n, s in shares:
            if not 0 <= s <= 1:
                raise ValueError(f"cross_share[{n!r}] must be in [0, 1]")
        for n, s in cfg.cross_distance.items():
            if not (s >= 1 and math.isfinite(s)):
                raise ValueError(f"cross_distance[{n!r}] must be >= 1")
        if not 0 <= cfg.cross_spread < 1:
            raise ValueError("cross_spread must be in [0, 1)")
        for n, s in cfg.rate_scale.items():
            if not (s > 0 and math.isfinite(s)):
                raise ValueError(f"rate_scale[{n!r}] must be positive")

    # ------------------------------------------------------------------ truth
    def _setup_truth(self) -> None:
        cfg, rng = self.cfg, self.rng
        V = self.V
        self.rate_scale = {n: float(cfg.rate_scale.get(n, 1.0)) for n in self.names}
        cs = cfg.cross_share
        self.cross_share = {n: float(cs.get(n, v.cross_share) if isinstance(cs, Mapping) else cs)
                            for n, v in zip(self.names, self.reg, strict=True)}
        # registries without a documented cross distance: cross dies twice as far
        self.cross_distance = {
            n: float(cfg.cross_distance.get(n, max(1.0, getattr(v, "cross_distance", 2.0))))
            for n, v in zip(self.names, self.reg, strict=True)}
        self.convention = {}
        for n, v in zip(self.names, self.reg, strict=True):
            reg = v.reported_price if v.reported_price in _CONVENTIONS else "trade"
            self.convention[n] = cfg.report_convention.get(n, reg)
        self.conv_idx = np.array([_CONVENTIONS.index(self.convention[n]) for n in self.names])
        self.kind_idx = np.array(
            [_venues.PRICE_KINDS.index(v.reported_price) if v.reported_price in _venues.PRICE_KINDS
             else 0 for v in self.reg], dtype=np.uint8)
        self.feed = [v.liquidation_feed for v in self.reg]

        # true opening mixes: Dirichlet around the prior, round leverages favoured
        mixes: dict[tuple[str, int], list] = {}
        self.mix_now = np.zeros((V, 2, _NT))
        start_ms = cfg.start_ts_ms
        for vi, (n, v) in enumerate(zip(self.names, self.reg, strict=True)):
            prior = np.asarray(v.prior_bands, dtype=float)
            prior = prior / prior.sum()
            override = (cfg.mixes or {}).get(n)
            for s in range(2):
                shape = rng.dirichlet(np.where(_POPULAR, 6.0, 2.0))
                band = rng.dirichlet(prior * (cfg.mix_concentration or 1.0) + 0.3)
                spec: Any = band
                if cfg.mix_concentration is None:  # the registry's prior, exactly
                    spec = _venues.prior_weights(v, _venues.DEFAULT_TIERS)
                if override is not None:
                    if isinstance(override, Mapping):
                        spec = override.get(("long", "short")[s], band)
                    else:
                        spec = override
                m = _to_tier_mix(spec, v.max_leverage, shape)
                self.mix_now[vi, s] = m
                mixes[(n, s)] = [(start_ms, m)]
        self.mixes = mixes
        self.shapes = self.mix_now.copy()

        self.regime: list[tuple[int, int, int, np.ndarray]] = []  # (second, vi, side, mix)
        self.regime_changes: list[tuple[int, str, str, np.ndarray]] = []
        if cfg.regime_change is not None:
            rc = tuple(cfg.regime_change)
            if len(rc) not in (3, 4):
                raise ValueError("regime_change is (venue, hour, mix[, side])")
            name, hour, spec = rc[0], float(rc[1]), rc[2]
            if name not in self.names:
                raise ValueError(f"regime_change venue {name!r} is not simulated")
            sides = (0, 1) if len(rc) == 3 or rc[3] in (None, "both") else (_side_index(rc[3]),)
            sec = round(hour * 3600 / self.chunk) * self.chunk
            vi = self.names.index(name)
            for s in sides:
                m = _to_tier_mix(spec, self.reg[vi].max_leverage, self.mix_now[vi, s])
                ts = cfg.start_ts_ms + sec * 1000
                self.regime.append((sec, vi, s, m))
                self.regime_changes.append((ts, name, ("long", "short")[s], m.copy()))
                mixes[(name, s)].append((ts, m))

        # liquidation and bankruptcy ratios per venue, side, tier
        self.ratio = np.ones((V, 2, _NT))
        self.bk_ratio = np.ones((V, 2, _NT))
        inv_l = 1.0 / _TIERS
        for vi, (n, v) in enumerate(zip(self.names, self.reg, strict=True)):
            mech = v.mechanics(cfg.symbol)
            for s, sign in enumerate((1, -1)):
                for t, lev in enumerate(_TIERS):
                    if lev <= v.max_leverage + 1e-9:
                        self.ratio[vi, s, t] = mech.liquidation_ratio(sign, float(lev),
                                                                      self.rate_scale[n])
            if v.inverse:
                self.bk_ratio[vi, 0] = 1.0 / (1.0 + inv_l)
                self.bk_ratio[vi, 1] = 1.0 / (1.0 - inv_l)
            else:
                self.bk_ratio[vi, 0] = 1.0 - inv_l
                self.bk_ratio[vi, 1] = 1.0 + inv_l

        # opening intensity (pairs per second) so the steady-state book matches the OI target
        oi_tab = dict(DEFAULT_OI_USD)
        if cfg.oi_usd:
            oi_tab.update(cfg.oi_usd)
        self.oi_target = np.array([oi_tab.get(n, _FALLBACK_OI) * cfg.oi_scale for n in self.names])
        self.mean_notional = cfg.notional_median * math.exp(cfg.notional_sigma**2 / 2)
        self.hist_s = cfg.history_days * 86400.0
        self.lam = np.zeros(V)
        for vi in range(V):
            w = np.outer(self.mix_now[vi, 0], self.mix_now[vi, 1])
            lmax = np.maximum.outer(_TIERS, _TIERS)
            tau = self._lifetime(lmax)
            alive = tau * (1.0 - np.exp(-self.hist_s / tau))
            self.lam[vi] = self.oi_target[vi] / (self.mean_notional * float((w * alive).sum()))

    def _lifetime(self, lev: np.ndarray) -> np.ndarray:
        c = self.cfg
        lev = np.asarray(lev, dtype=float)
        return c.lifetime_h * 3600.0 * (lev / 10.0) ** (-c.lifetime_lev_exponent)

    # ------------------------------------------------------------------ storage
    def _alloc(self, n: int) -> None:
        self.cap = n
        self.p_venue = np.zeros(n, np.int16)
        self.p_tier = np.zeros(n, np.int8)
        self.p_cross = np.zeros(n, bool)
        self.p_entry = np.zeros(n)
        self.p_qty = np.zeros(n)
        self.p_lp = np.zeros(n)
        self.p_open = np.zeros(n, np.int64)
        self.p_end = np.full(n, _NEVER, np.int64)
        self.p_endkind = np.zeros(n, np.uint8)
        self.p_alive = np.zeros(n, bool)
        self.pair_close = np.zeros(n // 2, np.int64)
        self.n = 0

    def _grow(self, need: int) -> None:
        if need <= self.cap:
            return
        new = max(need, int(self.cap * 1.5))
        for name in ("p_venue", "p_tier", "p_cross", "p_entry", "p_qty", "p_lp", "p_open",
                     "p_end", "p_endkind", "p_alive"):
            old = getattr(self, name)
            arr = np.full(new, _NEVER, old.dtype) if name == "p_end" else np.zeros(new, old.dtype)
            arr[: self.n] = old[: self.n]
            setattr(self, name, arr)
        pc = np.zeros(new // 2, np.int64)
        pc[: self.n // 2] = self.pair_close[: self.n // 2]
        self.pair_close = pc
        self.cap = new

    def _add_pairs(self, venue: np.ndarray, tier_l: np.ndarray, tier_s: np.ndarray,
                   entry: np.ndarray, notional: np.ndarray, open_ms: np.ndarray,
                   close_ms: np.ndarray, cross_k: np.ndarray) -> np.ndarray:
        """Append pairs; returns the new leg ids (long, short interleaved)."""
        m = venue.size
        self._grow(self.n + 2 * m)
        ids = np.arange(self.n, self.n + 2 * m)
        sl = slice(self.n, self.n + 2 * m)
        tiers = np.empty(2 * m, np.int64)
        tiers[0::2], tiers[1::2] = tier_l, tier_s
        ven = np.repeat(venue, 2)
        ent = np.repeat(entry, 2)
        side = np.tile([0, 1], m)
        r = self.ratio[ven, side, tiers]
        # cross-margined legs die farther: distance scaled by cross_k (1 = isolated)
        lp = ent * (1.0 + (r - 1.0) * cross_k)
        lp = np.where(side == 0, np.maximum(lp, ent * 1e-3), lp)
        self.p_venue[sl] = ven
        self.p_tier[sl] = tiers
        self.p_cross[sl] = cross_k > 1.0
        self.p_entry[sl] = ent
        self.p_qty[sl] = np.repeat(notional / entry, 2)
        self.p_lp[sl] = lp
        self.p_open[sl] = np.repeat(open_ms, 2)
        self.p_end[sl] = _NEVER
        self.p_alive[sl] = True
        self.pair_close[self.n // 2: self.n // 2 + m] = close_ms
        self.n += 2 * m
        self._book_add(ids, +1.0)
        return ids

    def _book_add(self, ids: np.ndarray, sign: float) -> None:
        """Track open base qty per venue, side, tier."""
        if ids.size == 0:
            return
        key = (self.p_venue[ids].astype(np.int64) * 2 + (ids & 1)) * _NT + self.p_tier[ids]
        self.book_qty += sign * np.bincount(key, weights=self.p_qty[ids],
                                            minlength=self.V * 2 * _NT).reshape(self.V, 2, _NT)

    def _draw_tiers(self, venue: np.ndarray, s_open: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tier index of each leg of pairs opened on ``venue`` at seconds ``s_open``."""
        rng = self.rng
        out = []
        for s in range(2):
            # one searchsorted over all venues: venue v's cdf is shifted by v
            u = rng.random(venue.size)
            t = np.searchsorted(self.flat_cdf[s], venue + u, side="right") - venue * _NT
            for sec, vi, side, mix in self.regime:
                if side == s:
                    sel = np.flatnonzero((venue == vi) & (s_open >= sec))
                    if sel.size:
                        t[sel] = np.searchsorted(np.cumsum(mix), u[sel], side="right")
            out.append(np.minimum(t, _NT - 1))
        return out[0], out[1]

    def _draw_extras(self, venue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cross-margin distance factors (per leg, 1 = isolated) and notionals (per pair)."""
        rng, cfg = self.rng, self.cfg
        m = venue.size
        legs = np.repeat(venue, 2)
        k = np.ones(2 * m)
        is_cross = rng.random(2 * m) < self.cross_arr[legs]
        spread = rng.uniform(1.0 - cfg.cross_spread, 1.0 + cfg.cross_spread, int(is_cross.sum()))
        k[is_cross] = np.maximum(1.0, self.cross_dist_arr[legs[is_cross]] * spread)
        notional = np.exp(rng.normal(math.log(cfg.notional_median), cfg.notional_sigma, m))
        return k, notional

    # ------------------------------------------------------------------ run
    def run(self) -> SimResult:
        cfg, rng = self.cfg, self.rng
        V, S = self.V, self.S
        self.book_qty = np.zeros((V, 2, _NT))
        cdf = np.cumsum(self.mix_now, axis=2)
        cdf[:, :, -1] = 1.0
        self.flat_cdf = [(cdf[:, s, :] + np.arange(V)[:, None]).reshape(-1) for s in range(2)]
        self.cross_arr = np.array([self.cross_share[n] for n in self.names])
        self.cross_dist_arr = np.array([self.cross_distance[n] for n in self.names])
        expected = float(self.lam.sum()) * (self.hist_s * 0.5 + S) + 1000
        self._alloc(int(2 * expected * 1.2) + 64)

        # exogenous log path at 1 s, venue basis, pre-history book
        sig = cfg.daily_vol / math.sqrt(86400.0)
        inc = rng.normal(0.0, sig, S)
        inc[0] = 0.0
        nj = rng.poisson(cfg.jumps_per_day * S / 86400.0)
        if nj:
            at = rng.integers(1, max(2, S), nj)
            np.add.at(inc, at, rng.laplace(0.0, cfg.jump_size, nj))
        self.X = np.cumsum(inc)
        knot = 30
        nk = S // knot + 2
        kx = np.arange(nk) * knot
        self.B = np.empty((V, S))
        grid = np.arange(S)
        for vi in range(V):
            self.B[vi] = np.interp(grid, kx, rng.normal(0.0, cfg.basis_bp * 1e-4, nk))
        self._initial_book()

        # per venue-side sorted stock (by liquidation price) + unsorted fresh buffer
        K = 2 * V
        self.stock_ids = [np.zeros(0, np.int64) for _ in range(K)]
        self.stock_lp = [np.zeros(0) for _ in range(K)]
        self.ptr = np.zeros(K, np.int64)
        self.fresh: list[list[Any]] = [[] for _ in range(K)]
        self.fresh_n = np.zeros(K, np.int64)
        self.thr = np.empty((V, 2))
        self.thr[:, 0] = -np.inf
        self.thr[:, 1] = np.inf
        self._assign_fresh(np.arange(self.n))
        for k in range(K):
            self._merge(k)

        self.p = np.empty(S)
        self.perm = 0.0
        self.trans_ref = 0.0
        self.trans_t = 0
        self.decay = 0.5 ** (1.0 / cfg.impact_halflife_s)
        self.liq_ids: list[np.ndarray] = []
        self.liq_sec: list[int] = []
        self.liq_mark: list[float] = []
        self.liq_chain: list[int] = []
        self.liq_level: list[int] = []
        self.last_liq = [-10**9, -10**9]
        self.chain = [-1, -1]
        self.level = [0, 0]
        self.n_chains = 0
        self.chain_usd = [0.0, 0.0]

        oi_ts: list[int] = []
        oi_qty: list[np.ndarray] = []
        oi_price: list[np.ndarray] = []
        mark0 = cfg.start_price * (1.0 + self.B[:, 0])
        oi_ts.append(cfg.start_ts_ms)
        oi_qty.append(self.book_qty.copy())
        oi_price.append(mark0)

        self.n_init_pairs = self.n // 2
        self._draw_openings()
        # every pair's planned close is known now: one schedule, walked by a pointer
        n_pairs = self.n_total // 2
        self.close_order = np.argsort(self.pair_close[:n_pairs], kind="stable")
        self.close_sorted = self.pair_close[:n_pairs][self.close_order]
        self.close_pos = 0
        oi_every = int(cfg.oi_interval_s)
        for c, s0 in enumerate(range(0, S, self.chunk)):
            s1 = min(S, s0 + self.chunk)
            self._advance(s0, s1)
            self._open(c)
            self._close_due(s1)
            if s1 % oi_every == 0 or s1 == S:
                oi_ts.append(cfg.start_ts_ms + s1 * 1000)
                oi_qty.append(self.book_qty.copy())
                oi_price.append(self.p[s1 - 1] * (1.0 + self.B[:, s1 - 1]))
        return self._finish(np.array(oi_ts, np.int64), np.array(oi_qty), np.array(oi_price))

    def _initial_book(self) -> None:
        cfg, rng = self.cfg, self.rng
        M = max(1, int(self.hist_s // 60))
        sig_m = cfg.daily_vol / math.sqrt(1440.0)
        inc = rng.normal(0.0, sig_m, M)
        nj = rng.poisson(cfg.jumps_per_day * M / 1440.0)
        if nj:
            np.add.at(inc, rng.integers(0, M, nj), rng.laplace(0.0, cfg.jump_size, nj))
        z = np.concatenate([[0.0], np.cumsum(inc)])
        pre = cfg.start_price * np.exp(z - z[-1])  # pre[M] = start price (t = 0)
        sufmin = np.minimum.accumulate(pre[::-1])[::-1]
        sufmax = np.maximum.accumulate(pre[::-1])[::-1]
        lmax = np.maximum.outer(_TIERS, _TIERS)
        tau_tab = self._lifetime(lmax)
        alive_tab = tau_tab * (1.0 - np.exp(-self.hist_s / tau_tab))
        for vi in range(self.V):
            w = np.outer(self.mix_now[vi, 0], self.mix_now[vi, 1]) * alive_tab
            # pairs alive at t=0 (before pre-history crossings): Poisson, tiers drawn in
            # proportion to opening weight x expected presence
            m = int(rng.poisson(self.lam[vi] * float(w.sum())))
            cell = np.searchsorted(np.cumsum(w.reshape(-1)) / w.sum(), rng.random(m), side="right")
            cell = np.minimum(cell, _NT * _NT - 1)
            tl, ts_ = np.divmod(cell, _NT)
            venue = np.full(m, vi, np.int64)
            k, notional = self._draw_extras(venue)
            tau = tau_tab[tl, ts_]
            age = -tau * np.log1p(-rng.random(m) * (1.0 - np.exp(-self.hist_s / tau)))
            rem = rng.exponential(tau)
            idx = np.clip(M - np.floor(age / 60.0).astype(np.int64), 0, M)
            entry = pre[idx] * (1.0 + rng.normal(0.0, cfg.basis_bp * 1e-4, m))
            r_l = self.ratio[vi, 0, tl]
            r_s = self.ratio[vi, 1, ts_]
            kk = k.reshape(-1, 2)
            lp_l = entry * (1.0 + (r_l - 1.0) * kk[:, 0])
            lp_s = entry * (1.0 + (r_s - 1.0) * kk[:, 1])
            keep = (sufmin[idx] > lp_l) & (sufmax[idx] < lp_s)
            open_ms = cfg.start_ts_ms - (age * 1000).astype(np.int64)
            close_ms = cfg.start_ts_ms + (rem * 1000).astype(np.int64) + 1
            self._add_pairs(venue[keep], tl[keep], ts_[keep], entry[keep], notional[keep],
                            open_ms[keep], close_ms[keep], kk[keep].reshape(-1))

    # -------------------------------------------------------------- structures
    def _assign_fresh(self, ids: np.ndarray) -> None:
        """Queue new legs in their venue-side's unsorted buffer and pull the thresholds in."""
        if ids.size == 0:
            return
        ven = self.p_venue[ids].astype(np.int64)
        side = ids & 1
        lp = self.p_lp[ids]
        lo = side == 0
        np.maximum.at(self.thr[:, 0], ven[lo], lp[lo])
        np.minimum.at(self.thr[:, 1], ven[~lo], lp[~lo])
        key = ven * 2 + side
        order = np.argsort(key, kind="stable")
        ids, key = ids[order], key[order]
        bounds = np.searchsorted(key, np.arange(2 * self.V + 1))
        for k in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():
            self.fresh[k].append(ids[bounds[k]: bounds[k + 1]])
            self.fresh_n[k] += bounds[k + 1] - bounds[k]
            if self.fresh_n[k] > max(2048, self.stock_ids[k].size // 16):
                self._merge(k)

    def _fresh_ids(self, k: int) -> np.ndarray:
        """The buffer of venue-side ``k`` as one id array (entries are id arrays or
        ``(start, stop)`` ranges of step 2)."""
        f = self.fresh[k]
        if len(f) == 1 and isinstance(f[0], np.ndarray):
            return f[0]
        if not f:
            return np.zeros(0, np.int64)
        parts = [x if isinstance(x, np.ndarray) else np.arange(x[0], x[1], 2) for x in f]
        ids = np.concatenate(parts)
        f[:] = [ids]
        return ids

    def _merge(self, k: int) -> None:
        """Fold the buffer of venue-side ``k`` into its sorted stock, dropping dead legs."""
        s = k % 2
        if s == 0:
            ids = self.stock_ids[k][: self.ptr[k]]
        else:
            ids = self.stock_ids[k][self.ptr[k]:]
        ids = np.concatenate([ids, self._fresh_ids(k)])
        ids = ids[self.p_alive[ids]]
        lp = self.p_lp[ids]
        order = np.argsort(lp, kind="stable")
        self.stock_ids[k] = ids[order]
        self.stock_lp[k] = lp[order]
        self.fresh[k] = []
        self.fresh_n[k] = 0
        self.ptr[k] = ids.size if s == 0 else 0
        self._refresh_thr(k, np.zeros(0))

    def _refresh_thr(self, k: int, fresh_lp: np.ndarray) -> None:
        v, s = divmod(k, 2)
        st = self.stock_lp[k]
        if s == 0:
            a = st[self.ptr[k] - 1] if self.ptr[k] > 0 else -np.inf
            b = fresh_lp.max() if fresh_lp.size else -np.inf
            self.thr[v, 0] = max(a, b)
        else:
            a = st[self.ptr[k]] if self.ptr[k] < st.size else np.inf
            b = fresh_lp.min() if fresh_lp.size else np.inf
            self.thr[v, 1] = min(a, b)

    def _take(self, k: int, mark: float) -> np.ndarray:
        """Remove and return the live legs of venue-side ``k`` crossed at ``mark``."""
        s = k % 2
        st, ids = self.stock_lp[k], self.stock_ids[k]
        fids = self._fresh_ids(k)
        flp = self.p_lp[fids]
        if s == 0:
            hi = self.ptr[k]
            j = int(np.searchsorted(st[:hi], mark, side="left"))
            got = ids[j:hi]
            self.ptr[k] = j
            crossed = flp >= mark
        else:
            lo = self.ptr[k]
            j = lo + int(np.searchsorted(st[lo:], mark, side="right"))
            got = ids[lo:j]
            self.ptr[k] = j
            crossed = flp <= mark
        if crossed.any():
            got = np.concatenate([got, fids[crossed]])
            fids, flp = fids[~crossed], flp[~crossed]
            self.fresh[k] = [fids] if fids.size else []
            self.fresh_n[k] = fids.size
        self._refresh_thr(k, flp)
        return got[self.p_alive[got]]

    # -------------------------------------------------------------- dynamics
    def _prices(self, a: int, b: int) -> np.ndarray:
        t = np.arange(a, b)
        trans = self.trans_ref * self.decay ** (t - self.trans_t)
        return self.cfg.start_price * np.exp(self.X[a:b] + self.perm + trans)

    def _advance(self, s0: int, s1: int) -> None:
        k = s0
        while k < s1:
            p = self._prices(k, s1)
            marks = p[None, :] * (1.0 + self.B[:, k:s1])
            hit = (marks <= self.thr[:, 0:1]) | (marks >= self.thr[:, 1:2])
            col = hit.any(axis=0)
            if not col.any():
                self.p[k:s1] = p
                return
            j = int(np.argmax(col))
            self.p[k: k + j + 1] = p[: j + 1]
            self._liquidate_second(k + j, marks[:, j], hit[:, j])
            k = k + j + 1

    def _liquidate_second(self, sec: int, marks: np.ndarray, venues_hit: np.ndarray) -> None:
        cfg = self.cfg
        usd = [0.0, 0.0]
        got_side: list[list[tuple[np.ndarray, float]]] = [[], []]
        for vi in np.flatnonzero(venues_hit):
            m = float(marks[vi])
            for s in range(2):
                if (s == 0 and m <= self.thr[vi, 0]) or (s == 1 and m >= self.thr[vi, 1]):
                    got = self._take(2 * vi + s, m)
                    if got.size:
                        usd[s] += float(self.p_qty[got].sum()) * m
                        got_side[s].append((got, m))
        f = 0.0
        killed: list[np.ndarray] = []
        for s in range(2):
            if not got_side[s]:
                continue
            if sec - self.last_liq[s] <= cfg.chain_gap_s:
                self.level[s] += 1
            else:
                self.n_chains += 1
                self.chain[s] = self.n_chains - 1
                self.level[s] = 0
                self.chain_usd[s] = 0.0
            self.last_liq[s] = sec
            # impact is concave in the chain's cumulative notional (a liquidation cascade acts
            # like one metaorder): the chain's total move is impact_coef * (Q / $1M) ** exponent
            q0 = self.chain_usd[s] / 1e6
            q1 = (self.chain_usd[s] + usd[s]) / 1e6
            self.chain_usd[s] += usd[s]
            move = cfg.impact_coef * (q1**cfg.impact_exponent - q0**cfg.impact_exponent)
            f += -move if s == 0 else move
            for got, m in got_side[s]:
                self.liq_ids.append(got)
                self.liq_sec.append(sec)
                self.liq_mark.append(m)
                self.liq_chain.append(self.chain[s])
                self.liq_level.append(self.level[s])
                partner = got ^ 1
                self._kill(got, sec, 2)
                self._kill(partner[self.p_alive[partner]], sec, 3)
                killed.append(got)
                killed.append(partner)
        if killed:
            self._book_add(np.concatenate(killed), -1.0)
        if f != 0.0:
            t1 = sec + 1
            cur = self.trans_ref * self.decay ** (t1 - self.trans_t)
            self.perm += cfg.impact_permanent * f
            self.trans_ref = cur + (1.0 - cfg.impact_permanent) * f
            self.trans_t = t1

    def _kill(self, ids: np.ndarray, sec: int, kind: int) -> None:
        if ids.size == 0:
            return
        self.p_alive[ids] = False
        self.p_end[ids] = self.cfg.start_ts_ms + sec * 1000
        self.p_endkind[ids] = kind

    def _draw_openings(self) -> None:
        """Draw every opening of the run up front (all but the entry price, which the
        path decides): chunk by chunk, venue by venue, so a chunk's pairs are one
        contiguous id range and each venue's legs a strided slice of it."""
        rng, cfg = self.rng, self.cfg
        V, S, ch = self.V, self.S, self.chunk
        starts = np.arange(0, S, ch)
        lens = np.minimum(starts + ch, S) - starts
        counts = rng.poisson(self.lam[None, :] * lens[:, None])  # (chunks, venues)
        m = int(counts.sum())
        venue = np.repeat(np.tile(np.arange(V), starts.size), counts.reshape(-1))
        chunk_of = np.repeat(np.arange(starts.size), counts.sum(axis=1))
        sec = starts[chunk_of] + (rng.random(m) * lens[chunk_of]).astype(np.int64)
        ms = rng.integers(0, 1000, m)
        tl, ts_ = self._draw_tiers(venue, sec)
        k, notional = self._draw_extras(venue)
        open_ms = cfg.start_ts_ms + sec * 1000 + ms
        tau = self._lifetime(np.maximum(_TIERS[tl], _TIERS[ts_]))
        close_ms = open_ms + (rng.exponential(tau) * 1000).astype(np.int64) + 1

        n0 = self.n
        self._grow(n0 + 2 * m)
        sl = slice(n0, n0 + 2 * m)
        tiers = np.empty(2 * m, np.int64)
        tiers[0::2], tiers[1::2] = tl, ts_
        ven = np.repeat(venue, 2)
        self.p_venue[sl] = ven
        self.p_tier[sl] = tiers
        self.p_cross[sl] = k > 1.0
        self.p_open[sl] = np.repeat(open_ms, 2)
        self.p_end[sl] = _NEVER
        self.p_alive[sl] = False  # joins the book when its chunk is placed
        self.pair_close[n0 // 2: n0 // 2 + m] = close_ms
        side = np.tile([0, 1], m)
        self.open_r = 1.0 + (self.ratio[ven, side, tiers] - 1.0) * k  # lp / entry per leg
        self.open_notional = notional
        self.open_sec = sec
        self.open_venue = venue
        self.open_counts = counts
        bounds = np.concatenate([[0], np.cumsum(counts.sum(axis=1))])
        self.open_bounds = bounds
        self.n_total = n0 + 2 * m

    def _open(self, c: int) -> None:
        """Place chunk ``c``'s openings: entry at the venue mark of their second."""
        a, b = int(self.open_bounds[c]), int(self.open_bounds[c + 1])
        if a == b:
            return
        venue, sec = self.open_venue[a:b], self.open_sec[a:b]
        entry = self.p[sec] * (1.0 + self.B[venue, sec])
        first = self.n_init_pairs * 2 + 2 * a
        sl = slice(first, first + 2 * (b - a))
        ent = np.repeat(entry, 2)
        lp = ent * self.open_r[2 * a: 2 * b]
        lp[0::2] = np.maximum(lp[0::2], ent[0::2] * 1e-3)
        self.p_entry[sl] = ent
        self.p_qty[sl] = np.repeat(self.open_notional[a:b] / entry, 2)
        self.p_lp[sl] = lp
        self.p_alive[sl] = True
        self.n = first + 2 * (b - a)
        ids = np.arange(first, self.n)
        self._book_add(ids, +1.0)
        # per venue the chunk's legs are one contiguous range: longs even, shorts odd
        cnt = self.open_counts[c]
        vs = np.flatnonzero(cnt)
        off = np.concatenate([[0], np.cumsum(cnt[vs])])
        lp_long, lp_short = lp[0::2], lp[1::2]
        self.thr[vs, 0] = np.maximum(self.thr[vs, 0], np.maximum.reduceat(lp_long, off[:-1]))
        self.thr[vs, 1] = np.minimum(self.thr[vs, 1], np.minimum.reduceat(lp_short, off[:-1]))
        for i, v in enumerate(vs.tolist()):
            lo, hi = first + 2 * int(off[i]), first + 2 * int(off[i + 1])
            for s in (0, 1):
                k = 2 * v + s
                self.fresh[k].append((lo + s, hi))
                self.fresh_n[k] += (hi - lo) // 2
                if self.fresh_n[k] > max(2048, self.stock_ids[k].size // 16):
                    self._merge(k)

    def _close_due(self, s1: int) -> None:
        """Voluntary closes planned before the end of this chunk."""
        limit = self.cfg.start_ts_ms + s1 * 1000
        j = int(np.searchsorted(self.close_sorted, limit, side="left"))
        if j <= self.close_pos:
            return
        pairs = self.close_order[self.close_pos: j]
        self.close_pos = j
        legs = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
        legs = legs[self.p_alive[legs]]
        if legs.size == 0:
            return
        self.p_alive[legs] = False
        self.p_end[legs] = self.pair_close[legs // 2]
        self.p_endkind[legs] = 1
        self._book_add(legs, -1.0)

    # -------------------------------------------------------------- output
    def _finish(self, oi_ts: np.ndarray, oi_qty: np.ndarray, oi_price: np.ndarray) -> SimResult:
        cfg, rng = self.cfg, self.rng
        V, S = self.V, self.S
        t0 = cfg.start_ts_ms
        parts = []

        # price events
        secs = np.arange(0, S, int(cfg.price_interval_s))
        pe = np.zeros(V * secs.size, EVENT_DTYPE)
        pe["ts"] = np.tile(t0 + secs * 1000, V)
        pe["price"] = (self.p[secs][None, :] * (1.0 + self.B[:, secs])).reshape(-1)
        pe["venue"] = np.repeat(self.codes, secs.size)
        pe["kind"] = KIND_PRICE
        parts.append(pe)

        # OI events
        oe = np.zeros(oi_ts.size * V, EVENT_DTYPE)
        oe["ts"] = np.repeat(oi_ts, V)
        oe["price"] = oi_price.reshape(-1)
        oe["value"] = (oi_qty[:, :, 0, :].sum(axis=2) * oi_price).reshape(-1)
        oe["venue"] = np.tile(self.codes, oi_ts.size)
        oe["kind"] = KIND_OI
        parts.append(oe)

        # liquidations: truth first, then the feeds
        if self.liq_ids:
            sizes = np.array([a.size for a in self.liq_ids])
            ids = np.concatenate(self.liq_ids)
            sec = np.repeat(np.array(self.liq_sec, np.int64), sizes)
            mark = np.repeat(np.array(self.liq_mark), sizes)
            chain = np.repeat(np.array(self.liq_chain, np.int32), sizes)
            level = np.repeat(np.array(self.liq_level, np.int16), sizes)
        else:
            ids = np.zeros(0, np.int64)
            sec = np.zeros(0, np.int64)
            mark = np.zeros(0)
            chain = np.zeros(0, np.int32)
            level = np.zeros(0, np.int16)
        n = ids.size
        vi = self.p_venue[ids].astype(np.int64)
        side = ids & 1
        sign = 1 - 2 * side
        tier = self.p_tier[ids].astype(np.int64)
        entry = self.p_entry[ids]
        lp = self.p_lp[ids]
        cross = self.p_cross[ids]
        bk_iso = entry * self.bk_ratio[vi, side, tier]
        bk_cross = lp * self.bk_ratio[vi, side, tier] / self.ratio[vi, side, tier]
        bk = np.where(cross, bk_cross, bk_iso)
        conv = self.conv_idx[vi] if n else np.zeros(0, np.int64)
        fill = mark * (1.0 - sign * np.abs(rng.normal(0.0, cfg.fill_slippage, n)))
        trade = mark * (1.0 + rng.normal(0.0, cfg.trade_noise, n))
        tick = cfg.tick if cfg.tick else _nice_step(cfg.start_price * 1e-6)
        order_px = np.round(bk / tick) * tick
        reported = np.choose(conv, [bk, order_px, fill, trade, mark]) if n else np.zeros(0)
        ms = rng.integers(0, 1000, n)
        ts = t0 + sec * 1000 + ms
        ts_order = np.lexsort((ms, sec))
        liq = np.zeros(n, LIQUIDATION_DTYPE)
        liq["ts"] = ts
        liq["venue"] = self.codes[vi] if n else 0
        liq["side"] = sign
        liq["trigger"] = lp
        liq["mark"] = mark
        liq["reported"] = reported
        liq["qty"] = self.p_qty[ids]
        liq["notional"] = self.p_qty[ids] * reported
        liq["entry"] = entry
        liq["leverage"] = _TIERS[tier]
        liq["cross"] = cross
        liq["chain"] = chain
        liq["level"] = level
        liq["leg"] = ids
        liq = liq[ts_order]
        ids = ids[ts_order]
        self.p_end[ids] = liq["ts"]
        self.p_end[ids ^ 1] = np.where(self.p_endkind[ids ^ 1] == 3, liq["ts"], self.p_end[ids ^ 1])

        emitted = np.zeros(n, bool)
        vi_sorted = vi[ts_order]
        for j in range(V):
            feed = self.feed[j]
            sel = np.flatnonzero(vi_sorted == j)
            if feed == "none" or sel.size == 0:
                continue
            if feed == "sampled":
                secs_j = liq["ts"][sel] // 1000
                last = np.ones(sel.size, bool)
                last[:-1] = secs_j[1:] != secs_j[:-1]
                sel = sel[last]
            emitted[sel] = True
        liq["emitted"] = emitted
        le_src = liq[emitted]
        le = np.zeros(le_src.size, EVENT_DTYPE)
        le["ts"] = le_src["ts"]
        le["price"] = le_src["reported"]
        le["value"] = le_src["notional"]
        le["venue"] = le_src["venue"]
        le["kind"] = KIND_LIQUIDATION
        le["side"] = le_src["side"]
        code_to_vi = np.zeros(int(self.codes.max()) + 1, np.int64)
        code_to_vi[self.codes] = np.arange(V)
        lvi = code_to_vi[le_src["venue"]]
        if le.size:
            le["price_kind"] = self.kind_idx[lvi]
            sampled = np.array([f == "sampled" for f in self.feed])
            le["flags"] = np.where(sampled[lvi], FLAG_SAMPLED, 0)
        parts.append(le)

        # np.concatenate drops EVENT_DTYPE's padding and fancy indexing leaves it
        # uninitialised: assemble field by field into a zeroed array so equal runs are
        # byte-identical
        ts_all = np.concatenate([x["ts"] for x in parts])
        order = np.argsort(ts_all, kind="stable")
        events = np.zeros(ts_all.size, EVENT_DTYPE)
        for name in EVENT_DTYPE.names or ():
            events[name] = np.concatenate([x[name] for x in parts])[order]

        positions = None
        if cfg.keep_positions:
            k = np.arange(self.n)
            positions = np.zeros(self.n, POSITION_DTYPE)
            positions["venue"] = self.codes[self.p_venue[: self.n]]
            positions["side"] = 1 - 2 * (k & 1)
            positions["leverage"] = _TIERS[self.p_tier[: self.n]]
            positions["cross"] = self.p_cross[: self.n]
            positions["entry"] = self.p_entry[: self.n]
            positions["qty"] = self.p_qty[: self.n]
            positions["liq_price"] = self.p_lp[: self.n]
            positions["open_ts"] = self.p_open[: self.n]
            positions["close_ts"] = np.repeat(self.pair_close[: self.n // 2], 2)
            positions["end_ts"] = self.p_end[: self.n]
            positions["end"] = self.p_endkind[: self.n]

        truth = Truth(
            venues=self.names, mixes=self.mixes, rate_scale=dict(self.rate_scale),
            report_convention=dict(self.convention), cross_share=dict(self.cross_share),
            cross_distance=dict(self.cross_distance),
            regime_changes=list(self.regime_changes), liquidations=liq,
            price_path=(t0 + np.arange(S, dtype=np.int64) * 1000, self.p.copy()),
            basis=self.B,
            oi_ts=oi_ts, open_qty=oi_qty, end_ts=t0 + S * 1000, positions=positions)
        return SimResult(events=events, symbol=cfg.symbol,
                         step=_nice_step(cfg.start_price * 5e-4), truth=truth, config=cfg,
                         venues=self.names)
