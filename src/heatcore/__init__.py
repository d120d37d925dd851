"""heatcore: liquidation heatmaps for crypto perpetual futures that learn the
leverage mix, the venue mechanics and cascades from observed liquidations."""

from __future__ import annotations

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "heatcore's compiled core (heatcore._core) is missing. Install the package with "
        "`pip install .` from a source checkout (it builds the C++ core with CMake), "
        "not by adding src/ to PYTHONPATH."
    ) from exc

from .engine import CASCADE_DTYPE, Engine, HeatMap, InputError
from .events import (
    EVENT_DTYPE,
    EventsFormatError,
    events_from_records,
    read_events,
    read_events_by_symbol,
    write_events,
)
from .venues import DEFAULT_TIERS, VENUES, get_venue, register_venue

__version__ = "0.1.0"

__all__ = [
    "CASCADE_DTYPE",
    "DEFAULT_TIERS",
    "EVENT_DTYPE",
    "VENUES",
    "Engine",
    "EventsFormatError",
    "HeatMap",
    "InputError",
    "__version__",
    "events_from_records",
    "get_venue",
    "read_events",
    "read_events_by_symbol",
    "register_venue",
    "write_events",
]
