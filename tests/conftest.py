from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import heatcore as hc
from heatcore.replay import as_events
from heatcore.sim import simulate

# The numpy reference models live in benchmarks/ (not shipped); tests compare against them.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real recordings in ../shared/data (skips when the checkout has none)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def simulated(hours: float, seed: int, venues: Sequence[str]) -> hc.sim.SimResult:
    """A simulated market whose events are a plain :data:`heatcore.EVENT_DTYPE` array
    (the simulator's array may carry a packed copy of the dtype)."""
    res = simulate(hours=hours, seed=seed, venues=list(venues))
    return dataclasses.replace(res, events=as_events(res.events))
