"""Turn whatever the user passes to :func:`record` into a stream of labelled sequences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..corpora import Document, Window, windows
from ..errors import InterpError
from ..models import check_context
from ..pauses import PausedSequence, PausePolicy, insert_pauses, make_sequence, pause_id, tokenize


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

    Accepted ``inputs``: a text; a list of texts; a :class:`PausedSequence` or a list of them;
    token ids (``[pos]`` or ``[batch, pos]``); a list of corpus :class:`Document` s (cut into
    windows of ``n_tokens``); or an iterable of corpus :class:`Window` s.
    """
    pid = None
    if policy is not None and policy.inserts_anything and policy.filler is None:
        pid = pause_id(model)
    for item in _raw_items(model, inputs, n_tokens=n_tokens, bos=bos):
        seq = item.seq
        if policy is not None:
            seq = insert_pauses(seq, policy, pid)
        check_context(model, len(seq))
        yield Item(item.document, item.window, seq)


def _raw_items(model, inputs, *, n_tokens: int, bos: bool) -> Iterator[Item]:
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, PausedSequence):
        inputs = [inputs]
    if isinstance(inputs, torch.Tensor):
        rows = inputs[None] if inputs.ndim == 1 else inputs
        if rows.ndim != 2 or rows.dtype.is_floating_point:
            raise InterpError(
                f"token ids must be an integer tensor [pos] or [batch, pos], got "
                f"{rows.dtype} {tuple(inputs.shape)}"
            )
        inputs = [make_sequence(r) for r in rows]
    if not isinstance(inputs, Iterable):
        raise InterpError(
            f"cannot record inputs of type {type(inputs).__name__}",
            "pass a text, a list of texts, PausedSequences, token ids, interp.load_corpus() "
            "documents or interp.windows(...)",
        )
    it = iter(inputs)
    first = next(it, None)
    if first is None:
        raise InterpError("there is nothing to record: the inputs are empty",
                          "pass at least one text, sequence, document or window")
    if isinstance(first, Document):
        docs = [first, *it]
        for w in windows(model, docs, n_tokens, bos=bos):
            yield Item(w.doc_id, w.index, w.seq)
        return
    for i, x in enumerate(_chain(first, it)):
        if isinstance(x, Window):
            yield Item(x.doc_id, x.index, x.seq)
        elif isinstance(x, PausedSequence):
            yield Item(f"seq{i}", 0, x)
        elif isinstance(x, str):
            yield Item(f"text{i}", 0, tokenize(model, x, bos=bos))
        else:
            raise InterpError(
                f"input {i} has type {type(x).__name__}, which cannot be recorded",
                "give texts, PausedSequences, Documents or Windows (one kind per call)",
            )


def _chain(first, rest):
    yield first
    yield from rest
