"""Turn whatever the user passes to :func:`record` into a stream of labelled sequences."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..core.inputs import iter_sequences
from ..corpora import Document
from ..models import check_context
from ..pauses import PausedSequence, PausePolicy, insert_pauses, pause_id


@dataclass(frozen=True)
class Item:
    """One sequence to record, with the labels that go into the index table.

    ``number`` is the running number of the sequence among all inputs (the ``sequence``
    column of the index), also when several processes each record a share of them.
    """

    document: str
    window: int
    seq: PausedSequence
    number: int = 0


def describe(inputs) -> str:
    """A short description of the inputs for the sidecar (what was recorded)."""
    if isinstance(inputs, str):
        return "text"
    if isinstance(inputs, PausedSequence):
        return "sequence"
    if isinstance(inputs, torch.Tensor):
        return "token ids"
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], Document):
        return f"corpus of {len(inputs)} documents"
    return type(inputs).__name__


def iter_items(
    model, inputs, *, n_tokens: int, policy: PausePolicy | None, bos: bool = True
) -> Iterator[Item]:
    """Yield :class:`Item` s in a fixed order (resuming relies on it), pauses inserted.

    ``inputs`` are read by :func:`interp.core.inputs.iter_sequences` (texts, token ids,
    sequences, corpus documents cut into windows of ``n_tokens``, or windows).
    """
    pid = None
    if policy is not None and policy.inserts_anything and policy.filler is None:
        pid = pause_id(model)
    for item in iter_sequences(model, inputs, n_tokens=n_tokens, bos=bos):
        seq = item.seq
        if policy is not None:
            seq = insert_pauses(seq, policy, pid)
        check_context(model, len(seq))
        yield Item(item.document, item.window, seq)
