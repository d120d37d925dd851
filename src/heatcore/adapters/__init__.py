"""Venue adapters: native exchange messages -> normalized records (DESIGN.md).

>>> from heatcore import adapters
>>> [rec] = adapters.parse("bybit", '{"topic":"allLiquidation.BTCUSDT","type":"snapshot",'
...     '"ts":1767225600500,"data":[{"T":1767225600431,"s":"BTCUSDT","S":"Buy",'
...     '"v":"0.120","p":"86890.50"}]}')
>>> rec["side"], rec["price"], rec["price_kind"], round(rec["notional_usd"], 2)
('long', 86890.5, 'bankruptcy', 10426.86)

One module per venue family (``binance`` covers USD-M and COIN-M), each a pure
function of a per-connection :class:`Context`; no module-level mutable state.
:class:`Parser` holds one connection's context (instrument table, last prices,
channel ids, dedupe window) and its counters. Heartbeats and subscription acks
give ``[]``. A malformed, unknown or partial message raises
:class:`AdapterError` (``Parser.parse``) or is counted by reason and dropped
(``Parser.feed``): never a wrong record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from types import ModuleType
from typing import Any, Callable, Union

from . import binance, bitfinex, bitmex, bybit, deribit, dydx, gate, htx, hyperliquid, kraken, okx
from ._base import DEFAULT_INSTRUMENTS, AdapterError, Context, Instrument, InstrumentTable, decode

__all__ = [
    "ADAPTERS",
    "DEFAULT_INSTRUMENTS",
    "AdapterError",
    "Instrument",
    "InstrumentTable",
    "Parser",
    "native_symbol",
    "parse",
]

#: Registry id -> adapter module (each has ``VENUE`` and ``parse(ctx, message)``).
ADAPTERS: dict[str, ModuleType] = {
    m.VENUE: m
    for m in (binance, bybit, okx, gate, bitmex, deribit, htx, bitfinex, kraken, dydx, hyperliquid)
}
_ALIASES = {
    "binanceusdm": "binance",
    "binancecoinm": "binance",
    "krakenfutures": "kraken",
    "huobi": "htx",
    "dydxv4": "dydx",
}

Message = Union[str, bytes, bytearray, dict, list]


def _resolve(venue: str) -> ModuleType:
    name = _ALIASES.get(venue, venue)
    try:
        return ADAPTERS[name]
    except (KeyError, TypeError):
        raise AdapterError(
            "unknown_venue",
            f"no adapter for venue {venue!r}; adapters exist for {', '.join(ADAPTERS)}",
        ) from None


class Parser:
    """Adapter for one connection (or one REST poller) of one venue.

    Parameters
    ----------
    venue : str
        Registry id (``"binance"``, ``"bybit"``, ``"okx"``, ``"gate"``,
        ``"bitmex"``, ``"deribit"``, ``"htx"``, ``"bitfinex"``, ``"kraken"``,
        ``"dydx"``, ``"hyperliquid"``).
    instruments : iterable of Instrument or InstrumentTable, optional
        Contract sizes added to (or replacing) the documented defaults.
    symbols : iterable of str or callable, optional
        Keep only these native symbols (others are counted as ``other_symbol``).
    user : str, optional
        Hyperliquid: the address whose fills are parsed (info responses do not
        carry it).
    loads : callable, optional
        JSON decoder for str/bytes messages (default :func:`json.loads`;
        ``orjson.loads`` works too).

    Attributes
    ----------
    messages, records : int
        Messages seen and records produced.
    skipped : dict
        Benign skips by reason (``ack``, ``heartbeat``, ``not_liquidation``,
        ``oi_zero``, ``oi_missing``, ``oi_no_price``, ``duplicate``, ...).
    errors : dict
        Refused messages or batch items by :attr:`AdapterError.reason` (``feed`` only).
    """

    def __init__(
        self,
        venue: str,
        *,
        instruments: Iterable[Instrument] | None = None,
        symbols: Union[Iterable[str], Callable[[str], bool], None] = None,
        user: str | None = None,
        loads: Callable[[Any], Any] | None = None,
    ) -> None:
        self._module = _resolve(venue)
        self.venue: str = self._module.VENUE
        table = (
            instruments
            if isinstance(instruments, InstrumentTable)
            else InstrumentTable(instruments or ())
        )
        if symbols is None or callable(symbols):
            pred = symbols
        else:
            wanted = {str(s).upper() for s in symbols}
            pred = lambda s: s.upper() in wanted  # noqa: E731
        self._ctx = Context(self.venue, table, pred, user)
        self._loads = loads or json.loads
        self.messages = 0
        self.records = 0

    @property
    def instruments(self) -> InstrumentTable:
        """This parser's instrument table (add entries with ``.add``)."""
        return self._ctx.instruments

    @property
    def skipped(self) -> dict[str, int]:
        return self._ctx.skipped

    @property
    def errors(self) -> dict[str, int]:
        return self._ctx.errors

    @property
    def last_price(self) -> dict[str, float]:
        """Last price seen per native symbol (used to convert coin/contract OI to USD)."""
        return self._ctx.last_price

    def parse(self, message: Message, recv_ts_ms: int | None = None) -> list[dict[str, Any]]:
        """Parse one native message strictly.

        Parameters
        ----------
        message : str, bytes or decoded JSON
            One message as received (gzip-compressed bytes are decompressed).
        recv_ts_ms : int, optional
            Receive time, used by venues whose rows carry no timestamp (BitMEX
            liquidations, dYdX/Hyperliquid contexts). Default: the wall clock.

        Returns
        -------
        list of dict
            Normalized records; ``[]`` for heartbeats, acks and non-events.

        Raises
        ------
        AdapterError
            Malformed, unknown or partial message, or an unknown instrument;
            no record of the message is returned.
        """
        return self._run(message, recv_ts_ms, lenient=False)

    def feed(self, message: Message, recv_ts_ms: int | None = None) -> list[dict[str, Any]]:
        """Like :meth:`parse`, but a bad message (or a bad item of a batch) is
        counted in :attr:`errors` by reason and dropped; good items of the same
        batch are kept. Never raises :class:`AdapterError`."""
        try:
            return self._run(message, recv_ts_ms, lenient=True)
        except AdapterError as e:
            self._ctx.error(e)
            return []

    def _run(self, message: Message, recv_ts_ms: int | None, lenient: bool) -> list[dict[str, Any]]:
        self.messages += 1
        ctx = self._ctx
        ctx.lenient = lenient
        ctx._recv_ts = None if recv_ts_ms is None else int(recv_ts_ms)
        decoded = decode(message, self.venue, self._loads)
        out = self._module.parse(ctx, decoded)
        self.records += len(out)
        return out

    def counters(self) -> dict[str, Any]:
        """Snapshot of the counters (for logs and live stats)."""
        return {
            "venue": self.venue,
            "messages": self.messages,
            "records": self.records,
            "skipped": dict(self.skipped),
            "errors": dict(self.errors),
        }


def parse(
    venue: str,
    message: Message,
    *,
    recv_ts_ms: int | None = None,
    instruments: Iterable[Instrument] | None = None,
    user: str | None = None,
) -> list[dict[str, Any]]:
    """Parse one native message of ``venue`` into normalized records (strict).

    A fresh :class:`Parser` is used, so nothing carries over between calls:
    state-dependent conversions (open interest in coins needs a price seen
    earlier on the same connection; Bitfinex channel ids) need a :class:`Parser`.
    See :meth:`Parser.parse` for the parameters, return value and errors.
    """
    return Parser(venue, instruments=instruments, user=user).parse(message, recv_ts_ms)


_NATIVE: dict[str, Callable[[str], str]] = {
    "binance": lambda b: f"{b}USDT",
    "bybit": lambda b: f"{b}USDT",
    "okx": lambda b: f"{b}-USDT-SWAP",
    "gate": lambda b: f"{b}_USDT",
    "bitmex": lambda b: "XBTUSD" if b == "BTC" else f"{b}USD",
    "deribit": lambda b: f"{b}-PERPETUAL",
    "htx": lambda b: f"{b}-USDT",
    "bitfinex": lambda b: f"t{b}F0:USTF0",
    "kraken": lambda b: f"PF_{'XBT' if b == 'BTC' else b}USD",
    "dydx": lambda b: f"{b}-USD",
    "hyperliquid": lambda b: b,
}


def native_symbol(venue: str, base: str) -> str:
    """The venue's main perpetual for a base asset (``native_symbol("okx", "BTC")``
    -> ``"BTC-USDT-SWAP"``)."""
    name = _resolve(venue).VENUE
    return _NATIVE[name](base.upper())
