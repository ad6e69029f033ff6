"""The result protocol: what every analysis returns, saves, loads and draws.

A result class declares the files it writes into a folder (``FILES``; the first one identifies
it), the command that writes them (``MADE_BY``, named when a file is missing), and three
methods: ``save(out)``, the classmethod ``load(out)`` (no model needed) and ``figures()``, the
figures drawn from it with a one-sentence caption each. The report's registry, ``interp
figures`` and every command's figure export are derived from these declarations
(:data:`interp.reporting._registry.KINDS`, :func:`interp.figures._export.export_figures`), so
one table is always drawn the same way.

Saving and loading are shared too: a result that is one table with its metadata derives from
:class:`interp.core.io.TableResult`; a result made of several tables and settings derives from
:class:`SavedResult` and declares which file each field lives in. Both read tables with
:func:`read_table`, which renames the columns of earlier releases.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from ..errors import InterpError
from .io import atomic_write_csv, atomic_write_json, read_table

__all__ = ["Figure", "Result", "SavedResult", "check_files", "read_table"]


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


def check_files(cls: type, out: str | os.PathLike, files: Sequence[str] | None = None) -> Path:
    """The folder ``out``, after checking it holds every file of ``cls.FILES`` (or ``files``).

    Raises:
        InterpError: a missing file, naming the command that writes it.
    """
    out = Path(out)
    missing = [n for n in (cls.FILES if files is None else files) if not (out / n).is_file()]
    if missing:
        raise InterpError(f"{out} has no {', '.join(missing)}",
                          f"give the --out folder of `{cls.MADE_BY}`")
    return out


class SavedResult:
    """Save and load for a result dataclass made of several tables and settings.

    A subclass declares ``SAVED``, each saved field and the file that holds it, in one folder:

    * ``"name.csv"``: a table (``pd.DataFrame``), read back with :func:`read_table` and the
      column renames of ``RENAMED``;
    * ``"name.json"``: a dict (settings);
    * ``"name.json:key"``: one JSON value stored under ``key`` of that file;
    * a result class: a nested result that saves into, and loads from, the same folder.

    A field of ``EMPTY`` may be missing from the folder (earlier releases did not write it)
    and then reads as ``EMPTY[field]()``; every other file must be there.
    """

    FILES: ClassVar[tuple[str, ...]]
    MADE_BY: ClassVar[str]
    SAVED: ClassVar[dict[str, str | type]]
    RENAMED: ClassVar[dict[str, str]] = {}
    EMPTY: ClassVar[dict[str, Callable[[], object]]] = {}

    def save(self, out: str | os.PathLike) -> Path:
        """Write every field of ``SAVED`` into the folder ``out`` (atomically, file by file)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        keyed: dict[str, dict] = {}
        for name, where in self.SAVED.items():
            value = getattr(self, name)
            if isinstance(where, type):
                value.save(out)
            elif ":" in where:
                file, key = where.split(":")
                keyed.setdefault(file, {})[key] = value
            elif where.endswith(".csv"):
                atomic_write_csv(out / where, value)
            else:
                atomic_write_json(out / where, value)
        for file, values in keyed.items():
            atomic_write_json(out / file, values)
        return out

    @classmethod
    def load(cls, out: str | os.PathLike):
        """Read what :meth:`save` wrote (no model needed).

        Raises:
            InterpError: a file of ``FILES`` is missing, naming the command that writes it.
        """
        optional = {cls.SAVED[name] for name in cls.EMPTY}
        out = check_files(cls, out, [f for f in cls.FILES if f not in optional])
        fields: dict[str, object] = {}
        for name, where in cls.SAVED.items():
            if isinstance(where, type):
                fields[name] = where.load(out)
                continue
            file, _, key = where.partition(":")
            if name in cls.EMPTY and not (out / file).is_file():
                fields[name] = cls.EMPTY[name]()
            elif file.endswith(".csv"):
                fields[name] = read_table(out / file, cls.RENAMED)
            else:
                data = json.loads((out / file).read_text())
                fields[name] = data[key] if key else data
        return cls(**fields)
