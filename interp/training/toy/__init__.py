"""Train tiny native models on the synthetic tasks of :mod:`interp.training.tasks`: vanilla or myopic,
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
    >>> cfg = interp.training.toy.TrainConfig(task="parity", task_options=dict(n_bits=8), pauses=4)
    >>> result = interp.train_toy(cfg, out="runs/parity-p4")
    >>> result.metrics["accuracy"], result.history.tail(1)
"""

from __future__ import annotations

from ._compare import ToyComparison, compare_toy, condition_grid, grid, load_comparison
from ._config import CONDITIONS, DEFAULTS, TrainConfig, default_config
from ._config import DTYPES as DTYPES
from ._config import run_labels as run_labels
from ._loop import (
    ToyResult,
    cosine_lr,
    load_toy,
    load_training_tensors,
    lr_at,
    save_training_tensors,
    train_toy,
)
from ._model import build_model, evaluate, forward, real_inputs, task_loss, training_loss

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
