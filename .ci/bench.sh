#!/usr/bin/env bash
# Run every benchmark once, untimed (--benchmark-disable), so that the suite and
# its answer checks (core vs numpy reference) stay correct. Timing runs are
# `python -m pytest benchmarks --benchmark-only` (README, "Performance").
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest benchmarks --benchmark-disable -q -p no:cacheprovider "$@"
