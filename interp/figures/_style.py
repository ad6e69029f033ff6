"""The one paper style shared by every interp figure, and export.

Every figure function in :mod:`interp.figures` takes a result object and returns a
``go.Figure`` styled by :func:`apply_style`; nothing calls ``.show()``. Roles always have the
same colour and marker (colour-blind-safe, Okabe-Ito palette), and continuous scales are
perceptually uniform (viridis; a diverging scale for signed values).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import plotly.graph_objects as go

from ..core.io import tmp_path
from ..errors import InterpError

__all__ = [
    "DIVERGING",
    "FORMATS",
    "ROLE_COLORS",
    "ROLE_MARKERS",
    "SEQUENTIAL",
    "apply_style",
    "export",
    "find_chrome",
]

# Okabe & Ito (2008), colour-blind safe.
ROLE_COLORS = {
    "bos": "#000000",
    "regular": "#0072B2",
    "pause": "#D55E00",
    "filler": "#E69F00",
    "prompt": "#56B4E9",
    "answer": "#009E73",
    "generated": "#CC79A7",
    "pad": "#999999",
}
ROLE_MARKERS = {
    "bos": "star",
    "regular": "circle",
    "pause": "diamond",
    "filler": "square",
    "prompt": "triangle-up",
    "answer": "x",
    "generated": "cross",
    "pad": "circle-open",
}
# A categorical cycle for layers/offsets/series (Okabe-Ito without black).
CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999"]
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
FONT = dict(family="Arial, Helvetica, sans-serif", size=14, color="#222222")
FORMATS = ("html", "png", "svg", "pdf")


def apply_style(fig: go.Figure, *, title: str | None = None, width: int = 760,
                height: int = 460) -> go.Figure:
    """Apply the interp paper style in place and return the figure."""
    fig.update_layout(
        template="simple_white",
        font=FONT,
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=16)) if title else None,
        width=width,
        height=height,
        margin=dict(l=70, r=30, t=60 if title else 30, b=60),
        legend=dict(bgcolor="rgba(255,255,255,0.8)", borderwidth=0, font=dict(size=12)),
        colorway=CYCLE,
        hoverlabel=dict(font_size=12),
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eeeeee", ticks="outside", title_font=dict(size=14))
    fig.update_yaxes(showgrid=True, gridcolor="#eeeeee", ticks="outside", title_font=dict(size=14))
    return fig


def find_chrome() -> str | None:
    """Path of a Chrome/Chromium kaleido can drive, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def export(fig: go.Figure, path: str | Path, format: str | None = None) -> Path:
    """Write a figure as self-contained HTML (plotly.js embedded, works offline) or as
    PNG/SVG/PDF through kaleido and a Chrome.

    Args:
        fig: the figure.
        path: output file; its suffix gives the format unless ``format`` is given.
        format: one of ``html``, ``png``, ``svg``, ``pdf``.

    Raises:
        InterpError: an unknown format, or no Chrome for a static format.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InterpError(f"cannot export a figure as {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if path.suffix.lstrip(".").lower() != fmt:
        path = path.with_suffix("." + fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    if fmt == "html":
        fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    else:
        chrome = find_chrome()
        if chrome is None:
            raise InterpError(
                f"exporting {fmt.upper()} needs Chrome or Chromium, and none was found",
                "sudo apt-get install -y chromium   (or export as html)",
            )
        import os

        os.environ.setdefault("BROWSER_PATH", chrome)
        fig.write_image(tmp, format=fmt, scale=2 if fmt == "png" else 1)
    tmp.replace(path)
    return path
