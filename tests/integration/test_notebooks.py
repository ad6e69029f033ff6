"""The notebooks: each runs top to bottom (executed with nbclient on small settings), is thin
(imports interp, defines no logic), opens with a markdown cell saying what it shows, and is
committed without outputs.

Small settings are applied by rewriting the size knobs (``NAME = value`` lines) of each
notebook's first code cell, so the notebook a reader opens is exactly the one tested. They run
in the notebooks folder, as a reader's would (paths such as ``../probes/lookahead.toml``), and
must leave no file behind there. They run through scripts/run_notebooks.py, which keeps each
executed copy under build/notebooks/ for the docs site; the last test builds the site from
them and checks that every notebook page shows its outputs.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


RUN = _script("run_notebooks")
SETTINGS = RUN.SETTINGS  # notebook -> (size knobs, runs the bundled model)


def _strip_module():
    return _script("strip_notebooks")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


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
    """Execute through scripts/run_notebooks.py, which keeps the executed copy for the docs."""
    before = sorted(NOTEBOOKS.rglob("*"))
    nb = RUN.execute(name)
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


@pytest.mark.slow
def test_docs_show_every_notebook_with_its_outputs(tmp_path):
    """The docs site built after the notebooks ran: each notebook page holds its outputs
    (plotly figures drawn in a real browser, notebook 01's four token views rendered), from
    the executed copies the runs above left (a notebook without a fresh copy is executed by
    the build)."""
    import subprocess

    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    pages = {}
    for name in SETTINGS:
        page = site / "notebooks" / Path(name).stem / "index.html"
        html = page.read_text(encoding="utf-8")
        assert "Executed on" in html and "plotly-graph-div" in html, name
        assert "cdn.plot.ly" not in html and "require.js" not in html, name  # plotly from the site
        pages[name] = page
    assert pages["01_quickstart.ipynb"].read_text(encoding="utf-8").count('<div class="itv"') == 4

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(pages["01_quickstart.ipynb"].as_uri())
        drawn = driver.execute_script(
            "return [document.querySelectorAll('.plotly-graph-div').length, "
            "document.querySelectorAll('.plotly-graph-div .main-svg').length > 0, "
            "Array.from(document.querySelectorAll('div.itv')).map(d => d.dataset.itvDone)]")
        # the mkdocs theme's highlight.js comes from a CDN (unreachable offline) and its search
        # worker cannot start from file://: those two are the theme's, not the notebook's
        theme = ("cdnjs.cloudflare.com", "hljs is not defined", "search/main.js")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and not any(t in e["message"] for t in theme)]
    finally:
        driver.quit()
    assert drawn[0] >= 2 and drawn[1], drawn  # plotly drew its figures from the site's copy
    assert drawn[2] == ["1"] * 4, drawn
    assert errors == [], errors
