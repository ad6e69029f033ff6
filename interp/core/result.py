"""The result protocol: what every analysis returns, saves, loads and draws.

A result class declares the files it writes into a folder (``FILES``; the first one identifies
it), the command that writes them (``MADE_BY``, named when a file is missing), and three
methods: ``save(out)``, the classmethod ``load(out)`` (no model needed) and ``figures()``, the
figures drawn from it with a one-sentence caption each. The report's registry, ``interp
figures`` and every command's figure export are derived from these declarations
(:data:`interp.reporting._registry.KINDS`, :func:`interp.figures._export.export_figures`), so
one table is always drawn the same way.

Saving and loading are shared too: a result that is one table with its metadata derives from
:class:`TableResult`; a result made of several tables and settings derives from
:class:`SavedResult` and declares which file each field lives in. Both read tables with
:func:`read_table`, which renames the columns of earlier releases.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd

from ..errors import InterpError
from .io import atomic_write_csv, atomic_write_json, read_json, read_table

__all__ = ["Figure", "Result", "SavedResult", "TableResult", "check_files", "read_table"]


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


def check_files(cls: type, out: str | os.PathLike, files: Sequence[str] | None = None, *,
                problem: str | None = None) -> Path:
    """The folder ``out``, after checking it holds every file of ``cls.FILES`` (or ``files``):
    the one check of a results folder, before anything in it is read.

    Args:
        cls: the result class; its ``MADE_BY`` is the command named in the fix.
        out: the folder.
        files: the files to look for (default ``cls.FILES``).
        problem: what a folder lacking them is (``"is not a finished probe run"``); the
            message then lists the missing files after it. Default: ``"has no <files>"``.

    Raises:
        InterpError: a missing file, naming the command that writes it.
    """
    out = Path(out)
    missing = [n for n in (cls.FILES if files is None else files) if not (out / n).is_file()]
    if missing:
        names = ", ".join(missing)
        raise InterpError(f"{out} {problem} (missing {names})" if problem else f"{out} has no {names}",
                          f"give the --out folder of `{cls.MADE_BY}`")
    return out


class SavedResult:
    """Save and load for a result dataclass made of several tables and settings.

    A subclass declares ``SAVED``, each saved field and the file that holds it, in one folder:

    * ``"name.csv"``: a table (``pd.DataFrame``), read back with :func:`read_table` and the
      column renames of ``RENAMED``;
    * ``"name.json"``: a dict (settings);
    * ``"name.json:key"``: one JSON value stored under ``key`` of that file;
    * ``"prefix_*.csv"``: a dict of tables, one file per key (``*`` replaced by the key); every
      file of that pattern in the folder is read back;
    * a result class: a nested result that saves into, and loads from, the same folder.

    A field of ``EMPTY`` may be missing from the folder (earlier releases did not write it)
    and then reads as ``EMPTY[field]()``; every other file must be there.

    ``FILES`` follows from ``SAVED``: the file of every field not in ``EMPTY`` (and the
    ``FILES`` of a nested result), in the order of ``SAVED``, so the first field's file is
    the one that identifies the result. A class with a ``"prefix_*.csv"`` field declares
    ``FILES`` itself (which files of the pattern must be there is its own rule).
    """

    FILES: ClassVar[tuple[str, ...]]
    MADE_BY: ClassVar[str]
    SAVED: ClassVar[dict[str, str | type]]
    RENAMED: ClassVar[dict[str, str]] = {}
    EMPTY: ClassVar[dict[str, Callable[[], object]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "SAVED" not in cls.__dict__ or "FILES" in cls.__dict__:
            return
        files: list[str] = []
        for name, where in cls.SAVED.items():
            if isinstance(where, type):
                files += where.FILES
            elif "*" in where:
                raise TypeError(f"{cls.__name__}.SAVED[{name!r}] is a pattern ({where}); "
                                "declare FILES, the files that must be there")
            elif name not in cls.EMPTY:
                files.append(where.partition(":")[0])
        cls.FILES = tuple(dict.fromkeys(files))

    def save(self, out: str | os.PathLike) -> Path:
        """Write every field of ``SAVED`` into the folder ``out`` (atomically, file by file)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        keyed: dict[str, dict] = {}
        for name, where in self.SAVED.items():
            value = getattr(self, name)
            if isinstance(where, type):
                value.save(out)
            elif "*" in where:
                for key, table in value.items():
                    atomic_write_csv(out / where.replace("*", key), table)
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
            if "*" in where:
                head, tail = where.split("*")
                fields[name] = {p.name[len(head):len(p.name) - len(tail)]: read_table(p, cls.RENAMED)
                                for p in sorted(out.glob(where))}
                continue
            file, _, key = where.partition(":")
            if name in cls.EMPTY and not (out / file).is_file():
                fields[name] = cls.EMPTY[name]()
            elif file.endswith(".csv"):
                fields[name] = read_table(out / file, cls.RENAMED)
            else:
                data = read_json(out / file, f"rerun `{cls.MADE_BY}` into {out}")
                fields[name] = data[key] if key else data
        return cls(**fields)


@dataclass
class TableResult(SavedResult):
    """A result that is one tidy table plus a metadata dict, saved as ``name.csv`` + ``name.json``
    (a :class:`SavedResult` whose ``SAVED`` follows from ``FILE``).

    Subclasses set ``FILE`` (the table's file name in a results folder), ``REQUIRED`` (columns
    a saved table must have), ``MADE_BY`` (the command that writes it, named in the error
    when the file is missing), ``RENAMED`` (old column name -> new, for tables saved by earlier
    releases) and override :meth:`figures`. They follow the result protocol
    (:class:`Result`): ``save(folder)``, ``load(folder)``, ``figures()``.

    Attributes:
        table: the rows.
        meta: settings and provenance (model, sites, layers, ...).
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    FILE: ClassVar[str] = "table.csv"
    FILES: ClassVar[tuple[str, ...]] = ("table.csv",)
    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    RENAMED: ClassVar[dict[str, str]] = {}
    MADE_BY: ClassVar[str] = "the interp command that makes it"

    SAVED: ClassVar[dict[str, str | type]] = {"table": "table.csv", "meta": "table.json"}
    EMPTY: ClassVar[dict[str, Callable[[], object]]] = {"meta": dict}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "FILES" not in cls.__dict__:
            cls.FILES = (cls.FILE,)
        cls.SAVED = {"table": cls.FILE, "meta": str(Path(cls.FILE).with_suffix(".json"))}

    @classmethod
    def load(cls, out: str | os.PathLike):
        """Read the table saved in the folder ``out`` (or the table file itself), checking its
        ``REQUIRED`` columns."""
        out = Path(out)
        return cls.from_csv(out if out.suffix == ".csv" else out / cls.FILE)

    def figures(self) -> list:
        """The figures drawn from this result (:class:`interp.core.result.Figure`)."""
        return []

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table (atomically) and its metadata as ``<name>.json`` beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(path, self.table)
        atomic_write_json(path.with_suffix(".json"), self.meta)
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike):
        """Read a table written by :meth:`to_csv` (no model needed)."""
        path = Path(path)
        check_files(cls, path.parent, [path.name])
        table = read_table(path, cls.RENAMED)
        missing = set(cls.REQUIRED) - set(table)
        if missing:
            raise InterpError(f"{path} lacks columns {sorted(missing)}",
                              f"give a {path.name} written by `{cls.MADE_BY}`")
        meta_path = path.with_suffix(".json")
        return cls(table, read_json(meta_path, f"rerun `{cls.MADE_BY}`") if meta_path.is_file() else {})
