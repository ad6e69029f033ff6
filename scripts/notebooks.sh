#!/usr/bin/env bash
# Open the notebooks: set up (idempotent, as scripts/setup.sh), add JupyterLab at the version
# pinned in requirements.lock (the `notebooks` extra), and start it on notebooks/. Arguments go
# to JupyterLab, e.g. `bash scripts/notebooks.sh --port 8890 --no-browser`. Plotly figures and
# the token views render inline with no network (plotly's JupyterLab renderer ships in plotly).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${INTERP_VENV:-.venv}
STAMP=$VENV/.interp-notebooks-stamp
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[notebooks] installing JupyterLab (the locked version)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[notebooks]"
  echo "$want" > "$STAMP"
fi
. "$VENV/bin/activate"
root=()
if [ "$(id -u)" = "0" ]; then root=(--allow-root); fi  # containers and CI machines run as root
exec jupyter lab --notebook-dir=notebooks "${root[@]}" "$@"
