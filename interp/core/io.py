"""Atomic writes, and the tidy-table result that every analysis returns.

Every file interp writes goes to a temporary name beside its destination and is moved into
place with ``os.replace``, which is atomic on POSIX: an interrupted job never leaves a
half-written table, sidecar or checkpoint that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from torch import Tensor

from ..errors import InterpError

__all__ = [
    "TableResult",
    "atomic_save_tensors",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "read_table",
]


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    path = Path(path)
    _tmp(path).write_text(text, encoding="utf-8")
    os.replace(_tmp(path), path)
    return path


def atomic_write_json(path: str | os.PathLike, obj: dict, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (non-JSON values such as paths become strings)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str))


def atomic_write_csv(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write a table as CSV (without the index) atomically."""
    path = Path(path)
    df.to_csv(_tmp(path), index=False)
    os.replace(_tmp(path), path)
    return path


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor],
                        metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors atomically (made contiguous and moved to the CPU)."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(_tmp(path)), metadata)
    os.replace(_tmp(path), path)
    return path


def read_table(path: str | os.PathLike, renamed: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A saved table, with only empty cells read as missing (a token such as ``None`` or ``NA``
    stays a string), and each column ``old`` of ``renamed`` given its new name (a table saved
    by an earlier release; a column already under the new name wins)."""
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return df.rename(columns={old: new for old, new in (renamed or {}).items()
                              if old in df.columns and new not in df.columns})


@dataclass
class TableResult:
    """A result that is one tidy table plus a metadata dict, saved as ``name.csv`` + ``name.json``.

    Subclasses set ``FILE`` (the table's file name in a results folder), ``REQUIRED`` (columns
    a saved table must have), ``MADE_BY`` (the command that writes it, named in the error
    when the file is missing), ``RENAMED`` (old column name -> new, for tables saved by earlier
    releases) and override :meth:`figures`. They follow the result protocol
    (:class:`interp.core.result.Result`): ``save(folder)``, ``load(folder)``, ``figures()``.

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

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "FILES" not in cls.__dict__:
            cls.FILES = (cls.FILE,)

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``FILE`` (and its ``.json`` metadata) into the folder ``out``."""
        self.to_csv(Path(out) / self.FILE)
        return Path(out)

    @classmethod
    def load(cls, out: str | os.PathLike):
        """Read the table saved in the folder ``out`` (or the table file itself)."""
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
        if not path.is_file():
            raise InterpError(f"{path} not found", f"run `{cls.MADE_BY}` first")
        table = read_table(path, cls.RENAMED)
        missing = set(cls.REQUIRED) - set(table)
        if missing:
            raise InterpError(f"{path} lacks columns {sorted(missing)}",
                              f"give a {path.name} written by `{cls.MADE_BY}`")
        meta_path = path.with_suffix(".json")
        return cls(table, json.loads(meta_path.read_text()) if meta_path.is_file() else {})


def dataclass_from_dict(cls, d: dict[str, Any]):
    """``cls(**d)`` for a config dataclass, naming any unknown field and the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise InterpError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}",
                          f"valid fields: {', '.join(sorted(names))}")
    return cls(**d)
