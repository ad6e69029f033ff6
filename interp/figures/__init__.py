"""Figures: one function per figure, a result object in and a ``go.Figure`` out.

All share one paper style (:mod:`interp.figures._style`); export with :func:`export`.
Area modules: ``gradients``, ``probes``, ``sinks``, ``patching``, ``toy``,
``pause_training``, ``controls``, and ``tokens``: the token views (one prompt, token by
token, as interactive offline HTML rather than a ``go.Figure``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._style import ROLE_COLORS, ROLE_MARKERS, apply_style, export, find_chrome

__all__ = ["ROLE_COLORS", "ROLE_MARKERS", "apply_style", "export", "find_chrome"]

_AREAS = ("gradients", "probes", "sinks", "patching", "toy", "pause_training", "controls",
          "tokens")


def __getattr__(name: str) -> Any:
    # figure functions live in area modules; expose them as interp.figures.<name>
    for area in _AREAS:
        try:
            mod = importlib.import_module(f"interp.figures.{area}")
        except ModuleNotFoundError as e:
            if e.name == f"interp.figures.{area}":
                continue
            raise
        if name in getattr(mod, "__all__", ()):
            return getattr(mod, name)
    raise AttributeError(f"module 'interp.figures' has no attribute {name!r}")
