"""Normalized events: the numpy layout the engine ingests and the JSONL format
that adapters, recorders and the evaluation harness exchange (DESIGN.md).

One JSON object per line, ``ts`` in milliseconds since the epoch (UTC)::

    {"ts": 1767225600123, "venue": "binance", "symbol": "BTCUSDT", "kind": "price", "price": 86950.1}
    {"ts": ..., "venue": "okx", "symbol": "BTC-USDT-SWAP", "kind": "oi", "oi_usd": 2.1e9}
    {"ts": ..., "venue": "okx", "symbol": "BTC-USDT-SWAP", "kind": "liquidation",
     "side": "long", "price": 86801.3, "notional_usd": 21700.3,
     "price_kind": "bankruptcy", "sampled": true}

``side`` is always the *liquidated position*. ``price_kind`` (which price the
venue reported) and ``sampled`` (the event came from a throttled feed) are
optional. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Union

import numpy as np

from .venues import PRICE_KINDS, venue_id, venue_name

__all__ = [
    "EVENT_DTYPE",
    "KIND_LIQUIDATION",
    "KIND_OI",
    "KIND_PRICE",
    "EventsFormatError",
    "events_from_records",
    "iter_records",
    "read_events",
    "read_events_by_symbol",
    "records_from_events",
    "write_events",
]

log = logging.getLogger("heatcore.events")

#: The structured dtype of event arrays (32 bytes, matches the C++ ``Event``).
#: ``value`` is ``oi_usd`` for open-interest events and ``notional_usd`` for
#: liquidations; ``side`` is +1 long / -1 short / 0; ``venue`` is the registry
#: code (:func:`heatcore.venues.venue_id`); ``flags`` bit 0 marks a sampled feed.
EVENT_DTYPE = np.dtype(
    {
        "names": ["ts", "price", "value", "venue", "kind", "side", "price_kind", "flags"],
        "formats": ["<i8", "<f8", "<f8", "<u2", "u1", "i1", "u1", "u1"],
        "offsets": [0, 8, 16, 24, 26, 27, 28, 29],
        "itemsize": 32,
    }
)

KIND_PRICE, KIND_OI, KIND_LIQUIDATION = 0, 1, 2
_KINDS = {"price": KIND_PRICE, "oi": KIND_OI, "liquidation": KIND_LIQUIDATION}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_SIDES = {"long": 1, "short": -1}
FLAG_SAMPLED = 1

PathLike = Union[str, "os.PathLike[str]"]


class EventsFormatError(ValueError):
    """A malformed normalized record; ``line`` is its 1-based line number (0 if unknown)."""

    def __init__(self, message: str, line: int = 0, path: str | None = None):
        where = f"{path}:{line}: " if path and line else (f"line {line}: " if line else "")
        super().__init__(where + message)
        self.line = line
        self.path = path


def _open_text(path: PathLike, mode: str) -> IO[str]:
    p = os.fspath(path)
    if p.endswith(".gz"):
        return gzip.open(p, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(p, mode, encoding="utf-8")


def _finite(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise EventsFormatError(f"{name} must be a number, got {x!r}")
    try:
        v = float(x)
    except ValueError:
        raise EventsFormatError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise EventsFormatError(f"{name} must be finite, got {x!r}")
    return v


def _record_row(rec: Mapping[str, Any]) -> tuple[int, float, float, int, int, int, int, int]:
    """Validate one normalized record and turn it into an EVENT_DTYPE row."""
    if not isinstance(rec, Mapping):
        raise EventsFormatError(f"a record must be a JSON object, got {type(rec).__name__}")
    kind_name = rec.get("kind")
    if kind_name not in _KINDS:
        raise EventsFormatError(f"unknown kind {kind_name!r} (expected price, oi or liquidation)")
    kind = _KINDS[kind_name]
    ts = rec.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
        raise EventsFormatError(f"ts must be a non-negative number of milliseconds, got {ts!r}")
    try:
        venue = venue_id(str(rec.get("venue")))
    except KeyError as e:
        raise EventsFormatError(str(e.args[0])) from None
    side = 0
    value = 0.0
    price = 0.0
    if kind == KIND_PRICE:
        price = _finite(rec.get("price"), "price")
    elif kind == KIND_OI:
        value = _finite(rec.get("oi_usd"), "oi_usd")
        if rec.get("price") is not None:
            price = _finite(rec["price"], "price")
    else:
        s = rec.get("side")
        if s not in _SIDES:
            raise EventsFormatError(f"side must be 'long' or 'short' (the liquidated position), got {s!r}")
        side = _SIDES[s]
        price = _finite(rec.get("price"), "price")
        value = _finite(rec.get("notional_usd"), "notional_usd")
    pk = rec.get("price_kind", "unknown") or "unknown"
    if pk not in PRICE_KINDS:
        raise EventsFormatError(f"price_kind must be one of {PRICE_KINDS}, got {pk!r}")
    flags = FLAG_SAMPLED if rec.get("sampled") else 0
    return (int(ts), price, value, venue, kind, side, PRICE_KINDS.index(pk), flags)


def iter_records(path: PathLike, *, errors: str = "raise") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, record)`` from a normalized JSONL file (``.gz`` too).

    With ``errors="raise"`` invalid JSON and a truncated compressed file raise
    :class:`EventsFormatError` with the line number; with ``errors="skip"`` the
    error itself is yielded in place of the record (and a truncated file ends
    the iteration after it).
    """
    if errors not in ("raise", "skip"):
        raise ValueError("errors must be 'raise' or 'skip'")
    p = os.fspath(path)
    lineno = 0
    with _open_text(p, "r") as fh:
        while True:
            try:
                line = fh.readline()
            except (EOFError, OSError, UnicodeDecodeError) as e:
                err = EventsFormatError(f"unreadable or truncated file ({e})", lineno + 1, p)
                if errors == "raise":
                    raise err from None
                yield lineno + 1, err
                return
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                err = EventsFormatError(f"invalid JSON ({e.msg})", lineno, p)
                if errors == "raise":
                    raise err from None
                yield lineno, err


def _read(path: PathLike, symbol: str | None, errors: str) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}
    skipped = 0
    p = os.fspath(path)
    for lineno, rec in iter_records(p, errors=errors):
        try:
            if isinstance(rec, EventsFormatError):
                raise rec
            row = _record_row(rec)
            sym = str(rec.get("symbol", ""))
        except EventsFormatError as e:
            err = e if e.line else EventsFormatError(str(e), lineno, p)
            if errors == "raise":
                raise err from None
            skipped += 1
            log.warning("skipped: %s", err)
            continue
        if symbol is not None and sym != symbol:
            continue
        rows.setdefault(sym, []).append(row)
    if skipped:
        log.warning("%s: %d malformed line(s) skipped", p, skipped)
    return rows


def _to_array(rows: list[tuple]) -> np.ndarray:
    # Start from zeros so that the two padding bytes are deterministic.
    arr = np.zeros(len(rows), dtype=EVENT_DTYPE)
    if rows:
        arr[:] = rows
    if arr.size > 1 and np.any(np.diff(arr["ts"]) < 0):
        arr = arr[np.argsort(arr["ts"], kind="stable")]
    return arr


def read_events(path: PathLike, symbol: str | None = None, *, errors: str = "raise") -> np.ndarray:
    """Read a normalized JSONL file (``.jsonl`` or ``.jsonl.gz``) into an EVENT_DTYPE array.

    Parameters
    ----------
    path : path-like
        The file.
    symbol : str, optional
        Keep only this symbol. Required when the file holds several symbols
        (use :func:`read_events_by_symbol` to split them).
    errors : {"raise", "skip"}
        ``"raise"`` (default) stops at the first malformed line with an
        :class:`EventsFormatError` naming the line; ``"skip"`` logs and counts
        malformed lines and keeps the rest.

    Returns
    -------
    numpy.ndarray
        Events sorted by time (stable).
    """
    rows = _read(path, symbol, errors)
    if symbol is None and len(rows) > 1:
        raise ValueError(f"{os.fspath(path)} holds several symbols ({', '.join(sorted(rows))}); "
                         "pass symbol= or use read_events_by_symbol()")
    return _to_array(next(iter(rows.values())) if rows else [])


def read_events_by_symbol(path: PathLike, *, errors: str = "raise") -> dict[str, np.ndarray]:
    """Read a normalized JSONL file into one EVENT_DTYPE array per symbol."""
    return {sym: _to_array(r) for sym, r in _read(path, None, errors).items()}


def events_from_records(records: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Turn normalized records (dicts, e.g. from :mod:`heatcore.adapters`) into an array."""
    rows = []
    for i, rec in enumerate(records):
        try:
            rows.append(_record_row(rec))
        except EventsFormatError as e:
            raise EventsFormatError(f"record {i}: {e}") from None
    return _to_array(rows)


def records_from_events(events: np.ndarray, symbol: str) -> Iterator[dict[str, Any]]:
    """Turn an EVENT_DTYPE array back into normalized records."""
    for ev in events:
        kind = _KIND_NAMES.get(int(ev["kind"]))
        if kind is None:
            raise ValueError(f"unknown event kind {int(ev['kind'])}")
        rec: dict[str, Any] = {"ts": int(ev["ts"]), "venue": venue_name(int(ev["venue"])),
                               "symbol": symbol, "kind": kind}
        if kind == "price":
            rec["price"] = float(ev["price"])
        elif kind == "oi":
            rec["oi_usd"] = float(ev["value"])
            if ev["price"] > 0:
                rec["price"] = float(ev["price"])
        else:
            rec["side"] = "long" if ev["side"] == 1 else "short"
            rec["price"] = float(ev["price"])
            rec["notional_usd"] = float(ev["value"])
            if ev["price_kind"]:
                rec["price_kind"] = PRICE_KINDS[int(ev["price_kind"])]
            if int(ev["flags"]) & FLAG_SAMPLED:
                rec["sampled"] = True
        yield rec


def write_events(path: PathLike, events: np.ndarray, symbol: str) -> None:
    """Write an EVENT_DTYPE array as normalized JSONL (gzip if the name ends in ``.gz``)."""
    if events.dtype != EVENT_DTYPE:
        raise TypeError("events must have dtype heatcore.EVENT_DTYPE")
    with _open_text(path, "w") as fh:
        for rec in records_from_events(events, symbol):
            fh.write(json.dumps(rec, separators=(",", ":")))
            fh.write("\n")
