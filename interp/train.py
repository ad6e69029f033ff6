"""Train tiny native models on the synthetic tasks of :mod:`interp.tasks`: vanilla or myopic,
with pauses, fillers or neither.

The model is an ordinary ``TransformerBridge`` from ``interp.load_model(interp.TinyConfig(...))``,
so every interp analysis (records, gradients, probes, registers) runs on a trained toy model
unchanged. Its ``<pause>`` id is the task vocabulary's (:func:`interp.core.model.pause_id`).

**Training.** AdamW, a linear warm-up to ``lr`` over ``warmup`` steps, then a cosine decay to
``min_lr_ratio · lr`` at the last step; gradient-norm clipping. Batch ``s`` is drawn fresh
with seed ``(seed, s)`` (an endless, deterministic stream); evaluation uses one fixed held-out
set drawn with a separate seed. The loss is the cross-entropy of answer tokens only (pause,
filler and prompt outputs are masked), or, for the real-valued ``precache`` task, the mean
squared error.

**Myopic training** (Wu, Morris & Levine 2024): the forward pass runs inside
:func:`interp.gradients.detached_attention`, so every query reads the other positions' keys and
values detached. Values are unchanged; the gradient of the loss at position t reaches earlier
positions' keys and values no more, so the model is never rewarded for computing at position i
something only a later position needs (pre-caching). Evaluation is the same in both modes.

**Real-valued inputs** (``precache``): a learned projection ``x ↦ x·w + b`` (``nn.Linear(1,
d_model)``, kept on the model, :func:`interp.core.model.real_input`) replaces the ``hook_embed`` output inside
:func:`real_inputs`, and the prediction is the output logit of token id 0. To analyse a trained
regression model, run the analysis inside ``with real_inputs(model, x):``.

**Files** (``out``): ``checkpoint.safetensors`` (parameters, the input projection and AdamW's
moments), ``state.json`` (step, config, task, history, elapsed time, written atomically after
the checkpoint), and at the end ``history.csv`` and ``metrics.json``. Calling
:func:`train_toy` again on the same ``out`` resumes from the last checkpoint, and because the
data stream is indexed by step, the resumed run matches an uninterrupted one.

Example:
    >>> cfg = interp.train.TrainConfig(task="parity", task_options=dict(n_bits=8), pauses=4)
    >>> result = interp.train_toy(cfg, out="runs/parity-p4")
    >>> result.metrics["accuracy"], result.history.tail(1)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from . import hooks
from ._io import atomic_save_tensors, atomic_write_csv, atomic_write_text, dataclass_from_dict
from ._types import Float, Tensor
from .core import model as core_model
from .core.model import Bridge
from .core.result import Figure, check_files
from .errors import InterpError, check_choice
from .models import TinyConfig, load_model, resolve_device
from .tasks import PLACEMENTS, TASKS, Task, TaskBatch, get_task

__all__ = [
    "CONDITIONS",
    "DEFAULTS",
    "ToyComparison",
    "ToyResult",
    "TrainConfig",
    "build_model",
    "compare_toy",
    "condition_grid",
    "default_config",
    "grid",
    "evaluate",
    "forward",
    "load_comparison",
    "load_toy",
    "cosine_lr",
    "load_training_tensors",
    "lr_at",
    "save_training_tensors",
    "real_inputs",
    "task_loss",
    "train_toy",
    "training_loss",
]

DTYPES = ("float32", "float64")
#: What a run inserts between prompt and answer: nothing, ``<pause>`` tokens, filler ``.``
#: tokens, or fillers trained with the parallel chain-of-thought mixture (Pfau et al. 2024).
CONDITIONS = ("none", "pause", "filler", "filler_cot")
_EVAL_SEED = 1_000_003  # the held-out set's seed stream, disjoint from training's (seed, step)


@dataclass
class TrainConfig:
    """One training run: task, model size, optimiser and schedule.

    Attributes:
        task: a name in :data:`interp.tasks.TASKS`.
        task_options: the task's own options (e.g. ``{"n_bits": 8}`` for parity).
        pauses: pauses (or fillers) per example; 0 for none.
        filler: insert the filler token ``.`` instead of ``<pause>``.
        cot_mixture: fraction of *training* examples whose filler positions hold the task's
            parallel chain of thought instead (Pfau et al. 2024; needs ``filler`` and
            ``pauses`` = the task's ``n_cot``). Evaluation is always on filler examples.
        placement: ``"before_answer"`` or ``"interleaved"`` (see :class:`interp.tasks.Task`).
        myopic: train with past keys and values detached (Wu et al. 2024).
        n_layers: transformer blocks.
        d_model: residual width.
        n_heads: attention heads per layer.
        d_mlp: MLP width (``None``: 4 · d_model).
        positional: ``"rotary"`` or ``"standard"`` (learned absolute).
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
                raise InterpError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.pauses < 0 or self.warmup < 0:
            raise InterpError("TrainConfig.pauses and warmup must be >= 0")
        if not 0.0 <= self.cot_mixture <= 1.0:
            raise InterpError(f"TrainConfig.cot_mixture must be in [0, 1], got {self.cot_mixture}",
                              "give the fraction of training examples that carry the chain "
                              "of thought (0: fillers only)")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.grad_clip >= 0
                and self.weight_decay >= 0):
            raise InterpError("TrainConfig needs lr > 0, 0 <= min_lr_ratio <= 1, grad_clip >= 0 "
                              "and weight_decay >= 0")

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


@dataclass
class ToyResult:
    """A trained toy model with its task, history and final metrics.

    Attributes:
        config: the run's configuration.
        task: the task (with its pause options).
        model: the trained ``TransformerBridge`` (eval mode).
        history: one row per evaluation: ``step``, ``lr``, ``train_loss``, ``eval_loss``,
            ``metric`` (accuracy, or normalised loss for ``precache``), ``elapsed_s``,
            ``tokens``.
        metrics: the final evaluation and timings (also ``metrics.json``).
    """

    config: TrainConfig
    task: Task
    model: Any
    history: pd.DataFrame
    metrics: dict[str, Any]

    MADE_BY: ClassVar[str] = "interp toy train --out DIR"

    def to_pandas(self) -> pd.DataFrame:
        """The history, with the run's task, mode, pauses and seed as columns."""
        df = self.history.copy()
        for k, v in run_labels(self.config).items():
            df[k] = v
        return df

    @classmethod
    def load(cls, out: str | os.PathLike) -> ToyResult:
        """The trained model, its task, configuration, history and metrics from a
        ``train_toy`` output folder (a run stopped early has no history or metrics yet)."""
        return load_toy(out)

    def __iter__(self):
        """``model, task, config = load_toy(out)``, as in earlier releases."""
        return iter((self.model, self.task, self.config))


def run_labels(config: TrainConfig) -> dict[str, Any]:
    """The columns that identify a run in a comparison table; ``insert`` is one of
    :data:`CONDITIONS` (``filler_cot``: fillers with the chain-of-thought mixture)."""
    insert = "none" if not config.pauses else ("filler" if config.filler else "pause")
    if config.cot_mixture:
        insert += "_cot"
    return dict(task=config.task, mode=config.mode, pauses=config.pauses, insert=insert,
                seed=config.seed)


# -- model --------------------------------------------------------------------------------

def build_model(config: TrainConfig, task: Task, n_ctx: int):
    """A fresh tiny native model sized for ``task`` (vocabulary, context ``n_ctx``)."""
    tiny = TinyConfig(n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
                      d_mlp=config.d_mlp, d_vocab=task.d_vocab, n_ctx=n_ctx,
                      positional=config.positional, seed=config.seed)
    model = load_model(tiny, device=config.device, dtype=getattr(torch, config.dtype))
    core_model.set_pause_id(model, task.vocab.pause_id)
    if task.kind == "regression":
        torch.manual_seed(config.seed)
        core_model.set_real_input(model, torch.nn.Linear(1, config.d_model).to(
            device=core_model.device(model), dtype=getattr(torch, config.dtype)))
    return model


def _named_parameters(model: Bridge) -> dict[str, Tensor]:
    """The trainable parameters by name, the real-input projection's under ``real_input.``."""
    params = dict(model.named_parameters())
    proj = core_model.real_input(model)
    if proj is not None:
        params.update({f"real_input.{k}": p for k, p in proj.named_parameters()})
    return params


@contextmanager
def real_inputs(model: Bridge, x: Float[Tensor, "batch pos"]) -> Iterator[None]:
    """Feed real values: inside the block the ``hook_embed`` output is ``x·w + b``.

    Args:
        model: a model built for a regression task (it has a real-input projection).
        x: one real input per position.
    """
    proj = core_model.real_input(model)
    if proj is None:
        raise InterpError("this model has no real-valued input projection",
                          "build it with interp.train.build_model for a regression task")

    def embed(out: Tensor, hook) -> Tensor:
        if out.shape[:2] != x.shape:
            raise InterpError(f"real inputs of shape {tuple(x.shape)} for tokens of shape "
                              f"{tuple(out.shape[:2])}", "give one value per token")
        return proj(x[..., None].to(out.dtype))

    with model.hooks(fwd_hooks=[(hooks.EMBED, embed)]):
        yield


def forward(model: Bridge, task: Task, batch: TaskBatch) -> Tensor:
    """The model's outputs on a batch: logits ``[batch, pos, d_vocab]`` for token tasks,
    predictions ``[batch, pos]`` (logit 0) for regression."""
    if task.kind == "regression":
        with real_inputs(model, batch.inputs):
            return model(batch.tokens)[..., 0]
    return model(batch.tokens)


def task_loss(task: Task, out: Tensor, batch: TaskBatch) -> Tensor:
    """Mean answer-token cross-entropy, or mean squared error on the masked positions."""
    if task.kind == "regression":
        return (out - batch.values)[batch.loss_mask].pow(2).mean()
    return F.cross_entropy(out.flatten(0, 1), batch.targets.flatten())


@torch.no_grad()
def evaluate(model: Bridge, task: Task, batch: TaskBatch) -> dict[str, float]:
    """Held-out metrics.

    Token tasks: ``loss``, ``accuracy`` (every answer token right, exact match),
    ``token_accuracy`` and ``majority_accuracy`` (always answering the most frequent answer).
    Regression: ``loss`` (MSE) and ``normalised_loss`` = Σ(ŷ − y)² / Σ y² (1 for ŷ = 0).
    """
    was_training = model.training
    model.eval()
    out = forward(model, task, batch)
    model.train(was_training)
    loss = float(task_loss(task, out, batch))
    if task.kind == "regression":
        y = batch.values[batch.loss_mask]
        err = (out[batch.loss_mask] - y).pow(2).sum()
        return dict(loss=loss, normalised_loss=float(err / y.pow(2).sum()))
    mask = batch.loss_mask
    right = (out.argmax(-1) == batch.targets) | ~mask
    answers = [tuple(t[m].tolist()) for t, m in zip(batch.targets.cpu(), mask.cpu(), strict=True)]
    counts = pd.Series(answers).value_counts()
    return dict(loss=loss, accuracy=float(right.all(-1).float().mean()),
                token_accuracy=float(right[mask].float().mean()),
                majority_accuracy=float(counts.iloc[0] / len(answers)))


def training_loss(model: Bridge, task: Task, batch: TaskBatch, *, myopic: bool = False) -> Tensor:
    """The loss whose gradient trains the model; with ``myopic`` the forward runs inside
    :func:`interp.gradients.detached_attention`, so ``loss.backward()`` gives the myopic
    gradient (same value, no path from a loss into earlier positions' keys and values)."""
    from .gradients import detached_attention

    with detached_attention(model) if myopic else nullcontext():
        return task_loss(task, forward(model, task, batch), batch)


def _metric_name(task: Task) -> str:
    return "normalised_loss" if task.kind == "regression" else "accuracy"


def _reached(task: Task, value: float, target: float) -> bool:
    return value <= target if task.kind == "regression" else value >= target


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` (0-based) for ``config``: see :func:`cosine_lr`."""
    return cosine_lr(step, lr=config.lr, warmup=config.warmup, steps=config.steps,
                     min_lr_ratio=config.min_lr_ratio)


def cosine_lr(step: int, *, lr: float, warmup: int, steps: int, min_lr_ratio: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine to the floor.

    ``lr · (step + 1) / warmup`` during warm-up, then
    ``lr · (r + (1 − r) · ½(1 + cos(π · p)))`` with p the fraction of the remaining steps done
    and r = ``min_lr_ratio``.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(steps - warmup, 1)
    p = min((step - warmup) / span, 1.0)
    r = min_lr_ratio
    return lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))


# -- checkpoints --------------------------------------------------------------------------

def save_training_tensors(path: Path, params: dict[str, Tensor], opt: torch.optim.Optimizer) -> None:
    """Write the parameters (``param.<name>``) and AdamW's moments (``exp_avg.<name>``,
    ``exp_avg_sq.<name>``) to one safetensors file, atomically."""
    tensors = {f"param.{k}": p.detach().contiguous() for k, p in params.items()}
    index = {id(p): k for k, p in params.items()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, t in opt.state.get(p, {}).items():
                if key != "step":
                    tensors[f"{key}.{index[id(p)]}"] = t.contiguous()
    atomic_save_tensors(path, tensors)


def load_training_tensors(path: Path, params: dict[str, Tensor],
                          opt: torch.optim.Optimizer | None, step: int) -> None:
    """Read back what :func:`save_training_tensors` wrote: parameters in place, and AdamW's
    moments with its step count set to ``step`` (so the next update is the one an
    uninterrupted run would make)."""
    device = next(iter(params.values())).device
    tensors = load_file(str(path), device=str(device))
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[f"param.{k}"])
    if opt is None:
        return
    for k, p in params.items():
        if f"exp_avg.{k}" in tensors:
            opt.state[p] = dict(step=torch.tensor(float(step)), exp_avg=tensors[f"exp_avg.{k}"],
                                exp_avg_sq=tensors[f"exp_avg_sq.{k}"])


def _save(out: Path, model, opt: torch.optim.AdamW, config: TrainConfig, task: Task,
          step: int, history: list[dict], elapsed: float) -> None:
    save_training_tensors(out / "checkpoint.safetensors", _named_parameters(model), opt)
    state = dict(step=step, config=config.to_dict(), task=task.config(), history=history,
                 elapsed_s=elapsed)
    atomic_write_text(out / "state.json", json.dumps(state, indent=1))


def _load_tensors(out: Path, model, opt: torch.optim.AdamW | None, step: int) -> None:
    load_training_tensors(out / "checkpoint.safetensors", _named_parameters(model), opt, step)


def _read_state(out: Path) -> dict | None:
    path = out / "state.json"
    if not (path.is_file() and (out / "checkpoint.safetensors").is_file()):
        return None
    return json.loads(path.read_text())


def load_toy(out: str | os.PathLike) -> ToyResult:
    """Load a trained toy model from a ``train_toy`` output folder.

    Returns:
        A :class:`ToyResult`: the bridge (eval mode), the task, the :class:`TrainConfig`, the
        history and the final metrics (empty for a run stopped before its end). It still
        unpacks as ``model, task, config = load_toy(out)``.
    """
    out = Path(out)
    state = _read_state(out)
    if state is None:
        raise InterpError(f"{out} holds no toy checkpoint (checkpoint.safetensors + state.json)",
                          "point at a folder written by `interp toy train --out DIR`")
    config = TrainConfig.from_dict(state["config"])
    task = config.make_task()
    model = build_model(config, task, _n_ctx(task))
    _load_tensors(out, model, None, state["step"])
    model.eval()
    history = (pd.read_csv(out / "history.csv") if (out / "history.csv").is_file()
               else pd.DataFrame())
    metrics = (json.loads((out / "metrics.json").read_text())
               if (out / "metrics.json").is_file() else {})
    return ToyResult(config, task, model, history, metrics)


def _n_ctx(task: Task) -> int:
    return int(task.batch(1, _EVAL_SEED).tokens.shape[1])


# -- training -----------------------------------------------------------------------------

def train_toy(config: TrainConfig, out: str | os.PathLike | None = None, *,
              resume: bool = True, verbose: bool = True) -> ToyResult:
    """Train a tiny model on a synthetic task (see the module docstring).

    Args:
        config: the run.
        out: folder for the checkpoint, ``state.json``, ``history.csv`` and ``metrics.json``;
            ``None`` keeps everything in memory.
        resume: continue from a checkpoint in ``out`` when there is one (its config must
            match, except ``steps``, which may grow).
        verbose: show a progress bar.

    Returns:
        The trained model, its task, the evaluation history and the final metrics.

    Raises:
        InterpError: a checkpoint in ``out`` from a different configuration.
    """
    task = config.make_task()
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    eval_task = config.make_task(evaluation=True)
    eval_batch = eval_task.batch(config.eval_size, (_EVAL_SEED, config.seed)).to(device, dtype)
    model = build_model(config, task, int(eval_batch.tokens.shape[1]))
    params = _named_parameters(model)
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=config.weight_decay),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=config.lr, betas=(0.9, 0.98))
    start, history, elapsed = 0, [], 0.0
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        state = _read_state(out_dir) if resume else None
        if state is not None:
            saved = {k: v for k, v in state["config"].items() if k != "steps"}
            mine = {k: v for k, v in config.to_dict().items() if k != "steps"}
            if saved != mine:
                diff = sorted(k for k in mine if saved.get(k) != mine[k])
                raise InterpError(f"{out_dir} holds a run with a different configuration "
                                  f"({', '.join(diff)})",
                                  "use another output folder, or resume=False / --fresh")
            start, history, elapsed = state["step"], state["history"], state["elapsed_s"]
            _load_tensors(out_dir, model, opt, start)

    metric = _metric_name(task)
    model.train()
    tokens_per_step = config.batch_size * int(eval_batch.tokens.shape[1])
    train_losses: list[float] = []
    t0 = time.perf_counter() - elapsed
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not verbose, desc=f"{config.task} {config.mode} p{config.pauses}")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        batch = task.batch(config.batch_size, (config.seed, step)).to(device, dtype)
        loss = training_loss(model, task, batch, myopic=config.myopic)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), config.grad_clip)
        opt.step()
        train_losses.append(float(loss.detach()))
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            ev = evaluate(model, eval_task, eval_batch)
            row = dict(step=done, lr=lr_at(step, config),
                       train_loss=float(np.mean(train_losses)), eval_loss=ev["loss"],
                       metric=ev[metric], elapsed_s=time.perf_counter() - t0,
                       tokens=done * tokens_per_step)
            history.append(row)
            train_losses.clear()
            bar.set_postfix(loss=f"{row['eval_loss']:.3g}", **{metric[:8]: f"{row['metric']:.3f}"})
            if out_dir is not None:
                _save(out_dir, model, opt, config, task, done, history, row["elapsed_s"])
    bar.close()
    model.eval()

    hist = pd.DataFrame(history, columns=["step", "lr", "train_loss", "eval_loss", "metric",
                                          "elapsed_s", "tokens"])
    final = evaluate(model, eval_task, eval_batch)
    reached = hist[[_reached(task, v, config.target) for v in hist["metric"]]]
    total_s = float(hist["elapsed_s"].iloc[-1]) if len(hist) else 0.0
    metrics: dict[str, Any] = dict(
        **run_labels(config), metric=metric, **final,
        baseline=1.0 if task.kind == "regression" else final["majority_accuracy"],
        steps=config.steps, train_seconds=total_s,
        tokens_per_second=config.steps * tokens_per_step / total_s if total_s else float("nan"),
        target=config.target,
        steps_to_target=int(reached["step"].iloc[0]) if len(reached) else None,
        seconds_to_target=float(reached["elapsed_s"].iloc[0]) if len(reached) else None,
        n_parameters=int(sum(p.numel() for p in params.values())),
        config=config.to_dict(), task_config=task.config(),
    )
    if out_dir is not None:
        atomic_write_csv(out_dir / "history.csv", hist)
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1, default=str))
    return ToyResult(config=config, task=task, model=model, history=hist, metrics=metrics)


# -- comparisons --------------------------------------------------------------------------

#: Default per-task settings for ``interp toy train/compare`` and the benchmark. ``precache``
#: and ``parity`` are measured (see ``benchmarks/bench_toy.py``): ``precache`` uses ω = 5
#: because with the paper's ω = 10 ordinary training did not leave the trivial baseline within
#: 1,500 CPU steps (pass ``task_options=dict(freq=10.0)`` for the paper's task); 6-bit parity
#: with learned absolute positions and batches of 256 leaves the 50 % plateau after about 300
#: steps. ``3sum`` is the width-bound filler task (4 tuples of 2 digits mod 3, learned
#: positions so a filler position can address the digits of its triple; see
#: ``docs/concepts/toy-tasks.md`` for the measured none / filler / filler + CoT comparison).
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
}


def default_config(task: str, **overrides) -> TrainConfig:
    """The task's :data:`DEFAULTS` with ``overrides`` on top (``task_options`` merged)."""
    check_choice("task", task, list(TASKS))
    base = dict(DEFAULTS.get(task, {}))
    opts = {**base.pop("task_options", {}), **overrides.pop("task_options", {})}
    return TrainConfig(task=task, task_options=opts, **{**base, **overrides})


@dataclass
class ToyComparison:
    """A grid of runs (task × pauses × insert × mode × seed).

    Attributes:
        runs: one row per run: ``task``, ``mode``, ``pauses``, ``insert``, ``seed``,
            ``metric`` (its name), ``value`` (its final value), ``loss``, ``baseline``,
            ``steps_to_target``, ``seconds_to_target``, ``train_seconds``, ``tokens_per_second``.
        histories: the runs' histories stacked, with the same identifying columns.
    """

    runs: pd.DataFrame
    histories: pd.DataFrame

    FILES: ClassVar[tuple[str, ...]] = ("compare.csv", "histories.csv")
    MADE_BY: ClassVar[str] = "interp toy compare --out DIR"

    def to_pandas(self) -> pd.DataFrame:
        return self.runs

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``compare.csv``, ``summary.csv`` and ``histories.csv`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in (("compare.csv", self.runs), ("summary.csv", self.summary()),
                         ("histories.csv", self.histories)):
            atomic_write_csv(out / name, df)
        return out

    @classmethod
    def load(cls, out: str | os.PathLike) -> ToyComparison:
        """Read a comparison written by :func:`compare_toy` (``compare.csv`` and
        ``histories.csv`` in ``out``); no model is needed."""
        out = check_files(cls, out)
        return cls(runs=pd.read_csv(out / "compare.csv"),
                   histories=pd.read_csv(out / "histories.csv"))

    def figures(self) -> list[Figure]:
        from .figures import toy as f

        return [Figure("toy_compare", f.compare_bars,
                       "Final held-out metric of tiny models trained on a synthetic task, per "
                       "condition (vanilla / myopic, with or without pauses), over seeds."),
                Figure("toy_curves", f.training_curves,
                       "Held-out metric during training, one line per seed.")]

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation, min and max of the final metric over seeds, per condition."""
        keys = ["task", "mode", "pauses", "insert", "metric"]
        g = self.runs.groupby(keys, sort=False)
        out = g["value"].agg(["mean", "std", "min", "max", "count"]).reset_index()
        out["baseline"] = g["baseline"].mean().to_numpy()
        return out.rename(columns={"count": "seeds"})


def load_comparison(out: str | os.PathLike) -> ToyComparison:
    """The :class:`ToyComparison` saved in ``out`` by ``interp toy compare`` / :func:`compare_toy`."""
    return ToyComparison.load(out)


_RUN_COLUMNS = ["metric", "loss", "baseline", "steps_to_target", "seconds_to_target",
                "train_seconds", "tokens_per_second"]


def compare_toy(configs: list[TrainConfig], out: str | os.PathLike | None = None, *,
                verbose: bool = True) -> ToyComparison:
    """Train every config (each in ``out/runs/<label>`` when ``out`` is given; finished runs
    are resumed, i.e. skipped) and gather the final metrics and histories."""
    if not configs:
        raise InterpError("no runs to compare", "give at least one task, pause count, mode and seed")
    rows, hists = [], []
    for cfg in tqdm(configs, desc="runs", disable=not verbose or len(configs) == 1):
        labels = run_labels(cfg)
        run_dir = None if out is None else Path(out) / "runs" / "_".join(
            f"{k}{v}" if k in ("pauses", "seed") else str(v) for k, v in labels.items())
        res = train_toy(cfg, run_dir, verbose=False)
        m = res.metrics
        rows.append(dict(**labels, value=m[m["metric"]], **{k: m[k] for k in _RUN_COLUMNS}))
        hists.append(res.to_pandas())
    comp = ToyComparison(runs=pd.DataFrame(rows), histories=pd.concat(hists, ignore_index=True))
    if out is not None:
        comp.save(out)
    return comp


def grid(base: TrainConfig, *, pauses: list[int], modes: list[str], inserts: list[str],
         seeds: list[int], cot_mixture: float = 0.5) -> list[TrainConfig]:
    """The configs of a task × pauses × insert × mode × seed grid around ``base``.

    ``inserts`` holds ``"pause"``, ``"filler"`` and/or ``"filler_cot"`` (fillers, with
    ``cot_mixture`` of the training examples carrying the chain of thought instead); it only
    matters where pauses > 0, so a pause count of 0 appears once per mode and seed.
    """
    for m in modes:
        check_choice("mode", m, ("vanilla", "myopic"))
    for i in inserts:
        check_choice("insert", i, CONDITIONS[1:])
    out = []
    for p in pauses:
        for ins in inserts if p else inserts[:1]:
            for mode in modes:
                for seed in seeds:
                    out.append(dataclasses.replace(
                        base, pauses=p, filler=bool(p) and ins.startswith("filler"),
                        cot_mixture=cot_mixture if p and ins == "filler_cot" else 0.0,
                        myopic=mode == "myopic", seed=seed))
    return out


def condition_grid(base: TrainConfig, conditions: list[str], *, seeds: list[int],
                   fillers: int | None = None, cot_mixture: float = 0.5,
                   modes: list[str] | None = None) -> list[TrainConfig]:
    """The configs that compare :data:`CONDITIONS` at one insert count, per mode and seed.

    Args:
        base: the shared settings (task, model, schedule).
        conditions: names from :data:`CONDITIONS`, e.g. ``["none", "filler", "filler_cot"]``.
        seeds: one run per seed and condition.
        fillers: tokens inserted before the answer in every condition but ``none``; default
            the task's chain-of-thought length (``n_cot``), which ``filler_cot`` requires.
        cot_mixture: for ``filler_cot``, the fraction of training examples with the chain.
        modes: ``vanilla`` and/or ``myopic`` (default ``["vanilla"]``).

    Raises:
        InterpError: an unknown condition, a negative filler count, a mixture outside [0, 1].
    """
    if not conditions:
        raise InterpError("no conditions to compare", f"choose from: {', '.join(CONDITIONS)}")
    for c in conditions:
        check_choice("condition", c, CONDITIONS)
    if fillers is None:
        fillers = base.make_task().n_cot or 0
        if not fillers:
            raise InterpError(f"task {base.task!r} has no chain-of-thought length to default to",
                              "give the number of fillers (--fillers N)")
    inserts = [c for c in dict.fromkeys(conditions) if c != "none"]
    if fillers < 0 or (fillers == 0 and inserts):
        raise InterpError(f"the filler count must be >= 1, got {fillers}",
                          "give the number of tokens to insert before the answer (or only "
                          "the condition 'none')")
    if not 0.0 <= cot_mixture <= 1.0:
        raise InterpError(f"the chain-of-thought mixture must be in [0, 1], got {cot_mixture}",
                          "give the fraction of training examples that carry the chain")
    pauses = ([0] if "none" in conditions else []) + ([fillers] if inserts else [])
    return grid(base, pauses=pauses, modes=modes or ["vanilla"], inserts=inserts or ["pause"],
                seeds=seeds, cot_mixture=cot_mixture)
