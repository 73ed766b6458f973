#!/usr/bin/env bash
# Set everything up and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test needs headless Chromium and its driver, from Debian's packages.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium/chromedriver missing and not root; the browser test will be skipped outside CI" >&2
  fi
fi
# Two pytest workers (one per CI core), whole files per worker so module fixtures are built once, and the
# files that share a session fit in one worker (tests/conftest.py); the suite is mostly single-threaded XLA
# compiles, which the second core overlaps (timings: README).
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PPZOO_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
