"""Which figures are drawn from which saved table, so figures are rebuilt from disk, never from
a model: ``interp figures RESULT_DIR``, the report and every command's figure export go through
the same declarations.

Nothing here is written by hand per table: each :class:`TableKind` is derived from a result
class that follows :class:`interp.core.result.Result` (its ``FILES``, ``MADE_BY``, ``load`` and
``figures``), listed once in :data:`RESULT_TYPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from ..core.result import Figure
from ..errors import InterpError
from ..gradients import ByDistance, FutureGradients, LengthSweep
from ..patching import Attribution
from ..probes import FutureLensResults, ProbeResults
from ..sinks import AblationResult, EvictionResult, MassiveActivations, RegisterResult
from ..training.toy import ToyComparison
from .pause_compare import PauseComparison

__all__ = ["KINDS", "RESULT_TYPES", "Figure", "TableKind", "figures_for", "find_tables"]

#: every result class whose saved folder ``interp figures`` and the report can draw
RESULT_TYPES: tuple[type, ...] = (
    RegisterResult, MassiveActivations, AblationResult, EvictionResult, FutureGradients,
    LengthSweep, ByDistance, Attribution, ProbeResults, FutureLensResults, ToyComparison,
    PauseComparison,
)


@dataclass(frozen=True)
class TableKind:
    """A table file interp writes and the figures drawn from it (derived from a result class).

    Attributes:
        table: the file name that identifies the kind (e.g. ``registers.csv``).
        needs: companion files that must sit beside it.
        command: the command that writes them (named in errors).
        load: folder -> result object.
        figures: the figures drawn from the result.
        applies: an extra test on the folder (e.g. ``metrics.csv`` only with a probe spec).
        result: the result class.
    """

    table: str
    needs: tuple[str, ...]
    command: str
    load: Callable[[Path], object]
    figures: Callable[[object], list[Figure]]
    applies: Callable[[Path], bool]
    result: type

    @classmethod
    def of(cls, result: type) -> TableKind:
        """The kind of a result class (see :class:`interp.core.result.Result`)."""
        return cls(table=result.FILES[0], needs=tuple(result.FILES[1:]), command=result.MADE_BY,
                   load=result.load, figures=lambda r: r.figures(),
                   applies=getattr(result, "recognises", lambda folder: True), result=result)


KINDS: tuple[TableKind, ...] = tuple(TableKind.of(r) for r in RESULT_TYPES)


def find_tables(root: str | Path) -> list[tuple[TableKind, Path]]:
    """Every known table under ``root`` (recursively), as (kind, folder) pairs.

    Raises:
        InterpError: ``root`` is missing, holds no known table, or a table lacks a companion
            file a figure needs (naming the command that writes it).
    """
    root = Path(root)
    if not root.is_dir():
        raise InterpError(f"results folder {root} not found", "give the --out folder of an "
                          "interp command (registers, gradients, patch, probe train, report)")
    found = []
    for kind in KINDS:
        for path in sorted(root.rglob(kind.table)):
            folder = path.parent
            if not kind.applies(folder):
                continue
            missing = [n for n in kind.needs if not (folder / n).is_file()]
            if missing:
                raise InterpError(
                    f"{folder} has {kind.table} but lacks {', '.join(missing)}, which its "
                    "figures need",
                    f"rerun `{kind.command}` into that folder")
            found.append((kind, folder))
    if not found:
        known = "; ".join(f"{k.table} (from `{k.command}`)" for k in KINDS)
        raise InterpError(f"{root} holds none of the tables interp draws figures from",
                          f"make one first: {known}")
    return found


def figures_for(kind: TableKind, folder: Path) -> list[tuple[Figure, go.Figure]]:
    """Load the result in ``folder`` and draw every figure of ``kind``."""
    from ..figures._export import draw_figure

    result = kind.load(folder)
    return [(f, draw_figure(f, result, folder / kind.table)) for f in kind.figures(result)]
