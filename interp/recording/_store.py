"""The :class:`Recording` object and its on-disk format.

A recording directory holds:

* ``recording.json``: the sidecar (model, tokenizer, hook names, sites, layers, roles, dtype,
  interp version, the configuration, and one entry per shard with its row and sequence range,
  the sha256 of each file and of the token ids it covers);
* ``shard-NNNNN.safetensors``: one tensor per site, ``[rows, layer, ...]``;
* ``shard-NNNNN.parquet``: the index rows of that shard.

A recording made by N processes under ``torchrun`` keeps each process's shards in
``rank-RRRRR-of-NNNNN/`` (each an ordinary recording of that process's share, resumable on its
own); the top-level sidecar lists them all (shard names include the folder) and is marked
complete only once every process's folder is complete. Rows are grouped by process; the
``sequence`` column numbers the inputs as one process would.

Every file is written to a temporary name and moved into place with ``os.replace``, and the
sidecar is rewritten (atomically) after each shard, so an interrupted run leaves only whole
shards that the sidecar vouches for. Loading verifies the checksums and maps the tensors
(``safetensors.safe_open``: pages are read on first touch, not at load time).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core.io import atomic_save_tensors, atomic_write_json, sha256_file, tmp_path
from ..errors import InterpError

SIDECAR = "recording.json"
FORMAT = "interp.recording"
FORMAT_VERSION = 1
INDEX_COLUMNS = ("sequence", "document", "window", "position", "original_position", "token",
                 "token_str", "role")


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def write_shard(
    out: Path, i: int, tensors: dict[str, Tensor], index: pd.DataFrame
) -> dict[str, str]:
    """Write shard ``i`` (tensors + index) atomically; return ``{file name: sha256}``."""
    name = shard_name(i)
    st, pq = out / f"{name}.safetensors", out / f"{name}.parquet"
    files = {st.name: sha256_file(atomic_save_tensors(st, tensors))}
    tmp = tmp_path(pq)
    index.to_parquet(tmp, index=False)
    files[pq.name] = sha256_file(tmp)
    os.replace(tmp, pq)
    return files


def verify_shard(out: Path, entry: dict) -> str | None:
    """``None`` when every file of the shard exists with its recorded checksum, else why not."""
    for fname, digest in entry["files"].items():
        path = out / fname
        if not path.is_file():
            return f"{fname} is missing"
        if sha256_file(path) != digest:
            return f"{fname} does not match its sha256 checksum (corrupted or modified)"
    return None


class Recording:
    """Activations at selected positions, plus the index table that says what each row is.

    ``rec[site]`` is a tensor ``[n, layer, ...]`` (see :mod:`interp.recording` for each site's
    trailing shape): row ``i`` is the position described by ``rec.index.iloc[i]``, and axis 1
    runs over ``rec.layers`` (model layer numbers, in order).

    Attributes:
        meta: the sidecar dict (model, tokenizer, sites, layers, roles, dtype, hook names,
            ``kv_head_of_query_head``, configuration, shards).
        index: one row per recorded position: ``sequence`` (running number of the sequence),
            ``document``, ``window``, ``position`` (in the sequence the model saw),
            ``original_position`` (before pause insertion; -1 for inserted positions),
            ``token``, ``token_str``, ``role``.
    """

    def __init__(self, meta: dict, shards: Sequence[dict[str, Tensor]], index: pd.DataFrame):
        self.meta = meta
        self._shards = list(shards)
        self.index = index.reset_index(drop=True)
        n = sum(int(next(iter(s.values())).shape[0]) for s in self._shards if s)
        if n != len(self.index):
            raise InterpError(f"the recording has {n} tensor rows but {len(self.index)} index rows",
                              "the files are inconsistent; record again with fresh=True (--fresh)")

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.meta["sites"])

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.meta["layers"])

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.meta["roles"])

    @property
    def kv_head_of_query_head(self) -> tuple[int, ...]:
        """``kv_head_of_query_head[h]``: the KV head that query head ``h`` reads (GQA)."""
        return tuple(self.meta["kv_head_of_query_head"])

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        roles = self.index["role"].value_counts().to_dict() if len(self) else {}
        return (f"Recording({len(self)} positions {roles}, sites={list(self.sites)}, "
                f"layers={_span(self.layers)}, model={self.meta['model']['name']!r})")

    def _check_site(self, site: str) -> None:
        if site not in self.sites:
            raise InterpError(f"site {site!r} was not recorded",
                              f"recorded sites: {', '.join(self.sites)}")

    def _slot(self, layer: int) -> int:
        if layer not in self.layers:
            raise InterpError(f"layer {layer} was not recorded",
                              f"recorded layers: {_span(self.layers)}")
        return self.layers.index(layer)

    def __getitem__(self, site: str) -> Float[Tensor, "n layer ..."]:
        """All rows of ``site``, ``[n, layer, ...]`` (no copy when there is one shard)."""
        self._check_site(site)
        return self._cat([s[site] for s in self._shards], site)

    def get(self, site: str, layer: int) -> Float[Tensor, "n ..."]:
        """Rows of ``site`` at one model layer, ``[n, ...]`` (reads only that layer's slice)."""
        self._check_site(site)
        slot = self._slot(layer)
        return self._cat([s[site][:, slot] for s in self._shards], site)

    def _cat(self, parts: list[Tensor], site: str) -> Tensor:
        if site == "pattern":  # pad rows to the widest shard (zeros, see module docs)
            width = max(p.shape[-1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in parts]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def mask(self, **where) -> Bool[Tensor, " n"]:
        """Rows whose index columns match, e.g. ``rec.mask(role="pause")`` or
        ``rec.mask(role=("pause", "regular"), document="assignment")``; use it to index
        ``rec[site]``."""
        keep = pd.Series(True, index=self.index.index)
        for column, value in where.items():
            if column not in self.index.columns:
                raise InterpError(f"the index has no column {column!r}",
                                  f"columns: {', '.join(self.index.columns)}")
            values = value if isinstance(value, list | tuple | set) else [value]
            keep &= self.index[column].isin(values)
        return torch.tensor(keep.to_numpy(dtype=bool))

    def to_pandas(self) -> pd.DataFrame:
        """The index table (a copy), one row per recorded position."""
        return self.index.copy()

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the recording to ``path`` (shards, indexes, sidecar; all atomic).

        Raises:
            InterpError: ``path`` already holds a recording and ``overwrite`` is False.
        """
        out = Path(path)
        if (out / SIDECAR).exists():
            if not overwrite:
                raise InterpError(f"{out} already holds a recording",
                                  "pass overwrite=True or choose another directory")
            clear_recording(out)
        out.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, shards=[], complete=False)
        start = 0
        for i, tensors in enumerate(self._shards):
            entry = self.meta["shards"][i]
            rows = int(entry["rows"])
            files = write_shard(out, i, tensors, self.index.iloc[start:start + rows])
            meta["shards"].append(dict(entry, files=files))
            start += rows
        meta["complete"] = True
        atomic_write_json(out / SIDECAR, meta)
        return out


def _span(layers: Sequence[int]) -> str:
    ls = list(layers)
    if len(ls) > 2 and ls == list(range(ls[0], ls[-1] + 1)):
        return f"{ls[0]}-{ls[-1]}"
    return ",".join(map(str, ls))


def read_sidecar(out: Path) -> dict | None:
    path = out / SIDECAR
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InterpError(f"{path} is not valid JSON ({e.msg})",
                          "the recording is damaged; record again with fresh=True (--fresh)") from None
    if meta.get("format") != FORMAT:
        raise InterpError(f"{path} is not an interp recording sidecar",
                          "choose another output directory")
    return meta


def clear_recording(out: Path) -> None:
    """Remove the files of a recording (only those; other files in ``out`` are left alone),
    including the per-process folders of a distributed recording."""
    for p in out.iterdir():
        if p.name.startswith(("shard-", SIDECAR)) and p.is_file():
            p.unlink()
        elif p.name.startswith("rank-") and p.is_dir() and (p / SIDECAR).is_file():
            shutil.rmtree(p)


def load_recording(path: str | os.PathLike, *, verify: bool = True) -> Recording:
    """Open a saved recording; tensors are memory-mapped, not read into memory.

    Args:
        path: the directory written by :func:`record` (with ``out=``) or :meth:`Recording.save`.
        verify: check every file's sha256 against the sidecar first (reads each file once).

    Raises:
        InterpError: no recording there, an unfinished recording, or a corrupted shard (named,
            with the fix).
    """
    from safetensors import safe_open

    out = Path(path)
    meta = read_sidecar(out)
    if meta is None:
        raise InterpError(f"{out} holds no recording ({SIDECAR} not found)",
                          "pass the directory given as out= to interp.record")
    if not meta.get("complete"):
        raise InterpError(
            f"the recording in {out} is unfinished ({len(meta['shards'])} shards written)",
            "rerun the same record call with resume=True (or `interp record ... --resume`)",
        )
    shards, parts = [], []
    for entry in meta["shards"]:
        if verify and (why := verify_shard(out, entry)):
            raise InterpError(
                f"shard {entry['name']} of the recording in {out} is bad: {why}",
                "rerun the same record call with resume=True (or `interp record ... --resume`): "
                "it recomputes bad and missing shards",
            )
        with safe_open(str(out / f"{entry['name']}.safetensors"), framework="pt") as f:
            shards.append({k: f.get_tensor(k) for k in f.keys()})
        parts.append(pd.read_parquet(out / f"{entry['name']}.parquet"))
    index = pd.concat(parts, ignore_index=True) if parts else empty_index()
    return Recording(meta, shards, index)


def empty_index() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in INDEX_COLUMNS})


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
