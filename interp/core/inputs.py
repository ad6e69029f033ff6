"""What every analysis accepts as input, turned into labelled token sequences in one place.

:func:`as_sequences` (and :func:`iter_sequences`, which also says where each sequence came
from) accepts, for every entry point of interp:

* a text, or a list of texts (tokenized with an explicit BOS, see :func:`interp.tokenize`);
* token ids: an integer tensor ``[pos]`` or ``[batch, pos]``, a list of ids, or a list of
  1-D id tensors or id lists;
* a :class:`~interp.PausedSequence`, or a list of them;
* corpus documents (:func:`interp.load_corpus`), cut into windows of ``n_tokens``;
* corpus windows (:func:`interp.windows`), or any object whose ``seq`` attribute is a
  :class:`~interp.PausedSequence` (a probe's sequences, for instance).

Anything else raises one :class:`~interp.InterpError` that lists these kinds.

Labels. A sequence cut from a corpus is labelled by its document id and window index
(``name`` ``"doc#3"``); any other sequence by its running number (``name`` ``"0"``, ``"1"``,
...) and a document label ``"text{i}"`` (a text) or ``"seq{i}"`` (anything else).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

import torch

from ..errors import InterpError
from .corpora import Document, windows
from .model import Bridge, embedding
from .pauses import PausedSequence, make_sequence, tokenize

#: what :func:`as_sequences` accepts, for the error message
ACCEPTED = ("a text, a list of texts, token ids [pos] or [batch, pos], PausedSequence(s), "
            "interp.load_corpus() documents or interp.windows(...)")


@dataclass(frozen=True)
class Labelled:
    """One input sequence and where it came from.

    Attributes:
        seq: the tokens, roles and loss mask.
        document: the corpus document id, or ``"text{i}"`` / ``"seq{i}"``.
        window: the window index inside the document (0 outside a corpus).
        number: the running number of the sequence among all inputs.
        from_corpus: True for a corpus window.
    """

    seq: PausedSequence
    document: str
    window: int
    number: int
    from_corpus: bool = False

    @property
    def name(self) -> str:
        """``"doc#window"`` for a corpus window, else the running number."""
        return f"{self.document}#{self.window}" if self.from_corpus else str(self.number)


def _unsupported(what: str) -> InterpError:
    return InterpError(f"cannot use inputs of type {what}", f"pass {ACCEPTED}")


def _token_rows(x: torch.Tensor) -> list[torch.Tensor]:
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.ndim not in (1, 2):
        raise InterpError(f"token ids must be an integer tensor [pos] or [batch, pos], got "
                          f"{x.dtype} {tuple(x.shape)}", "pass token ids as [pos] or [batch, pos]")
    return list(x.reshape(1, -1) if x.ndim == 1 else x)


def _is_ids(x) -> bool:
    return isinstance(x, list | tuple) and bool(x) and all(isinstance(i, int) for i in x)


def iter_sequences(model: Bridge, inputs, *, n_tokens: int = 128, max_windows: int | None = None,
                   bos: bool = True) -> Iterator[Labelled]:
    """Yield every input sequence with its labels, in a fixed order (resuming relies on it).

    Args:
        model: a bridge (its tokenizer reads texts and documents).
        inputs: see the module docstring.
        n_tokens: window length for corpus documents.
        max_windows: stop after this many windows of corpus documents.
        bos: prepend BOS to texts and windows.

    Raises:
        InterpError: empty inputs, or inputs of a kind not listed in the module docstring.
    """
    if (isinstance(inputs, str | PausedSequence) or _is_ids(inputs)
            or isinstance(getattr(inputs, "seq", None), PausedSequence)):  # one window
        inputs = [inputs]
    elif isinstance(inputs, torch.Tensor):
        inputs = _token_rows(inputs)
    elif not isinstance(inputs, Iterable) or isinstance(inputs, bytes | dict):
        raise _unsupported(type(inputs).__name__)
    it = iter(inputs)
    first = next(it, None)
    if first is None:
        raise InterpError("the inputs are empty", f"pass at least one: {ACCEPTED}")
    vocab = _vocab_size(model)
    for x in _labelled(model, first, it, n_tokens=n_tokens, max_windows=max_windows, bos=bos):
        _check_ids(x, vocab)
        yield x


def _vocab_size(model: Bridge) -> int | None:
    """Rows of the model's token embedding (``None`` for an object without one, such as a
    bare tokenizer)."""
    try:
        return int(embedding(model).weight.shape[0])
    except AttributeError:
        return None


def _check_ids(x: Labelled, vocab: int | None) -> None:
    """Refuse token ids the embedding has no row for, which would otherwise fail as an
    ``IndexError`` deep inside torch (or, on a GPU, as an unreadable device assert)."""
    tokens = x.seq.tokens
    if vocab is None or not len(tokens):
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        raise InterpError(f"input {x.name} holds token id {bad}, outside the model's vocabulary "
                          f"of {vocab} ids (0..{vocab - 1})",
                          "pass ids from this model's tokenizer (after interp.add_pause_token "
                          "if they include <pause>), or check that the model is the one they "
                          "were made for")


def _labelled(model: Bridge, first, it: Iterator, *, n_tokens: int, max_windows: int | None,
              bos: bool) -> Iterator[Labelled]:
    if isinstance(first, Document):
        for number, w in enumerate(windows(model, chain([first], it), n_tokens, bos=bos,
                                           max_windows=max_windows)):
            yield Labelled(w.seq, w.doc_id, w.index, number, from_corpus=True)
        return
    for i, x in enumerate(chain([first], it)):
        seq = getattr(x, "seq", None)
        if isinstance(seq, PausedSequence) and hasattr(x, "doc_id"):  # a corpus window
            yield Labelled(seq, x.doc_id, x.index, i, from_corpus=True)
        elif isinstance(seq, PausedSequence):
            yield Labelled(seq, f"seq{i}", 0, i)
        elif isinstance(x, PausedSequence):
            yield Labelled(x, f"seq{i}", 0, i)
        elif isinstance(x, str):
            yield Labelled(tokenize(model, x, bos=bos), f"text{i}", 0, i)
        elif isinstance(x, torch.Tensor) and x.ndim == 1:
            yield Labelled(make_sequence(_token_rows(x)[0]), f"seq{i}", 0, i)
        elif _is_ids(x):
            yield Labelled(make_sequence(x), f"seq{i}", 0, i)
        elif isinstance(x, Document):
            raise InterpError(f"input {i} is a corpus Document among other kinds of input",
                              "pass documents alone (one kind per call)")
        else:
            raise _unsupported(f"{type(x).__name__} (input {i})")


def as_sequences(model: Bridge, inputs, *, n_tokens: int = 128, max_windows: int | None = None,
                 bos: bool = True) -> list[PausedSequence]:
    """Every input sequence (see the module docstring for what ``inputs`` may be)."""
    return [x.seq for x in iter_sequences(model, inputs, n_tokens=n_tokens,
                                          max_windows=max_windows, bos=bos)]


def as_sequence(model: Bridge, inputs, *, bos: bool = True, what: str = "the input") -> PausedSequence:
    """Exactly one sequence: a text, token ids ``[pos]`` (or ``[1, pos]``) or one sequence."""
    seqs = as_sequences(model, inputs, bos=bos)
    if len(seqs) != 1:
        raise InterpError(f"{what} holds {len(seqs)} sequences where one is expected",
                          "pass one text, one PausedSequence or token ids [pos]")
    return seqs[0]


def count_sequences(inputs, max_windows: int | None = None) -> int | None:
    """How many sequences :func:`iter_sequences` yields, when known without tokenizing."""
    if (isinstance(inputs, str | PausedSequence) or _is_ids(inputs)
            or isinstance(getattr(inputs, "seq", None), PausedSequence)):
        return 1
    if isinstance(inputs, torch.Tensor):
        return 1 if inputs.ndim == 1 else len(inputs)
    if isinstance(inputs, list | tuple):
        if inputs and isinstance(inputs[0], Document):
            return max_windows
        return len(inputs)
    return None
