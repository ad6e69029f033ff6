"""What a toy run is: :class:`TrainConfig`, the per-task defaults and the labels that identify
a run in a comparison."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...core.io import dataclass_from_dict
from ...errors import InterpError, check_choice
from ..tasks import PLACEMENTS, TASKS, Task, get_task

DTYPES = ("float32", "float64")
#: What a run inserts between prompt and answer: nothing, ``<pause>`` tokens, filler ``.``
#: tokens, or fillers trained with the parallel chain-of-thought mixture (Pfau et al. 2024).
CONDITIONS = ("none", "pause", "filler", "filler_cot")
_EVAL_SEED = 1_000_003  # the held-out set's seed stream, disjoint from training's (seed, step)


@dataclass
class TrainConfig:
    """One training run: task, model size, optimiser and schedule.

    Attributes:
        task: a name in :data:`interp.training.tasks.TASKS`.
        task_options: the task's own options (e.g. ``{"n_bits": 8}`` for parity).
        pauses: pauses (or fillers) per example; 0 for none.
        filler: insert the filler token ``.`` instead of ``<pause>``.
        cot_mixture: fraction of *training* examples whose filler positions hold the task's
            parallel chain of thought instead (Pfau et al. 2024; needs ``filler`` and
            ``pauses`` = the task's ``n_cot``). Evaluation is always on filler examples.
        placement: ``"before_answer"`` or ``"interleaved"`` (see :class:`interp.training.tasks.Task`).
        myopic: train with past keys and values detached (Wu et al. 2024).
        n_layers: transformer blocks.
        d_model: residual width.
        n_heads: attention heads per layer.
        d_mlp: MLP width (``None``: 4 · d_model).
        positional: ``"rotary"`` or ``"standard"`` (learned absolute).
        n_ctx: the model's context length (``None``: the length of the task's sequences).
            Give a longer one to run the trained model later on longer sequences, e.g. a
            model trained without pauses on sequences with pauses inserted.
        steps: optimiser steps.
        batch_size: examples per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps.
        min_lr_ratio: the cosine schedule ends at ``min_lr_ratio · lr``.
        grad_clip: clip the global gradient norm to this (0: no clipping).
        eval_every: evaluate (and checkpoint, with ``out``) every this many steps.
        eval_size: held-out examples.
        target: the metric value that counts as solved, for ``time_to_target``: accuracy at or
            above it (token tasks), normalised loss at or below it (``precache``).
        seed: seeds the initialisation and the data stream.
        device: ``None`` or ``"auto"``: CUDA when present.
        dtype: ``"float32"`` or ``"float64"``.
    """

    task: str = "parity"
    task_options: dict[str, Any] = field(default_factory=dict)
    pauses: int = 0
    filler: bool = False
    cot_mixture: float = 0.0
    placement: str = "before_answer"
    myopic: bool = False
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int | None = None
    positional: str = "rotary"
    n_ctx: int | None = None
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_size: int = 512
    target: float = 0.95
    seed: int = 0
    device: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_choice("task", self.task, list(TASKS))
        check_choice("placement", self.placement, PLACEMENTS)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("steps", "batch_size", "eval_every", "eval_size", "n_layers", "d_model",
                     "n_heads"):
            if getattr(self, name) < 1:
                raise InterpError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}",
                                  f"use {name} >= 1")
        if self.n_ctx is not None and self.n_ctx < 2:
            raise InterpError(f"TrainConfig.n_ctx must be >= 2, got {self.n_ctx}",
                              "give the longest sequence the model must read, or None")
        if self.pauses < 0 or self.warmup < 0:
            raise InterpError("TrainConfig.pauses and warmup must be >= 0",
                              "use pauses >= 0 and warmup >= 0 (0: none)")
        if not 0.0 <= self.cot_mixture <= 1.0:
            raise InterpError(f"TrainConfig.cot_mixture must be in [0, 1], got {self.cot_mixture}",
                              "give the fraction of training examples that carry the chain "
                              "of thought (0: fillers only)")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.grad_clip >= 0
                and self.weight_decay >= 0):
            raise InterpError("TrainConfig needs lr > 0, 0 <= min_lr_ratio <= 1, grad_clip >= 0 "
                              "and weight_decay >= 0",
                              f"change the value out of range (lr={self.lr}, min_lr_ratio="
                              f"{self.min_lr_ratio}, grad_clip={self.grad_clip}, weight_decay="
                              f"{self.weight_decay})")

    @property
    def mode(self) -> str:
        """``"myopic"`` or ``"vanilla"``."""
        return "myopic" if self.myopic else "vanilla"

    def make_task(self, *, evaluation: bool = False) -> Task:
        """The task this config trains on (pause options and the chain-of-thought mixture
        included), or with ``evaluation`` the one it is evaluated on (no mixture)."""
        opts = dict(self.task_options)
        if self.pauses:
            opts.update(pauses=self.pauses, placement=self.placement, filler=self.filler)
        if self.cot_mixture and not evaluation:
            opts.update(cot_mixture=self.cot_mixture)
        return get_task(self.task, **opts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. ``state.json``), naming any unknown field."""
        return dataclass_from_dict(cls, d)


def run_labels(config: TrainConfig) -> dict[str, Any]:
    """The columns that identify a run in a comparison table; ``insert`` is one of
    :data:`CONDITIONS` (``filler_cot``: fillers with the chain-of-thought mixture)."""
    insert = "none" if not config.pauses else ("filler" if config.filler else "pause")
    if config.cot_mixture:
        insert += "_cot"
    return dict(task=config.task, mode=config.mode, pauses=config.pauses, insert=insert,
                seed=config.seed)


# -- comparisons --------------------------------------------------------------------------

#: Default per-task settings for ``interp toy train/compare`` and the benchmark. ``precache``
#: and ``parity`` are measured (see ``benchmarks/bench_toy.py``): ``precache`` uses ω = 5
#: because with the paper's ω = 10 ordinary training did not leave the trivial baseline within
#: 1,500 CPU steps (pass ``task_options=dict(freq=10.0)`` for the paper's task); 6-bit parity
#: with learned absolute positions and batches of 256 leaves the 50 % plateau after about 300
#: steps. ``3sum`` is the width-bound filler task (4 tuples of 2 digits mod 3, learned
#: positions so a filler position can address the digits of its triple; see
#: ``docs/concepts/toy-tasks.md`` for the measured none / filler / filler + CoT comparison).
#: ``rhyme`` (the planning control) has a free choice among 2 final words, so exact-match
#: accuracy cannot pass 0.5: its target 0.45 means "solved"; a run reaches it by step 100.
#: The other tasks' settings are untuned starting points. Explicit options override.
DEFAULTS: dict[str, dict[str, Any]] = {
    "precache": dict(task_options=dict(freq=5.0), d_model=64, steps=800, batch_size=32,
                     eval_every=100, eval_size=256, lr=3e-3, target=0.1),
    "parity": dict(task_options=dict(n_bits=6), positional="standard", d_model=64, steps=400,
                   batch_size=256, eval_every=50, eval_size=256, lr=3e-3, target=0.95),
    "3sum": dict(task_options=dict(length=4, dim=2, mod=3), positional="standard", d_model=64,
                 steps=800, batch_size=64, eval_every=100, eval_size=512, lr=3e-3, target=0.9),
    "2sum_transform": dict(task_options=dict(length=6, dim=2), d_model=64, steps=1000, lr=1e-3),
    "primes": dict(d_model=64, steps=1000, lr=1e-3),
    "addition": dict(task_options=dict(n_digits=3), d_model=64, steps=1000, lr=1e-3),
    "rhyme": dict(task_options=dict(classes=4, words=3, line=4, lead=3), positional="standard",
                  d_model=64, steps=400, batch_size=128, eval_every=100, eval_size=512,
                  lr=3e-3, target=0.45),
}


def default_config(task: str, **overrides) -> TrainConfig:
    """The task's :data:`DEFAULTS` with ``overrides`` on top (``task_options`` merged)."""
    check_choice("task", task, list(TASKS))
    base = dict(DEFAULTS.get(task, {}))
    opts = {**base.pop("task_options", {}), **overrides.pop("task_options", {})}
    return TrainConfig(task=task, task_options=opts, **{**base, **overrides})
