"""The main job: one self-contained HTML report of registers, future gradients, lookahead
probes and attribution patching on one model and corpus.

:func:`report` runs each section (:mod:`._sections`) into its own folder under ``out``, draws
every figure from the saved tables (:mod:`._registry`, as ``interp figures`` does), and writes
``out/report.html``: plotly.js embedded once (it works offline), each figure with a sentence
of explanation, the key numbers and the settings. Figures are also written as PNG (and any of
SVG, PDF, HTML) under ``out/figures``.

Rerunning reuses every finished section: a section's ``section.json`` is written last and
atomically, holding the settings it ran with; a section whose settings changed, or with
``fresh=True``, runs again. A section that fails leaves a labelled gap naming the error and the
command that computes the same thing, and the other sections still run.

Example:
    >>> interp.report(out="results/report")                       # the defaults
    >>> interp.report(ReportConfig(model=interp.TinyConfig(), tokens=ids), out="/tmp/r")
"""

from __future__ import annotations

import html
import json
import os
import string
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pandas as pd

from .._version import __version__
from ..core.io import atomic_write_csv, atomic_write_text
from ..errors import InterpError
from ._config import SECTIONS, ReportConfig
from ._sections import SECTION_SPECS, Context, Section

__all__ = ["SECTIONS", "ReportConfig", "report"]


#: settings of sections cached by earlier releases, under today's names
_RENAMED_SETTINGS = {"n_windows": "max_windows", "probe_layers": "probe_layer_stride"}


def _cached(folder: Path, settings: dict) -> dict | None:
    """The finished section's record if it ran with these settings, else ``None`` (a
    setting cached under its earlier name counts as the same setting)."""
    path = folder / "section.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    saved = {_RENAMED_SETTINGS.get(k, k): v for k, v in (record.get("settings") or {}).items()}
    return record if saved == json.loads(json.dumps(settings)) else None


def _run_section(section: Section, ctx: Context, out: Path, fresh: bool) -> dict:
    """Run (or reuse) one section; returns its record with ``status`` ok/cached/gap."""
    folder = out / section.name
    settings = ctx.config.settings(*section.keys)
    if not fresh:
        record = _cached(folder, settings)
        if record is not None:
            return {**record, "status": "cached"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "section.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    numbers = section.run(ctx, folder)
    record = dict(settings=settings, numbers=numbers, seconds=round(time.perf_counter() - t0, 1),
                  finished=datetime.now(UTC).isoformat(timespec="seconds"))
    atomic_write_text(folder / "section.json", json.dumps(record, indent=2, default=str))
    return {**record, "status": "ok"}


def _numbers_table(numbers: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td class='num'>{html.escape(_show(v))}</td></tr>"
        for k, v in numbers.items())
    return f"<table>{rows}</table>"


def _show(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _gap(section: Section, problem: str) -> str:
    return (f"<div class='gap'><b>Gap: {html.escape(section.title)} is missing.</b> "
            f"{html.escape(problem)}<br>Compute it on its own with "
            f"<code>{html.escape(section.command)}</code>, or rerun the report once the "
            "cause is fixed.</div>")


def _figures_html(section: Section, folder: Path, out: Path, formats: tuple[str, ...],
                  notes: list[str]) -> tuple[str, list[Path]]:
    """Draw the section's figures from its saved tables; export them; return HTML divs."""
    import plotly.io as pio

    from ..figures._export import export_many
    from ._registry import figures_for, find_tables

    try:
        found = find_tables(folder)
    except InterpError as e:
        if any(folder.glob("*.view.json")):  # a section of token views only (no tables)
            return "", []
        return _gap(section, f"its tables cannot be read: {e}"), []
    parts, todo = [], []
    for kind, sub in found:
        for f, fig in figures_for(kind, sub):
            div = pio.to_html(fig, full_html=False, include_plotlyjs=False,
                              config={"displaylogo": False})
            parts.append(f"<figure>{div}<figcaption>{html.escape(f.caption)}</figcaption></figure>")
            todo.append((fig, out / "figures" / section.name / f.name))
    # on a rerun, figures already exported since the section finished are kept as they are
    done = (folder / "section.json").stat().st_mtime
    written: list[Path] = []
    for fmt in formats:
        stale = []
        for fig, p in todo:
            target = p.with_suffix("." + fmt)
            if target.is_file() and target.stat().st_mtime >= done:
                written.append(target)
            else:
                stale.append((fig, p))
        try:
            written += export_many(stale, fmt) if stale else []
        except InterpError as e:
            notes.append(f"{section.title}: figures not written as {fmt}: {e.problem} "
                         f"(fix: {e.fix})")
    return "".join(parts), written


def _views_html(folder: Path) -> str:
    """The token views a section saved (``*.view.json``), embedded in the page."""
    from ..figures.tokens import TokenView

    return "".join(f"<div class='token-view'>{TokenView.load_json(p).html()}</div>"
                   for p in sorted(folder.glob("*.view.json")))


def _settings_table(config: ReportConfig) -> str:
    import dataclasses

    rows = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name == "tokens" and v is not None:
            v = f"{tuple(v.shape)} token ids"
        rows[f.name] = v if not isinstance(v, tuple) else ", ".join(map(str, v))
    rows["interp version"] = __version__
    return _numbers_table(rows)


def report(
    config: ReportConfig | None = None,
    out: str | os.PathLike = "results/report",
    *,
    model=None,
    fresh: bool = False,
    strict: bool = False,
    verbose: bool = True,
) -> Path:
    """Run the report and write ``out/report.html`` with every table and figure beside it.

    Args:
        config: what to run (default: :class:`ReportConfig`'s defaults: the bundled model and
            corpus, pauses at rate 0.1).
        out: output folder.
        model: an already loaded ``TransformerBridge`` to use instead of ``config.model``
            (a ``<pause>`` token is added to it when pauses are inserted).
        fresh: recompute every section, ignoring finished ones.
        strict: raise a section's error instead of leaving a gap (for tests).
        verbose: progress bars and one line per section.

    Returns:
        The path of ``report.html``.
    """
    config = config or ReportConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(config, model=model, verbose=verbose)
    t0 = time.perf_counter()
    body, key_rows, nav, notes, files = [], {}, [], [], []
    compute_s = 0.0
    chosen = [s for s in SECTION_SPECS if s.name in config.sections]
    for i, section in enumerate(chosen, start=1):
        if verbose:
            print(f"[{i}/{len(chosen)}] {section.title}", flush=True)
        nav.append(f"<a href='#{section.name}'>{html.escape(section.title)}</a>")
        head = (f"<h2 id='{section.name}'>{html.escape(section.title)}</h2>"
                f"<p>{section.intro}</p>")
        try:
            record = _run_section(section, ctx, out, fresh)
        except Exception as e:  # a failing section leaves a gap; the others still run
            if strict:
                raise
            problem = f"{type(e).__name__}: {e}".strip()
            if verbose:
                print(f"  gap: {problem.splitlines()[0]}", flush=True)
            body.append(head + _gap(section, problem))
            key_rows[f"{section.title}"] = "missing (see its section)"
            continue
        compute_s += record["seconds"]
        state = ("reused from an earlier run" if record["status"] == "cached"
                 else "computed") + f" in {record['seconds']} s"
        figs, written = _figures_html(section, out / section.name, out, config.formats, notes)
        files += written
        for k, v in section.key_numbers(record["numbers"]).items():
            key_rows[f"{section.title}: {k}"] = v
        body.append(head + f"<p class='cached'>{state}</p>" + _numbers_table(record["numbers"])
                    + figs + _views_html(out / section.name))
    if notes:
        body.append("<h2>Export notes</h2>" + "".join(
            f"<div class='gap'>{html.escape(n)}</div>" for n in notes))
    files += sorted(p for p in out.rglob("*.csv"))
    model_name = config.model if isinstance(config.model, str) else "tiny native model"
    source = ("given token ids" if config.tokens is not None
              else f"corpus {config.corpus or 'pydoc (bundled)'}")
    elapsed = time.perf_counter() - t0
    import plotly.offline

    fields = dict(
        title="interp report: where and when does the model compute for the future?",
        subtitle=html.escape(f"{model_name} · {source} · "
                             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
                             f"sections computed in {compute_s:.0f} s, this run took "
                             f"{elapsed:.0f} s"),
        nav=" ".join(nav),
        key_numbers=_numbers_table(key_rows),
        sections="".join(body),
        settings=_settings_table(config),
        formats=", ".join(config.formats) or "no static format",
        out=html.escape(str(out)),
        files="<ul>" + "".join(f"<li><code>{html.escape(str(p.relative_to(out)))}</code></li>"
                               for p in files) + "</ul>",
        plotlyjs=plotly.offline.get_plotlyjs(),
    )
    template = resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8")
    path = out / "report.html"
    atomic_write_text(path, string.Template(template).substitute(fields))
    atomic_write_csv(out / "key_numbers.csv",
                     pd.DataFrame([dict(key=k, value=_show(v)) for k, v in key_rows.items()]))
    if verbose:
        print(f"wrote {path} ({elapsed:.0f} s)")
    return path
