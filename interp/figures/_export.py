"""Export many figures at once.

Kaleido starts a headless Chrome for every ``write_image`` call (about 5 s on 2 cores); handing
it all the figures of a report in one ``plotly.io.write_images`` call starts it once (about
1.5 s per figure). HTML needs no Chrome and goes through :func:`interp.figures.export`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from ..core.io import tmp_path
from ..core.result import Result
from ..errors import InterpError
from . import export
from ._style import FORMATS, find_chrome

__all__ = ["check_format", "draw_figure", "export_figures", "export_many", "figure_paths"]

CHROME_FIX = ("sudo apt-get install -y chromium   (Debian/Ubuntu), or `plotly_get_chrome`; "
              "or use --formats html, which needs no browser")


def check_format(fmt: str) -> str:
    """Normalise a format name and check that it can be made here (a Chrome for static ones)."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InterpError(f"cannot export figures as {fmt!r}",
                          f"use one of: {', '.join(FORMATS)}")
    if fmt != "html" and find_chrome() is None:
        raise InterpError(f"exporting {fmt.upper()} needs Chrome or Chromium, and none was found",
                          CHROME_FIX)
    return fmt


def export_many(figures: list[tuple[go.Figure, Path]], fmt: str) -> list[Path]:
    """Write every ``(figure, path)`` in format ``fmt`` (the path's suffix is replaced),
    each file atomically.

    Raises:
        InterpError: an unknown format, no Chrome for a static format, or kaleido failing
            (with its message and the fix).
    """
    fmt = check_format(fmt)
    paths = [Path(p).with_suffix("." + fmt) for _, p in figures]
    if fmt == "html":
        return [export(fig, p) for (fig, _), p in zip(figures, paths, strict=True)]
    import plotly.io as pio

    os.environ.setdefault("BROWSER_PATH", find_chrome() or "")
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    tmps = [tmp_path(p) for p in paths]
    scale = 2 if fmt == "png" else 1
    try:
        # kaleido's batch call ignores the layout's size unless it is passed explicitly
        figs = [f for f, _ in figures]
        pio.write_images(figs, tmps, format=fmt, scale=scale,
                         width=[f.layout.width for f in figs],
                         height=[f.layout.height for f in figs])
        # The batch call can return without writing a figure (seen under heavy CPU load: one
        # PNG of a report missing, no error); those are written one at a time.
        for f, t in zip(figs, tmps, strict=True):
            if not t.is_file():
                pio.write_image(f, t, format=fmt, scale=scale, width=f.layout.width,
                                height=f.layout.height)
    except Exception as e:  # kaleido raises its own types (browser failed, timeout, ...)
        for t in tmps:
            t.unlink(missing_ok=True)
        raise InterpError(f"kaleido could not write {fmt.upper()} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})", CHROME_FIX) from None
    missing = [p.name for t, p in zip(tmps, paths, strict=True) if not t.is_file()]
    if missing:
        raise InterpError(f"kaleido wrote no {fmt.upper()} for {', '.join(missing)}", CHROME_FIX)
    for t, p in zip(tmps, paths, strict=True):
        os.replace(t, p)
    return paths


def draw_figure(figure, result: Result, source: str | os.PathLike | None = None):
    """``figure.draw(result)``, with a failure named.

    Figures are drawn after the tables are saved (or from saved tables); one that cannot be
    drawn (a hand-edited table with text in a numeric column, an edge case its plot does not
    handle) is reported by name, so the user knows the tables are complete and which figure
    is missing.

    Args:
        figure: a :class:`~interp.core.result.Figure` of ``result``.
        result: the result to draw.
        source: the table it was loaded from, named in the message.

    Raises:
        InterpError: the figure could not be drawn.
    """
    try:
        return figure.draw(result)
    except InterpError:
        raise
    except Exception as e:  # a plotting failure must not read as a failed computation
        where = f" from {source}" if source is not None else ""
        raise InterpError(
            f"figure {figure.name!r} could not be drawn{where} ({type(e).__name__}: "
            f"{str(e)[:200]}); the result's tables are saved",
            "check the table for hand edits (text in a numeric column, missing rows) and "
            "rerun the command that made it; if it is untouched, report the failure with "
            "that command") from e


def figure_paths(result: Result, out: str | os.PathLike) -> list[tuple[object, Path]]:
    """Every figure of ``result`` drawn, with its path (no suffix yet) under ``out``."""
    return [(draw_figure(f, result), Path(out) / f.name) for f in result.figures()]


def export_figures(results: Sequence[Result], out: str | os.PathLike,
                   formats: Sequence[str] = ("html",)) -> list[Path]:
    """Draw every figure of ``results`` and write it under ``out`` in each of ``formats``
    (static formats in one kaleido call each)."""
    todo = [fp for r in results for fp in figure_paths(r, out)]
    return [p for fmt in dict.fromkeys(formats) for p in export_many(todo, fmt)]
