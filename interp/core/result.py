"""The result protocol: what every analysis returns, saves, loads and draws.

A result class declares the files it writes into a folder (``FILES``; the first one identifies
it), the command that writes them (``MADE_BY``, named when a file is missing), and three
methods: ``save(out)``, the classmethod ``load(out)`` (no model needed) and ``figures()``, the
figures drawn from it with a one-sentence caption each. The report's registry, ``interp
figures`` and every command's figure export are derived from these declarations
(:data:`interp.reporting._registry.KINDS`, :func:`export_figures`), so one table is always
drawn the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from ..errors import InterpError

__all__ = ["Figure", "Result", "check_files", "export_figures", "figure_paths"]


@dataclass(frozen=True)
class Figure:
    """One figure drawn from a result.

    Attributes:
        name: file stem of the exported figure.
        draw: result object -> ``go.Figure``.
        caption: one sentence saying what to look at.
    """

    name: str
    draw: Callable
    caption: str


@runtime_checkable
class Result(Protocol):
    """What every interp result provides (see the module docstring)."""

    FILES: ClassVar[tuple[str, ...]]
    MADE_BY: ClassVar[str]

    def save(self, out: str | os.PathLike) -> Path: ...

    @classmethod
    def load(cls, out: str | os.PathLike) -> Result: ...

    def figures(self) -> list[Figure]: ...


def check_files(cls: type, out: str | os.PathLike) -> Path:
    """The folder ``out``, after checking it holds every file of ``cls.FILES``.

    Raises:
        InterpError: a missing file, naming the command that writes it.
    """
    out = Path(out)
    missing = [n for n in cls.FILES if not (out / n).is_file()]
    if missing:
        raise InterpError(f"{out} has no {', '.join(missing)}",
                          f"give the --out folder of `{cls.MADE_BY}`")
    return out


def figure_paths(result: Result, out: str | os.PathLike) -> list[tuple[object, Path]]:
    """Every figure of ``result`` drawn, with its path (no suffix yet) under ``out``."""
    return [(f.draw(result), Path(out) / f.name) for f in result.figures()]


def export_figures(results: Sequence[Result], out: str | os.PathLike,
                   formats: Sequence[str] = ("html",)) -> list[Path]:
    """Draw every figure of ``results`` and write it under ``out`` in each of ``formats``
    (static formats in one kaleido call each)."""
    from ..reporting._export import export_many

    todo = [fp for r in results for fp in figure_paths(r, out)]
    return [p for fmt in dict.fromkeys(formats) for p in export_many(todo, fmt)]
