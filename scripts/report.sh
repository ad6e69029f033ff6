#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the HTML report on the bundled model and corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
interp report --out results/report "$@"
