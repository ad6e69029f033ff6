"""The notebooks: each runs top to bottom (executed with nbclient on small settings), is thin
(imports interp, defines no logic), opens with a markdown cell saying what it shows, and is
committed without outputs.

Small settings are applied by rewriting the size knobs (``NAME = value`` lines) of each
notebook's first code cell, so the notebook a reader opens is exactly the one tested. They run
in the notebooks folder, as a reader's would (paths such as ``../probes/lookahead.toml``), and
must leave no file behind there.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

# notebook -> (size knobs for the test, runs the bundled model)
SETTINGS: dict[str, tuple[dict[str, object], bool]] = {
    "01_quickstart.ipynb": (dict(N_TOKENS=32, N_WINDOWS=3), True),
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
        dict(N_BITS=4, STEPS=4, SEEDS=[0], LOOKAHEAD_STEPS=4, N_EXAMPLES=64), False),
}


def _strip_module():
    spec = importlib.util.spec_from_file_location("strip_notebooks",
                                                  ROOT / "scripts/strip_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _with_knobs(nb, knobs: dict[str, object]):
    """The notebook with the knobs of its first code cell set to ``knobs``."""
    cell = _code_cells(nb)[0]
    src = cell.source
    for name, value in knobs.items():
        src, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value!r}  ", src, flags=re.M)
        assert n == 1, f"knob {name} is not set in the first code cell"
    cell.source = src
    return nb


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_notebook_is_stripped(name):
    assert _strip_module().is_stripped(_read(name)), (
        f"{name} holds outputs: run python scripts/strip_notebooks.py"
    )


def test_strip_removes_outputs_and_keeps_source(tmp_path):
    strip = _strip_module()
    nb = _read("01_quickstart.ipynb")
    cell = _code_cells(nb)[1]
    cell.outputs = [nbformat.v4.new_output("stream", text="hello")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert strip.main(["--check", str(path)]) == 1
    assert strip.main([str(path)]) == 0
    again = nbformat.read(path, as_version=4)
    assert strip.is_stripped(again) and strip.main(["--check", str(path)]) == 0
    assert [c.source for c in again.cells] == [c.source for c in _read("01_quickstart.ipynb").cells]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_notebook_is_thin(name):
    """Opens with a markdown cell saying what to look for; its code imports interp and calls
    it, and defines no functions, classes or loops."""
    nb = _read(name)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "what to look for" in first.source.lower()
    code = "\n".join(c.source for c in _code_cells(nb))
    assert "import interp" in code
    forbidden = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For,
                 ast.While, ast.AsyncFor)
    for node in ast.walk(ast.parse(code)):
        assert not isinstance(node, forbidden), (
            f"{name} line {node.lineno}: {type(node).__name__} — notebooks define no logic; "
            "move it into interp"
        )
    knobs = ast.parse(_code_cells(nb)[0].source).body
    assert all(isinstance(s, ast.Assign | ast.Import | ast.ImportFrom) for s in knobs), (
        "the first code cell holds only size knobs and imports"
    )


def _run(name: str) -> nbformat.NotebookNode:
    knobs, _ = SETTINGS[name]
    nb = _with_knobs(_read(name), knobs)
    before = sorted(NOTEBOOKS.rglob("*"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert sorted(NOTEBOOKS.rglob("*")) == before, f"{name} wrote files into notebooks/"
    return nb


def _figures(nb) -> int:
    return sum("application/vnd.plotly.v1+json" in o.get("data", {})
               for c in _code_cells(nb) for o in c.outputs)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, (_, real) in SETTINGS.items() if real))
def test_notebook_runs_on_the_bundled_model(name):
    assert _figures(_run(name)) >= 1


@pytest.mark.parametrize("name", sorted(n for n, (_, real) in SETTINGS.items() if not real))
def test_notebook_runs(name):
    assert _figures(_run(name)) >= 1
