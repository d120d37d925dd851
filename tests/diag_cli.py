"""The command line shared by the diagnostic scripts in tests/ (eval_*.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence


def seeds_table(doc: str, argv: list[str] | None, columns: Sequence[str],
                scores: Callable[[int, float], Mapping[str, Sequence[float]]]) -> int:
    """Parse ``--seeds`` and ``--hours``, then print a Markdown table: one row per
    seed and entry of ``scores(seed, hours)``, under ``columns`` (the first names
    the entries)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--hours", type=float, default=24.0)
    a = p.parse_args(argv)
    print("| seed | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * (len(columns) - 1))
    for seed in a.seeds:
        for name, values in scores(seed, a.hours).items():
            print(f"| {seed} | {name} | " + " | ".join(f"{x:.3f}" for x in values) + " |")
    return 0
