"""Learned pause requests: the model decides how many ``<pause>`` tokens to take before it
answers, each pause costing λ (the "System 1 / System 2" switch).

**Task: parity of variable length.** Each example draws its length n uniformly from
``n_min..n_max`` and its bits uniformly; the answer is their parity (:class:`Parity`), i.e.
the parity of the count of ones c. Answering at once needs c mod 2 from one average over the
bits, a function with c sign changes, which a small MLP (``d_mlp`` 64) learns for small c
but not for large c; with pauses, the parallel chain's construction computes one threshold
[c ≥ j] per pause and the parity is linear in them. So if pauses go where it is hard, the
number taken should grow with c (and hence with n).

**Layout.** ``<bos> . .. . b_1 .. b_n = <pause> × K``, K = ``max_pauses``: the bits are
right-aligned behind filler tokens (``align``), so ``=`` and the k-th pause sit at the same
position for every n, and with learned positions a pause addresses "its" threshold the same
way for every length (without it, the pause after which the answer could be computed moves
with n). The output at position
``= + k`` (after k pauses) is read two ways: the probability of one more pause,
π_k = softmax(logits)[<pause>], and the answer given that the model answers now,
softmax over the other tokens. One teacher-forced forward pass gives all K + 1 readings, since
under the causal mask the output after k pauses does not see the later ones.

**Halting objective** (PonderNet, Banino et al. 2021, without the KL prior; no REINFORCE,
everything is differentiable). The model answers after k pauses with probability

    P(stop at k) = (1 − π_k) · Π_{j<k} π_j,   with π_K := 0 (the cap forces an answer),

and the loss of an example is the expected cost of that stop distribution,

    L_halt = Σ_k P(stop at k) · (CE_k + λ·k),

CE_k the answer's cross-entropy under the answer-now distribution (:func:`halting_loss`).
Four terms are added, each for a failure seen without it:

* the mean of CE_k over every k, so that the answers after many pauses are trained even while
  the model rarely takes that many;
* an **exploration** term β·KL(P(stop) ‖ uniform over 0..K) and a **cost curriculum**:
  pauses are free and β = ``explore`` until ``ramp_start`` (30 % of the steps), then the cost
  rises linearly to λ and β falls to 0 by ``ramp_end`` (the last step: with both ending at
  60 % the decision saturated and the urgency input was not used). Measured on 16-bit runs:
  with the cost ramped from step 0 (over 60 % of the steps, β decaying alongside) the
  expected pause count fell from 3.8 at step 50 to 0.03 at step 500, before the answers after
  pauses were good: while they are not, waiting only costs, and once π_k ≈ 0 the gain of
  waiting n pauses reaches the decision only through Π π_j ≈ 0, so it is never learnt
  (PonderNet's prior KL plays the same role as β);
* the **chain read at the pauses themselves** (``pause_chain``, :func:`threshold_loss`): after
  k pauses the logits of two extra words ``T``/``F`` are trained to report [c ≥ k + 1].
  Without it (the chain only in separate sequences, below) no run learned to compute at the
  pauses: the answer after 16 pauses stayed at chance while the chain itself was learnt, and
  the model then learned to answer at once (fixed 16 bits: 0.989 after 800 steps, 0 pauses)
  or nothing (``d_mlp`` 8). With it the answer after the cap is right by step 300;
* the **parallel chain of thought** on a fraction ``cot_mixture`` of the examples (issue 20:
  pauses are useless without it), ``<bos> . .. . bits = c_1 .. c_n answer`` with c_j = [count of
  ones ≥ j], so the pause after which chain token j would come is taught to compute it. Its
  cross-entropy is read from the answer-now distribution (``<pause>`` excluded) and the output
  at ``=`` is not trained there: with a full softmax the chain teaches the shared ``<pause>``
  logit to be small everywhere, and the model stops pausing (expected count below 0.005 by
  step 50 in a 10-bit run).

**Urgency input.** λ is drawn per training example uniformly from ``[lam_min, lam_max]`` and
given to the model as an added embedding at every position, ``(λ − lam_min)/(lam_max −
lam_min) · u`` with a learned vector u (:class:`Urgency`), so one model serves every trade-off
in the range; asking for λ outside it is refused (the model never saw it). With
``lam_min == lam_max`` the input is constant zero and the model is trained for that one λ.

**Countdown.** The countdown embedding of :mod:`interp.training.pause` tells a pause "k of n"
for a run of n planned pauses; with self-requested pauses n is not known in advance, so it
does not apply; the model still sees k through its position.

**Greedy decision.** At generation and evaluation the model pauses while ``<pause>`` is the
argmax of its logits (and fewer than K were taken), then answers with the argmax of the rest:
:func:`readout` computes it from one forward pass, :func:`generate_with_pauses` token by
token through :func:`interp.generate` (which records the K/V written at the pauses); the
tests check that the two agree.

Example:
    >>> cfg = LearnedPauseConfig(n_min=2, n_max=10, steps=600)
    >>> run = train_learned_pauses(cfg)
    >>> frontier = pause_frontier(run, lams=[0.0, 0.05, 0.2])
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..core import hooks
from ..core import model as core_model
from ..core.io import atomic_write_csv, atomic_write_text, dataclass_from_dict
from ..core.model import Bridge
from ..core.pauses import make_sequence
from ..errors import InterpError, check_choice
from ..models import TinyConfig, load_model
from ..recording import Generation, generate
from .tasks._base import BOS, FILLER, IGNORE, PAUSE, Vocab
from .tasks.parity import Parity
from .toy._config import DTYPES
from .toy._loop import (
    check_resume,
    clear_run,
    cosine_lr,
    load_training_tensors,
    read_checkpoint_state,
    save_training_tensors,
)

__all__ = [
    "LearnedPauseConfig",
    "LearnedPauses",
    "PauseReadout",
    "Urgency",
    "generate_with_pauses",
    "explore_term",
    "halting_loss",
    "held_out_batch",
    "learned_pause_study",
    "load_learned_pauses",
    "pause_frontier",
    "pauses_by_ones",
    "prompt_words",
    "readout",
    "threshold_loss",
    "train_learned_pauses",
    "urgency_input",
]

POLICIES = ("learned", "fixed", "random", "entropy")
# the parity words, and the two words in which a pause reports its count threshold
VOCAB = Vocab(["0", "1", "=", "F", "T"])
_EVAL_STREAM = 7_777_777  # held-out examples come from a stream training never draws


@dataclass
class LearnedPauseConfig:
    """A learned-pause run on variable-length parity (see the module docstring).

    Attributes:
        n_min: shortest bit string.
        n_max: longest bit string.
        max_pauses: the cap K on pauses per answer (``None``: ``n_max``, one per chain token).
        lam_min: lowest pause cost λ (per pause, in nats of answer cross-entropy) trained.
        lam_max: highest λ trained; the urgency input spans ``[lam_min, lam_max]``.
        cot_mixture: fraction of training examples that carry the chain of thought.
        answer_after_n: train the answers only after k >= n pauses (where the chain's
            construction can have computed them), and the decision against the answer
            losses detached; ``False``: the answers after every k, and both through the
            halting loss (see the module docstring).
        align: right-align the bits behind filler tokens ``.``, so that ``=`` and the k-th
            pause sit at the same position for every n (with learned positions a pause then
            addresses its threshold the same way for every length).
        pause_chain: weight of the chain read at the pauses themselves: after k pauses the
            logits of the words ``F``/``T`` are trained to report [c ≥ k + 1] (c the count of
            ones), the threshold the parallel chain's token k + 1 holds; 0 turns it off.
        explore: weight β of the exploration term β·KL(P(stop) ‖ uniform over 0..K) at
            the start of training (see the module docstring).
        ramp_start: fraction of the steps before which pauses are free (cost 0) and β is
            held; from there the cost rises linearly to λ and β falls linearly to 0 ...
        ramp_end: ... reaching them at this fraction of the steps.
        n_layers, d_model, n_heads, d_mlp: the tiny model (``d_mlp`` ``None``: 4 × d_model).
        positional: ``"standard"`` (learned positions, so a pause can address the bits) or
            ``"rotary"``.
        steps, batch_size, lr, weight_decay, warmup, min_lr_ratio, grad_clip: AdamW with a
            linear warm-up and a cosine decay (as :func:`interp.train_toy`).
        eval_size: held-out examples for the final metrics.
        seed: seeds the model and the data stream.
        device: ``None`` picks one.
        dtype: ``"float32"`` or ``"float64"``.
    """

    n_min: int = 2
    n_max: int = 16
    max_pauses: int | None = None
    lam_min: float = 0.0
    lam_max: float = 0.5
    cot_mixture: float = 0.5
    answer_after_n: bool = False
    align: bool = True
    pause_chain: float = 1.0
    explore: float = 0.3
    ramp_start: float = 0.3
    ramp_end: float = 1.0
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int | None = 64
    positional: str = "standard"
    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_size: int = 512
    seed: int = 0
    device: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, DTYPES)
        if not 1 <= self.n_min <= self.n_max:
            raise InterpError(f"LearnedPauseConfig needs 1 <= n_min <= n_max, got n_min="
                              f"{self.n_min}, n_max={self.n_max}",
                              "give the shortest and longest bit strings, e.g. n_min=2, n_max=10")
        if self.max_pauses is None:
            self.max_pauses = self.n_max
        if self.max_pauses < 1:
            raise InterpError(f"LearnedPauseConfig.max_pauses={self.max_pauses}: a cap of "
                              f"{self.max_pauses} pauses leaves the model nothing to decide",
                              "give max_pauses >= 1 (None: n_max), or train without pauses "
                              "with interp.train_toy")
        if self.lam_min < 0 or self.lam_max < 0:
            raise InterpError(f"pause cost λ must be >= 0, got lam_min={self.lam_min}, "
                              f"lam_max={self.lam_max}",
                              "give a cost per pause >= 0 (0: pauses are free)")
        if self.lam_max < self.lam_min:
            raise InterpError(f"lam_max={self.lam_max} is below lam_min={self.lam_min}",
                              "give lam_min <= lam_max (equal: one fixed λ)")
        if not 0.0 <= self.ramp_start <= self.ramp_end <= 1.0 or self.explore < 0:
            raise InterpError(f"LearnedPauseConfig needs 0 <= ramp_start <= ramp_end <= 1 and "
                              f"explore >= 0, got ramp_start={self.ramp_start}, ramp_end="
                              f"{self.ramp_end}, explore={self.explore}",
                              "give the fractions of the steps where the cost starts and "
                              "finishes ramping up (0, 0: full cost from the start)")
        if not 0.0 <= self.cot_mixture < 1.0:
            raise InterpError(f"cot_mixture must be in [0, 1), got {self.cot_mixture}",
                              "give the fraction of examples with the chain of thought; the "
                              "rest train the pause decision")
        for name in ("steps", "batch_size", "eval_size", "n_layers", "d_model", "n_heads"):
            if getattr(self, name) < 1:
                raise InterpError(f"LearnedPauseConfig.{name} must be >= 1, got "
                                  f"{getattr(self, name)}", f"use {name} >= 1")

    @property
    def n_ctx(self) -> int:
        """The longest sequence: ``<bos>``, n_max bits, ``=``, K pauses and the answer."""
        return self.n_max + 3 + max(self.max_pauses, self.n_max)

    def check_lam(self, lam: float) -> None:
        """Refuse a λ the urgency input was not trained on."""
        if lam < 0:
            raise InterpError(f"pause cost λ={lam} is negative", "give λ >= 0")
        if not self.lam_min - 1e-12 <= lam <= self.lam_max + 1e-12:
            raise InterpError(f"urgency λ={lam} is outside the trained range [{self.lam_min}, "
                              f"{self.lam_max}]",
                              f"give λ in [{self.lam_min}, {self.lam_max}], or train with a "
                              "wider range (lam_min / lam_max)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearnedPauseConfig:
        return dataclass_from_dict(cls, d)


class Urgency(torch.nn.Module):
    """The urgency input: ``scale(λ) · u`` added to the token embedding at every position,
    ``scale(λ) = (λ − lam_min)/(lam_max − lam_min)`` (0 when the range is one point)."""

    def __init__(self, d_model: int, lam_min: float, lam_max: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.u = torch.nn.Parameter(0.02 * torch.randn(d_model, generator=g))
        self.lam_min, self.lam_max = lam_min, lam_max

    def scale(self, lam: Float[Tensor, " batch"]) -> Float[Tensor, " batch"]:
        span = self.lam_max - self.lam_min
        return (lam - self.lam_min) / span if span > 0 else torch.zeros_like(lam)


@contextmanager
def urgency_input(model: Bridge, urgency: Urgency, lam: Float[Tensor, " batch"] | float
                  ) -> Iterator[None]:
    """Inside the block, the model reads the pause cost ``lam`` (one per example, or one for
    all) through its ``hook_embed`` output (see :class:`Urgency`)."""
    def add(out: Tensor, hook) -> Tensor:
        lam_t = torch.as_tensor(lam, dtype=out.dtype, device=out.device).reshape(-1)
        return out + urgency.scale(lam_t)[:, None, None] * urgency.u.to(out.dtype)

    with model.hooks(fwd_hooks=[(hooks.EMBED, add)]):
        yield


# -- data ---------------------------------------------------------------------------------

@dataclass
class PauseBatch:
    """Held-out or training examples in the pause layout (``<bos> bits = <pause> × K``).

    Attributes:
        tokens: right-padded token ids.
        eq: position of ``=`` per example (the output there is the reading after 0 pauses).
        answer: the answer token id per example.
        n: the bit-string length (difficulty) per example.
        ones: the count of ones c per example (parity is c mod 2).
    """

    tokens: Int[Tensor, "batch pos"]
    eq: Int[Tensor, " batch"]
    answer: Int[Tensor, " batch"]
    n: Int[Tensor, " batch"]
    ones: Int[Tensor, " batch"]


def _bits(rng: np.random.Generator, cfg: LearnedPauseConfig) -> list[str]:
    return [str(b) for b in rng.integers(0, 2, int(rng.integers(cfg.n_min, cfg.n_max + 1)))]


def prompt_words(cfg: LearnedPauseConfig, bits: Sequence[str]) -> list[str]:
    """``<bos> bits =``; with ``cfg.align`` the bits are right-aligned behind fillers, so
    ``=`` and the k-th pause sit at the same position whatever n."""
    lead = [FILLER] * (cfg.n_max - len(bits)) if cfg.align else []
    return [BOS, *lead, *bits, "="]


def pause_batch(cfg: LearnedPauseConfig, size: int, seed) -> PauseBatch:
    """``size`` examples in the pause layout, deterministic given ``seed``."""
    task, rng, v = Parity(cfg.n_max), np.random.default_rng(seed), VOCAB
    width = cfg.n_max + 2 + cfg.max_pauses
    tokens = torch.full((size, width), v.pad_id, dtype=torch.long)
    eq, answer, n, ones = [], [], [], []
    for b in range(size):
        bits = _bits(rng, cfg)
        ones.append(bits.count("1"))
        prompt = prompt_words(cfg, bits)
        ids = v.encode(prompt + [PAUSE] * cfg.max_pauses)
        tokens[b, :len(ids)] = torch.tensor(ids)
        eq.append(len(prompt) - 1)
        answer.append(v[task.answer(prompt)[0]])
        n.append(len(bits))
    return PauseBatch(tokens, torch.tensor(eq), torch.tensor(answer), torch.tensor(n),
                      torch.tensor(ones))


def held_out_batch(cfg: LearnedPauseConfig, size: int, seed: int = 12345) -> PauseBatch:
    """The held-out examples :func:`readout` reads (a stream training never draws)."""
    return pause_batch(cfg, size, (_EVAL_STREAM, seed))


def chain_batch(cfg: LearnedPauseConfig, size: int, seed) -> tuple[Int[Tensor, "batch pos"],
                                                                    Int[Tensor, "batch pos"]]:
    """``size`` chain-of-thought examples ``<bos> bits = c_1 .. c_n answer`` and their
    next-token targets: c_2 .. c_n and the answer (-100 elsewhere, the output at ``=`` too)."""
    task, rng, v = Parity(cfg.n_max), np.random.default_rng(seed), VOCAB
    width = 2 * cfg.n_max + 3
    tokens = torch.full((size, width), v.pad_id, dtype=torch.long)
    targets = torch.full((size, width), IGNORE, dtype=torch.long)
    for b in range(size):
        bits = _bits(rng, cfg)
        prompt, n = prompt_words(cfg, bits), len(bits)
        ids = v.encode(prompt + list(task.cot(prompt))[:n] + list(task.answer(prompt)))
        tokens[b, :len(ids)] = torch.tensor(ids)
        # the output at "=" is not trained here: in the pause layout the same prefix decides
        # whether to pause, and the chain would teach it never to (c_1 is trivial anyway)
        targets[b, len(prompt):len(ids) - 1] = torch.tensor(ids[len(prompt) + 1:])
    return tokens, targets


# -- the objective --------------------------------------------------------------------------

def halting_loss(log_pause: Float[Tensor, "batch k"], ce: Float[Tensor, "batch k"],
                 lam: Float[Tensor, " batch"] | float
                 ) -> tuple[Float[Tensor, " batch"], Float[Tensor, "batch k"]]:
    """The expected cost of the model's stop distribution, and that distribution.

    With π_k = exp(log_pause[:, k]) the probability of one more pause after k pauses
    (k = 0..K; the last is ignored, the cap forces an answer there),
    ``P(stop at k) = (1 − π_k) Π_{j<k} π_j`` and the loss is
    ``Σ_k P(stop at k) · (ce[:, k] + λ·k)``.

    Args:
        log_pause: log π_k per example and pause count.
        ce: the answer's cross-entropy when answering after k pauses.
        lam: the cost of one pause, per example or for all.

    Returns:
        The loss per example and ``P(stop at k)`` (rows sum to 1).
    """
    n_k = log_pause.shape[1]
    # log P(reach k) = Σ_{j<k} log π_j; log(1 − π_k) computed without cancellation
    reach = torch.cat([torch.zeros_like(log_pause[:, :1]), log_pause[:, :-1].cumsum(1)], 1)
    stop_here = torch.log(-torch.expm1(log_pause.clamp(max=-1e-12)))
    stop_here = torch.cat([stop_here[:, :-1], torch.zeros_like(stop_here[:, -1:])], 1)
    p_stop = (reach + stop_here).exp()
    k = torch.arange(n_k, dtype=ce.dtype, device=ce.device)
    lam_t = torch.as_tensor(lam, dtype=ce.dtype, device=ce.device).reshape(-1, 1)
    return (p_stop * (ce + lam_t * k)).sum(1), p_stop


def threshold_loss(read: Float[Tensor, "batch k vocab"], ones: Int[Tensor, " batch"]
                   ) -> Float[Tensor, ""]:
    """The parallel chain read at the pauses themselves: after k pauses the logits of ``T``
    against ``F`` should report [c ≥ k + 1] (c = ``ones``), the threshold the chain's token
    k + 1 holds. Mean cross-entropy of that two-way choice over examples and k.

    The chain in separate sequences (``cot_mixture``) teaches the position after chain token
    k, whose input is that token; here the position after k ``<pause>`` tokens is taught
    directly, the position whose K/V the answer reads.
    """
    ks = torch.arange(read.shape[1], device=read.device)
    want = (ones[:, None] > ks[None]).long()
    two = read[..., [VOCAB["F"], VOCAB["T"]]]
    two = two.float() if two.dtype in (torch.float16, torch.bfloat16) else two
    return torch.nn.functional.cross_entropy(two.flatten(0, 1), want.flatten())


def explore_term(p_stop: Float[Tensor, "batch k"]) -> Float[Tensor, " batch"]:
    """KL(P(stop) ‖ uniform over 0..K) = Σ_k P log P + log(K + 1) per example: the
    exploration term, weighted β·(1 − ramp) (see the module docstring)."""
    return (p_stop * p_stop.clamp_min(1e-30).log()).sum(1) + math.log(p_stop.shape[1])


def _readings(logits: Float[Tensor, "batch pos vocab"], eq: Int[Tensor, " batch"], n_k: int
              ) -> Float[Tensor, "batch k vocab"]:
    pos = eq[:, None] + torch.arange(n_k, device=eq.device)
    return logits.gather(1, pos[..., None].expand(-1, -1, logits.shape[-1]))


def _split(read: Float[Tensor, "batch k vocab"], answer: Int[Tensor, " batch"], pause_id: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """log π_k, the answer-now log-probabilities (pause excluded) and the answer's CE."""
    read = read.float() if read.dtype in (torch.float16, torch.bfloat16) else read
    log_pause = read.log_softmax(-1)[..., pause_id]
    rest = read.clone()
    rest[..., pause_id] = -torch.inf
    logp = rest.log_softmax(-1)
    ce = -logp.gather(-1, answer[:, None, None].expand(-1, read.shape[1], 1))[..., 0]
    return log_pause, logp, ce


def _forward(model: Bridge, urgency: Urgency, tokens: Tensor, lam: Tensor) -> Tensor:
    with urgency_input(model, urgency, lam):
        return model(tokens)


# -- training -------------------------------------------------------------------------------

@dataclass
class LearnedPauses:
    """A trained learned-pause model.

    Attributes:
        config: the run.
        model: the tiny ``TransformerBridge`` (its ``<pause>`` id set).
        urgency: the learned urgency input.
        history: ``step``, ``loss``, ``halt_loss``, ``mean_pauses`` (expected, training batch),
            ``elapsed_s``, one row per 50 steps.
        metrics: training time and the final held-out reading at ``lam_min`` and ``lam_max``.
    """

    config: LearnedPauseConfig
    model: Any
    urgency: Urgency
    history: pd.DataFrame | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def pause_id(self) -> int:
        return core_model.pause_id(self.model, required=True)


def _build(cfg: LearnedPauseConfig) -> tuple[Bridge, Urgency]:
    tiny = TinyConfig(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
                      d_mlp=cfg.d_mlp,
                      d_vocab=len(VOCAB), n_ctx=cfg.n_ctx, positional=cfg.positional,
                      seed=cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    model = load_model(tiny, device=cfg.device, dtype=dtype)
    core_model.set_pause_id(model, VOCAB.pause_id)
    urgency = Urgency(cfg.d_model, cfg.lam_min, cfg.lam_max, cfg.seed).to(
        device=core_model.device(model), dtype=dtype)
    return model, urgency


@runtime_checkable
class RampConfig(Protocol):
    """What :func:`cost_ramp` reads: :class:`LearnedPauseConfig`, or a learned-pause LoRA run
    (:class:`interp.training.pause.PauseTrainConfig`)."""

    steps: int
    ramp_start: float
    ramp_end: float


def cost_ramp(cfg: RampConfig, step: int) -> float:
    """The fraction of λ charged at ``step`` (0 before ``ramp_start``, 1 from ``ramp_end``);
    the exploration weight is ``explore · (1 − ramp)``."""
    start, end = cfg.ramp_start * cfg.steps, cfg.ramp_end * cfg.steps
    if step + 1 >= end:
        return 1.0
    if end <= start:  # ramp_start == ramp_end: the full cost from that step on, no ramp
        return 0.0
    return max(0.0, (step + 1 - start) / (end - start))


def training_step_loss(model: Bridge, urgency: Urgency, cfg: LearnedPauseConfig, step: int
                       ) -> tuple[Tensor, dict[str, float]]:
    """The loss of training batch ``step`` (see the module docstring) and its parts."""
    device = core_model.device(model)
    pid = core_model.pause_id(model, required=True)
    n_chain = round(cfg.cot_mixture * cfg.batch_size)
    pb = pause_batch(cfg, cfg.batch_size - n_chain, (cfg.seed, step, 0))
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    lam = cfg.lam_min + (cfg.lam_max - cfg.lam_min) * torch.rand(len(pb.eq), generator=g,
                                                                 dtype=torch.float64)
    tokens = pb.tokens
    if n_chain:
        ct, targets = chain_batch(cfg, n_chain, (cfg.seed, step, 1))
        width = max(tokens.shape[1], ct.shape[1])
        pad = VOCAB.pad_id
        tokens = torch.cat([torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]),
                                                    value=pad),
                            torch.nn.functional.pad(ct, (0, width - ct.shape[1]), value=pad)])
        targets = torch.nn.functional.pad(targets, (0, width - targets.shape[1]), value=IGNORE)
        lam = torch.cat([lam, cfg.lam_min + (cfg.lam_max - cfg.lam_min) * torch.rand(
            n_chain, generator=g, dtype=torch.float64)])
    logits = _forward(model, urgency, tokens.to(device), lam.to(device))
    n_pause = len(pb.eq)
    read = _readings(logits[:n_pause], pb.eq.to(device), cfg.max_pauses + 1)
    log_pause, _, ce = _split(read, pb.answer.to(device), pid)
    ramp = cost_ramp(cfg, step)
    if cfg.answer_after_n:
        halt, p_stop = halting_loss(log_pause, ce.detach(), ramp * lam[:n_pause].to(device))
        ks = torch.arange(ce.shape[1], device=device)
        loss = halt.mean() + ce[ks[None] >= pb.n.to(device)[:, None]].mean()
    else:
        halt, p_stop = halting_loss(log_pause, ce, ramp * lam[:n_pause].to(device))
        loss = halt.mean() + ce.mean()
    if cfg.explore and ramp < 1:
        # keeps later stop points visible until the answers after them are good
        loss = loss + cfg.explore * (1 - ramp) * explore_term(p_stop).mean()
    parts = dict(halt_loss=float(halt.detach().mean()), ce_at_once=float(ce[:, 0].detach().mean()),
                 ce_at_cap=float(ce[:, -1].detach().mean()),
                 mean_pauses=float((p_stop.detach() * torch.arange(p_stop.shape[1], device=device)).sum(1)
                                   .mean()))
    if cfg.pause_chain:
        thr = threshold_loss(read, pb.ones.to(device))
        loss = loss + cfg.pause_chain * thr
        parts["pause_chain_loss"] = float(thr.detach())
    if n_chain:
        # read from the answer-now distribution too (pause excluded): a full softmax would
        # push the <pause> logit down everywhere and the model would learn never to pause
        rest = logits[n_pause:].clone()
        rest[..., pid] = -torch.inf
        chain = torch.nn.functional.cross_entropy(rest.flatten(0, 1),
                                                  targets.to(device).flatten())
        loss = loss + chain
        parts["chain_loss"] = float(chain.detach())
    return loss, parts


#: what train_learned_pauses writes in its folder, the resume marker first (``fresh`` removes
#: them in this order, so a kill part-way leaves no marker beside another run's files)
LEARNED_FILES = ("state.json", "checkpoint.safetensors", "config.json", "history.csv",
                 "metrics.json")
_LOG_EVERY = 50


def _trainable(model: Bridge, urgency: Urgency) -> dict[str, Tensor]:
    """The trainable tensors by checkpoint name: the model's parameters and the urgency
    vector."""
    return {**{f"model.{k}": p for k, p in model.named_parameters()}, "urgency.u": urgency.u}


def train_learned_pauses(cfg: LearnedPauseConfig, out: str | os.PathLike | None = None, *,
                         checkpoint_every: int = 100, fresh: bool = False,
                         stop_after: int | None = None, verbose: bool = True) -> LearnedPauses:
    """Train a tiny model to request its own pauses (see the module docstring).

    Args:
        cfg: the run.
        out: folder for ``checkpoint.safetensors`` (parameters and AdamW's moments, with the
            step and history in its metadata), ``state.json`` (a readable copy), and at the
            end ``config.json``, ``history.csv`` and ``metrics.json``; ``None`` keeps
            everything in memory. A run found in ``out`` is continued from its last
            checkpoint and ends as the uninterrupted run would (the training batch and the
            urgency values of a step depend only on the seed and the step); its
            configuration must match except ``steps``, which may grow.
        checkpoint_every: write the checkpoint every this many steps (atomically) and at
            the end.
        fresh: start over even if ``out`` holds a run.
        stop_after: stop after this step, as an interruption would (the last checkpoint is
            the one before it); the schedule still runs to ``cfg.steps``, and the run has no
            held-out metrics.
        verbose: print a line every 50 steps.

    Raises:
        InterpError: ``checkpoint_every < 1``; ``out`` holding a run of another
            configuration, or one trained more steps than ``cfg.steps``.
    """
    if checkpoint_every < 1:
        raise InterpError(f"checkpoint_every={checkpoint_every} would never checkpoint",
                          "give checkpoint_every >= 1 (steps between checkpoints)")
    model, urgency = _build(cfg)
    params = _trainable(model, urgency)
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=cfg.weight_decay),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=cfg.lr, betas=(0.9, 0.98))
    start, history, elapsed = 0, [], 0.0
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            clear_run(out_dir, LEARNED_FILES)
        state = None if fresh else _read_state(out_dir)
        if state is not None:
            check_resume(out_dir, state, cfg.to_dict(), what="learned-pause run")
            start, history, elapsed = state["step"], state["history"], state["elapsed_s"]
            load_training_tensors(out_dir / "checkpoint.safetensors", params, opt, start)
    model.train()
    t0 = time.perf_counter() - elapsed
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, lr=cfg.lr, warmup=cfg.warmup, steps=cfg.steps,
                                    min_lr_ratio=cfg.min_lr_ratio)
        loss, parts = training_step_loss(model, urgency, cfg, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        done = step + 1
        if done % _LOG_EVERY == 0 or done == cfg.steps:
            row = dict(step=done, loss=float(loss.detach()), **parts,
                       elapsed_s=time.perf_counter() - t0)
            history.append(row)
            if verbose:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()), flush=True)
        if out_dir is not None and (done % checkpoint_every == 0 or done == cfg.steps):
            state = dict(step=done, config=cfg.to_dict(), history=history,
                         elapsed_s=time.perf_counter() - t0)
            save_training_tensors(out_dir / "checkpoint.safetensors", params, opt, state)
            atomic_write_text(out_dir / "state.json", json.dumps(state, indent=1))
    model.eval()
    run = LearnedPauses(cfg, model, urgency, pd.DataFrame(history))
    if end < cfg.steps:
        return run
    run.metrics = dict(train_seconds=time.perf_counter() - t0, steps=cfg.steps)
    for lam in sorted({cfg.lam_min, cfg.lam_max}):
        r = readout(run, lam, n_examples=cfg.eval_size)
        run.metrics[f"lam={lam}"] = dict(accuracy=r.accuracy, mean_pauses=r.mean_pauses)
    if out_dir is not None:
        atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
        atomic_write_csv(out_dir / "history.csv", run.history)
        atomic_write_text(out_dir / "metrics.json", json.dumps(run.metrics, indent=1))
    return run


def _read_state(out: Path) -> dict | None:
    if not ((out / "state.json").is_file() and (out / "checkpoint.safetensors").is_file()):
        return None
    return (read_checkpoint_state(out / "checkpoint.safetensors")
            or json.loads((out / "state.json").read_text()))


def load_learned_pauses(out: str | os.PathLike) -> LearnedPauses:
    """The run :func:`train_learned_pauses` saved in ``out`` (finished, or stopped part-way:
    then the model of its last checkpoint, with empty metrics)."""
    out = Path(out)
    state = _read_state(out)
    if state is None:
        raise InterpError(f"{out} holds no learned-pause run",
                          "give the folder of train_learned_pauses(..., out=...) or "
                          "`interp toy learned-pauses --out DIR`")
    cfg = LearnedPauseConfig.from_dict(state["config"])
    model, urgency = _build(cfg)
    load_training_tensors(out / "checkpoint.safetensors", _trainable(model, urgency), None,
                          state["step"])
    model.eval()
    metrics = (json.loads((out / "metrics.json").read_text())
               if (out / "metrics.json").is_file() else {})
    return LearnedPauses(cfg, model, urgency, pd.DataFrame(state["history"]), metrics)


# -- reading the decision out -----------------------------------------------------------------

@dataclass
class PauseReadout:
    """What the model does on held-out examples at one λ, for every pause count at once.

    Attributes:
        lam: the urgency input.
        n: difficulty (bit-string length) per example.
        wants_pause: ``[batch, k]``: after k pauses, ``<pause>`` is the argmax.
        correct: ``[batch, k]``: the answer-now argmax is right after k pauses.
        entropy: ``[batch, k]``: entropy (nats) of the answer-now distribution.
        stop: the greedy decision: the first k where the model does not pause (K at the cap).
    """

    lam: float
    n: Int[Tensor, " batch"]
    wants_pause: Bool[Tensor, "batch k"]
    correct: Bool[Tensor, "batch k"]
    entropy: Float[Tensor, "batch k"]
    stop: Int[Tensor, " batch"]

    @property
    def accuracy(self) -> float:
        return self.accuracy_at(self.stop)

    @property
    def mean_pauses(self) -> float:
        return float(self.stop.float().mean())

    def accuracy_at(self, stop: Int[Tensor, " batch"]) -> float:
        """Accuracy when example b answers after ``stop[b]`` pauses."""
        return float(self.correct.gather(1, stop[:, None].long()).float().mean())


@torch.no_grad()
def readout(run: LearnedPauses, lam: float, *, n_examples: int = 1024, seed: int = 12345
            ) -> PauseReadout:
    """The model's decisions and answers after every pause count, from one forward pass over
    ``n_examples`` held-out examples with the urgency input at ``lam``.

    Raises:
        InterpError: λ negative or outside the trained range.
    """
    cfg = run.config
    cfg.check_lam(lam)
    pb = held_out_batch(cfg, n_examples, seed)
    device = core_model.device(run.model)
    logits = _forward(run.model, run.urgency, pb.tokens.to(device),
                      torch.full((n_examples,), float(lam), device=device))
    read = _readings(logits, pb.eq.to(device), cfg.max_pauses + 1)
    _, logp, _ = _split(read, pb.answer.to(device), run.pause_id)
    wants = read.argmax(-1) == run.pause_id
    wants[:, -1] = False  # the cap: after K pauses the model must answer
    stop = wants.logical_not().float().argmax(1)
    correct = logp.argmax(-1) == pb.answer.to(device)[:, None]
    entropy = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)
    return PauseReadout(float(lam), pb.n, wants.cpu(), correct.cpu(), entropy.cpu(), stop.cpu())


@runtime_checkable
class StopReadout(Protocol):
    """What :func:`matched_stops` reads: the model's own stop per example and the entropy of
    the answer-now distribution after every pause count (:class:`PauseReadout`, or
    :class:`interp.training.learned_pauses_lm.LMPauseReadout` on an LM)."""

    stop: Int[Tensor, " batch"]
    entropy: Float[Tensor, "batch k"]


def matched_stops(r: StopReadout, policy: str, budget: float, seed: int = 0
                  ) -> Int[Tensor, " batch"]:
    """Per-example pause counts with mean ``budget`` placed by an outside policy:

    * ``fixed``: the same count for every example (⌊budget⌋ or ⌈budget⌉, mixed so the mean is
      the budget);
    * ``random``: a binomial count, K trials of probability budget / K (seeded);
    * ``entropy``: pause while the answer-now entropy exceeds a threshold, the threshold
      chosen by bisection so the mean count is the budget (as close as the data allow): the
      entropy trigger of :class:`interp.PausePolicy` applied to the answer;
    * ``learned``: the model's own decision.
    """
    check_choice("pause policy", policy, POLICIES)
    n_b, n_k = r.entropy.shape
    g = torch.Generator().manual_seed(seed)
    if policy == "learned":
        return r.stop
    if policy == "fixed":
        lo = math.floor(budget)
        stop = torch.full((n_b,), lo, dtype=torch.long)
        stop[torch.randperm(n_b, generator=g)[:round((budget - lo) * n_b)]] += 1
        return stop.clamp(max=n_k - 1)
    if policy == "random":
        trials = torch.full((n_b,), float(n_k - 1), dtype=torch.float64)
        return torch.binomial(trials, torch.full_like(trials, min(budget / (n_k - 1), 1.0)),
                              generator=g).long()

    def stops(tau: float) -> Tensor:
        go = r.entropy <= tau
        go[:, -1] = True
        return go.float().argmax(1)

    lo, hi = 0.0, float(r.entropy.max()) + 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if stops(mid).float().mean() <= budget else (mid, hi)
    return stops(hi)


def pause_frontier(run: LearnedPauses, lams: Sequence[float], *, n_examples: int = 1024,
                   seed: int = 12345) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy against mean pauses per answer for each urgency λ, with the same budget
    placed by the outside policies (:func:`matched_stops`), and pauses against difficulty.

    Returns:
        ``frontier``: one row per λ and policy (``lam``, ``policy``, ``mean_pauses``,
        ``accuracy``, ``n``); ``difficulty``: one row per λ and length n (``lam``, ``n_bits``,
        ``mean_pauses``, ``accuracy``, ``accuracy_no_pause``, ``count``).
    """
    for lam in lams:
        run.config.check_lam(lam)
    rows, diff = [], []
    for lam in lams:
        r = readout(run, lam, n_examples=n_examples, seed=seed)
        for policy in POLICIES:
            stop = matched_stops(r, policy, r.mean_pauses)
            rows.append(dict(lam=lam, policy=policy, mean_pauses=float(stop.float().mean()),
                             accuracy=r.accuracy_at(stop), n=len(stop)))
        diff += _by_difficulty(r, "n_bits", r.n)
    return pd.DataFrame(rows), pd.DataFrame(diff)


def _by_difficulty(r: PauseReadout, name: str, key: Int[Tensor, " batch"]) -> list[dict]:
    right = r.correct.gather(1, r.stop[:, None])[:, 0]
    rows = []
    for value in sorted(set(key.tolist())):
        m = key == value
        rows.append({"lam": r.lam, name: value, "mean_pauses": float(r.stop[m].float().mean()),
                     "accuracy": float(right[m].float().mean()),
                     "accuracy_no_pause": float(r.correct[m, 0].float().mean()),
                     "count": int(m.sum())})
    return rows


def pauses_by_ones(run: LearnedPauses, lams: Sequence[float], *, n_examples: int = 1024,
                   seed: int = 12345) -> pd.DataFrame:
    """Pauses against the count of ones c, the difficulty the threshold construction sees:
    after k pauses the thresholds [c ≥ 1] .. [c ≥ k] are computed, which settle the parity
    once c < k, so a model that pauses only where it must should pause more as c grows.

    Returns:
        One row per λ and c: ``lam``, ``ones``, ``mean_pauses``, ``accuracy``,
        ``accuracy_no_pause``, ``count``.
    """
    for lam in lams:
        run.config.check_lam(lam)
    pb = held_out_batch(run.config, n_examples, seed)
    rows = []
    for lam in lams:
        rows += _by_difficulty(readout(run, lam, n_examples=n_examples, seed=seed), "ones",
                               pb.ones)
    return pd.DataFrame(rows)


# -- generation -------------------------------------------------------------------------------

def generate_with_pauses(run: LearnedPauses, bits: Sequence[int] | str, lam: float, *,
                         max_pauses: int | None = None, record: bool | Sequence[str] = True
                         ) -> Generation:
    """Let the model answer a parity prompt, requesting its own pauses (greedy, at most
    ``max_pauses``, default the trained cap K), through :func:`interp.generate`: the K/V
    written at every self-requested pause are in ``.recording`` (role ``pause``), the count
    in ``.n_pauses``.

    Raises:
        InterpError: λ outside the trained range, a cap below 1, or bits that are not 0/1.
    """
    cfg = run.config
    cfg.check_lam(lam)
    cap = cfg.max_pauses if max_pauses is None else max_pauses
    words = [str(b) for b in bits]
    if not words or any(w not in ("0", "1") for w in words):
        raise InterpError(f"parity bits {bits!r} are not a non-empty string of 0s and 1s",
                          "give e.g. '10110' or [1, 0, 1, 1, 0]")
    if len(words) > cfg.n_max:
        raise InterpError(f"{len(words)} parity bits are more than the {cfg.n_max} the model "
                          "was trained on", f"give at most {cfg.n_max} bits")
    ids = VOCAB.encode(prompt_words(cfg, words))
    seq = make_sequence(torch.tensor(ids), ["bos"] + ["prompt"] * (len(ids) - 1))
    with urgency_input(run.model, run.urgency, float(lam)):
        return generate(run.model, seq, max_new_tokens=1, max_pauses=cap, record=record)


def learned_pause_study(cfg: LearnedPauseConfig, lams: Sequence[float],
                        out: str | os.PathLike | None = None, *, n_examples: int = 1024,
                        fresh: bool = False, verbose: bool = True
                        ) -> tuple[LearnedPauses, pd.DataFrame, pd.DataFrame]:
    """Train (or, when ``out`` holds a finished run of the same config, load; a run stopped
    part-way is continued) a learned-pause model and measure it: :func:`pause_frontier` over
    ``lams``, written to ``out`` as ``frontier.csv``, ``difficulty.csv`` and
    ``difficulty_ones.csv`` (:func:`pauses_by_ones`; what ``interp toy learned-pauses``
    runs). ``fresh`` trains from scratch whatever ``out`` holds.

    Raises:
        InterpError: a λ outside ``[cfg.lam_min, cfg.lam_max]``, or ``out`` holding a run of
            another configuration.
    """
    for lam in lams:
        cfg.check_lam(lam)
    run = None
    if out is not None and not fresh and (Path(out) / "metrics.json").is_file():
        run = load_learned_pauses(out)
        if run.config.to_dict() != cfg.to_dict():
            diff = sorted(k for k, v in cfg.to_dict().items() if run.config.to_dict()[k] != v)
            raise InterpError(f"{out} holds a learned-pause run of another configuration "
                              f"({', '.join(diff)})", "use another output folder, or delete it")
    if run is None:
        run = train_learned_pauses(cfg, out, fresh=fresh, verbose=verbose)
    frontier, difficulty = pause_frontier(run, lams, n_examples=n_examples)
    if out is not None:
        atomic_write_csv(Path(out) / "frontier.csv", frontier)
        atomic_write_csv(Path(out) / "difficulty.csv", difficulty)
        atomic_write_csv(Path(out) / "difficulty_ones.csv",
                         pauses_by_ones(run, lams, n_examples=n_examples))
    return run, frontier, difficulty
