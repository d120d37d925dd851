"""Property tests: no adapter crashes on arbitrary JSON. The only exception a
parser may raise is the documented AdapterError, and every record it does
return is a valid normalized record (accepted by hc.events_from_records)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heatcore as hc
from heatcore.adapters import ADAPTERS, AdapterError, Parser

FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
VENUES = sorted(ADAPTERS)
SEEDS = {
    v: [m for c in json.loads((FIXTURES / f"{v}.json").read_text())["cases"] for m in c["messages"]]
    for v in VENUES
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "pos",
            "sell",
            "buy",
            "Buy",
            "Sell",
            "A",
            "B",
            "T",
            "MT",
            "LIQUIDATED",
            "liquidation",
            "0",
            "1767225600123",
            "-1",
            "NaN",
            "1e400",
            "hb",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=25,
)


def _check(venue, message, user=None):
    p = Parser(venue, user=user)
    try:
        recs = p.parse(message, 1767225600999)
    except AdapterError as e:
        assert e.reason and e.venue == venue
        recs = []
    for r in recs:
        assert r["venue"] == venue and r["kind"] in ("price", "oi", "liquidation")
        for k in ("price", "oi_usd", "notional_usd"):
            if k in r:
                assert math.isfinite(r[k]) and r[k] > 0, r
    hc.events_from_records(recs)  # raises if any record is not valid
    # lenient mode never raises
    assert isinstance(Parser(venue, user=user).feed(message, 1767225600999), list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.sampled_from(VENUES), message=json_values)
def test_arbitrary_json_only_raises_adapter_error(venue, message):
    _check(venue, message)
    _check(venue, json.dumps(message, allow_nan=True))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw):
    """A documented message with one field (at any depth) replaced by arbitrary JSON
    or deleted: reaches deep into each parser, unlike fully random JSON."""
    venue = draw(st.sampled_from(VENUES))
    msg = copy.deepcopy(draw(st.sampled_from(SEEDS[venue])))
    paths = [p for p in _paths(msg) if p]
    if paths:
        path = draw(st.sampled_from(paths))
        parent = msg
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return venue, msg


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(), user=st.sampled_from([None, "0x5c9000000000000000000000000000000000a480"]))
def test_mutated_documented_messages_only_raise_adapter_error(case, user):
    venue, msg = case
    _check(venue, msg, user)


@given(data=st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_arbitrary_bytes(data):
    for venue in VENUES:
        _check(venue, data)
        _check(venue, b"\x1f\x8b" + data)


NASTY = [None, "", "abc", -1, 0, [], {}, True, float("nan"), 1e400, "1e400", [None], {"a": 1}]


def test_every_field_of_every_documented_message_deleted_or_corrupted():
    """Exhaustive companion to the random tests: each field at any depth of each
    fixture message is deleted or replaced by each nasty value."""
    n = 0
    for venue in VENUES:
        for seed in SEEDS[venue]:
            for path in [p for p in _paths(seed) if p]:
                variants = NASTY + (["DELETE"] if isinstance(path[-1], str) else [])
                for value in variants:
                    msg = copy.deepcopy(seed)
                    parent = msg
                    for k in path[:-1]:
                        parent = parent[k]
                    if value == "DELETE":
                        del parent[path[-1]]
                    else:
                        parent[path[-1]] = value
                    for user in (None, "0x5c9000000000000000000000000000000000a480"):
                        _check(venue, msg, user)
                    n += 1
    assert n > 5000
