"""The venue registry: reference data on the 22 supported venues.

Every number comes from a data file shipped in the package, each with its
source and date: ``data/venues.json`` (per-venue facts: maximum leverage, fee
in maintenance, trigger and reported price kinds, public liquidation feed,
prior leverage mix, cross-margin priors) and ``data/tiers/<venue>.json``
(maintenance-margin tier tables per base asset). Nothing here is a constant of
the model: users can register their own venues with :func:`register_venue`,
replace a tier table with :func:`set_tier_table`, or load one from a JSON file
or an exchange download with :func:`load_tier_table`, without rebuilding.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Mapping, Sequence, Union

import numpy as np

from . import _core

__all__ = [
    "BANDS",
    "DEFAULT_TIERS",
    "FEEDS",
    "PRICE_KINDS",
    "VENUES",
    "Bracket",
    "Venue",
    "band_of",
    "base_asset",
    "continuity_deductions",
    "default_tier_table",
    "get_venue",
    "load_tier_table",
    "parse_tier_table",
    "prior_weights",
    "register_venue",
    "registry_rows",
    "set_tier_table",
    "validate_tier_table",
    "venue_id",
    "venue_name",
]

#: The model's default leverage support: dense at low leverage (3x vs 5x and
#: 20x vs 25x are separate tiers), log-spaced above.
DEFAULT_TIERS: tuple[float, ...] = (
    2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0,
    30.0, 40.0, 50.0, 60.0, 75.0, 100.0, 125.0,
)

#: Leverage bands used for priors and for scoring: [lo, hi) except the last, [50, 125].
BANDS: tuple[tuple[float, float], ...] = ((2, 5), (5, 10), (10, 25), (25, 50), (50, 125))

#: Which price a venue's liquidation feed reports (index = ``EVENT_DTYPE['price_kind']``).
PRICE_KINDS = ("unknown", "bankruptcy", "order", "fill", "trade", "mark")
#: Public liquidation feed: every event, at most one per symbol per second, or nothing.
FEEDS = ("complete", "sampled", "none")
#: How maintenance grows across tiers: ``marginal`` (``rate*notional - deduction``,
#: continuous) or ``stepwise`` (the tier's rate on the whole position, BitMEX).
MM_MODELS = ("marginal", "stepwise")

#: Cap used for the open-ended last tier of tables that publish none.
OPEN_CAP = 1e12

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
    name : str
        Display name.
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
        Which price the venue's liquidation feed reports (one of ``PRICE_KINDS``, or
        ``"none"`` without a feed).
    liquidation_feed : str
        ``"complete"``, ``"sampled"`` (at most one event per symbol per second) or ``"none"``.
    prior_bands : tuple of float
        Prior share of open interest per leverage band (:data:`BANDS`).
    tiers : mapping
        Tier tables by base asset (``"BTC"``, ``"ETH"``, ``"default"``), each a dict with
        ``source``, ``date``, ``mm_model`` and ``brackets``.
    sources : mapping
        Where each venue-level number came from (key = field name).
    cross_share : float
        Prior share of open interest held in cross margin. A documented prior: from
        liquidations alone cross positions look like a lower-leverage mix, so this is
        not learned from them.
    representative_notional : float
        Position notional (USD) that selects the tier of the map's positions.
    notes : str
        Free text.
    cross_distance : float
        Prior multiple of the isolated liquidation distance at which cross-margined
        positions die (account equity beyond the position margin absorbs losses first).
        A documented prior, not learned from liquidations alone.
    prior_ranges : tuple of (lo, hi, share)
        Optional finer prior: ``share`` of open interest on tiers in ``[lo, hi)``. When
        given it replaces ``prior_bands`` in :func:`prior_weights`.
    archetype : str
        Name of the prior archetype the mix comes from.
    dates : mapping
        Date of each venue-level number (key = field name).
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
    cross_distance: float = 1.0
    prior_ranges: tuple[tuple[float, float, float], ...] = ()
    archetype: str = ""
    dates: Mapping[str, str] = field(default_factory=dict)

    def tier_table(self, symbol: str | None = None) -> Mapping[str, Any]:
        """The tier-table record (``source``, ``date``, ``mm_model``, ``brackets``) used
        for ``symbol`` (by base asset), falling back to the venue's ``"default"``."""
        key = base_asset(symbol) if symbol else "default"
        table = self.tiers.get(key) or self.tiers.get("default")
        if table is None:
            return default_tier_table(self.max_leverage)
        return table

    def brackets(self, symbol: str | None = None) -> list[Bracket]:
        """The tier table for ``symbol`` (by base asset), or the venue default."""
        return [
            Bracket(float(b["floor"]), float(b["cap"]), float(b["rate"]), float(b["deduction"]),
                    float(b["max_leverage"]))
            for b in self.tier_table(symbol)["brackets"]
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
    """Base asset of a venue symbol.

    ``BTCUSDT``, ``BTC-USDT-SWAP``, ``XBTUSD``, ``PF_XBTUSD``, ``tBTCF0:USTF0``,
    ``BTC_USDT``, ``BTC-PERPETUAL``, ``BTC-USD``, ``BTC/USDT:USDT`` and ``BTC`` all give
    ``"BTC"``. Contract multipliers are dropped so the asset names one tier table on
    every venue: ``1000PEPEUSDT`` (Binance) and ``kPEPE`` (Hyperliquid) give ``"PEPE"``;
    ``1INCHUSDT`` stays ``"1INCH"``.
    """
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    s = symbol.strip()
    if len(s) > 1 and s[0] == "k" and s[1].isupper():  # Hyperliquid kPEPE = 1000 PEPE
        s = s[1:]
    s = s.upper()
    s = re.sub(r"^(PF_|PI_|FI_|FF_|T(?=[A-Z0-9]+F0:))", "", s)
    m = re.match(r"^([A-Z0-9]+?)(?:[-_/:]|F0|USDT|USDC|USD|PERP|$)", s)
    asset = m.group(1) if m and m.group(1) else s
    asset = re.sub(r"^10{3,}(?=[A-Z])", "", asset)  # 1000PEPE, 1000000MOG
    return _ASSET_ALIASES.get(asset, asset)


# --------------------------------------------------------------------------- tier tables

BracketLike = Union[Bracket, Mapping[str, Any]]


def _bracket_dict(b: BracketLike) -> dict[str, float]:
    if isinstance(b, Bracket):
        return {"floor": b.floor, "cap": b.cap, "rate": b.rate, "deduction": b.deduction,
                "max_leverage": b.max_leverage}
    try:
        return {k: float(b[k]) for k in ("floor", "cap", "rate", "max_leverage")} | {
            "deduction": float(b.get("deduction", 0.0) or 0.0)}
    except KeyError as e:
        raise ValueError(f"tier bracket {dict(b)!r} lacks field {e.args[0]!r} (needs floor, cap, "
                         "rate, max_leverage and optionally deduction)") from None
    except (TypeError, ValueError):
        raise ValueError(f"tier bracket {dict(b)!r} has a non-numeric field") from None


def continuity_deductions(brackets: Sequence[BracketLike]) -> list[dict[str, float]]:
    """The brackets with deductions that make maintenance continuous across tiers.

    ``cum_1 = 0`` and ``cum_n = cum_{n-1} + floor_n * (rate_n - rate_{n-1})``, so
    ``rate * notional - cum`` is equal on both sides of every boundary (Binance's
    ``cum``, Bybit's ``mmDeduction`` and Hyperliquid's ``maintenance_deduction`` follow
    this rule; for venues that publish none heatcore computes it).
    """
    out: list[dict[str, float]] = []
    cum = 0.0
    for i, raw in enumerate(brackets):
        b = _bracket_dict(raw)
        if i > 0:
            cum += b["floor"] * (b["rate"] - out[-1]["rate"])
        b["deduction"] = cum
        out.append(b)
    return out


def validate_tier_table(brackets: Sequence[BracketLike], *, mm_model: str = "marginal",
                        where: str = "tier table") -> list[dict[str, float]]:
    """Check a tier table and return it as a list of bracket dicts.

    Raises ``ValueError`` naming the tier and the rule it breaks: at least one tier;
    finite numbers; the first floor is 0; each tier starts where the previous one ends
    and its cap exceeds its floor; rates in [0, 1) and non-decreasing; deductions >= 0;
    max leverage >= 1 and non-increasing; maintenance at the tier's cap below the initial
    margin at its max leverage (a position there must not start below maintenance);
    for ``mm_model="marginal"``
    maintenance ``rate * notional - deduction`` continuous at every boundary (to 1 USD
    or 1e-6 relative, the rounding of published tables).
    """
    if mm_model not in MM_MODELS:
        raise ValueError(f"{where}: mm_model must be one of {MM_MODELS}, got {mm_model!r}")
    if isinstance(brackets, (str, bytes)) or not isinstance(brackets, Sequence):
        raise ValueError(f"{where}: brackets must be a list of brackets")
    rows = [_bracket_dict(b) for b in brackets]
    if not rows:
        raise ValueError(f"{where}: at least one tier is required")
    for i, b in enumerate(rows, start=1):
        if not all(math.isfinite(x) for x in b.values()):
            raise ValueError(f"{where}: tier {i} has a non-finite number: {b}")
        if b["cap"] <= b["floor"] or b["floor"] < 0:
            raise ValueError(f"{where}: tier {i} needs 0 <= floor < cap, "
                             f"got {b['floor']}..{b['cap']}")
        if not 0.0 <= b["rate"] < 1.0:
            raise ValueError(f"{where}: tier {i} maintenance rate {b['rate']} is not in [0, 1)")
        if b["deduction"] < 0:
            raise ValueError(f"{where}: tier {i} deduction {b['deduction']} is negative")
        if b["max_leverage"] < 1:
            raise ValueError(f"{where}: tier {i} max_leverage {b['max_leverage']} is below 1")
        # Effective maintenance rate at the tier's cap (largest position in it) must stay
        # below the initial margin at the tier's max leverage.
        eff = b["rate"] - (b["deduction"] / b["cap"] if mm_model == "marginal" else 0.0)
        if eff * b["max_leverage"] >= 1.0:
            raise ValueError(f"{where}: tier {i} maintenance rate {eff:.6g} x max_leverage "
                             f"{b['max_leverage']} >= 1: a position at that leverage would "
                             "start below maintenance (rate given in percent?)")
    if rows[0]["floor"] != 0.0:
        raise ValueError(f"{where}: the first tier must start at notional 0, "
                         f"got {rows[0]['floor']}")
    for i in range(1, len(rows)):
        a, b = rows[i - 1], rows[i]
        n = i + 1
        if not math.isclose(b["floor"], a["cap"], rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"{where}: tier {n} starts at {b['floor']} but tier {i} ends at "
                             f"{a['cap']} (tiers must be sorted and contiguous)")
        if b["rate"] < a["rate"]:
            raise ValueError(f"{where}: maintenance rate falls from {a['rate']} (tier {i}) to "
                             f"{b['rate']} (tier {n}); rates must be non-decreasing")
        if b["max_leverage"] > a["max_leverage"]:
            raise ValueError(f"{where}: max leverage rises from {a['max_leverage']} (tier {i}) to "
                             f"{b['max_leverage']} (tier {n}); it must be non-increasing")
        if mm_model == "marginal":
            left = a["rate"] * b["floor"] - a["deduction"]
            right = b["rate"] * b["floor"] - b["deduction"]
            if abs(left - right) > max(1.0, 1e-6 * abs(right)):
                raise ValueError(
                    f"{where}: maintenance jumps at the tier {i}/{n} boundary ({left:.6g} vs "
                    f"{right:.6g} at notional {b['floor']:.6g}); fix the deductions, pass "
                    "fill_deduction=True to compute them by continuity, or mm_model='stepwise'")
    return rows


def default_tier_table(max_leverage: float) -> dict[str, Any]:
    """heatcore's documented default tier table for a venue without a published one.

    Tier 1 runs at the venue's maximum leverage up to the first ladder floor whose
    leverage is lower; later tiers follow the ladder in ``data/tiers/_default.json``.
    Each tier's rate is ``1 / (2 * max_leverage)`` and deductions come from continuity.
    """
    if not (math.isfinite(max_leverage) and max_leverage >= 1):
        raise ValueError(f"max_leverage must be >= 1, got {max_leverage}")
    spec = _DEFAULT_SPEC
    ladder = [(float(lev), float(floor)) for lev, floor in spec["ladder"]]
    steps = [(lev, floor) for lev, floor in ladder if lev < max_leverage and floor > 0]
    rows: list[dict[str, float]] = []
    floor = 0.0
    lev = float(max_leverage)
    for next_lev, next_floor in steps:
        if next_floor <= floor:
            continue
        rows.append({"floor": floor, "cap": next_floor, "rate": 0.5 / lev, "max_leverage": lev})
        floor, lev = next_floor, next_lev
    rows.append({"floor": floor, "cap": max(float(spec["cap"]), floor * 2 or 1.0),
                 "rate": 0.5 / lev, "max_leverage": lev})
    return {"source": spec["source"], "date": spec["date"], "mm_model": "marginal",
            "deduction": "continuity", "units": "USD notional",
            "brackets": continuity_deductions(rows)}


# --------------------------------------------------------------- exchange download formats

def _num(x: Any, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what}: expected a finite number, got {x!r}")
    return v


def _unwrap(obj: Any, asset: str | None) -> tuple[list[Mapping[str, Any]], str | None]:
    """The list of tier rows inside an exchange response, and its symbol if known."""
    if isinstance(obj, Mapping):
        if "brackets" in obj and isinstance(obj["brackets"], list):  # heatcore / Binance entry
            rows = obj["brackets"]
            return rows, obj.get("symbol")
        if "marginTiers" in obj:  # Hyperliquid marginTable
            return [{"_hl": True, **t} for t in obj["marginTiers"]], None
        if "result" in obj and isinstance(obj["result"], Mapping) and "list" in obj["result"]:
            return _unwrap(obj["result"]["list"], asset)  # Bybit v5
        if "data" in obj:  # OKX, Bitget
            return _unwrap(obj["data"], asset)
        if "tiers" in obj:
            return _unwrap(obj["tiers"], asset)
        raise ValueError("unrecognised tier table: expected heatcore brackets or a Binance "
                         "bracket / Bybit risk-limit / OKX position-tiers / Gate risk-limit / "
                         "Bitget position-lever / Hyperliquid marginTable download")
    if not isinstance(obj, list) or not obj:
        raise ValueError("tier table must be a non-empty list or an exchange response object")
    if all(isinstance(r, Mapping) and "brackets" in r for r in obj):  # Binance leverageBracket
        picks = [r for r in obj if asset is None or base_asset(str(r.get("symbol", ""))) == asset]
        if len(picks) != 1:
            syms = [r.get("symbol") for r in obj]
            raise ValueError(f"Binance bracket download holds {syms}; "
                             f"expected exactly one for {asset}")
        return list(picks[0]["brackets"]), picks[0].get("symbol")
    sym_keys = ("symbol", "instFamily", "instId", "contract", "uly")
    found = {str(r.get(k)) for r in obj if isinstance(r, Mapping) for k in sym_keys if r.get(k)}
    if asset is not None and len({base_asset(s) for s in found}) > 1:
        obj = [r for r in obj if any(r.get(k) and base_asset(str(r[k])) == asset for k in sym_keys)]
        if not obj:
            raise ValueError(f"the download holds no rows for {asset}")
    return list(obj), None


def parse_tier_table(obj: Any, *, asset: str | None = None, price: float | None = None,
                     contract_value: float | None = None) -> tuple[list[dict[str, float]], str]:
    """Turn a tier table in heatcore or an exchange's own format into brackets.

    Accepted row layouts (field names as the exchanges publish them, numbers may be
    strings): heatcore (``floor, cap, rate, deduction, max_leverage``); Binance
    ``/fapi/v1/leverageBracket`` (``notionalFloor, notionalCap, maintMarginRatio, cum,
    initialLeverage``) and its public web variant (``bracketNotionalFloor/Cap,
    bracketMaintenanceMarginRate, cumFastMaintenanceAmount, maxOpenPosLeverage``); ccxt
    leverage tiers (``minNotional, maxNotional, maintenanceMarginRate, maxLeverage``);
    Bybit ``/v5/market/risk-limit`` (``riskLimitValue, maintenanceMargin, mmDeduction,
    maxLeverage``; floors are the previous limit); OKX ``/api/v5/public/position-tiers``
    (``minSz, maxSz`` in contracts, ``mmr, maxLever``: needs ``contract_value`` in coin
    and ``price``); Gate ``risk_limit_tiers`` (``risk_limit, maintenance_rate,
    leverage_max, deduction``); Bitget ``query-position-lever`` (``startUnit, endUnit,
    keepMarginRate, leverage``); Hyperliquid ``marginTable`` (``lowerBound,
    maxLeverage``; rate = 1/(2 x max leverage) as the docs define it). Wrappers such as
    ``{"result": {"list": [...]}}`` or ``{"data": [...]}`` are unwrapped; a download
    holding several symbols is filtered by ``asset``.

    Returns
    -------
    brackets, deduction_kind
        ``deduction_kind`` is ``"published"`` when every row carries a deduction and
        ``"continuity"`` when heatcore computed them.
    """
    rows, _ = _unwrap(obj, asset)
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("tier table rows must be JSON objects")
    r0 = rows[0]
    out: list[dict[str, Any]] = []
    published = True

    def ded(r: Mapping[str, Any], key: str) -> float | None:
        v = r.get(key)
        if v is None or v == "":
            return None
        return _num(v, key)

    if "floor" in r0 and "rate" in r0:
        for r in rows:
            out.append({"floor": r["floor"], "cap": r["cap"], "rate": r["rate"],
                        "max_leverage": r["max_leverage"], "deduction": ded(r, "deduction")})
    elif "notionalFloor" in r0 or "bracketNotionalFloor" in r0:
        web = "bracketNotionalFloor" in r0
        for r in rows:
            out.append({
                "floor": r["bracketNotionalFloor" if web else "notionalFloor"],
                "cap": r["bracketNotionalCap" if web else "notionalCap"],
                "rate": r["bracketMaintenanceMarginRate" if web else "maintMarginRatio"],
                "max_leverage": r["maxOpenPosLeverage" if web else "initialLeverage"],
                "deduction": ded(r, "cumFastMaintenanceAmount" if web else "cum")})
    elif "minNotional" in r0 and "maintenanceMarginRate" in r0:
        for r in rows:
            info = r.get("info") or {}
            out.append({"floor": r["minNotional"], "cap": r["maxNotional"],
                        "rate": r["maintenanceMarginRate"], "max_leverage": r["maxLeverage"],
                        "deduction": ded(info, "cum") if isinstance(info, Mapping) else None})
    elif "riskLimitValue" in r0:
        rows = sorted(rows, key=lambda r: _num(r["riskLimitValue"], "riskLimitValue"))
        # Bybit has published maintenanceMargin both as a fraction (0.005) and in percent
        # (0.5): initialMargin x maxLeverage is ~1 for fractions and ~100 for percent.
        scale = 1.0
        im, lev = r0.get("initialMargin"), r0.get("maxLeverage")
        if im not in (None, "") and lev not in (None, ""):
            if _num(im, "initialMargin") * _num(lev, "maxLeverage") > 10:
                scale = 0.01
        elif any(_num(r["maintenanceMargin"], "maintenanceMargin") >= 1 for r in rows):
            scale = 0.01
        floor = 0.0
        for r in rows:
            cap = _num(r["riskLimitValue"], "riskLimitValue")
            out.append({"floor": floor, "cap": cap,
                        "rate": _num(r["maintenanceMargin"], "maintenanceMargin") * scale,
                        "max_leverage": r["maxLeverage"], "deduction": ded(r, "mmDeduction")})
            floor = cap
    elif "minSz" in r0 and "mmr" in r0:
        if price is None or contract_value is None:
            raise ValueError("OKX position tiers are in contracts: pass contract_value (ctVal, "
                             "coin per contract) and price (USD per coin) to convert to notional")
        unit = _num(contract_value, "contract_value") * _num(price, "price")
        if unit <= 0:
            raise ValueError("contract_value and price must be positive")
        rows = sorted(rows, key=lambda r: _num(r.get("tier", 0), "tier"))
        floor = 0.0
        for r in rows:
            cap = _num(r["maxSz"], "maxSz") * unit
            out.append({"floor": floor, "cap": cap, "rate": r["mmr"],
                        "max_leverage": r["maxLever"], "deduction": None})
            floor = cap
    elif "risk_limit" in r0 and "maintenance_rate" in r0:
        rows = sorted(rows, key=lambda r: _num(r["risk_limit"], "risk_limit"))
        floor = 0.0
        for r in rows:
            cap = _num(r["risk_limit"], "risk_limit")
            out.append({"floor": floor, "cap": cap, "rate": r["maintenance_rate"],
                        "max_leverage": r["leverage_max"], "deduction": ded(r, "deduction")})
            floor = cap
    elif "startUnit" in r0 and "keepMarginRate" in r0:
        for r in sorted(rows, key=lambda r: _num(r["startUnit"], "startUnit")):
            out.append({"floor": r["startUnit"], "cap": r["endUnit"], "rate": r["keepMarginRate"],
                        "max_leverage": r["leverage"], "deduction": None})
    elif "lowerBound" in r0 and "maxLeverage" in r0:
        rows = sorted(rows, key=lambda r: _num(r["lowerBound"], "lowerBound"))
        for i, r in enumerate(rows):
            lev = _num(r["maxLeverage"], "maxLeverage")
            cap = (_num(rows[i + 1]["lowerBound"], "lowerBound") if i + 1 < len(rows)
                   else OPEN_CAP)
            out.append({"floor": r["lowerBound"], "cap": cap, "rate": 0.5 / lev,
                        "max_leverage": lev, "deduction": None})
    else:
        raise ValueError(f"unrecognised tier row fields {sorted(r0)}: see parse_tier_table's "
                         "docstring for the accepted layouts")
    for r in out:
        for k in ("floor", "cap", "rate", "max_leverage"):
            r[k] = _num(r[k], k)
        published = published and r["deduction"] is not None
    if published:
        return [{**r, "deduction": float(r["deduction"])} for r in out], "published"
    return continuity_deductions([{**r, "deduction": 0.0} for r in out]), "continuity"


def load_tier_table(path_or_dict: Union[str, os.PathLike, Mapping[str, Any], Sequence[Any]],
                    venue: str, asset: str, *, source: str | None = None,
                    date: str | None = None, price: float | None = None,
                    contract_value: float | None = None, mm_model: str = "marginal",
                    fill_deduction: bool = False) -> list[Bracket]:
    """Load a tier table from a JSON file or object and install it for ``venue``/``asset``.

    The table may be heatcore's own format (``{"source", "date", "brackets": [...]}``)
    or an exchange download (see :func:`parse_tier_table`). Deductions missing from the
    download are computed by continuity (and the stored source says so). The venue's
    mechanics use the new table from the next :meth:`Venue.mechanics` call; engines
    built before keep theirs.

    Returns
    -------
    list of Bracket
        The installed brackets.
    """
    where = f"{venue}/{asset}"
    if isinstance(path_or_dict, (str, os.PathLike)):
        try:
            with open(path_or_dict, encoding="utf-8") as fh:
                obj = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: {os.fspath(path_or_dict)} is not valid JSON: {e}") from None
        origin = os.path.basename(os.fspath(path_or_dict))
    else:
        obj, origin = path_or_dict, "user object"
    key = "default" if asset == "default" else base_asset(asset)
    brackets, kind = parse_tier_table(obj, asset=None if key == "default" else key, price=price,
                                      contract_value=contract_value)
    meta = obj if isinstance(obj, Mapping) else {}
    src = source or meta.get("source") or f"user-supplied table ({origin})"
    if kind == "continuity":
        src += ("; deductions computed by continuity "
                "cum_n = cum_{n-1} + floor_n*(rate_n - rate_{n-1})")
    when = date or meta.get("date")
    if not when:
        raise ValueError(f"{where}: pass date=... (the table's capture date); every table is dated")
    set_tier_table(venue, key, brackets, source=src, date=str(when),
                   mm_model=meta.get("mm_model", mm_model), fill_deduction=fill_deduction)
    return get_venue(venue).brackets(None if key == "default" else key)


# ------------------------------------------------------------------------------ loading

def _data_text(rel: str) -> str:
    return resources.files("heatcore").joinpath("data").joinpath(rel).read_text("utf-8")


_DEFAULT_SPEC: dict[str, Any] = json.loads(_data_text("tiers/_default.json"))


def _field(v: Mapping[str, Any], key: str) -> tuple[Any, str, str]:
    rec = v[key]
    return rec["value"], rec["source"], str(rec.get("date", ""))


def _load() -> dict[str, Venue]:
    raw = json.loads(_data_text("venues.json"))
    out: dict[str, Venue] = {}
    for v in raw["venues"]:
        vid = v["id"]
        sources: dict[str, str] = {}
        dates: dict[str, str] = {}
        vals: dict[str, Any] = {}
        for key in ("max_leverage", "fee_in_mm", "formula", "inverse", "trigger_price",
                    "reported_price", "liquidation_feed", "cross_share", "cross_distance"):
            vals[key], sources[key], dates[key] = _field(v, key)
        prior = v["prior_mix"]
        sources["prior_mix"], dates["prior_mix"] = prior["source"], str(prior.get("date", ""))
        ranges = tuple((float(a), float(b), float(c)) for a, b, c in prior.get("ranges", ()))
        bands = prior.get("bands") or _bands_from_ranges(ranges, float(vals["max_leverage"]))
        tiers: dict[str, Mapping[str, Any]] = {}
        path = resources.files("heatcore").joinpath("data").joinpath("tiers").joinpath(f"{vid}.json")
        if path.is_file():
            tiers.update(json.loads(path.read_text("utf-8"))["tables"])
        tiers["default"] = default_tier_table(float(vals["max_leverage"]))
        out[vid] = Venue(
            id=vid, name=v["name"], max_leverage=float(vals["max_leverage"]),
            fee_in_mm=float(vals["fee_in_mm"]), formula=str(vals["formula"]),
            inverse=bool(vals["inverse"]), trigger_price=str(vals["trigger_price"]),
            reported_price=str(vals["reported_price"]),
            liquidation_feed=str(vals["liquidation_feed"]),
            prior_bands=tuple(float(x) for x in bands), tiers=tiers, sources=sources,
            cross_share=float(vals["cross_share"]), notes=v.get("notes", ""),
            cross_distance=float(vals["cross_distance"]), prior_ranges=ranges,
            archetype=prior.get("archetype", ""), dates=dates,
        )
    return out


def _bands_from_ranges(ranges: Sequence[tuple[float, float, float]], max_lev: float) -> list[float]:
    """Band summary of a range prior on the default support (for display and scoring)."""
    w = prior_weights_from(ranges, (0.0,) * len(BANDS), max_lev, DEFAULT_TIERS)
    bands = [0.0] * len(BANDS)
    for t, x in zip(DEFAULT_TIERS, w, strict=False):
        bands[band_of(t)] += float(x)
    return bands


_REGISTRY: dict[str, Venue] = {}
_IDS: list[str] = []


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

    New venues get the next free event code; engines built afterwards can use them. A
    venue without a ``"default"`` tier table gets :func:`default_tier_table`.
    """
    if not isinstance(venue, Venue):
        raise TypeError(f"register_venue expects a Venue, got {type(venue).__name__}")
    if "default" not in venue.tiers:
        venue = replace(venue, tiers={**venue.tiers,
                                      "default": default_tier_table(venue.max_leverage)})
    _validate(venue)
    if venue.id in _REGISTRY and not replace_existing:
        raise ValueError(f"venue {venue.id!r} is already registered (pass replace_existing=True)")
    if venue.id not in _REGISTRY:
        _IDS.append(venue.id)
    _REGISTRY[venue.id] = venue


def set_tier_table(venue: str, asset: str, brackets: Sequence[BracketLike], *,
                   source: str, date: str, mm_model: str = "marginal",
                   fill_deduction: bool = False) -> None:
    """Replace a venue's tier table for one base asset (``"default"`` for the fallback).

    Parameters
    ----------
    venue, asset : str
        Registry id and base asset (a symbol such as ``"ETHUSDT"`` is reduced with
        :func:`base_asset`).
    brackets : sequence of Bracket or mapping
        ``floor, cap, rate, deduction, max_leverage`` per tier, ascending.
    source, date : str
        Where the numbers come from and when they were captured (both required).
    mm_model : {"marginal", "stepwise"}
        ``marginal`` tables must be continuous in maintenance across tiers.
    fill_deduction : bool
        Replace the deductions by continuity ones (for tables that publish none).

    Raises
    ------
    ValueError
        With the tier and the rule it breaks (see :func:`validate_tier_table`).
    """
    v = get_venue(venue)
    key = "default" if asset == "default" else base_asset(asset)
    where = f"{venue}/{key}"
    if not (isinstance(source, str) and source.strip()):
        raise ValueError(f"{where}: a non-empty source is required")
    if not (isinstance(date, str) and date.strip()):
        raise ValueError(f"{where}: a non-empty date is required")
    rows = continuity_deductions(brackets) if fill_deduction else list(brackets)
    checked = validate_tier_table(rows, mm_model=mm_model, where=where)
    tiers = dict(v.tiers)
    tiers[key] = {"source": source + ("; deductions computed by continuity" if fill_deduction
                                      else ""),
                  "date": date, "mm_model": mm_model, "brackets": checked}
    new = replace(v, tiers=tiers)
    _validate(new)
    _REGISTRY[venue] = new


def _validate(v: Venue) -> None:
    if not v.id or not isinstance(v.id, str):
        raise ValueError("venue id must be a non-empty string")
    if not (1 <= v.max_leverage <= 1000):
        raise ValueError(f"{v.id}: max_leverage must be in [1, 1000]")
    bad = any(not math.isfinite(x) or x < 0 for x in v.prior_bands)
    if len(v.prior_bands) != len(BANDS) or bad:
        raise ValueError(f"{v.id}: prior_bands needs {len(BANDS)} non-negative weights")
    if sum(v.prior_bands) <= 0 and not v.prior_ranges:
        raise ValueError(f"{v.id}: prior_bands must not all be zero")
    for lo, hi, share in v.prior_ranges:
        if not (math.isfinite(share) and share >= 0 and 0 < lo < hi):
            raise ValueError(f"{v.id}: prior range ({lo}, {hi}, {share}) needs 0 < lo < hi "
                             "and share >= 0")
    if v.reported_price not in (*PRICE_KINDS, "none"):
        raise ValueError(f"{v.id}: reported_price must be one of {PRICE_KINDS} or 'none'")
    if v.liquidation_feed not in FEEDS:
        raise ValueError(f"{v.id}: liquidation_feed must be one of {FEEDS}")
    if v.formula not in ("generic", "mm_at_entry"):
        raise ValueError(f"{v.id}: formula must be 'generic' or 'mm_at_entry'")
    if not (0.0 <= v.cross_share <= 1.0):
        raise ValueError(f"{v.id}: cross_share must be in [0, 1]")
    if not (math.isfinite(v.cross_distance) and v.cross_distance >= 1.0):
        raise ValueError(f"{v.id}: cross_distance must be >= 1 "
                         "(cross dies no closer than isolated)")
    for key, table in v.tiers.items():
        validate_tier_table(table["brackets"], mm_model=table.get("mm_model", "marginal"),
                            where=f"{v.id}/{key}")
        v.mechanics(None if key == "default" else key)  # validates brackets in C++


def prior_weights_from(ranges: Sequence[tuple[float, float, float]], bands: Sequence[float],
                       max_leverage: float, tiers: Sequence[float]) -> np.ndarray:
    """Spread a range or band prior over a tier support (see :func:`prior_weights`)."""
    t = np.asarray(tiers, dtype=float)
    allowed = t <= max_leverage + 1e-9
    if not allowed.any():
        allowed[0] = True
    spec = list(ranges) if ranges else [(lo, hi if i < len(BANDS) - 1 else math.inf, share)
                                        for i, ((lo, hi), share) in enumerate(zip(BANDS, bands, strict=False))]
    w = np.zeros(len(t))
    cands = np.flatnonzero(allowed)
    for lo, hi, share in spec:
        if share <= 0:
            continue
        members = np.flatnonzero((t >= lo) & (t < hi) & allowed)
        if members.size == 0:
            # nearest allowed tier to the range's centre in log-leverage
            centre = math.sqrt(max(lo, 1.0) * min(hi, 4 * max(lo, 1.0)))
            members = cands[[int(np.argmin(np.abs(np.log(t[cands]) - math.log(centre))))]]
        w[members] += share / members.size
    if w.sum() <= 0:
        w[allowed] = 1.0
    return w / w.sum()


def prior_weights(venue: str | Venue, tiers: Sequence[float] = DEFAULT_TIERS) -> np.ndarray:
    """The venue's prior mix over a tier support.

    Each band's (or range's) prior share is spread equally over the support tiers
    inside it; tiers above the venue's maximum leverage get zero. A band with no tier
    in the support passes its share to the nearest allowed tier.
    """
    v = get_venue(venue) if isinstance(venue, str) else venue
    return prior_weights_from(v.prior_ranges, v.prior_bands, v.max_leverage, tiers)


def registry_rows() -> list[dict[str, Any]]:
    """One summary row per registered venue (for docs and reports): id, name, feed,
    reported price, trigger, max leverage, prior archetype, cross share, tables."""
    return [{"id": v.id, "name": v.name, "feed": v.liquidation_feed,
             "reported_price": v.reported_price, "trigger": v.trigger_price,
             "max_leverage": v.max_leverage, "archetype": v.archetype,
             "cross_share": v.cross_share, "cross_distance": v.cross_distance,
             "tables": sorted(k for k in v.tiers if k != "default")}
            for v in (_REGISTRY[i] for i in _IDS)]


_REGISTRY.update(_load())
_IDS.extend(_REGISTRY)

#: The 22 built-in venue ids, in registry order (the order defines event venue codes).
VENUES: tuple[str, ...] = tuple(_IDS)
