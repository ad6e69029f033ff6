"""The machinery every synthetic task shares: a word-level vocabulary, pause placement, and
batching into tensors with an answer-only loss mask.

A task draws one *raw* example at a time (words and a role per word, from a
``numpy.random.Generator``), then :class:`Task` turns it into an :class:`interp.PausedSequence`
by inserting ``<pause>`` (or filler ``.``) tokens with an :class:`interp.PausePolicy`. Roles are
``bos``, ``prompt``, ``answer``, ``pause`` and ``filler``; the loss is on answer targets only
(``loss_on="answer"``): position t counts when token t + 1 is an answer token, so no pause,
filler or prompt output is ever trained (Goyal et al. 2023; Pfau et al. 2024).

**Parallel chain-of-thought mixture** (Pfau et al. 2024). A task that defines :meth:`Task.cot`
(the intermediate results a solution computes, one token each, in a fixed order) can mix
training sequences: with ``cot_mixture=f``, each example independently has probability f of
carrying the chain of thought *in place of* its filler tokens (same positions, same length;
the chain-of-thought tokens have role ``answer`` and are trained), and 1 − f of carrying
fillers (only the final answer trained). The filler position that precedes chain-of-thought
token r is then taught, in the mixed-in sequences, to compute intermediate r: the supervision
that lets a model learn to use filler positions at all.

Examples are deterministic given a seed: ``task.batch(n, seed)`` always returns the same
tensors, and a training run draws batch ``s`` with seed ``(seed, s)``, so a resumed run sees
the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ...core.pauses import PausedSequence, PausePolicy, insert_pauses, make_sequence, pad_batch
from ...errors import InterpError, check_choice

__all__ = [
    "FILLER",
    "PAUSE",
    "PLACEMENTS",
    "RawExample",
    "Task",
    "TaskBatch",
    "Vocab",
]

PAD, BOS, PAUSE, FILLER = "<pad>", "<bos>", "<pause>", "."
SPECIALS = (PAD, BOS, PAUSE, FILLER)
PLACEMENTS = ("before_answer", "interleaved")
IGNORE = -100  # target id for positions outside the loss (torch's cross-entropy default)


class Vocab:
    """A word-level vocabulary: ids are indices into a list of token strings.

    The first four ids are always ``<pad>``, ``<bos>``, ``<pause>`` and the filler ``.``, so
    every task can take pauses or fillers without a model change.

    Args:
        words: the task's own tokens, after the four specials.
    """

    def __init__(self, words: Sequence[str]):
        self.words: tuple[str, ...] = SPECIALS + tuple(words)
        if len(set(self.words)) != len(self.words):
            raise InterpError(f"duplicate words in a task vocabulary: {self.words}",
                              "list each word once (the special tokens are added for you)")
        self._ids = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, word: str) -> int:
        return self._ids[word]

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def pause_id(self) -> int:
        return self._ids[PAUSE]

    @property
    def filler_id(self) -> int:
        return self._ids[FILLER]

    def encode(self, words: Sequence[str]) -> list[int]:
        """Token ids of ``words``; an unknown word raises an error listing the vocabulary."""
        try:
            return [self._ids[w] for w in words]
        except KeyError as e:
            raise InterpError(f"word {e.args[0]!r} is not in this task's vocabulary",
                              f"valid words: {' '.join(self.words)}") from None

    def decode(self, ids: Sequence[int] | Tensor) -> list[str]:
        """The words of token ids."""
        return [self.words[int(i)] for i in ids]


@dataclass(frozen=True)
class RawExample:
    """One example before pauses: words, one role per word, and real values for regression.

    Attributes:
        words: token strings, starting with ``<bos>`` for token tasks.
        roles: one role per word (``bos``, ``prompt``, ``answer``, ``regular``).
        inputs: real-valued inputs, one per word (regression tasks only).
        values: real-valued targets, one per word (regression tasks only).
    """

    words: tuple[str, ...]
    roles: tuple[str, ...]
    inputs: np.ndarray | None = None
    values: np.ndarray | None = None


@dataclass
class TaskBatch:
    """A batch of examples as tensors, right-padded to one length.

    Attributes:
        tokens: token ids the model sees.
        roles: the role of every position, per example (``pad`` for padding).
        loss_mask: ``loss_mask[b, t]`` says whether the output at position t is trained.
            For token tasks that is the next-token prediction of an answer token.
        targets: the id the output at t must predict (token t + 1) where ``loss_mask``,
            else -100 (ignored by ``torch.nn.functional.cross_entropy``).
        inputs: real inputs per position (regression), else ``None``.
        values: real targets per position (regression), else ``None``.
        sequences: the examples as :class:`interp.PausedSequence` (token tasks).
    """

    tokens: Int[Tensor, "batch pos"]
    roles: list[tuple[str, ...]]
    loss_mask: Bool[Tensor, "batch pos"]
    targets: Int[Tensor, "batch pos"]
    inputs: Float[Tensor, "batch pos"] | None = None
    values: Float[Tensor, "batch pos"] | None = None
    sequences: list[PausedSequence] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """The batch on ``device`` (real inputs and values cast to ``dtype``)."""
        def real(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return dataclasses.replace(
            self, tokens=self.tokens.to(device), loss_mask=self.loss_mask.to(device),
            targets=self.targets.to(device), inputs=real(self.inputs), values=real(self.values),
        )


class Task:
    """A seeded generator of synthetic examples with answer spans, roles and pauses.

    Subclasses set ``name``, ``vocab`` and implement :meth:`sample` (one raw example) and
    :meth:`answer` (the correct answer words, computed independently of how the example was
    drawn, which the tests compare against brute force).

    Args:
        pauses: number of ``<pause>`` (or filler) tokens per example; 0 for none.
        placement: ``"before_answer"`` (all between the prompt and the answer) or
            ``"interleaved"`` (spread evenly through the prompt, one per gap).
        filler: insert the filler token ``.`` (role ``filler``, as in Pfau et al.) instead of
            ``<pause>``.
        policy: an explicit :class:`interp.PausePolicy`; overrides the three options above.
            Its ``loss_on`` is forced to ``"answer"``.
        cot_mixture: fraction of examples whose filler positions hold the parallel chain of
            thought instead (see the module docstring); needs ``filler=True``,
            ``placement="before_answer"`` and ``pauses`` equal to :attr:`n_cot`.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "classification"  # or "regression"
    vocab: Vocab

    def __init__(self, *, pauses: int = 0, placement: str = "before_answer",
                 filler: bool = False, policy: PausePolicy | None = None,
                 cot_mixture: float = 0.0):
        check_choice("pause placement", placement, PLACEMENTS)
        if pauses < 0:
            raise InterpError(f"pauses must be >= 0, got {pauses}",
                              "give 0 for no pauses or fillers, or a positive count")
        if not 0.0 <= cot_mixture <= 1.0:
            raise InterpError(f"cot_mixture must be in [0, 1], got {cot_mixture}",
                              "give the fraction of examples that carry the chain of thought")
        if policy is not None:
            policy = dataclasses.replace(policy, loss_on="answer")
        self.pauses = pauses
        self.placement = placement
        self.filler = filler
        self.policy = policy
        self.cot_mixture = float(cot_mixture)

    # -- to implement ---------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> RawExample:
        """Draw one example (words and roles, answer included) from ``rng``."""
        raise NotImplementedError

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        """The correct answer words for the prompt words (``<bos>`` included)."""
        raise NotImplementedError

    def options(self) -> dict:
        """The task's own options (for metadata and to rebuild it with :func:`get_task`)."""
        raise NotImplementedError

    def cot(self, prompt: Sequence[str]) -> tuple[str, ...]:
        """The parallel chain of thought for the prompt words: :attr:`n_cot` intermediate
        results, computed from the prompt alone. Only tasks with a parallel solution have one."""
        raise InterpError(f"task {self.name!r} has no parallel chain of thought",
                          "use cot_mixture only with parity, 3sum or 2sum_transform")

    @property
    def n_cot(self) -> int | None:
        """Length of the parallel chain of thought (``None``: the task has none)."""
        return None

    # -- shared ---------------------------------------------------------------------------
    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    def config(self) -> dict:
        """Everything needed to rebuild this task: ``get_task(**task.config())``."""
        out = dict(name=self.name, **self.options(), pauses=self.pauses,
                   placement=self.placement, filler=self.filler)
        if self.policy is not None:
            out["policy"] = self.policy.to_dict()
        if self.cot_mixture:
            out["cot_mixture"] = self.cot_mixture
        return out

    def check_cot_mixture(self) -> None:
        """Refuse a chain-of-thought mixture whose chain cannot stand in for the fillers
        (called by :func:`interp.training.tasks.get_task` once the task's own options are set)."""
        if not self.cot_mixture:
            return
        n = self.n_cot
        if n is None:
            self.cot(())  # raises: the task has no chain of thought
        if not (self.filler and self.placement == "before_answer" and self.pauses == n
                and self.policy is None):
            raise InterpError(
                f"cot_mixture needs {n} filler tokens before the answer (one per "
                f"chain-of-thought token), got pauses={self.pauses}, filler={self.filler}, "
                f"placement={self.placement!r}",
                f"set pauses={n}, filler=True, placement='before_answer' (no policy)")

    def _policy(self, roles: Sequence[str]) -> PausePolicy | None:
        if self.policy is not None:
            return self.policy
        if not self.pauses:
            return None
        filler = self.vocab.filler_id if self.filler else None
        if self.placement == "before_answer":
            return PausePolicy(before_answer=self.pauses, filler=filler, loss_on="answer")
        # interleaved: one pause before each of `pauses` evenly spaced prompt positions
        prompt = [p for p, r in enumerate(roles) if r == "prompt"]
        picks = np.linspace(0, len(prompt), self.pauses, endpoint=False).round().astype(int)
        positions = tuple(prompt[i] + 1 for i in picks)
        return PausePolicy(positions=positions, filler=filler, loss_on="answer")

    def to_sequence(self, raw: RawExample) -> PausedSequence:
        """The raw example as a :class:`interp.PausedSequence` with pauses inserted."""
        seq = make_sequence(self.vocab.encode(raw.words), raw.roles, loss_on="answer")
        policy = self._policy(raw.roles)
        if policy is None:
            return seq
        return insert_pauses(seq, policy, self.vocab.pause_id)

    def to_cot_sequence(self, raw: RawExample) -> PausedSequence:
        """The raw example with its parallel chain of thought (role ``answer``, trained)
        between the prompt and the answer: where :meth:`to_sequence` puts the fillers."""
        start = raw.roles.index("answer")
        cot = self.cot(raw.words[:start])
        words = raw.words[:start] + cot + raw.words[start:]
        roles = raw.roles[:start] + ("answer",) * len(cot) + raw.roles[start:]
        return make_sequence(self.vocab.encode(words), roles, loss_on="answer")

    def examples(self, n: int, seed: int | Sequence[int] = 0) -> list[PausedSequence]:
        """``n`` examples, deterministic given ``seed`` (an int or a tuple of ints).

        With a chain-of-thought mixture, which examples carry the chain is drawn from a
        stream of its own, so the prompts are the same as without the mixture.
        """
        seeds = np.random.SeedSequence(seed)
        rng = np.random.default_rng(seeds)
        raws = [self.sample(rng) for _ in range(n)]
        if not self.cot_mixture:
            return [self.to_sequence(raw) for raw in raws]
        with_cot = np.random.default_rng(seeds.spawn(1)[0]).random(n) < self.cot_mixture
        return [self.to_cot_sequence(raw) if c else self.to_sequence(raw)
                for raw, c in zip(raws, with_cot, strict=True)]

    def batch(self, n: int, seed: int | Sequence[int] = 0) -> TaskBatch:
        """``n`` examples as padded tensors with next-token targets on answer positions."""
        if n < 1:
            raise InterpError(f"batch size must be >= 1, got {n}", "ask for n >= 1 examples")
        seqs = self.examples(n, seed)
        tokens, roles, _, mask = pad_batch(seqs, self.vocab.pad_id)
        targets = torch.full_like(tokens, IGNORE)
        targets[:, :-1] = torch.where(mask[:, :-1], tokens[:, 1:], IGNORE)
        return TaskBatch(tokens=tokens, roles=roles, loss_mask=mask, targets=targets,
                         sequences=seqs)

    def decode(self, seq: PausedSequence | Sequence[int] | Tensor) -> str:
        """A readable string of an example's tokens (specials kept, padding dropped)."""
        ids = seq.tokens if isinstance(seq, PausedSequence) else seq
        return " ".join(w for w in self.vocab.decode(ids) if w != PAD)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({opts})"


def digits(value: int, width: int) -> list[str]:
    """``value`` as ``width`` decimal digit words, most significant first, zero-padded."""
    return list(f"{value:0{width}d}")
