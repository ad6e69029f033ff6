"""Atomic writes, and reading tables back.

Every file interp writes goes to a temporary name beside its destination and is moved into
place with ``os.replace``, which is atomic on POSIX: an interrupted job never leaves a
half-written table, sidecar or checkpoint that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from ..errors import InterpError

__all__ = [
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


def dataclass_from_dict(cls, d: dict[str, Any]):
    """``cls(**d)`` for a config dataclass, naming any unknown field and the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise InterpError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}",
                          f"valid fields: {', '.join(sorted(names))}")
    return cls(**d)
