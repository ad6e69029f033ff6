"""Atomic writes, checksums, and reading tables back.

Every file interp writes goes to a temporary name beside its destination and is moved into
place with ``os.replace``, which is atomic on POSIX: an interrupted job never leaves a
half-written table, sidecar or checkpoint that a rerun would mistake for a finished one. The
temporary name is unique to the writer (process id and a random part), so two processes
writing the same result never write into, or move away, each other's temporary file: the
last ``os.replace`` wins and every reader sees one whole file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
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
    "folder_lock",
    "read_json",
    "read_table",
    "read_tensors",
    "sha256_file",
    "verify_checksums",
    "tmp_path",
]


def tmp_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this writer: ``<name>.<pid>-<random>.tmp``."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _replace(write, path: Path) -> Path:
    """``write(tmp)`` to a fresh temporary name, then move it onto ``path`` (the temporary is
    removed if the write fails, so no stray file is left)."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _replace(lambda tmp: tmp.write_text(text, encoding="utf-8"), Path(path))


def atomic_write_json(path: str | os.PathLike, obj: dict, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (non-JSON values such as paths become strings)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str))


def atomic_write_csv(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    """Write a table as CSV (without the index) atomically."""
    return _replace(lambda tmp: df.to_csv(tmp, index=False), Path(path))


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor],
                        metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors atomically (made contiguous and moved to the CPU)."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    return _replace(lambda tmp: save_file(tensors, str(tmp), metadata), Path(path))


def verify_checksums(folder: Path, sums: Mapping[str, str], fix: str) -> None:
    """Check each file ``folder/name`` against the SHA-256 saved for it when it was written.

    Raises:
        InterpError: a file that is missing or was edited or damaged since, named.
    """
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            raise InterpError(f"{path} is missing", fix)
        if sha256_file(path) != digest:
            raise InterpError(f"{path} was changed or damaged since it was written (its SHA-256 "
                              "no longer matches the one saved with it)", fix)


def read_tensors(path: str | os.PathLike, fix: str, device: str = "cpu") -> dict[str, Tensor]:
    """A safetensors file's tensors, or an :class:`InterpError` naming a damaged file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise InterpError(f"{path} is not a readable safetensors file ({str(e)[:200]})",
                          fix) from None


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """A JSON file's contents, or an :class:`InterpError` naming a damaged file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InterpError(f"{path} is not valid JSON ({e})", fix) from None


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


#: the lock file a writer holds in its result folder (see :func:`folder_lock`)
LOCK_FILE = ".interp-lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on a result folder (created if missing) while writing it.

    Two processes writing one folder would interleave their files (one's table beside the
    other's figures), so the second is refused at once. The lock is an ``flock`` on
    ``<folder>/.interp-lock``: the kernel drops it when its holder exits, even on ``kill -9``,
    so a killed run never leaves the folder locked.

    Raises:
        InterpError: another process holds the folder.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise InterpError(f"{folder} is being written by {holder}; two writers would mix "
                              "their files",
                              "wait for it to finish (or stop it), or give another output "
                              "folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield folder
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
