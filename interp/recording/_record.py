"""``record``: stream sequences through the model and keep selected sites at selected roles."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .._version import __version__
from ..core import model as core_model
from ..core.attention import attention_window
from ..core.distributed import RankInfo, all_reduce_sum, barrier, check_same, rank_info, shard
from ..core.inputs import Labelled
from ..core.io import atomic_write_json
from ..core.model import Bridge, n_kv_heads
from ..core.pauses import PausePolicy, pad_batch
from ..core.sites import resolve_layers
from ..errors import InterpError, refuse_renamed
from ._capture import BatchCapture
from ._items import describe, iter_items
from ._sites import (
    DEFAULT_ROLES,
    DEFAULT_SITES,
    SitePlan,
    check_roles,
    kv_head_of_query_head,
    plan_sites,
)
from ._store import (
    FORMAT,
    FORMAT_VERSION,
    SIDECAR,
    Recording,
    clear_recording,
    empty_index,
    load_recording,
    read_sidecar,
    shard_name,
    verify_shard,
    write_shard,
)

DEFAULT_SHARD_BYTES = 256 * 2**20


def model_meta(model: Bridge) -> dict:
    """What identifies the model in a sidecar."""
    cfg = model.cfg
    tok = model.tokenizer
    return dict(
        name=str(getattr(cfg, "model_name", "") or type(model.original_model).__name__),
        n_layers=int(cfg.n_layers), d_model=int(cfg.d_model), n_heads=int(cfg.n_heads),
        n_kv_heads=n_kv_heads(model), d_head=int(cfg.d_head),
        d_vocab=int(cfg.d_vocab), n_ctx=int(cfg.n_ctx),
        pause_id=core_model.pause_id(model),
        tokenizer=None if tok is None else str(getattr(tok, "name_or_path", type(tok).__name__)),
        # per layer: the sliding window (None: full causal), for the no-sink baseline of views
        attention_windows=[attention_window(model, layer) for layer in range(int(cfg.n_layers))],
    )


def base_meta(model: Bridge, plans: Sequence[SitePlan], layers, roles, dtype, config: dict) -> dict:
    """The sidecar without shards."""
    hook_names = {}
    for p in plans:
        names = [p.hook_name(layer) for layer in layers]
        hook_names[p.site] = (
            [f"{n} + native rotary.apply_rope" for n in names] if p.native_rope else names
        )
    return dict(
        format=FORMAT, format_version=FORMAT_VERSION, interp_version=__version__,
        model=model_meta(model), sites=[p.site for p in plans], layers=list(layers),
        roles=list(roles), dtype=str(dtype).removeprefix("torch."), hook_names=hook_names,
        kv_head_of_query_head=kv_head_of_query_head(model),
        pattern_rows="zero-padded on the right to the widest sequence; valid on k_pos <= position",
        config=config, shards=[], complete=False,
    )


def record(
    model: Bridge,
    inputs,
    *,
    sites: Sequence[str] = DEFAULT_SITES,
    layers: Sequence[int] | int | None = None,
    roles: Sequence[str] | None = DEFAULT_ROLES,
    policy: PausePolicy | None = None,
    n_tokens: int = 128,
    batch_size: int = 8,
    dtype: torch.dtype | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    fresh: bool = False,
    verbose: bool = True,
    **old,
) -> Recording:
    """Record activations at the positions whose role is selected.

    Sequences are right-padded into batches (padding never changes earlier positions under
    the causal mask, and is never recorded), run once each with forward hooks that keep only
    the selected positions (see :mod:`interp.recording._capture`), and grouped into shards of
    about ``shard_bytes``. With ``out`` each shard is written as soon as it is full and then
    dropped, so memory stays bounded however long the corpus; a rerun with ``resume=True``
    verifies and skips the finished shards.

    Args:
        model: a ``TransformerBridge`` (with ``interp.add_pause_token`` applied when
            ``policy`` inserts ``<pause>`` tokens).
        inputs: a text, a list of texts, a ``PausedSequence`` or a list of them, token ids
            (``[pos]`` or ``[batch, pos]``), a list of ``interp.load_corpus`` documents (cut
            into windows of ``n_tokens``), or an iterable of ``interp.core.corpora.Window`` s.
        sites: among ``resid_pre, resid_mid, resid_post, q, k, v, rot_q, rot_k, z, pattern``.
        layers: model layers to record (``None``: all; negative counts from the end).
        roles: roles of the positions to keep (``None``: every role).
        policy: a :class:`~interp.PausePolicy` applied to every sequence.
        n_tokens: window length when ``inputs`` are documents.
        batch_size: sequences per forward pass.
        dtype: storage dtype (default: the model's).
        shard_bytes: close a shard once its tensors reach this size.
        out: directory to stream the recording into (``None``: keep it in memory).
        resume: continue (or reuse) the recording of the same configuration in ``out``.
        fresh: replace whatever recording ``out`` holds (``--fresh``; ``overwrite=`` in
            earlier releases, which now raises). Without ``resume`` or ``fresh`` a folder
            that already holds a recording is refused.
        verbose: show a progress bar.

    Returns:
        The :class:`Recording` (memory-mapped from ``out`` when given).

    Raises:
        InterpError: unknown site, layer or role; a sequence longer than the context; empty
            inputs; no selected position; ``out`` holding another recording.
    """
    refuse_renamed("record", old, {"overwrite": "fresh"})
    plans = plan_sites(model, sites)
    layers = resolve_layers(model, layers)
    roles = check_roles(roles)
    dtype = dtype or core_model.dtype(model)
    if batch_size < 1 or shard_bytes < 1:
        raise InterpError("batch_size and shard_bytes must be >= 1",
                          "use batch_size >= 1 and shard_bytes >= 1")
    config = dict(
        model=model_meta(model)["name"], sites=[p.site for p in plans], layers=list(layers),
        roles=list(roles), policy=None if policy is None else policy.to_dict(),
        n_tokens=n_tokens, batch_size=batch_size, dtype=str(dtype), shard_bytes=shard_bytes,
        inputs=describe(inputs),
    )
    info = rank_info()
    if info.distributed:
        if out is None:
            raise InterpError(
                f"record() under torchrun ({info.world_size} processes) needs an output directory",
                "pass out=DIR (--out DIR): every process writes its shards there",
            )
        config["world_size"] = info.world_size
    config = json.loads(json.dumps(config))  # as the sidecar will hold it (tuples -> lists)
    meta = base_meta(model, plans, layers, roles, dtype, config)
    items = iter_items(model, inputs, n_tokens=n_tokens, policy=policy)
    out_dir = None if out is None else Path(out)
    if info.distributed:
        check_same("record configuration", config)
        out_dir = _prepare_ranks(Path(out), meta, info, resume=resume, fresh=fresh)
        items = shard(items, info)
    if out_dir is not None:
        kept = _prepare_out(out_dir, config, resume=resume, fresh=fresh)
        items = _skip_finished(items, kept)
        meta["shards"] = kept

    writer = _ShardSink(out_dir, meta, shard_bytes)
    tok = model.tokenizer
    seen_roles: set[str] = set()
    bar = tqdm(desc="record", unit="seq", disable=not verbose)
    bar.update(writer.next_sequence)
    for batch in _batches(items, batch_size):
        tensors, index = _capture_batch(model, plans, layers, roles, batch, dtype, tok)
        seen_roles.update(r for it in batch for r in it.seq.roles)
        writer.add(tensors, index, batch)
        bar.update(len(batch))
        bar.set_postfix(positions=writer.n_rows)
    bar.close()
    writer.close()
    n_rows = writer.n_rows
    if info.distributed:
        n_rows = int(all_reduce_sum([torch.tensor([n_rows], dtype=torch.int64)])[0])
    if n_rows == 0:
        if out_dir is not None and info.is_main:
            # an empty recording would only make the corrected rerun ask for --fresh
            clear_recording(Path(out))
        raise InterpError(
            f"no position has a selected role ({', '.join(roles)}); the inputs have roles "
            f"{', '.join(sorted(seen_roles)) or 'none (all shards were already recorded)'}",
            "select roles that occur (roles=... / --roles), or insert pauses with a policy",
        )
    if info.distributed:
        barrier()  # every rank's shards and sidecar are final
        if info.is_main:
            merge_ranks(Path(out), info.world_size)
        barrier()
        return load_recording(out, verify=False)
    if out_dir is not None:
        return load_recording(out_dir, verify=False)
    return Recording(writer.meta, writer.shards, pd.concat(writer.indexes, ignore_index=True))


def _prepare_out(out: Path, config: dict, *, resume: bool, fresh: bool) -> list[dict]:
    """Check ``out`` against ``config``; return the finished shards a resume may keep."""
    if out.exists() and not out.is_dir():
        raise InterpError(f"output {out} exists and is not a directory", "choose a directory")
    if fresh and out.is_dir():
        clear_recording(out)  # unread: a damaged sidecar is what --fresh is advised for
        return []
    existing = read_sidecar(out) if out.is_dir() else None
    if existing is None:
        out.mkdir(parents=True, exist_ok=True)
        return []
    _check_existing(out, existing, config, resume=resume)
    kept = []
    for entry in existing["shards"]:
        if verify_shard(out, entry) is not None:
            break  # recompute from the first bad or missing shard on
        kept.append(entry)
    if len(kept) < len(existing["shards"]) or not existing.get("complete"):
        for p in out.iterdir():  # drop shards past the kept prefix and stray temporaries
            if p.name.startswith("shard-") and p.name.split(".")[0] not in {
                e["name"] for e in kept
            }:
                p.unlink()
        atomic_write_json(out / SIDECAR, dict(existing, shards=kept, complete=False))
    return kept


def _check_existing(out: Path, existing: dict, config: dict, *, resume: bool) -> None:
    """Refuse a directory holding another configuration, or this one without ``resume``."""
    if existing.get("config") != config:
        old = existing.get("config") or {}
        diff = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
        details = "; ".join(f"{k}: {old.get(k)!r} there vs {config.get(k)!r} now" for k in diff)
        raise InterpError(
            f"{out} holds a recording of another configuration ({details})",
            "pass fresh=True (--fresh) to replace it, or choose another directory "
            "(resume=True / --resume only continues the same configuration)",
        )
    if not resume:
        state = "complete" if existing.get("complete") else (
            f"unfinished, {len(existing['shards'])} shards")
        raise InterpError(
            f"{out} already holds a recording of this configuration ({state})",
            "pass resume=True (--resume) to reuse or finish it, or fresh=True "
            "(--fresh) to record again",
        )


def rank_dir(rank: int, world_size: int) -> str:
    """The folder of one process's shards inside a distributed recording."""
    return f"rank-{rank:05d}-of-{world_size:05d}"


def _prepare_ranks(out: Path, meta: dict, info: RankInfo, *, resume: bool,
                   fresh: bool) -> Path:
    """Set up a distributed recording in ``out``; return this process's shard folder.

    Every process checks ``out`` the same way (so a refusal is raised on all of them); then
    rank 0 clears it when starting fresh and writes the top-level sidecar marked unfinished, with
    no shards: until :func:`merge_ranks` replaces it, ``load_recording`` refuses the
    directory and a rerun with ``resume`` continues each process's own folder.
    """
    config = meta["config"]
    existing = read_sidecar(out) if out.is_dir() else None
    if existing is not None and not fresh:
        _check_existing(out, existing, config, resume=resume)
    barrier()  # everybody has read ``out`` before rank 0 changes it
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if fresh:
            clear_recording(out)
        atomic_write_json(out / SIDECAR, dict(meta, shards=[], complete=False))
    barrier()
    return out / rank_dir(info.rank, info.world_size)


def merge_ranks(out: Path, world_size: int) -> dict:
    """Index a distributed recording: one sidecar listing every process's shards, in rank
    order, marked complete. Written only when every process's folder is complete.

    Raises:
        InterpError: a process's folder is missing or unfinished (the top-level sidecar
            then stays unfinished, and a rerun with ``resume`` completes it).
    """
    top = read_sidecar(out)
    shards = []
    for r in range(world_size):
        sub = rank_dir(r, world_size)
        part = read_sidecar(out / sub)
        if part is None or not part.get("complete") or part.get("config") != top["config"]:
            raise InterpError(
                f"the shards of rank {r} in {out / sub} are missing or unfinished, so the "
                "recording is left unfinished",
                "rerun the same torchrun command with --resume (resume=True)",
            )
        for entry in part["shards"]:
            shards.append(dict(entry, name=f"{sub}/{entry['name']}",
                               files={f"{sub}/{f}": h for f, h in entry["files"].items()}))
    meta = dict(top, shards=shards, complete=True)
    atomic_write_json(out / SIDECAR, meta)
    return meta


def _tokens_digest(items: Sequence[Labelled]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(it.seq.tokens.to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def _skip_finished(items: Iterator[Labelled], kept: list[dict]) -> Iterator[Labelled]:
    """Consume the sequences of the kept shards, checking they are the same sequences."""
    for entry in kept:
        start, stop = entry["sequences"]
        chunk = [next(items, None) for _ in range(stop - start)]
        if any(c is None for c in chunk) or _tokens_digest(chunk) != entry["tokens_sha256"]:
            raise InterpError(
                f"the inputs differ from those recorded in {entry['name']} (sequences "
                f"{start}..{stop - 1})",
                "pass the same inputs to resume, or fresh=True (--fresh) to record anew",
            )
    yield from items


def _batches(items: Iterator[Labelled], size: int) -> Iterator[list[Labelled]]:
    batch: list[Labelled] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _capture_batch(model: Bridge, plans, layers, roles, batch: list[Labelled], dtype, tok
                   ) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Run one batch; return its tensors ``{site: [n, layer, ...]}`` and index rows."""
    tokens, batch_roles, orig, _ = pad_batch([it.seq for it in batch])
    width = int(tokens.shape[1])
    sel = [(b, p) for b, rs in enumerate(batch_roles) for p, r in enumerate(rs) if r in roles]
    device = core_model.device(model)
    rows = torch.tensor([b for b, _ in sel], dtype=torch.long)
    positions = torch.tensor([p for _, p in sel], dtype=torch.long)
    cap = BatchCapture(model, plans, layers, rows.to(device), positions.to(device), width, dtype)
    if sel:
        cap.run(tokens.to(device))
    ids = tokens[rows, positions].tolist()
    index = pd.DataFrame(dict(
        sequence=torch.tensor([batch[b].number for b, _ in sel], dtype=torch.long).numpy(),
        document=[batch[b].document for b, _ in sel],
        window=[batch[b].window for b, _ in sel],
        position=positions.numpy(),
        original_position=orig[rows, positions].numpy(),
        token=ids,
        token_str=token_strings(tok, ids),
        role=[batch_roles[b][p] for b, p in sel],
    ))
    return cap.buffers, index


def token_strings(tok, ids: list[int]) -> list[str]:
    """Each token decoded on its own (the id in angle brackets when there is no tokenizer)."""
    if tok is None:
        return [f"<{i}>" for i in ids]
    return tok.batch_decode([[i] for i in ids]) if ids else []  # batch_decode([]) gives ['']


class _ShardSink:
    """Collects batches into shards; writes each full shard to ``out`` (or keeps it)."""

    def __init__(self, out: Path | None, meta: dict, shard_bytes: int):
        self.out, self.meta, self.shard_bytes = out, meta, shard_bytes
        self.shards: list[dict[str, torch.Tensor]] = []
        self.indexes: list[pd.DataFrame] = []
        self.next_sequence = meta["shards"][-1]["sequences"][1] if meta["shards"] else 0
        self.n_rows = sum(int(e["rows"]) for e in meta["shards"])
        self._pending: list[tuple[dict, pd.DataFrame, list[Labelled]]] = []
        self._bytes = 0

    def add(self, tensors: dict, index: pd.DataFrame, batch: list[Labelled]) -> None:
        self._pending.append((tensors, index, batch))
        self._bytes += sum(t.nbytes for t in tensors.values())
        self.next_sequence += len(batch)
        self.n_rows += len(index)
        if self._bytes >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        sites = self._pending[0][0].keys()
        tensors = {s: _cat_rows([p[0][s] for p in self._pending], s) for s in sites}
        index = pd.concat([p[1] for p in self._pending], ignore_index=True)
        items = [it for p in self._pending for it in p[2]]
        i = len(self.meta["shards"])
        stop = self.next_sequence
        entry = dict(name=shard_name(i), rows=len(index), sequences=[stop - len(items), stop],
                     tokens_sha256=_tokens_digest(items), files={})
        if self.out is not None:
            entry["files"] = write_shard(self.out, i, tensors, index)
            self.meta["shards"].append(entry)
            atomic_write_json(self.out / SIDECAR, self.meta)
        else:
            self.meta["shards"].append(entry)
            self.shards.append(tensors)
            self.indexes.append(index)
        self._pending, self._bytes = [], 0

    def close(self) -> None:
        self._flush()
        self.meta["complete"] = True
        if self.out is not None:
            atomic_write_json(self.out / SIDECAR, self.meta)
        if not self.indexes:
            self.indexes.append(empty_index())


def _cat_rows(parts: list[torch.Tensor], site: str) -> torch.Tensor:
    if site == "pattern":
        width = max(p.shape[-1] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in parts]
    return torch.cat(parts)
