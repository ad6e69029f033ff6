"""The training loop: cosine learning rate, exact resume from a checkpoint, and loading a
finished run back (:func:`train_toy`, :func:`load_toy`)."""

from __future__ import annotations

import json
import math
import operator
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..._types import Tensor
from ...core.io import atomic_save_tensors, atomic_write_csv, atomic_write_text
from ...core.model import Bridge, resolve_device
from ...core.result import check_files
from ...errors import InterpError, refuse_renamed
from ..tasks import Task
from ._config import _EVAL_SEED, TrainConfig, run_labels
from ._model import _metric_name, _named_parameters, _reached, build_model, evaluate, training_loss


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

def save_training_tensors(path: Path, params: dict[str, Tensor], opt: torch.optim.Optimizer,
                          state: dict | None = None) -> None:
    """Write the parameters (``param.<name>``) and AdamW's moments (``exp_avg.<name>``,
    ``exp_avg_sq.<name>``) to one safetensors file, atomically, with the run's ``state``
    (step, history, ...) as JSON in its metadata: the tensors and the step they belong to are
    one file, so a run killed between two writes can never resume a checkpoint with another
    checkpoint's step (``state.json`` beside it is a readable copy)."""
    tensors = {f"param.{k}": p.detach().contiguous() for k, p in params.items()}
    index = {id(p): k for k, p in params.items()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, t in opt.state.get(p, {}).items():
                if key != "step":
                    tensors[f"{key}.{index[id(p)]}"] = t.contiguous()
    atomic_save_tensors(path, tensors, None if state is None else {"state": json.dumps(state)})


def read_checkpoint_state(path: Path) -> dict | None:
    """The state :func:`save_training_tensors` stored in the checkpoint (``None`` for a
    checkpoint of an earlier release, which kept it only in ``state.json``)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise InterpError(f"checkpoint {path} is damaged ({str(e)[:200]})",
                          "start over with --fresh (fresh=True)") from None
    return json.loads(meta["state"]) if "state" in meta else None


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


def _save(out: Path, model: Bridge, opt: torch.optim.AdamW, config: TrainConfig, task: Task,
          step: int, history: list[dict], elapsed: float) -> None:
    state = dict(step=step, config=config.to_dict(), task=task.config(), history=history,
                 elapsed_s=elapsed)
    save_training_tensors(out / "checkpoint.safetensors", _named_parameters(model), opt, state)
    atomic_write_text(out / "state.json", json.dumps(state, indent=1))


def _load_tensors(out: Path, model: Bridge, opt: torch.optim.AdamW | None, step: int) -> None:
    load_training_tensors(out / "checkpoint.safetensors", _named_parameters(model), opt, step)


def _read_state(out: Path) -> dict | None:
    path = out / "state.json"
    if not (path.is_file() and (out / "checkpoint.safetensors").is_file()):
        return None
    return read_checkpoint_state(out / "checkpoint.safetensors") or json.loads(path.read_text())


#: what train_toy writes in its folder, the resume marker first (``--fresh`` removes them in
#: this order, so a kill part-way leaves no marker beside another run's files)
TOY_FILES = ("state.json", "checkpoint.safetensors", "history.csv", "metrics.json")


def clear_run(out: Path, names: tuple[str, ...]) -> None:
    """Remove a training run's files (only those) from ``out``, in the order given."""
    for name in names:
        (out / name).unlink(missing_ok=True)


def load_toy(out: str | os.PathLike) -> ToyResult:
    """Load a trained toy model from a ``train_toy`` output folder.

    Returns:
        A :class:`ToyResult`: the bridge (eval mode), the task, the :class:`TrainConfig`, the
        history and the final metrics (empty for a run stopped before its end). It still
        unpacks as ``model, task, config = load_toy(out)``.
    """
    out = check_files(ToyResult, out, ["checkpoint.safetensors", "state.json"],
                      problem="holds no toy checkpoint")
    state = _read_state(out)
    config = TrainConfig.from_dict(state["config"])
    task = config.make_task()
    model = build_model(config, task, toy_context(config, task))
    _load_tensors(out, model, None, state["step"])
    model.eval()
    history = (pd.read_csv(out / "history.csv") if (out / "history.csv").is_file()
               else pd.DataFrame())
    metrics = (json.loads((out / "metrics.json").read_text())
               if (out / "metrics.json").is_file() else {})
    return ToyResult(config, task, model, history, metrics)


def toy_context(config: TrainConfig, task: Task) -> int:
    """The context a run's model gets: ``config.n_ctx``, or the task's sequence length.

    Raises:
        InterpError: the task's sequences (prompt, pauses and answer) do not fit in
            ``config.n_ctx``.
    """
    need = int(task.batch(1, _EVAL_SEED).tokens.shape[1])
    if config.n_ctx is None:
        return need
    if need > config.n_ctx:
        raise InterpError(
            f"{config.task} sequences with {config.pauses} pause(s) are {need} tokens long, "
            f"more than the context n_ctx={config.n_ctx}",
            f"raise n_ctx to at least {need}, or use fewer pauses or a shorter task")
    return config.n_ctx


# -- training -----------------------------------------------------------------------------

def check_resume(out: Path, state: dict, config: dict[str, Any], *, what: str) -> None:
    """Refuse to resume the training ``state`` saved in ``out`` under ``config`` (a config's
    ``to_dict()``) when anything but ``steps`` differs, or when it already ran more steps.

    Growing ``steps`` is allowed (training continues); note the cosine schedule then follows
    the new length from the resumed step on, so the run is not the same as one started with
    the larger ``steps``.
    """
    saved = state["config"]
    diff = sorted(k for k in set(saved) | set(config)
                  if k != "steps" and saved.get(k) != config.get(k))
    if diff:
        raise InterpError(f"{out} holds a {what} with a different configuration "
                          f"({', '.join(diff)})",
                          "use another output folder (--out), or fresh=True / --fresh to start "
                          "over")
    if state["step"] > config["steps"]:
        raise InterpError(f"{out} holds a {what} already trained {state['step']} steps, more "
                          f"than steps={config['steps']}",
                          f"pass steps={state['step']} (--steps {state['step']}) or more to "
                          "continue it, or fresh=True / --fresh to start over")


def train_toy(config: TrainConfig, out: str | os.PathLike | None = None, *,
              fresh: bool = False, verbose: bool = True, **old) -> ToyResult:
    """Train a tiny model on a synthetic task (see the module docstring).

    Args:
        config: the run.
        out: folder for the checkpoint, ``state.json``, ``history.csv`` and ``metrics.json``;
            ``None`` keeps everything in memory.
        fresh: start over even if ``out`` holds a checkpoint (``--fresh``); by default a
            checkpoint in ``out`` is continued (its config must match, except ``steps``,
            which may grow). ``resume=`` of earlier releases raises, naming this.
        verbose: show a progress bar.

    Returns:
        The trained model, its task, the evaluation history and the final metrics.

    Raises:
        InterpError: a checkpoint in ``out`` from a different configuration.
    """
    refuse_renamed("train_toy", old, {"resume": ("fresh", operator.not_)})
    task = config.make_task()
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    eval_task = config.make_task(evaluation=True)
    n_ctx = toy_context(config, task)
    eval_batch = eval_task.batch(config.eval_size, (_EVAL_SEED, config.seed)).to(device, dtype)
    model = build_model(config, task, n_ctx)
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
        if fresh:
            clear_run(out_dir, TOY_FILES)
        state = None if fresh else _read_state(out_dir)
        if state is not None:
            check_resume(out_dir, state, config.to_dict(), what="run")
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
