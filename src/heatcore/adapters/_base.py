"""Shared machinery of the venue adapters: the typed error, the instrument
table, the per-connection :class:`Context` and strict field readers.

Nothing here is module-level mutable state: every table a parser uses is a
copy owned by that parser, so two connections never share counters, caches or
instrument overrides.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "AdapterError",
    "Context",
    "Instrument",
    "InstrumentTable",
]


class AdapterError(ValueError):
    """A native message that cannot be turned into correct records.

    Attributes
    ----------
    reason : str
        Short machine-readable cause (``"malformed"``, ``"unknown_message"``,
        ``"unknown_instrument"``, ``"bad_number"``, ``"bad_side"``, ...); the
        counters of :class:`heatcore.adapters.Parser` are keyed by it.
    venue : str or None
        The venue whose message failed.
    """

    def __init__(self, reason: str, message: str, venue: str | None = None):
        super().__init__(f"{venue}: {message}" if venue else message)
        self.reason = reason
        self.venue = venue


@dataclass(frozen=True)
class Instrument:
    """Contract specification needed to turn a size into USD notional.

    Attributes
    ----------
    venue : str
        Registry id of the venue (``"okx"``).
    symbol : str
        Native symbol (``"BTC-USDT-SWAP"``).
    contract_size : float
        Linear contracts: base-coin quantity of one contract (OKX ``ctVal``,
        Gate ``quanto_multiplier``, HTX contract size; 1.0 when sizes are
        already in base coin). Inverse contracts: USD value of one contract.
    inverse : bool
        True for coin-margined contracts whose contract is a fixed USD amount;
        their notional is ``contracts * contract_size`` whatever the price.
    source : str
        Where the number comes from (documentation page, date).
    """

    venue: str
    symbol: str
    contract_size: float
    inverse: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if not (
            isinstance(self.contract_size, (int, float))
            and math.isfinite(self.contract_size)
            and self.contract_size > 0
        ):
            raise ValueError(f"{self.venue}:{self.symbol}: contract_size must be finite and > 0")

    def notional_usd(self, contracts: float, price: float) -> float:
        """USD notional of ``contracts`` (absolute) traded at ``price``."""
        if self.inverse:
            return abs(contracts) * self.contract_size
        return abs(contracts) * self.contract_size * price


_X = "exchanges.md 2026-11-24"
#: Documented contract sizes (BTC and ETH plus the coins of the shared recordings).
#: Venues whose feeds already give sizes in base coin (Binance USD-M, Bybit linear,
#: dYdX, Hyperliquid, Bitfinex, Kraken PF_) or in USD (Deribit inverse, Kraken
#: PI_, Bybit inverse) need no entry: their adapters derive the size by rule.
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("okx", "BTC-USDT-SWAP", 0.01, source=_X + " §2.3 (ctVal 0.01 BTC)"),
    Instrument("okx", "ETH-USDT-SWAP", 0.1, source="OKX instruments ctVal 0.1 ETH"),
    Instrument("okx", "BTC-USD-SWAP", 100.0, inverse=True, source="OKX instruments ctVal 100 USD"),
    Instrument("okx", "ETH-USD-SWAP", 10.0, inverse=True, source="OKX instruments ctVal 10 USD"),
    Instrument("okx", "SOL-USDT-SWAP", 1.0, source="shared/data/README.md"),
    Instrument("okx", "DOGE-USDT-SWAP", 1000.0, source="shared/data/README.md"),
    Instrument("okx", "HYPE-USDT-SWAP", 0.1, source="shared/data/README.md (inferred from OI)"),
    Instrument("gate", "BTC_USDT", 0.0001, source=_X + " §2.4 (quanto_multiplier docs example)"),
    Instrument("gate", "ETH_USDT", 0.01, source="Gate contracts quanto_multiplier 0.01 ETH"),
    Instrument("htx", "BTC-USDT", 0.001, source=_X + " §2.7 (uncertain)"),
    Instrument("htx", "ETH-USDT", 0.01, source="HTX contract info 0.01 ETH (uncertain)"),
    Instrument("binance", "BTCUSD_PERP", 100.0, inverse=True, source=_X + " §2.1 (100 USD)"),
    Instrument("binance", "ETHUSD_PERP", 10.0, inverse=True, source="Binance COIN-M 10 USD"),
    Instrument("bitmex", "XBTUSD", 1.0, inverse=True, source=_X + " §2.5 (1 contract = 1 USD)"),
)


class InstrumentTable:
    """Per-parser instrument table: the documented defaults plus caller entries.

    Parameters
    ----------
    instruments : iterable of Instrument, optional
        Extra or overriding entries (same venue and symbol replace a default).
    defaults : bool
        Start from :data:`DEFAULT_INSTRUMENTS` (default True).
    """

    def __init__(self, instruments: Iterable[Instrument] = (), *, defaults: bool = True) -> None:
        self._table: dict[tuple[str, str], Instrument] = {}
        for inst in DEFAULT_INSTRUMENTS if defaults else ():
            self.add(inst)
        for inst in instruments:
            self.add(inst)

    def add(self, instrument: Instrument) -> None:
        """Add or replace one instrument."""
        if not isinstance(instrument, Instrument):
            raise TypeError("expected a heatcore.adapters.Instrument")
        self._table[(instrument.venue, instrument.symbol.upper())] = instrument

    def find(self, venue: str, symbol: str) -> Instrument | None:
        """The entry for ``(venue, symbol)`` or None."""
        return self._table.get((venue, symbol.upper()))

    def get(self, venue: str, symbol: str) -> Instrument:
        """The entry for ``(venue, symbol)``; :class:`AdapterError` if unknown."""
        inst = self.find(venue, symbol)
        if inst is None:
            raise AdapterError(
                "unknown_instrument",
                f"no contract size for {symbol!r}; add a heatcore.adapters.Instrument "
                "(never guessed)",
                venue,
            )
        return inst

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._table.values())

    def __len__(self) -> int:
        return len(self._table)


Record = dict[str, Any]


class Context:
    """Per-connection state handed to a venue parser function.

    Holds the instrument table, the last price per symbol (to convert
    open interest given in coins or contracts), small per-venue caches
    (channel ids, dedupe windows) and the skip counters.
    """

    __slots__ = (
        "_recv_ts",
        "cache",
        "errors",
        "instruments",
        "last_price",
        "lenient",
        "skipped",
        "symbols",
        "user",
        "venue",
    )

    def __init__(
        self,
        venue: str,
        instruments: InstrumentTable,
        symbols: Callable[[str], bool] | None = None,
        user: str | None = None,
    ):
        self.venue = venue
        self.instruments = instruments
        self.symbols = symbols
        self.user = user.lower() if isinstance(user, str) else None
        self.last_price: dict[str, float] = {}
        self.cache: dict[str, Any] = {}
        self.skipped: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.lenient = False
        self._recv_ts: int | None = None

    # -- counters -----------------------------------------------------------
    def skip(self, reason: str) -> None:
        """Count a benign skip (ack, heartbeat, non-liquidation trade, gap reading...)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def error(self, err: AdapterError) -> None:
        self.errors[err.reason] = self.errors.get(err.reason, 0) + 1

    def fail(self, reason: str, message: str) -> AdapterError:
        return AdapterError(reason, message, self.venue)

    # -- helpers --------------------------------------------------------------
    def closed_side(self, order_side: Any, sell: str, buy: str, field: str) -> str:
        """The liquidated position from the side of the order that closed it: the
        engine sells to close a long (``sell`` -> "long") and buys to close a short."""
        if order_side == sell:
            return "long"
        if order_side == buy:
            return "short"
        raise self.fail("bad_side", f"{field} must be {buy} or {sell}, got {order_side!r}")

    def wanted(self, symbol: str) -> bool:
        """False (and counted) when a symbol filter excludes ``symbol``."""
        if self.symbols is None or self.symbols(symbol):
            return True
        self.skip("other_symbol")
        return False

    def each(self, items: Iterable[Any], fn: Callable[[Any], None]) -> None:
        """Apply ``fn`` to every item of a batch; in lenient mode a bad item is
        counted and skipped while its neighbours are kept."""
        for item in items:
            if not self.lenient:
                fn(item)
                continue
            try:
                fn(item)
            except AdapterError as e:
                self.error(e)

    def recv_ts(self) -> int:
        """Receive time in ms (for venues whose rows carry no timestamp)."""
        if self._recv_ts is None:
            return int(time.time() * 1000)
        return self._recv_ts

    def price_record(self, out: list[Record], ts: int, symbol: str, price: float) -> None:
        self.last_price[symbol] = price
        out.append(
            {"ts": ts, "venue": self.venue, "symbol": symbol, "kind": "price", "price": price}
        )

    def oi_record(
        self, out: list[Record], ts: int, symbol: str, oi_usd: float | None, price: float | None
    ) -> None:
        """Append an OI record. A missing, zero or negative reading is a gap:
        counted and dropped, never reported as "open interest fell to 0"."""
        if oi_usd is None:
            self.skip("oi_missing")
            return
        if not oi_usd > 0:
            self.skip("oi_zero")
            return
        rec: Record = {
            "ts": ts,
            "venue": self.venue,
            "symbol": symbol,
            "kind": "oi",
            "oi_usd": oi_usd,
        }
        if price is not None:
            rec["price"] = price
        out.append(rec)

    def liquidation(
        self,
        out: list[Record],
        ts: int,
        symbol: str,
        side: str,
        price: float,
        notional: float,
        price_kind: str,
        sampled: bool,
    ) -> None:
        if not notional > 0:
            raise self.fail("bad_size", f"liquidation of {symbol} with notional {notional!r}")
        rec: Record = {
            "ts": ts,
            "venue": self.venue,
            "symbol": symbol,
            "kind": "liquidation",
            "side": side,
            "price": price,
            "notional_usd": notional,
            "price_kind": price_kind,
        }
        if sampled:
            rec["sampled"] = True
        out.append(rec)

    def remember(self, key: str, ident: Any, limit: int = 4096) -> bool:
        """True the first time ``ident`` is seen under ``key`` (bounded LRU window)."""
        seen: OrderedDict = self.cache.setdefault("seen:" + key, OrderedDict())
        if ident in seen:
            seen.move_to_end(ident)
            return False
        seen[ident] = None
        if len(seen) > limit:
            seen.popitem(last=False)
        return True

    # -- strict readers: every malformed field becomes an AdapterError ----------
    def obj(self, x: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(x, Mapping):
            raise self.fail("malformed", f"{what} must be an object, got {type(x).__name__}")
        return x

    def arr(self, x: Any, what: str) -> list[Any]:
        if not isinstance(x, list):
            raise self.fail("malformed", f"{what} must be a list, got {type(x).__name__}")
        return x

    def text(self, x: Any, what: str) -> str:
        if not isinstance(x, str) or not x:
            raise self.fail("malformed", f"{what} must be a non-empty string, got {x!r}")
        return x

    def num(self, x: Any, what: str, *, positive: bool = True, allow_zero: bool = False) -> float:
        """A finite number (JSON number or numeric string)."""
        if isinstance(x, bool) or not isinstance(x, (int, float, str)):
            raise self.fail("bad_number", f"{what} must be a number, got {x!r}")
        try:
            v = float(x)
        except (ValueError, OverflowError):
            raise self.fail("bad_number", f"{what} must be a number, got {x!r}") from None
        if not math.isfinite(v):
            raise self.fail("bad_number", f"{what} must be finite, got {x!r}")
        if positive and not (v > 0 or (allow_zero and v == 0)):
            raise self.fail("bad_number", f"{what} must be > 0, got {x!r}")
        return v

    def opt_num(self, x: Any, what: str) -> float | None:
        """None for a missing/empty field, else a finite number (may be 0)."""
        if x is None or x == "":
            return None
        return self.num(x, what, positive=False)

    def ts_ms(self, x: Any, what: str = "timestamp") -> int:
        """Milliseconds since the epoch from a number or numeric string."""
        v = self.num(x, what)
        # 2001..2286 in ms: anything else is seconds/us/ns or garbage, never guessed.
        if not (1e12 <= v < 1e13):
            raise self.fail("bad_timestamp", f"{what} {x!r} is not epoch milliseconds")
        return int(v)

    def iso_ms(self, x: Any, what: str = "timestamp") -> int:
        s = self.text(x, what)
        try:
            dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
        except ValueError:
            raise self.fail("bad_timestamp", f"{what} {s!r} is not ISO 8601") from None
        if dt.tzinfo is None:
            raise self.fail("bad_timestamp", f"{what} {s!r} has no time zone")
        return self.ts_ms(round(dt.timestamp() * 1000), what)


_GZIP_MAGIC = b"\x1f\x8b"


def decode(message: Any, venue: str, loads: Callable[[Any], Any] = json.loads) -> Any:
    """Decode a native message: ``str``/``bytes`` JSON (gzip- or deflate-compressed
    bytes too, as HTX sends) or an already-decoded object."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        raw = bytes(message)
        if raw[:2] == _GZIP_MAGIC:
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise AdapterError("bad_compression", f"gzip frame: {e}", venue) from None
        message = raw
    if isinstance(message, bytes) and message.strip() in (b"pong", b"ping"):
        return message.strip().decode()
    if isinstance(message, (str, bytes)):
        if isinstance(message, str) and message.strip() in ("pong", "ping"):
            return message.strip()
        try:
            return loads(message)
        except (ValueError, UnicodeDecodeError) as e:
            raise AdapterError("bad_json", f"not JSON: {str(e)[:80]}", venue) from None
    if isinstance(message, (Mapping, list)):
        return message
    raise AdapterError("malformed", f"unsupported message type {type(message).__name__}", venue)
