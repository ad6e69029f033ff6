"""What both controls read: the residual stream of a toy model at every layer."""

from __future__ import annotations

import torch

from .._types import Float, Tensor
from ..core import hooks
from ..training.tasks import Task, TaskBatch
from ..training.toy import forward


def residuals(model, task: Task, batch: TaskBatch) -> list[Float[Tensor, "batch pos d_model"]]:
    """The residual stream entering every layer, then the final one (``n_layers + 1``
    tensors), from one forward pass (real inputs fed for regression tasks)."""
    n = model.cfg.n_layers
    names = [hooks.resid(layer, "pre") for layer in range(n)] + [hooks.resid(n - 1, "post")]
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(t: Tensor, hook) -> Tensor:
            seen[name] = t.detach()
            return t
        return keep

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, keeper(name)) for name in names]):
        forward(model, task, batch)
    return [seen[name] for name in names]
