"""MkDocs hooks that generate the two reference pages which must never drift from the code.

* ``docs/cli.md`` contains the marker ``<!-- interp:cli -->``; it is replaced by one section per
  subcommand, built from the real argparse parsers (``interp.cli.build_parser``).
* ``docs/errors.md`` contains ``<!-- interp:errors -->``; it is replaced by every
  ``InterpError(problem, fix)`` raised in ``interp/`` (read from the source with :mod:`ast`,
  so nothing is imported), grouped by module, plus every ``check_choice`` call.

It also puts the notebooks on the site **with their outputs**: a page holding
``<!-- interp:notebook NAME.ipynb -->`` (docs/notebooks/) gets the notebook rendered by
nbconvert from its executed copy under build/notebooks/ (written by the test run or by
``python scripts/run_notebooks.py``; a copy counts only while it matches the notebook's
source), plotly figures included (plotly.js is served once from the site, nothing from the
network). A notebook without a fresh copy is executed here, on the same small settings,
unless ``INTERP_DOCS_NOTEBOOKS=source`` asks for the source alone (the docs test, which checks
the site's structure, sets it; tests/integration/test_notebooks.py checks the outputs).

The test suite builds the docs in strict mode and checks that :func:`error_sites` finds every
``InterpError(`` written in the package (tests/integration/test_docs.py).
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "interp"
CLI_MARKER = "<!-- interp:cli -->"
NOTEBOOK_MARKER = re.compile(r"<!-- interp:notebook (\S+\.ipynb) -->")
PLOTLY_ASSET = "assets/plotly.min.js"
ERRORS_MARKER = "<!-- interp:errors -->"


# ---------------------------------------------------------------------------------------------
# The command line


def _md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no HTML tags, pipes or emphasis markers)."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([|*_`\[\]])", r"\\\1", text)


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    exclusive = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue  # subcommands get their own sections
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = action.metavar or action.dest
        default = action.default
        # identity, not equality: a default of 0 is worth showing, False (a flag) is not
        hidden = default is None or default is False or default is argparse.SUPPRESS
        shown = "" if hidden else f"`{default}`"
        help_text = (action.help or "") % {"default": default, "prog": parser.prog}
        if action.choices is not None:
            help_text += " (choices: " + ", ".join(map(str, action.choices)) + ")"
        if id(action) in exclusive:
            others = [o for a in exclusive[id(action)]._group_actions if a is not action
                      for o in a.option_strings[:1]]
            help_text += " (not with " + ", ".join(others) + ")"
        rows.append(f"| `{name}` | {shown} | {_md_cell(help_text)} |")
    return rows


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands(parser: argparse.ArgumentParser | None = None, prefix: str = "interp"
             ) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """Every (sub)command, depth first: ``(name, parser, help)``, e.g. ``("interp toy train",
    ...)``. Nested subcommands (``interp probe train``) are listed after their parent."""
    if parser is None:
        from interp.cli import build_parser

        parser = build_parser()
    sub = _subparsers(parser)
    if sub is None:
        return []
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    out = []
    seen = set()
    for name, p in sub.choices.items():
        if id(p) in seen:  # an alias (`interp registers` for `interp sinks`): listed once
            continue
        seen.add(id(p))
        out.append((f"{prefix} {name}", p, helps.get(name, "")))
        out += commands(p, f"{prefix} {name}")
    return out


def cli_markdown() -> str:
    """One section per subcommand (nested ones included): description, usage, options."""
    os.environ["COLUMNS"] = "90"  # argparse wraps usage lines to the terminal width
    out = []
    for name, p, help_text in commands():
        level = "#" * min(name.count(" ") + 1, 4)
        out.append(f"{level} `{name}`\n")
        description = p.description or help_text
        if issubclass(p.formatter_class, argparse.RawDescriptionHelpFormatter):
            description = "```text\n" + description.strip() + "\n```"  # laid out by hand
        out.append(description + "\n")
        out.append("```text\n" + p.format_usage().strip() + "\n```\n")
        rows = _option_rows(p)
        if rows:
            out.append("| option | default | meaning |\n|---|---|---|")
            out.extend(rows)
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The errors


@dataclass(frozen=True)
class ErrorSite:
    """One ``raise InterpError(...)`` (or ``check_choice``) in the package source."""

    module: str
    function: str
    line: int
    problem: str
    fix: str | None
    via: str  # "InterpError", "check_choice", or the name of an error-building helper


def _template(node: ast.expr | None, bound: dict[str, str] | None = None) -> str | None:
    """A readable template of a message expression: f-string holes become ``{expr}``.

    ``bound`` maps parameter names of an error-building helper to the templates of the
    arguments a call passed, so a helper's message is shown as each call site fills it in.
    """
    bound = bound or {}
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return None if node.value is None else str(node.value)
    if isinstance(node, ast.Name) and node.id in bound:
        return bound[node.id]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v.value, ast.Name) and v.value.id in bound:
                parts.append(bound[v.value.id])
            else:
                parts.append(_hole(v.value))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return (_template(node.left, bound) or "") + (_template(node.right, bound) or "")
    return _hole(node)


def _hole(node: ast.expr) -> str:
    """A part of a message filled in at run time: ``{expr}``, or ``{…}`` when long."""
    expr = ast.unparse(node)
    return "{" + (expr if len(expr) <= 28 else "…") + "}"


def _problem_and_fix(call: ast.Call) -> tuple[ast.expr | None, ast.expr | None]:
    kw = {k.arg: k.value for k in call.keywords}
    problem = call.args[0] if call.args else kw.get("problem")
    fix = call.args[1] if len(call.args) > 1 else kw.get("fix")
    return problem, fix


@dataclass(frozen=True)
class _Helper:
    """A function that builds and returns an ``InterpError`` from its arguments."""

    params: tuple[str, ...]
    defaults: dict[str, ast.expr]
    problem: ast.expr | None
    fix: ast.expr | None


def _helpers(tree: ast.Module) -> dict[str, _Helper]:
    """Module-level functions whose body is ``return InterpError(...)``."""
    out = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for stmt in fn.body:
            if (isinstance(stmt, ast.Return) and isinstance(stmt.value, ast.Call)
                    and _call_name(stmt.value) == "InterpError"):
                params = tuple(a.arg for a in fn.args.args)
                defaults = dict(zip(params[len(params) - len(fn.args.defaults):],
                                    fn.args.defaults, strict=True))
                out[fn.name] = _Helper(params, defaults, *_problem_and_fix(stmt.value))
    return out


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


class _Finder(ast.NodeVisitor):
    def __init__(self, module: str, helpers: dict[str, _Helper], constants: dict[str, str]):
        self.module = module
        self.helpers = helpers
        self.constants = constants
        self.scope: list[str] = []
        self.sites: list[ErrorSite] = []

    def _scoped(self, node) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _add(self, node: ast.Call, via: str, problem: str | None, fix: str | None) -> None:
        where = ".".join(self.scope) or "(module)"
        self.sites.append(ErrorSite(self.module, where, node.lineno, problem or "", fix, via))

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name == "InterpError":
            # inside an error-building helper the template is shown at each call site instead
            if not (self.scope and self.scope[0] in self.helpers):
                problem, fix = _problem_and_fix(node)
                self._add(node, name, _template(problem), _template(fix))
        elif name in self.helpers:
            h = self.helpers[name]
            args = dict(zip(h.params, node.args, strict=False))
            args.update({k.arg: k.value for k in node.keywords if k.arg})
            bound = {p: _template(args.get(p, h.defaults.get(p))) or "" for p in h.params}
            self._add(node, name, _template(h.problem, bound), _template(h.fix, bound) or None)
        elif name == "check_choice" and len(node.args) == 3:
            kind, _, valid = node.args
            self._add(node, name, f"unknown {_template(kind)} {{value!r}}",
                      "choose one of: " + _choices(valid, self.constants))
        self.generic_visit(node)


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level tuples/lists of literals, rendered ``a, b, c`` (the valid choices of a
    ``check_choice``)."""
    out = {}
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            else stmt.target if isinstance(stmt, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and isinstance(stmt.value, ast.Tuple | ast.List):
            try:
                out[target.id] = ", ".join(map(str, ast.literal_eval(stmt.value)))
            except ValueError:
                continue  # not all literals
    return out


def _choices(node: ast.expr, constants: dict[str, str]) -> str:
    """The valid choices of a ``check_choice`` call, spelled out where they are literals."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("list", "tuple") and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, ast.Tuple | ast.List):
        try:
            return ", ".join(map(str, ast.literal_eval(node)))
        except ValueError:
            pass
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return _hole(node)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def error_sites(package: Path = PACKAGE) -> list[ErrorSite]:
    """Every ``InterpError(...)`` and ``check_choice(...)`` call in the package, in file order."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
             for path in sorted(package.rglob("*.py"))}
    constants: dict[str, str] = {}  # choices are often imported, so look across the package
    for tree in trees.values():
        constants.update(_constants(tree))
    sites = []
    for path, tree in trees.items():
        own = {**constants, **_constants(tree)}  # a module's own name wins over a namesake
        finder = _Finder(_module_name(path), _helpers(tree), own)
        finder.visit(tree)
        sites += finder.sites
    return sites


def errors_markdown() -> str:
    """Every error message, grouped by module, as Markdown tables."""
    by_module: dict[str, list[ErrorSite]] = {}
    for s in error_sites():
        by_module.setdefault(s.module, []).append(s)
    out = []
    for module in sorted(by_module):
        out.append(f"### `{module}`\n")
        out.append("| raised in | problem | fix |\n|---|---|---|")
        for s in by_module[module]:
            out.append(f"| `{s.function}` | {_md_cell(s.problem)} | {_md_cell(s.fix or '')} |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The notebooks, with their outputs


def _run_notebooks():
    """scripts/run_notebooks.py as a module (the executed copies and their settings)."""
    if "run_notebooks" not in sys.modules:
        spec = importlib.util.spec_from_file_location("run_notebooks",
                                                      ROOT / "scripts/run_notebooks.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["run_notebooks"]


def _with_plotly_html(nb) -> int:
    """Give every plotly output an HTML rendering (nbconvert renders HTML, not plotly's own
    MIME type); plotly.js itself comes once per page. Returns how many figures there are."""
    import plotly.io as pio

    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            fig = data.get("application/vnd.plotly.v1+json")
            if fig is None:
                continue
            count += 1
            if "text/html" not in data:
                data["text/html"] = pio.to_html(dict(fig), include_plotlyjs=False,
                                                full_html=False, validate=False)
    return count


def notebook_html(name: str, page_url: str = "") -> str:
    """The notebook as HTML with its outputs (executed copy, else executed now, else, with
    ``INTERP_DOCS_NOTEBOOKS=source``, the source alone with a note saying so)."""
    from nbconvert import HTMLExporter

    run = _run_notebooks()
    if name not in run.SETTINGS:
        raise ValueError(f"no notebook {name!r}; the notebooks are {', '.join(run.SETTINGS)}")
    nb = run.executed_copy(name)
    if nb is None and os.environ.get("INTERP_DOCS_NOTEBOOKS") != "source":
        nb = run.execute(name)
    if nb is None:
        import nbformat

        nb = nbformat.read(run.NOTEBOOKS / name, as_version=4)
        head = ("<div class='admonition note'><p>This build shows the notebook's source only "
                "(<code>INTERP_DOCS_NOTEBOOKS=source</code>); run <code>python "
                "scripts/run_notebooks.py</code> or the test suite, then build again, for "
                "its outputs.</p></div>")
    else:
        made = nb.metadata["interp_executed"]
        knobs = ", ".join(f"{k} = {v}" for k, v in made["knobs"].items())
        head = (f"<p class='nb-executed'><em>Executed on {html.escape(made['executed'])} UTC, "
                f"on small settings ({html.escape(knobs)}); open it with <code>bash "
                "scripts/notebooks.sh</code> to run it on its own settings.</em></p>")
    figures = _with_plotly_html(nb)
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    script = ""
    if figures:
        up = "../" * page_url.strip("/").count("/") + ("../" if page_url.strip("/") else "")
        script = f'<script src="{up}{PLOTLY_ASSET}"></script>'
    return script + head + f"<div class='nb'>{body}</div>"


def on_page_content(html_text: str, page, config, files) -> str:
    match = NOTEBOOK_MARKER.search(html_text)
    if match is None:
        return html_text
    return NOTEBOOK_MARKER.sub(lambda m: notebook_html(m[1], page.url), html_text)


def on_post_build(config) -> None:
    """plotly.js, once, for the notebook pages' figures (served by the site: no network)."""
    import plotly.offline

    path = Path(config["site_dir"]) / PLOTLY_ASSET
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# MkDocs entry point


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if ERRORS_MARKER in markdown:
        markdown = markdown.replace(ERRORS_MARKER, errors_markdown())
    return markdown
