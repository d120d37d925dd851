"""Live feeds: subscribe to venues' public websockets, feed an engine continuously,
write snapshots, or record the normalized stream (``heatcore live`` / ``heatcore record``).

Needs the optional extra ``pip install "heatcore[live]"`` (``websockets``); the
module imports it only when a client starts.

Each venue gets one :class:`heatcore.adapters.Parser` shared by its websocket
connections and its REST open-interest poller (the poller converts coin OI with
the mark price the stream last gave). Every message is parsed as it arrives and
its records are ingested at once, so the map at 14:00 reflects everything
received up to then. Connections reconnect with exponential backoff and jitter;
a silent connection (no message for ``stale_after_s``) is dropped and reopened;
every disconnection is reported as a gap (from the last message before it to
the first one after). A failed, missing or zero OI poll produces no record: it
is counted, never reported as "open interest fell to 0".
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import random
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Union

import numpy as np

from .adapters import Parser, native_symbol
from .events import events_from_records, iter_records
from .venues import base_asset

__all__ = [
    "Connection",
    "LiveClient",
    "Poller",
    "RecordWriter",
    "VenueFeed",
    "default_feeds",
    "register_cli",
    "replay",
    "snapshot_to",
]

log = logging.getLogger("heatcore.live")

Records = list[dict[str, Any]]
Outgoing = Union[str, Mapping[str, Any], Callable[[], Union[str, Mapping[str, Any]]]]


def _websockets() -> Any:
    try:
        import websockets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'heatcore live feeds need the "live" extra: '
            'pip install "heatcore[live]"  (installs websockets)'
        ) from exc
    return websockets


@dataclass
class Connection:
    """One websocket connection of a venue.

    Attributes
    ----------
    url : str
        Websocket URL (injectable: tests point it at 127.0.0.1).
    subscribe : sequence
        Messages sent after connecting (dicts are JSON-encoded; callables are
        called at send time, e.g. for a fresh timestamp).
    ping : (float, message), optional
        Application-level keep-alive some venues require (interval in s, message).
    name : str
        Label in stats and logs.
    """

    url: str
    subscribe: Sequence[Outgoing] = ()
    ping: tuple[float, Outgoing] | None = None
    name: str = "ws"


@dataclass
class Poller:
    """A REST open-interest poller (for venues whose streams carry no OI)."""

    url: str
    interval_s: float = 30.0
    name: str = "oi"


@dataclass
class VenueFeed:
    """Everything subscribed for one venue and one native symbol."""

    venue: str
    symbol: str
    connections: list[Connection] = field(default_factory=list)
    pollers: list[Poller] = field(default_factory=list)


def _now_s() -> int:
    return int(time.time())


def _gate(channel: str, sym: str | None) -> Callable[[], dict[str, Any]]:
    """Gate requests carry the current time, so they are built at send time."""

    def build() -> dict[str, Any]:
        msg: dict[str, Any] = {"time": _now_s(), "channel": channel}
        if sym is not None:
            msg.update(event="subscribe", payload=[sym])
        return msg

    return build


def default_feeds(
    venues: Iterable[str],
    symbol: str,
    *,
    urls: Mapping[str, str] | None = None,
    oi_urls: Mapping[str, str] | None = None,
    oi_interval_s: float = 30.0,
) -> list[VenueFeed]:
    """Public liquidation, price and open-interest subscriptions for ``symbol``'s
    base asset on each venue.

    Parameters
    ----------
    venues : iterable of str
        Registry ids with a live recipe: binance, bybit, okx, gate, bitmex,
        deribit, htx, bitfinex, kraken, dydx, hyperliquid (price and OI only:
        Hyperliquid has no public liquidation stream).
    symbol : str
        Any symbol of the base asset (``BTCUSDT``).
    urls, oi_urls : mapping, optional
        Override the websocket URL / OI poll URL per venue (tests, proxies).
    """
    base = base_asset(symbol)
    urls = dict(urls or {})
    oi_urls = dict(oi_urls or {})
    feeds: list[VenueFeed] = []
    for venue in venues:
        sym = native_symbol(venue, base)
        conns: list[Connection]
        polls: list[Poller] = []
        if venue == "binance":
            s = sym.lower()
            conns = [
                Connection(
                    f"wss://fstream.binance.com/stream?streams={s}@forceOrder/{s}@markPrice@1s"
                )
            ]
            polls = [
                Poller(f"https://fapi.binance.com/fapi/v1/openInterest?symbol={sym}", oi_interval_s)
            ]
        elif venue == "bybit":
            conns = [
                Connection(
                    "wss://stream.bybit.com/v5/public/linear",
                    [{"op": "subscribe", "args": [f"allLiquidation.{sym}", f"tickers.{sym}"]}],
                    ping=(20.0, {"op": "ping"}),
                )
            ]
        elif venue == "okx":
            conns = [
                Connection(
                    "wss://ws.okx.com:8443/ws/v5/public",
                    [
                        {
                            "op": "subscribe",
                            "args": [
                                {"channel": "liquidation-orders", "instType": "SWAP"},
                                {"channel": "mark-price", "instId": sym},
                                {"channel": "open-interest", "instId": sym},
                            ],
                        }
                    ],
                    ping=(25.0, "ping"),
                )
            ]
        elif venue == "gate":
            conns = [
                Connection(
                    "wss://fx-ws.gateio.ws/v4/ws/usdt",
                    [_gate("futures.public_liquidates", sym), _gate("futures.tickers", sym)],
                    ping=(20.0, _gate("futures.ping", None)),
                )
            ]
        elif venue == "bitmex":
            conns = [
                Connection(
                    f"wss://ws.bitmex.com/realtime?subscribe=liquidation:{sym},instrument:{sym}",
                    ping=(20.0, "ping"),
                )
            ]
        elif venue == "deribit":
            conns = [
                Connection(
                    "wss://www.deribit.com/ws/api/v2",
                    [
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "public/subscribe",
                            "params": {"channels": [f"trades.{sym}.100ms", f"ticker.{sym}.100ms"]},
                        }
                    ],
                )
            ]
        elif venue == "htx":
            conns = [
                Connection(
                    "wss://api.hbdm.com/linear-swap-notification",
                    [{"op": "sub", "topic": f"public.{sym}.liquidation_orders"}],
                    name="notify",
                ),
                Connection(
                    "wss://api.hbdm.com/linear-swap-ws",
                    [{"sub": f"market.{sym}.mark_price.kline.1min", "id": "mark"}],
                    name="market",
                ),
            ]
            polls = [
                Poller(
                    f"https://api.hbdm.com/linear-swap-api/v1/swap_open_interest?contract_code={sym}",
                    oi_interval_s,
                )
            ]
        elif venue == "bitfinex":
            conns = [
                Connection(
                    "wss://api-pub.bitfinex.com/ws/2",
                    [
                        {"event": "subscribe", "channel": "status", "key": "liq:global"},
                        {"event": "subscribe", "channel": "status", "key": f"deriv:{sym}"},
                    ],
                )
            ]
        elif venue == "kraken":
            conns = [
                Connection(
                    "wss://futures.kraken.com/ws/v1",
                    [
                        {"event": "subscribe", "feed": "trade", "product_ids": [sym]},
                        {"event": "subscribe", "feed": "ticker", "product_ids": [sym]},
                    ],
                )
            ]
        elif venue == "dydx":
            conns = [
                Connection(
                    "wss://indexer.dydx.trade/v4/ws",
                    [
                        {"type": "subscribe", "channel": "v4_trades", "id": sym},
                        {"type": "subscribe", "channel": "v4_markets"},
                    ],
                )
            ]
        elif venue == "hyperliquid":
            conns = [
                Connection(
                    "wss://api.hyperliquid.xyz/ws",
                    [
                        {
                            "method": "subscribe",
                            "subscription": {"type": "activeAssetCtx", "coin": sym},
                        }
                    ],
                    ping=(30.0, {"method": "ping"}),
                )
            ]
        else:
            raise ValueError(f"no live recipe for venue {venue!r}")
        if venue in urls:
            for c in conns:
                c.url = urls[venue] if len(conns) == 1 else f"{urls[venue].rstrip('/')}/{c.name}"
        if venue in oi_urls:
            polls = [Poller(oi_urls[venue], oi_interval_s)] if oi_urls[venue] else []
        feeds.append(VenueFeed(venue, sym, conns, polls))
    return feeds


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def _outgoing(m: Outgoing) -> str:
    v = m() if callable(m) else m
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def _htx_pong(raw: Any) -> str | None:
    """HTX drops clients that do not answer its pings."""
    if not isinstance(raw, (bytes, bytearray)):
        return None
    try:
        msg = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, EOFError, ValueError):
        return None
    if isinstance(msg, dict):
        if "ping" in msg:
            return json.dumps({"pong": msg["ping"]})
        if msg.get("op") == "ping":
            return json.dumps({"op": "pong", "ts": msg.get("ts")})
    return None


def snapshot_to(path: Union[str, os.PathLike]) -> Callable[[Any], None]:
    """A snapshot callback writing the engine to ``path``.

    Uses ``engine.save(path)`` when the engine has it (full state); otherwise
    writes the current heatmap as ``.npz`` (``prices``, ``long``, ``short``,
    ``price``, ``ts``). Written to a temporary file and renamed, so a reader
    never sees a half-written snapshot.
    """
    target = os.fspath(path)

    def write(engine: Any) -> None:
        tmp = target + ".tmp"
        if hasattr(engine, "save"):
            engine.save(tmp)
        else:
            m = engine.heatmap()
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    prices=m.prices,
                    long=m.long,
                    short=m.short,
                    price=np.float64(m.price),
                    ts=np.int64(time.time() * 1000),
                )
        os.replace(tmp, target)

    return write


class RecordWriter:
    """Append normalized records to a JSONL file (gzip if the name ends in ``.gz``)."""

    def __init__(self, path: Union[str, os.PathLike], flush_every_s: float = 5.0) -> None:
        p = os.fspath(path)
        self._fh: IO[str] = (
            gzip.open(p, "at", encoding="utf-8")
            if p.endswith(".gz")
            else open(p, "a", encoding="utf-8")
        )
        self._flush_every = flush_every_s
        self._last_flush = time.monotonic()
        self.written = 0

    def __call__(self, records: Records) -> None:
        for r in records:
            self._fh.write(json.dumps(r, separators=(",", ":")))
            self._fh.write("\n")
        self.written += len(records)
        if time.monotonic() - self._last_flush > self._flush_every:
            self._fh.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self._fh.close()


def replay(path: Union[str, os.PathLike], engine: Any) -> dict[str, Any]:
    """Ingest a recorded normalized stream (all venues and native symbols of the
    file, time-ordered) into ``engine``; returns the engine's ingest counts."""
    records = [rec for _, rec in iter_records(path)]
    return engine.ingest(events_from_records(records))


class LiveClient:
    """Runs venue feeds: parse every message, feed the engine, snapshot, record.

    Parameters
    ----------
    feeds : sequence of VenueFeed
        From :func:`default_feeds` (or hand-built, e.g. pointing at a local server).
    engine : heatcore.Engine, optional
        Receives every record as it arrives (``engine.ingest``).
    on_records : callable, optional
        Called with each non-empty batch of records (e.g. a :class:`RecordWriter`).
    snapshot : callable, optional
        ``snapshot(engine)``, called every ``snapshot_every_s`` and at exit
        (e.g. :func:`snapshot_to`).
    backoff_initial_s, backoff_max_s, jitter : float
        Reconnect delay ``min(max, initial * 2**attempt) * (1 + jitter * U(-1, 1))``;
        the attempt count resets once a connection delivers a message.
    stale_after_s : float
        A connection silent this long is closed and reopened.
    fetch : callable, optional
        ``fetch(url) -> bytes`` for the OI pollers (default: urllib).
    rng : random.Random, optional
        Jitter source (tests pass a seeded one).
    """

    def __init__(
        self,
        feeds: Sequence[VenueFeed],
        *,
        engine: Any = None,
        on_records: Callable[[Records], None] | None = None,
        snapshot: Callable[[Any], None] | None = None,
        snapshot_every_s: float = 300.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.25,
        stale_after_s: float = 60.0,
        fetch: Callable[[str], bytes] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not feeds:
            raise ValueError("no feeds")
        self.feeds = list(feeds)
        self.engine = engine
        self.on_records = on_records
        self.snapshot = snapshot
        self.snapshot_every_s = float(snapshot_every_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.jitter = float(jitter)
        self.stale_after_s = float(stale_after_s)
        self._fetch = fetch or _fetch
        self._rng = rng or random.Random()
        self.parsers: dict[str, Parser] = {
            f.venue: Parser(f.venue, symbols=[f.symbol]) for f in self.feeds
        }
        self.stats: dict[str, dict[str, Any]] = {
            f.venue: {
                "connects": 0,
                "disconnects": 0,
                "stale": 0,
                "messages": 0,
                "records": 0,
                "poll_errors": 0,
                "engine_rejected": 0,
                "gaps": [],
            }
            for f in self.feeds
        }
        self.snapshots = 0
        self._gap_open: dict[tuple[str, str], int] = {}
        self._last_msg: dict[tuple[str, str], int] = {}
        self._stop: asyncio.Event | None = None

    # -- public ----------------------------------------------------------------
    def backoff(self, attempt: int) -> float:
        """Delay before reconnect number ``attempt`` (0-based)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * (2.0 ** min(attempt, 30)))
        return max(0.0, base * (1.0 + self.jitter * self._rng.uniform(-1.0, 1.0)))

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread-unsafe; call from the event loop)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, duration_s: float | None = None) -> dict[str, dict[str, Any]]:
        """Run until :meth:`stop` or ``duration_s``; returns :attr:`stats`."""
        ws = _websockets()
        self._stop = asyncio.Event()
        tasks = [
            asyncio.ensure_future(self._connection(ws, f, c))
            for f in self.feeds
            for c in f.connections
        ]
        tasks += [asyncio.ensure_future(self._poller(f, p)) for f in self.feeds for p in f.pollers]
        if self.snapshot is not None and self.engine is not None:
            tasks.append(asyncio.ensure_future(self._snapshots()))
        try:
            if duration_s is not None:
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=duration_s)
                except asyncio.TimeoutError:
                    pass
            else:
                await self._stop.wait()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.snapshot is not None and self.engine is not None:
                self._write_snapshot()
        return self.stats

    def counters(self) -> dict[str, Any]:
        """Stats plus each venue parser's skip/error counters."""
        return {v: dict(s, parser=self.parsers[v].counters()) for v, s in self.stats.items()}

    # -- internals ---------------------------------------------------------------
    def _handle(self, feed: VenueFeed, key: tuple[str, str], raw: Any, recv_ms: int) -> None:
        st = self.stats[feed.venue]
        st["messages"] += 1
        if key in self._gap_open:
            start = self._gap_open.pop(key)
            st["gaps"].append({"connection": key[1], "from_ms": start, "to_ms": recv_ms})
            log.warning(
                "%s/%s: gap of %.1f s in the stream (reconnected)",
                key[0],
                key[1],
                (recv_ms - start) / 1000.0,
            )
        self._last_msg[key] = recv_ms
        records = self.parsers[feed.venue].feed(raw, recv_ms)
        if not records:
            return
        st["records"] += len(records)
        if self.on_records is not None:
            self.on_records(records)
        if self.engine is not None:
            counts = self.engine.ingest(events_from_records(records))
            st["engine_rejected"] += int(counts.get("rejected", 0))

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    async def _connection(self, ws: Any, feed: VenueFeed, conn: Connection) -> None:
        assert self._stop is not None
        key = (feed.venue, conn.name)
        st = self.stats[feed.venue]
        attempt = 0
        errors = (OSError, asyncio.TimeoutError, ws.exceptions.WebSocketException)
        while not self._stop.is_set():
            try:
                async with ws.connect(conn.url, open_timeout=10, max_size=2**23) as sock:
                    st["connects"] += 1
                    for m in conn.subscribe:
                        await sock.send(_outgoing(m))
                    last = time.monotonic()
                    next_ping = last + (conn.ping[0] if conn.ping else float("inf"))
                    while not self._stop.is_set():
                        now = time.monotonic()
                        if now - last > self.stale_after_s:
                            st["stale"] += 1
                            log.warning(
                                "%s/%s: no message for %.0f s, reconnecting",
                                *key,
                                self.stale_after_s,
                            )
                            break
                        if conn.ping and now >= next_ping:
                            await sock.send(_outgoing(conn.ping[1]))
                            next_ping = now + conn.ping[0]
                        try:
                            raw = await asyncio.wait_for(sock.recv(), timeout=0.25)
                        except asyncio.TimeoutError:
                            continue
                        last = time.monotonic()
                        attempt = 0
                        if feed.venue == "htx":
                            pong = _htx_pong(raw)
                            if pong is not None:
                                await sock.send(pong)
                        self._handle(feed, key, raw, int(time.time() * 1000))
            except asyncio.CancelledError:
                raise
            except errors as e:
                log.warning("%s/%s: connection lost: %s", *key, e)
            if self._stop.is_set():
                break
            st["disconnects"] += 1
            if key not in self._gap_open:
                self._gap_open[key] = self._last_msg.get(key, int(time.time() * 1000))
            delay = self.backoff(attempt)
            attempt += 1
            await self._sleep(delay)

    async def _poller(self, feed: VenueFeed, poll: Poller) -> None:
        assert self._stop is not None
        st = self.stats[feed.venue]
        while not self._stop.is_set():
            try:
                body = await asyncio.get_running_loop().run_in_executor(None, self._fetch, poll.url)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # network and HTTP errors: a gap, never a zero reading
                st["poll_errors"] += 1
                log.warning("%s: open-interest poll failed: %s", feed.venue, e)
            else:
                self._handle(feed, (feed.venue, poll.name), body, int(time.time() * 1000))
            await self._sleep(poll.interval_s)

    def _write_snapshot(self) -> None:
        assert self.snapshot is not None
        try:
            self.snapshot(self.engine)
            self.snapshots += 1
        except Exception:
            log.exception("snapshot failed")

    async def _snapshots(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            await self._sleep(self.snapshot_every_s)
            if not self._stop.is_set():
                self._write_snapshot()


# -- command line ---------------------------------------------------------------------


def _kv(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        venue, sep, url = item.partition("=")
        if not sep or not venue.strip():
            raise ValueError(f"{what} must look like VENUE=URL, got {item!r}")
        out[venue.strip()] = url.strip()
    return out


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--venues",
        default="binance,bybit,okx",
        help="comma-separated venue ids (default: binance,bybit,okx)",
    )
    p.add_argument("--symbol", default="BTCUSDT", help="symbol of the base asset (default BTCUSDT)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--url",
        action="append",
        metavar="VENUE=URL",
        help="override a venue's websocket URL (repeatable)",
    )
    p.add_argument(
        "--oi-url",
        action="append",
        metavar="VENUE=URL",
        help="override (or with an empty URL disable) a venue's OI poll URL",
    )
    p.add_argument(
        "--oi-every", type=float, default=30.0, help="OI poll interval in s (default 30)"
    )


def _feeds_from(args: argparse.Namespace) -> list[VenueFeed]:
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    if not venues:
        raise ValueError("--venues: no venue given")
    if args.duration is not None and not (args.duration > 0):
        raise ValueError(f"--duration must be positive, got {args.duration:g}")
    if not (args.oi_every > 0):
        raise ValueError(f"--oi-every must be positive, got {args.oi_every:g}")
    urls = _kv(args.url, "--url")
    oi_urls = _kv(args.oi_url, "--oi-url")
    for what, given in (("--url", urls), ("--oi-url", oi_urls)):
        extra = sorted(set(given) - set(venues))
        if extra:
            raise ValueError(f"{what} names {', '.join(extra)}, not in --venues")
    return default_feeds(venues, args.symbol, urls=urls, oi_urls=oi_urls,
                         oi_interval_s=args.oi_every)


def _run_client(client: LiveClient, duration: float | None) -> int:
    """Run until ``duration`` or Ctrl-C; print one line per venue. Returns the exit
    code: 0, 1 when no venue sent a single message, 130 when interrupted."""
    interrupted = False
    try:
        asyncio.run(client.run(duration))
    except KeyboardInterrupt:  # pragma: no cover - interactive; run() has cleaned up
        interrupted = True
    total = 0
    for venue, c in client.counters().items():
        log.info("%s: %s", venue, c)
        total += int(c["messages"])
        print(
            f"{venue}: messages={c['messages']} records={c['records']} "
            f"reconnects={c['disconnects']} gaps={len(c['gaps'])} "
            f"errors={c['parser']['errors']}"
        )
    if interrupted:
        return 130
    if total == 0:
        print("heatcore: error: no message received from any venue (unreachable or wrong URL?)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from .cli import _check_out
    from .engine import Engine

    if not (args.step > 0):
        raise ValueError(f"--step must be positive, got {args.step:g}")
    if not (args.snapshot_every > 0):
        raise ValueError(f"--snapshot-every must be positive, got {args.snapshot_every:g}")
    _check_out(args.snapshot, "--snapshot")
    feeds = _feeds_from(args)
    _websockets()
    engine = Engine(symbol=args.symbol, step=args.step, venues=[f.venue for f in feeds])
    client = LiveClient(
        feeds,
        engine=engine,
        snapshot=snapshot_to(args.snapshot),
        snapshot_every_s=args.snapshot_every,
    )
    rc = _run_client(client, args.duration)
    m = engine.heatmap()
    lo, sh = m.total()
    print(f"snapshot: {args.snapshot}  long {lo:,.0f} USD  short {sh:,.0f} USD")
    return rc


def _cmd_record(args: argparse.Namespace) -> int:
    from .cli import _check_out

    _check_out(args.out, "--out")
    feeds = _feeds_from(args)
    _websockets()
    writer = RecordWriter(args.out)
    try:
        rc = _run_client(LiveClient(feeds, on_records=writer), args.duration)
    finally:
        writer.close()
    print(f"{args.out}: {writer.written} records")
    return rc


def register_cli(subparsers: Any) -> None:
    """Add the ``live`` and ``record`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser(
        "live",
        help="stream venues into an engine and snapshot it",
        description="Subscribe to public venue feeds, feed the engine "
        "continuously and write periodic snapshots. Needs heatcore[live].",
    )
    _common_args(p)
    p.add_argument("--step", type=float, default=50.0, help="price bin width (default 50)")
    p.add_argument(
        "--snapshot",
        default="heatcore-live.hcsnap",
        help="snapshot file, written with Engine.save (read it with `heatcore inspect`)",
    )
    p.add_argument("--snapshot-every", type=float, default=300.0, help="seconds between snapshots")
    p.set_defaults(func=_cmd_live)
    r = subparsers.add_parser(
        "record",
        help="record the normalized stream to JSONL(.gz)",
        description="Write the venues' normalized records for later replay "
        "(heatcore.live.replay). Needs heatcore[live].",
    )
    _common_args(r)
    r.add_argument("--out", required=True, help="output file, e.g. btc.jsonl.gz")
    r.set_defaults(func=_cmd_record)


def _main(argv: Sequence[str] | None = None) -> int:
    """Tiny stand-alone runner (``python -m heatcore.live live ...``) until the
    package CLI wires :func:`register_cli` in."""
    parser = argparse.ArgumentParser(prog="python -m heatcore.live")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
