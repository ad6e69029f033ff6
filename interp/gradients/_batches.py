"""Batches for the decomposition and the distance-resolved gradients.

The inputs themselves are read by :func:`interp.core.inputs.iter_sequences`, as in every
other analysis; this module inserts pauses, applies loss masks and pads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .._types import Bool, Int, Tensor
from ..core import hooks
from ..core.corpora import Document
from ..core.distributed import rank_info, shard
from ..core.inputs import count_sequences, iter_sequences
from ..core.model import Bridge, check_context, pause_id
from ..core.pauses import PausedSequence, PausePolicy, insert_pauses, pad_batch
from ..errors import InterpError

#: what an analysis accepts (see :mod:`interp.core.inputs`)
Inputs = Tensor | str | PausedSequence | Sequence[PausedSequence | str] | Iterable[Document]


@dataclass
class Batch:
    """Sequences of one length (right-padded, role ``pad``), ready for the model.

    Attributes:
        tokens: token ids.
        roles: one role per position, per sequence.
        original_position: position before pause insertion (``-1`` for inserted and pad).
        loss_mask: ``loss_mask[b, t]``: ℓ_t (predicting token t + 1) counts.
        names: a label per sequence (``"doc_id#window"`` for corpus windows, else its index).
        numbers: each sequence's running number among all inputs (also when several
            processes each take a share of them).
    """

    tokens: Int[Tensor, "batch pos"]
    roles: list[tuple[str, ...]]
    original_position: Int[Tensor, "batch pos"]
    loss_mask: Bool[Tensor, "batch pos"]
    names: list[str]
    numbers: list[int]


def iter_batches(
    model: Bridge,
    inputs: Inputs,
    *,
    policy: PausePolicy | None = None,
    loss_mask: Bool[Tensor, "batch pos"] | Bool[Tensor, " pos"] | None = None,
    n_tokens: int = 128,
    batch_size: int = 4,
    max_windows: int | None = None,
    split_ranks: bool = False,
) -> tuple[Iterator[Batch], int | None]:
    """Batches of the inputs, pauses inserted by ``policy``, and how many sequences (if known).

    ``loss_mask``, when given, replaces the sequences' own masks; it must have the shape of
    the (paused) tokens, and is only accepted for inputs that form a single batch. With
    ``split_ranks`` under ``torchrun``, this process takes only its share of the sequences
    (:func:`interp.core.distributed.shard`: every world-size-th one, by index).
    """
    if batch_size < 1:
        raise InterpError(f"batch_size={batch_size}", "use batch_size >= 1")
    total = count_sequences(inputs, max_windows)
    numbered = ((x.number, x.name, x.seq) for x in
                iter_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows))
    if split_ranks and (info := rank_info()).distributed:
        numbered = shard(numbered, info)
        total = None if total is None else len(range(info.rank, total, info.world_size))
    if policy is not None and policy.inserts_anything:
        pid = None if policy.filler is not None else pause_id(model, required=True)
        numbered = ((i, name, insert_pauses(s, policy, pid)) for i, name, s in numbered)

    def batches() -> Iterator[Batch]:
        chunk: list[tuple[int, str, PausedSequence]] = []
        made = 0
        for item in numbered:
            chunk.append(item)
            if len(chunk) == batch_size:
                yield _make(chunk, made)
                chunk, made = [], made + 1
        if chunk:
            yield _make(chunk, made)

    def _make(chunk: list[tuple[int, str, PausedSequence]], index: int) -> Batch:
        if loss_mask is not None and index > 0:
            raise InterpError("loss_mask given for inputs that span several batches",
                              "raise batch_size or set the loss mask on each PausedSequence")
        toks, roles, orig, mask = pad_batch([s for _, _, s in chunk])
        check_context(model, toks.shape[1])
        if toks.shape[1] < 2:
            raise InterpError("a sequence of length 1 has no next-token loss",
                              "give at least two tokens (a BOS and one token of text)")
        if loss_mask is not None:
            m = torch.as_tensor(loss_mask, dtype=torch.bool).reshape(-1, loss_mask.shape[-1])
            if m.shape[-1] != toks.shape[1] or m.shape[0] not in (1, toks.shape[0]):
                raise InterpError(
                    f"loss_mask of shape {tuple(loss_mask.shape)} for tokens of shape "
                    f"{tuple(toks.shape)} (after pause insertion)",
                    "give one entry per position the model sees, or set it on a PausedSequence",
                )
            mask = m.expand_as(toks).clone()
        if not mask.any():
            raise InterpError(
                "the loss mask leaves no position in the loss, so every gradient is zero",
                "unmask at least one position (loss_mask[t] = True means ℓ_t counts)",
            )
        return Batch(toks, roles, orig, mask, [name for _, name, _ in chunk],
                     [i for i, _, _ in chunk])

    return batches(), total


@contextmanager
def activation_gradients_only(model: Bridge):
    """Freeze the parameters and make the embedding output a leaf that requires grad, so a
    backward pass computes activation gradients only (no parameter gradients)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)

    def leaf(t: Tensor, hook) -> Tensor:
        return t.detach().requires_grad_(True)

    try:
        with model.hooks(fwd_hooks=[(hooks.EMBED, leaf)]):
            yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


#: the sites whose gradient is decomposed (see :mod:`interp.core.sites`)
SITES = ("k", "v", "resid_pre", "resid_mid", "resid_post")
