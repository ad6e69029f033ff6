"""Execute the notebooks on small settings and keep the executed copies for the docs site.

    python scripts/run_notebooks.py                 # every notebook -> build/notebooks/
    python scripts/run_notebooks.py 01_quickstart   # some of them

Small settings are applied by rewriting the size knobs (``NAME = value`` lines) of each
notebook's first code cell (:data:`SETTINGS`), so the notebook executed is exactly the one a
reader opens. It runs in the notebooks folder, as a reader's would. The executed copy goes to
``build/notebooks/<name>`` with the sha256 of the source notebook and the knobs in its
metadata (``interp_executed``): the docs build (scripts/mkdocs_hooks.py) shows a copy only
while it matches the notebook, and executes the notebook itself otherwise. The test suite
(tests/integration/test_notebooks.py) executes through :func:`execute`, so a test run leaves
fresh copies for the docs.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"

# notebook -> (size knobs for the tests and the docs, runs the bundled model)
SETTINGS: dict[str, tuple[dict[str, object], bool]] = {
    "01_quickstart.ipynb": (dict(N_TOKENS=32, N_WINDOWS=3, VIEW_LAYERS=[10], MAX_DISTANCE=4,
                                 LENS_WINDOWS=24), True),
    "02_future_loss_gradients.ipynb": (
        dict(N_TOKENS=16, N_WINDOWS=1, DISTANCE_TOKENS=12, MAX_DISTANCE=6), True),
    "03_lookahead_probes.ipynb": (
        dict(N_WINDOWS=16, N_TOKENS=24, LAYERS=[15, 29], OFFSETS=[1, 2], EVAL_POSITIONS=60,
             PROMPT_LAYERS=[15], PROMPT_STEPS=2), True),
    "04_registers_and_sinks.ipynb": (
        dict(N_TOKENS=32, N_WINDOWS=2, EVICTION_TOKENS=48, WINDOW=16, SINKS=[0, 1]), True),
    "05_toy_tasks.ipynb": (
        dict(PRECACHE_STEPS=6, PARITY_STEPS=6, PARITY_BITS=4, PAUSES=[0, 2], EVAL_EVERY=3,
             FILLER_STEPS=3),
        False),
    "06_attribution_patching.ipynb": (
        dict(LAYERS=[20], SITES=["k", "resid_post"], TARGET_LAYERS=[0]), True),
    "07_pause_training.ipynb": (
        dict(CHECKPOINT=None, SHORT_STEPS=1, N_TOKENS=12, N_WINDOWS=1, SEEDS=[0], LAYERS=[0, 29]),
        True),
    "08_positive_controls.ipynb": (
        dict(N_BITS=4, STEPS=4, SEEDS=[0], LOOKAHEAD_STEPS=4, PLANNING_STEPS=4, N_EXAMPLES=64), False),
    "09_learned_pauses.ipynb": (
        dict(OPTIONS=dict(n_min=2, n_max=5, d_model=16, steps=6, batch_size=32, eval_size=64,
                          lam_max=0.2),
             LAMS=[0.0, 0.2], BITS="10110", N_EXAMPLES=64), False),
}


def source_digest(name: str) -> str:
    """sha256 of the committed notebook: an executed copy shows this source."""
    return hashlib.sha256((NOTEBOOKS / name).read_bytes()).hexdigest()


def with_knobs(nb: nbformat.NotebookNode, knobs: dict[str, object]) -> nbformat.NotebookNode:
    """The notebook with the knobs of its first code cell set to ``knobs``."""
    cell = next(c for c in nb.cells if c.cell_type == "code")
    src = cell.source
    for name, value in knobs.items():
        src, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value!r}  ", src, flags=re.M)
        if n != 1:
            raise ValueError(f"knob {name} is not set in the first code cell")
    cell.source = src
    return nb


def execute(name: str, *, timeout: int = 600) -> nbformat.NotebookNode:
    """Run one notebook top to bottom on its small settings; keep the executed copy under
    build/notebooks/ and return it."""
    knobs, _ = SETTINGS[name]
    digest = source_digest(name)
    nb = with_knobs(nbformat.read(NOTEBOOKS / name, as_version=4), knobs)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    nb.metadata["interp_executed"] = dict(
        source_sha256=digest, knobs={k: repr(v) for k, v in knobs.items()},
        executed=datetime.now(UTC).isoformat(timespec="seconds"))
    EXECUTED.mkdir(parents=True, exist_ok=True)
    tmp = EXECUTED / (name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(EXECUTED / name)
    return nb


def executed_copy(name: str) -> nbformat.NotebookNode | None:
    """The executed copy of ``name`` when it shows the current source, else ``None``."""
    path = EXECUTED / name
    if not path.is_file():
        return None
    nb = nbformat.read(path, as_version=4)
    made = nb.metadata.get("interp_executed", {})
    return nb if made.get("source_sha256") == source_digest(name) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks, with or without .ipynb (default: all)")
    args = parser.parse_args(argv)
    names = [n if n.endswith(".ipynb") else n + ".ipynb" for n in args.names] or sorted(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown notebook(s) {', '.join(unknown)}; choose among "
                     f"{', '.join(sorted(SETTINGS))}")
    for name in names:
        print(f"[notebooks] executing {name}", flush=True)
        execute(name)
    print(f"[notebooks] executed copies in {EXECUTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
