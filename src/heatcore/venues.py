"""The venue registry: reference data on the 22 supported venues.

Every number comes from ``data/venues.json`` (with its source and date); nothing
here is a constant of the model. Users can register their own venues with
:func:`register_venue` or replace the tier table of a venue with
:func:`set_tier_table` (for example from a fresher exchange download) without
rebuilding anything.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np

from . import _core

__all__ = [
    "BANDS",
    "DEFAULT_TIERS",
    "VENUES",
    "Bracket",
    "Venue",
    "band_of",
    "base_asset",
    "get_venue",
    "prior_weights",
    "register_venue",
    "set_tier_table",
    "venue_id",
]

#: The model's default leverage support: dense at low leverage (3x vs 5x and
#: 20x vs 25x are separate tiers), log-spaced above.
DEFAULT_TIERS: tuple[float, ...] = (
    2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0,
    30.0, 40.0, 50.0, 60.0, 75.0, 100.0, 125.0,
)

#: Leverage bands used for priors and for scoring: [lo, hi) except the last, [50, 125].
BANDS: tuple[tuple[float, float], ...] = ((2, 5), (5, 10), (10, 25), (25, 50), (50, 125))

PRICE_KINDS = ("unknown", "bankruptcy", "order", "fill", "trade", "mark")
FEEDS = ("complete", "sampled", "none")


def band_of(leverage: float) -> int:
    """Index in :data:`BANDS` of a leverage value."""
    for i, (lo, hi) in enumerate(BANDS):
        if lo <= leverage < hi:
            return i
    return len(BANDS) - 1 if leverage >= BANDS[-1][0] else 0


@dataclass(frozen=True)
class Bracket:
    """One maintenance-margin bracket: notional in ``[floor, cap)`` pays
    ``rate * notional - deduction`` and may use at most ``max_leverage``."""

    floor: float
    cap: float
    rate: float
    deduction: float
    max_leverage: float


@dataclass(frozen=True)
class Venue:
    """Reference data for one venue.

    Attributes
    ----------
    id : str
        Registry id, e.g. ``"binance"``.
    max_leverage : float
        Largest leverage the venue allows on its main perpetuals.
    fee_in_mm : float
        Closing-fee rate the venue adds to maintenance (0 where it does not).
    formula : str
        ``"generic"`` (maintenance at the liquidation price) or ``"mm_at_entry"`` (Bybit).
    inverse : bool
        Coin-margined main contract.
    trigger_price : str
        Price that triggers liquidation (``"mark"`` or ``"oracle"``).
    reported_price : str
        Which price the venue's liquidation feed reports (one of ``PRICE_KINDS``).
    liquidation_feed : str
        ``"complete"``, ``"sampled"`` (at most one event per symbol per second) or ``"none"``.
    prior_bands : tuple of float
        Prior share of open interest per leverage band (:data:`BANDS`).
    tiers : mapping
        Tier tables by base asset (``"BTC"``, ``"ETH"``, ``"default"``), each a dict with
        ``source``, ``date`` and ``brackets``.
    sources : mapping
        Where each number came from.
    """

    id: str
    name: str
    max_leverage: float
    fee_in_mm: float
    formula: str
    inverse: bool
    trigger_price: str
    reported_price: str
    liquidation_feed: str
    prior_bands: tuple[float, ...]
    tiers: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str] = field(default_factory=dict)
    cross_share: float = 0.0
    representative_notional: float = 10_000.0
    notes: str = ""

    def brackets(self, symbol: str | None = None) -> list[Bracket]:
        """The tier table for ``symbol`` (by base asset), or the venue default."""
        key = base_asset(symbol) if symbol else "default"
        table = self.tiers.get(key) or self.tiers.get("default")
        if table is None:
            return [Bracket(0.0, 1e12, 0.005, 0.0, self.max_leverage)]
        return [
            Bracket(float(b["floor"]), float(b["cap"]), float(b["rate"]), float(b["deduction"]),
                    float(b["max_leverage"]))
            for b in table["brackets"]
        ]

    def mechanics(self, symbol: str | None = None) -> _core.Mechanics:
        """The compiled mechanics object for this venue and symbol."""
        return _core.Mechanics(
            [_core.Bracket(b.floor, b.cap, b.rate, b.deduction, b.max_leverage)
             for b in self.brackets(symbol)],
            fee_in_mm=self.fee_in_mm,
            max_leverage=self.max_leverage,
            representative_notional=self.representative_notional,
            inverse=self.inverse,
            formula=1 if self.formula == "mm_at_entry" else 0,
        )

    def liquidation_price(self, side: str, entry: float, leverage: float,
                          symbol: str | None = None) -> float:
        """Liquidation price of an isolated position opened at ``entry``."""
        s = _side_code(side)
        return float(entry) * self.mechanics(symbol).liquidation_ratio(s, float(leverage))


def _side_code(side: str | int) -> int:
    if side in ("long", 1):
        return 1
    if side in ("short", -1):
        return -1
    raise ValueError(f"unknown side {side!r}: expected 'long' or 'short'")


_ASSET_ALIASES = {"XBT": "BTC"}


def base_asset(symbol: str) -> str:
    """Base asset of a venue symbol: ``BTCUSDT``, ``BTC-USDT-SWAP``, ``XBTUSD``,
    ``PF_XBTUSD``, ``tBTCF0:USTF0``, ``BTC_USDT`` and ``BTC`` all give ``"BTC"``."""
    s = symbol.upper()
    s = re.sub(r"^(PF_|PI_|FI_|T(?=[A-Z0-9]+F0:))", "", s)
    m = re.match(r"^([A-Z0-9]+?)(?:[-_/:]|F0|USDT|USDC|USD|PERP|$)", s)
    asset = m.group(1) if m and m.group(1) else s
    return _ASSET_ALIASES.get(asset, asset)


def _load() -> dict[str, Venue]:
    raw = json.loads(resources.files("heatcore").joinpath("data/venues.json").read_text("utf-8"))
    out: dict[str, Venue] = {}
    for v in raw["venues"]:
        out[v["id"]] = Venue(
            id=v["id"],
            name=v["name"],
            max_leverage=float(v["max_leverage"]["value"]),
            fee_in_mm=float(v["fee_in_mm"]["value"]),
            formula=v["formula"],
            inverse=bool(v["inverse"]),
            trigger_price=v["trigger_price"],
            reported_price=v["reported_price"],
            liquidation_feed=v["liquidation_feed"],
            prior_bands=tuple(float(x) for x in v["prior_mix"]["bands"]),
            tiers=v["tiers"],
            sources={
                "max_leverage": v["max_leverage"]["source"],
                "fee_in_mm": v["fee_in_mm"]["source"],
                "prior_mix": v["prior_mix"]["source"],
            },
            cross_share=float(v.get("cross_share", 0.0)),
            notes=v.get("notes", ""),
        )
    return out


_REGISTRY: dict[str, Venue] = _load()
_IDS: list[str] = list(_REGISTRY)

#: The 22 built-in venue ids, in registry order (the order defines event venue codes).
VENUES: tuple[str, ...] = tuple(_IDS)


def venue_id(name: str) -> int:
    """Numeric code of a venue in event arrays (``EVENT_DTYPE['venue']``)."""
    try:
        return _IDS.index(name)
    except ValueError:
        raise KeyError(f"unknown venue {name!r}; known: {', '.join(_IDS)}") from None


def venue_name(code: int) -> str:
    """Venue id for a numeric event code."""
    if 0 <= code < len(_IDS):
        return _IDS[code]
    raise KeyError(f"unknown venue code {code}")


def get_venue(name: str) -> Venue:
    """Registry entry of a venue; ``KeyError`` for an unknown one."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown venue {name!r}; known: {', '.join(_IDS)}") from None


def register_venue(venue: Venue, *, replace_existing: bool = False) -> None:
    """Add a user venue to the registry (or replace one with ``replace_existing``).

    New venues get the next free event code; engines built afterwards can use them.
    """
    _validate(venue)
    if venue.id in _REGISTRY and not replace_existing:
        raise ValueError(f"venue {venue.id!r} is already registered (pass replace_existing=True)")
    if venue.id not in _REGISTRY:
        _IDS.append(venue.id)
    _REGISTRY[venue.id] = venue


def set_tier_table(venue: str, asset: str, brackets: Sequence[Mapping[str, float]], *,
                   source: str, date: str) -> None:
    """Replace a venue's tier table for one base asset (``"default"`` for the fallback)."""
    v = get_venue(venue)
    tiers = dict(v.tiers)
    tiers[asset.upper() if asset != "default" else "default"] = {
        "source": source, "date": date, "brackets": [dict(b) for b in brackets]}
    new = replace(v, tiers=tiers)
    _validate(new)
    _REGISTRY[venue] = new


def _validate(v: Venue) -> None:
    if not v.id or not isinstance(v.id, str):
        raise ValueError("venue id must be a non-empty string")
    if not (1 <= v.max_leverage <= 1000):
        raise ValueError(f"{v.id}: max_leverage must be in [1, 1000]")
    if len(v.prior_bands) != len(BANDS) or any(not math.isfinite(x) or x < 0 for x in v.prior_bands):
        raise ValueError(f"{v.id}: prior_bands needs {len(BANDS)} non-negative weights")
    if v.reported_price not in (*PRICE_KINDS, "none"):
        raise ValueError(f"{v.id}: reported_price must be one of {PRICE_KINDS}")
    if v.liquidation_feed not in FEEDS:
        raise ValueError(f"{v.id}: liquidation_feed must be one of {FEEDS}")
    for key in v.tiers:
        v.mechanics(None if key == "default" else key)  # validates brackets in C++


def prior_weights(venue: str | Venue, tiers: Sequence[float] = DEFAULT_TIERS) -> np.ndarray:
    """The venue's prior mix over a tier support.

    Each band's prior share is spread equally over the support tiers inside it;
    tiers above the venue's maximum leverage get zero. A band with no tier in
    the support passes its share to the nearest band that has one.
    """
    v = get_venue(venue) if isinstance(venue, str) else venue
    t = np.asarray(tiers, dtype=float)
    allowed = t <= v.max_leverage + 1e-9
    if not allowed.any():
        allowed[0] = True
    band_idx = np.array([band_of(x) for x in t])
    w = np.zeros(len(t))
    shares = np.array(v.prior_bands, dtype=float)
    for b, share in enumerate(shares):
        members = np.flatnonzero((band_idx == b) & allowed)
        if members.size == 0:
            cands = np.flatnonzero(allowed)
            # nearest allowed tier to the band's centre in log-leverage
            centre = math.sqrt(BANDS[b][0] * BANDS[b][1])
            members = cands[[int(np.argmin(np.abs(np.log(t[cands]) - math.log(centre))))]]
        w[members] += share / members.size
    if w.sum() <= 0:
        w[allowed] = 1.0
    return w / w.sum()
