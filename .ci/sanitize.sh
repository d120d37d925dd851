#!/usr/bin/env bash
# Build the C++ core and its unit tests with AddressSanitizer and
# UndefinedBehaviorSanitizer in a separate build directory, and run them.
# Any sanitizer report or failed check fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HEATCORE_SANITIZE_BUILD:-build/sanitize}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHEATCORE_SANITIZE=ON -DHEATCORE_CPP_TESTS=ON -DHEATCORE_WERROR=ON -DHEATCORE_PYTHON=OFF
cmake --build "$build" --parallel "${HEATCORE_JOBS:-2}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$build/cpp/heatcore_cpp_tests"
