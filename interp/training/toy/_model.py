"""The tiny model of a toy run and what it measures: building it for a task, feeding real
inputs, the task loss (vanilla or myopic) and the held-out evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pandas as pd
import torch
import torch.nn.functional as F

from ..._types import Float, Tensor
from ...core import hooks
from ...core import model as core_model
from ...core.model import Bridge
from ...errors import InterpError
from ...models import TinyConfig, load_model
from ..tasks import Task, TaskBatch
from ._config import TrainConfig

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
    from ...gradients import detached_attention

    with detached_attention(model) if myopic else nullcontext():
        return task_loss(task, forward(model, task, batch), batch)


def _metric_name(task: Task) -> str:
    return "normalised_loss" if task.kind == "regression" else "accuracy"


def _reached(task: Task, value: float, target: float) -> bool:
    return value <= target if task.kind == "regression" else value >= target
