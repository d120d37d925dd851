"""Adapter parsing throughput: messages per second per venue, with the standard
library's ``json`` and with ``orjson`` as the decoder (``Parser(loads=...)``).

Each venue parses the documented fixture messages of tests/fixtures/adapters/
(every non-error case, as JSON text the way a websocket delivers it), repeated
to 400 messages per round. Both decoders are timed in the same group and must
give identical records. ``extra_info`` carries messages/s.

    PYTHONPATH=src python3 -m pytest benchmarks/bench_adapters.py --benchmark-only \
        --benchmark-columns=mean,ops,rounds --benchmark-group-by=group
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heatcore.adapters import ADAPTERS, Parser

orjson = pytest.importorskip("orjson")

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "adapters"
VENUES = sorted(ADAPTERS)
RECV_TS = 1767225600999
N_MESSAGES = 400
USER = "0x5c9000000000000000000000000000000000a480"  # the Hyperliquid fixtures' liquidated user


def _messages(venue: str) -> list[str]:
    cases = json.loads((FIXTURES / f"{venue}.json").read_text())["cases"]
    texts = [
        m if isinstance(m, str) else json.dumps(m, separators=(",", ":"))
        for c in cases
        if not c.get("error") and not c.get("gzip")
        for m in c["messages"]
    ]
    return (texts * (N_MESSAGES // len(texts) + 1))[:N_MESSAGES]


MESSAGES = {v: _messages(v) for v in VENUES}
DECODERS = {"json": json.loads, "orjson": orjson.loads}


def _parse_all(venue: str, loads) -> list[dict]:
    p = Parser(venue, user=USER, loads=loads)
    out: list[dict] = []
    for m in MESSAGES[venue]:
        out += p.feed(m, RECV_TS)
    assert not p.errors, p.errors
    return out


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("venue", VENUES)
def test_parse_throughput(benchmark, venue, decoder):
    benchmark.group = f"adapters-{venue}"
    benchmark.extra_info["messages"] = N_MESSAGES
    records = benchmark(_parse_all, venue, DECODERS[decoder])
    assert records == _parse_all(venue, json.loads)  # same answer with either decoder
    assert any(r["kind"] == "liquidation" for r in records)
    if benchmark.stats is not None:
        benchmark.extra_info["messages_per_s"] = N_MESSAGES / benchmark.stats.stats.mean


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_decode_only(benchmark, decoder):
    """Decoding alone, all venues' messages: the part orjson can speed up."""
    benchmark.group = "adapters-decode-only"
    texts = [m for v in VENUES for m in MESSAGES[v] if m not in ("ping", "pong")]
    loads = DECODERS[decoder]
    out = benchmark(lambda: [loads(t) for t in texts])
    assert out == [json.loads(t) for t in texts]
