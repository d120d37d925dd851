"""Live client against a local websocket server on 127.0.0.1 (never a real
exchange): reconnects after a dropped connection and ends with the same engine
state as an offline replay of the same messages; OI pollers never turn a failed
or zero reading into "open interest fell to 0"; snapshots and recordings."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import numpy as np
import pytest

import heatcore as hc
from heatcore import live
from heatcore.adapters import Parser

websockets = pytest.importorskip("websockets")

T0 = 1767225600000
VENUES = ("binance", "bybit", "okx")


def _stream(n_seconds: int = 240, seed: int = 7) -> list[tuple[str, object]]:
    """A synthetic but venue-native message sequence, in time order: a random-walk
    price, marks every second, OI every 10 s (growing), and liquidations when price
    falls or rises fast, per venue in each venue's own layout (exchanges.md §2)."""
    rng = np.random.default_rng(seed)
    price = 87000.0
    seq: list[tuple[str, object]] = [
        ("bybit", {"success": True, "ret_msg": "", "conn_id": "x", "op": "subscribe"}),
        ("okx", {"event": "subscribe", "arg": {"channel": "mark-price"}, "connId": "y"}),
    ]

    class _Out(dict):
        def __missing__(self, venue):
            return _Append(venue)

    class _Append:
        def __init__(self, venue):
            self.venue = venue

        def append(self, m):
            seq.append((self.venue, m))

    out = _Out()
    oi_btc = 20000.0
    for i in range(n_seconds):
        ts = T0 + i * 1000
        step = float(rng.normal(0, 60))
        price = max(1000.0, price + step)
        p = round(price, 1)
        out["binance"].append(
            {
                "e": "markPriceUpdate",
                "E": ts,
                "s": "BTCUSDT",
                "p": f"{p:.2f}",
                "i": f"{p:.2f}",
                "P": f"{p:.2f}",
                "r": "0.0001",
                "T": T0 + 8 * 3600000,
            }
        )
        out["bybit"].append(
            {
                "topic": "tickers.BTCUSDT",
                "type": "delta",
                "cs": i,
                "ts": ts + 10,
                "data": {"symbol": "BTCUSDT", "markPrice": f"{p:.2f}"},
            }
        )
        out["okx"].append(
            {
                "arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
                "data": [
                    {
                        "instType": "SWAP",
                        "instId": "BTC-USDT-SWAP",
                        "markPx": f"{p}",
                        "ts": str(ts + 20),
                    }
                ],
            }
        )
        if i % 10 == 0:
            oi_btc *= 1.0 + float(rng.uniform(-0.002, 0.01))
            out["bybit"].append(
                {
                    "topic": "tickers.BTCUSDT",
                    "type": "delta",
                    "cs": i,
                    "ts": ts + 30,
                    "data": {"symbol": "BTCUSDT", "openInterestValue": f"{oi_btc * p:.2f}"},
                }
            )
            out["okx"].append(
                {
                    "arg": {"channel": "open-interest", "instId": "BTC-USDT-SWAP"},
                    "data": [
                        {
                            "instType": "SWAP",
                            "instId": "BTC-USDT-SWAP",
                            "oi": f"{oi_btc * 50:.0f}",
                            "oiCcy": f"{oi_btc / 2:.3f}",
                            "oiUsd": f"{oi_btc / 2 * p:.2f}",
                            "ts": str(ts + 40),
                        }
                    ],
                }
            )
        if abs(step) > 70:
            side_order = "SELL" if step < 0 else "BUY"  # a fall liquidates longs
            qty = round(float(rng.uniform(0.01, 2.0)), 3)
            out["binance"].append(
                {
                    "e": "forceOrder",
                    "E": ts + 50,
                    "o": {
                        "s": "BTCUSDT",
                        "S": side_order,
                        "o": "LIMIT",
                        "f": "IOC",
                        "q": f"{qty}",
                        "p": f"{p - 20:.2f}",
                        "ap": f"{p - 10:.2f}",
                        "X": "FILLED",
                        "l": f"{qty}",
                        "z": f"{qty}",
                        "T": ts + 45,
                    },
                }
            )
            out["bybit"].append(
                {
                    "topic": "allLiquidation.BTCUSDT",
                    "type": "snapshot",
                    "ts": ts + 60,
                    "data": [
                        {
                            "T": ts + 55,
                            "s": "BTCUSDT",
                            "S": "Buy" if step < 0 else "Sell",
                            "v": f"{qty / 2:.4f}",
                            "p": f"{p:.1f}",
                        }
                    ],
                }
            )
            out["okx"].append(
                {
                    "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
                    "data": [
                        {
                            "instId": "BTC-USDT-SWAP",
                            "instType": "SWAP",
                            "details": [
                                {
                                    "side": "sell" if step < 0 else "buy",
                                    "posSide": "net",
                                    "bkPx": f"{p}",
                                    "sz": f"{int(qty * 100) + 1}",
                                    "bkLoss": "0",
                                    "ccy": "",
                                    "ts": str(ts + 65),
                                }
                            ],
                        }
                    ],
                }
            )
        if i == 3:
            out["okx"].append("pong")
    return seq


def _by_venue(seq):
    out: dict[str, list] = {v: [] for v in VENUES}
    for v, m in seq:
        out[v].append(m)
    return out


class ReplayServer:
    """Serves ``seq`` (time-ordered ``(venue, message)``) on ws://127.0.0.1:PORT/<venue>.

    Lockstep: the next message goes out only once the client has handled the
    previous one of that venue (``processed(venue)``), so the engine sees one
    global time order however the connections are scheduled; an offline replay
    of the same messages is then comparable bit for bit. The first connection of
    each venue in ``drop`` is closed abnormally after its ``drop_after``-th
    message; the rest waits for the client to reconnect.
    """

    def __init__(self, seq, processed, drop=(), drop_after=0, after_each=None):
        self.after_each = after_each
        self.seq = seq
        self.processed = processed
        self.drop = set(drop)
        self.drop_after = drop_after
        self.connections = {v: 0 for v, _ in seq}
        self.current: dict[str, object] = {}
        self.sent = {v: 0 for v, _ in seq}
        self.server = None
        self.port = 0
        self.done = asyncio.Event()

    async def handler(self, ws):
        path = ws.request.path if hasattr(ws, "request") else ws.path
        venue = path.strip("/")
        self.connections[venue] += 1
        self.current[venue] = ws
        await ws.wait_closed()

    async def coordinate(self):
        for venue, m in self.seq:
            while True:
                ws = self.current.get(venue)
                if ws is not None and ws.state.name == "OPEN":
                    break
                await asyncio.sleep(0.005)
            await ws.send(m if isinstance(m, str) else json.dumps(m))
            self.sent[venue] += 1
            while self.processed(venue) < self.sent[venue]:
                await asyncio.sleep(0.001)
            if self.after_each is not None:
                self.after_each(venue, m)
            if (
                venue in self.drop
                and self.connections[venue] == 1
                and self.sent[venue] == self.drop_after
            ):
                self.current[venue] = None
                await ws.close(code=1011, reason="simulated drop")
        self.done.set()

    async def __aenter__(self):
        self.server = await websockets.serve(self.handler, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def _engine():
    # a wide ts tolerance: the venues' streams interleave differently live (one
    # reconnects while the others run on) and offline (sorted by time)
    return hc.Engine(symbol="BTCUSDT", step=50.0, venues=list(VENUES), ts_tolerance_ms=10**9)


def _offline(seq) -> hc.Engine:
    records = []
    parsers = {v: Parser(v, symbols=[hc.adapters.native_symbol(v, "BTC")]) for v in VENUES}
    for venue, m in seq:
        records += parsers[venue].parse(m, T0)
    eng = _engine()
    counts = eng.ingest(hc.events_from_records(records))  # sorted by ts
    assert counts["rejected"] == 0, counts
    return eng


async def _run_live(
    seq, drop, drop_after, tmp_path=None, on_records=None, after_each=None, holder=None
):
    box = {}
    srv = ReplayServer(
        seq, lambda v: box["client"].stats[v]["messages"], drop, drop_after, after_each
    )
    async with srv:
        feeds = live.default_feeds(
            VENUES,
            "BTCUSDT",
            urls={v: f"ws://127.0.0.1:{srv.port}/{v}" for v in VENUES},
            oi_urls={"binance": ""},
        )
        eng = _engine()
        if holder is not None:
            holder["eng"] = eng
        snap = None if tmp_path is None else live.snapshot_to(tmp_path / "snap.npz")
        client = live.LiveClient(
            feeds,
            engine=eng,
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
            jitter=0.5,
            rng=random.Random(1),
            snapshot=snap,
            snapshot_every_s=0.2,
            on_records=on_records,
        )
        box["client"] = client

        async def until_done():
            await srv.coordinate()
            client.stop()

        coordinator = asyncio.ensure_future(until_done())
        await asyncio.wait_for(client.run(duration_s=30.0), timeout=40.0)
        assert coordinator.done() and srv.done.is_set(), "the replay did not finish"
        return client, eng, srv


def test_live_reconnects_and_matches_offline_replay(tmp_path):
    seq = _stream()
    messages = _by_venue(seq)
    # continuous feeding: once a message is handled, the engine already holds it
    # (its newest event time is the newest record time received so far)
    newest = {"ts": None, "checked": 0}

    def on_records(records):
        newest["ts"] = max([newest["ts"] or 0] + [r["ts"] for r in records])

    def after_each(venue, m):
        if newest["ts"] is not None:
            assert box["eng"].diagnostics()["last_ts"] == newest["ts"]
            newest["checked"] += 1

    box = {}
    client, eng, srv = asyncio.run(
        _run_live(
            seq,
            drop=("bybit", "okx"),
            drop_after=len(messages["bybit"]) // 2,
            tmp_path=tmp_path,
            on_records=on_records,
            after_each=after_each,
            holder=box,
        )
    )
    assert newest["checked"] > len(seq) - 5
    # every message arrived exactly once, through a second connection where dropped
    for v in VENUES:
        assert client.stats[v]["messages"] == len(messages[v]), client.counters()
        assert client.parsers[v].errors == {}, client.parsers[v].errors
    assert srv.connections == {"binance": 1, "bybit": 2, "okx": 2}
    for v in ("bybit", "okx"):
        st = client.stats[v]
        assert st["connects"] == 2 and st["disconnects"] == 1
        assert len(st["gaps"]) == 1 and st["gaps"][0]["to_ms"] >= st["gaps"][0]["from_ms"]
    assert client.stats["binance"]["gaps"] == [] and client.stats["binance"]["disconnects"] == 0
    assert all(s["engine_rejected"] == 0 for s in client.stats.values())

    ref = _offline(seq)
    for venue in (None, *VENUES):
        a, b = eng.heatmap(venue), ref.heatmap(venue)
        if venue != "binance":  # binance OI comes from the REST poller, disabled here
            assert a.long.sum() > 0 and a.short.sum() > 0
        np.testing.assert_array_equal(a.prices, b.prices)
        np.testing.assert_allclose(a.long, b.long, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(a.short, b.short, rtol=1e-9, atol=1e-6)
    for v in VENUES:
        da, db = eng.diagnostics(v), ref.diagnostics(v)
        assert da["liquidations"] > 0 and da.keys() == db.keys()
        for k in da:  # numbers to rounding; tuples (untested bands) and None exactly
            if isinstance(da[k], (int, float)) and not isinstance(da[k], bool):
                assert da[k] == pytest.approx(db[k], rel=1e-9), k
            else:
                assert da[k] == db[k], k
        for side in ("long", "short"):
            np.testing.assert_allclose(
                eng.leverage_mix(v, side)[1], ref.leverage_mix(v, side)[1], rtol=1e-9
            )
    # periodic + final snapshot: the engine's full state (Engine.save, heatcore.persist)
    assert client.snapshots >= 1
    snap = hc.Engine.load(tmp_path / "snap.npz")
    m, z = eng.heatmap(), snap.heatmap()
    np.testing.assert_array_equal(z.long, m.long)
    np.testing.assert_array_equal(z.short, m.short)


def test_record_then_replay_matches_offline(tmp_path):
    seq = _stream(n_seconds=60, seed=3)
    out = tmp_path / "rec.jsonl.gz"
    writer = live.RecordWriter(out)
    asyncio.run(_run_live(seq, drop=("binance",), drop_after=20, on_records=writer))
    writer.close()
    eng = _engine()
    counts = live.replay(out, eng)
    assert counts["rejected"] == 0
    ref = _offline(seq)
    np.testing.assert_allclose(eng.heatmap().long, ref.heatmap().long, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(eng.heatmap().short, ref.heatmap().short, rtol=1e-9, atol=1e-6)
    assert writer.written == sum(1 for _ in hc.events.iter_records(out))


def test_oi_poller_never_reports_failures_as_zero():
    """Binance REST OI: a good reading, an HTTP failure, a zero, a missing field
    and garbage. Only the good reading reaches the engine; its OI stays put."""
    bodies = [
        b'{"openInterest":"10000.0","symbol":"BTCUSDT","time":1767225602000}',
        OSError("HTTP 503"),
        b'{"openInterest":"0","symbol":"BTCUSDT","time":1767225603000}',
        b'{"symbol":"BTCUSDT","time":1767225604000}',
        b"<html>rate limited</html>",
    ]
    calls = []
    box = {}

    def fetch(url):  # runs in the executor thread
        while "c" not in box or box["c"].stats["binance"]["messages"] < 1:
            time.sleep(0.005)  # first poll after the mark price, so the test is deterministic
        calls.append(url)
        item = bodies[min(len(calls) - 1, len(bodies) - 1)]
        if isinstance(item, Exception):
            raise item
        return item

    async def main():
        # a local server gives the mark price the poller converts with
        mark = {
            "e": "markPriceUpdate",
            "E": 1767225601000,
            "s": "BTCUSDT",
            "p": "87000.00",
            "i": "87000",
            "P": "87000",
            "r": "0",
            "T": 0,
        }
        srv = ReplayServer([("binance", mark)], lambda v: box["c"].stats[v]["messages"])
        async with srv:
            feeds = live.default_feeds(
                ["binance"],
                "BTCUSDT",
                urls={"binance": f"ws://127.0.0.1:{srv.port}/binance"},
                oi_interval_s=0.01,
            )
            feeds[0].pollers[0].url = "http://127.0.0.1:1/never-contacted"
            eng = hc.Engine(symbol="BTCUSDT", venues=["binance"])
            client = box["c"] = live.LiveClient(feeds, engine=eng, fetch=fetch)

            async def until_done():
                await srv.coordinate()
                while len(calls) < len(bodies) + 1:
                    await asyncio.sleep(0.01)
                client.stop()

            w = asyncio.ensure_future(until_done())
            await asyncio.wait_for(client.run(duration_s=10), timeout=15)
            w.cancel()
            return client, eng

    client, eng = asyncio.run(main())
    p = client.parsers["binance"]
    diag = eng.diagnostics("binance")
    assert client.stats["binance"]["poll_errors"] >= 1
    assert p.skipped.get("oi_zero", 0) >= 1
    assert p.errors.get("unknown_message", 0) >= 1  # body without openInterest
    assert p.errors.get("bad_json", 0) >= 1
    assert eng.diagnostics()["rejected"]["non_positive_size"] == 0  # no zero ever sent
    assert diag["oi_updates"] == 1
    assert diag["oi_base"] == pytest.approx(10000.0)  # still the good reading


def test_backoff_grows_caps_and_jitters():
    c = live.LiveClient(
        live.default_feeds(["bybit"], "BTCUSDT"),
        backoff_initial_s=0.5,
        backoff_max_s=8.0,
        jitter=0.25,
        rng=random.Random(0),
    )
    delays = [c.backoff(a) for a in range(10)]
    for a, d in enumerate(delays):
        base = min(8.0, 0.5 * 2**a)
        assert 0.75 * base <= d <= 1.25 * base
    assert len({round(d, 9) for d in delays[6:]}) == 4  # capped, yet not synchronised


def test_snapshot_prefers_engine_save(tmp_path):
    class WithSave:
        def __init__(self):
            self.saved = []

        def save(self, path):
            self.saved.append(path)
            with open(path, "w") as fh:
                fh.write("state")

    e = WithSave()
    live.snapshot_to(tmp_path / "x.bin")(e)
    assert (tmp_path / "x.bin").read_text() == "state" and len(e.saved) == 1


def test_default_feeds_cover_every_adapter_and_inject_urls():
    feeds = live.default_feeds(
        list(hc.adapters.ADAPTERS),
        "ETHUSDT",
        urls={"htx": "ws://127.0.0.1:9/htx", "okx": "ws://127.0.0.1:9/o"},
    )
    by = {f.venue: f for f in feeds}
    assert set(by) == set(hc.adapters.ADAPTERS)
    assert by["okx"].connections[0].url == "ws://127.0.0.1:9/o"
    assert [c.url for c in by["htx"].connections] == [
        "ws://127.0.0.1:9/htx/notify",
        "ws://127.0.0.1:9/htx/market",
    ]
    assert by["okx"].symbol == "ETH-USDT-SWAP" and by["kraken"].symbol == "PF_ETHUSD"
    with pytest.raises(ValueError):
        live.default_feeds(["bitget"], "BTCUSDT")


def test_register_cli_adds_live_and_record():
    parser = argparse.ArgumentParser(prog="heatcore")
    sub = parser.add_subparsers(dest="cmd")
    live.register_cli(sub)
    a = parser.parse_args(
        [
            "live",
            "--venues",
            "binance,bybit,okx",
            "--symbol",
            "BTCUSDT",
            "--url",
            "bybit=ws://127.0.0.1:1/x",
            "--duration",
            "1",
        ]
    )
    assert a.func is live._cmd_live and a.venues == "binance,bybit,okx" and a.duration == 1.0
    feeds = live._feeds_from(a)
    assert [f.venue for f in feeds] == ["binance", "bybit", "okx"]
    assert feeds[1].connections[0].url == "ws://127.0.0.1:1/x"
    r = parser.parse_args(["record", "--out", "x.jsonl.gz"])
    assert r.func is live._cmd_record and r.out == "x.jsonl.gz"


def test_missing_websockets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "websockets", None)
    with pytest.raises(ImportError, match=r'pip install "heatcore\[live\]"'):
        live._websockets()


def test_cli_live_and_record_against_local_server(tmp_path):
    """The argparse commands end to end, pointed at 127.0.0.1 (bybit only: no REST
    poller, so nothing real is ever contacted)."""
    seq = [(v, m) for v, m in _stream(n_seconds=30, seed=5) if v == "bybit"]

    async def serve_forever_loop(args_list):
        box = {"n": 0}

        async def handler(ws):
            for _, m in seq:
                await ws.send(json.dumps(m))
            await ws.wait_closed()

        server = await websockets.serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for argv in args_list:
                argv = [a.replace("PORT", str(port)) for a in argv]
                # the commands call asyncio.run themselves: run them in a thread
                box["n"] += await asyncio.get_running_loop().run_in_executor(None, live._main, argv)
        finally:
            server.close()
            await server.wait_closed()
        return box["n"]

    snap = tmp_path / "live.npz"
    out = tmp_path / "rec.jsonl.gz"
    common = [
        "--venues",
        "bybit",
        "--symbol",
        "BTCUSDT",
        "--url",
        "bybit=ws://127.0.0.1:PORT/bybit",
        "--duration",
        "1.5",
    ]
    rc = asyncio.run(
        serve_forever_loop(
            [
                ["live", *common, "--snapshot", str(snap), "--snapshot-every", "0.5"],
                ["record", *common, "--out", str(out)],
            ]
        )
    )
    assert rc == 0
    z = hc.Engine.load(snap).heatmap()  # the engine's snapshot (Engine.save)
    assert z.long.sum() > 0 and z.short.sum() > 0
    recs = [r for _, r in hc.events.iter_records(out)]
    expected = []
    p = Parser("bybit", symbols=["BTCUSDT"])
    for _, m in seq:
        expected += p.parse(m, T0)
    assert recs == expected


def test_silent_connection_is_reopened():
    """A connection that stops talking (no close frame, no data) is detected as
    stale and reopened; the outage is reported as a gap."""
    mark = {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "cs": 1,
        "ts": T0,
        "data": {"symbol": "BTCUSDT", "markPrice": "87000"},
    }

    async def main():
        opened = []

        async def handler(ws):
            opened.append(ws)
            await ws.send(json.dumps(dict(mark, ts=T0 + len(opened))))
            await asyncio.sleep(30)  # then silence

        server = await websockets.serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        feeds = live.default_feeds(["bybit"], "BTCUSDT", urls={"bybit": f"ws://127.0.0.1:{port}/b"})
        feeds[0].connections[0].ping = None
        client = live.LiveClient(feeds, stale_after_s=0.4, backoff_initial_s=0.01, jitter=0.0)

        async def until_two():
            while client.stats["bybit"]["messages"] < 2:
                await asyncio.sleep(0.01)
            client.stop()

        w = asyncio.ensure_future(until_two())
        await asyncio.wait_for(client.run(duration_s=10), timeout=15)
        w.cancel()
        server.close()
        return client

    client = asyncio.run(main())
    st = client.stats["bybit"]
    assert st["stale"] >= 1 and st["connects"] >= 2 and len(st["gaps"]) >= 1
    assert st["gaps"][0]["to_ms"] - st["gaps"][0]["from_ms"] >= 400
