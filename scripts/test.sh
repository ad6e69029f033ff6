#!/usr/bin/env bash
# Set up (idempotent) and run every check: ruff lint, then the whole test suite, the slow tier
# on the bundled model and the executed notebooks included. The same command runs in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check interp tests benchmarks
python -m pytest "$@"
