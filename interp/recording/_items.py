"""Turn whatever the user passes to :func:`record` into a stream of labelled sequences
(:class:`interp.core.inputs.Labelled`: the ``sequence``, ``document`` and ``window`` columns of
the index), pauses inserted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch

from ..core.corpora import Document
from ..core.inputs import Labelled, iter_sequences
from ..core.model import check_context, pause_id
from ..core.pauses import PausedSequence, PausePolicy, insert_pauses


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
) -> Iterator[Labelled]:
    """Yield the labelled sequences in a fixed order (resuming relies on it), pauses inserted.

    ``inputs`` are read by :func:`interp.core.inputs.iter_sequences` (texts, token ids,
    sequences, corpus documents cut into windows of ``n_tokens``, or windows).
    """
    pid = None
    if policy is not None and policy.inserts_anything and policy.filler is None:
        pid = pause_id(model, required=True)
    for item in iter_sequences(model, inputs, n_tokens=n_tokens, bos=bos):
        seq = item.seq
        if policy is not None:
            seq = insert_pauses(seq, policy, pid)
        check_context(model, len(seq))
        yield replace(item, seq=seq)
