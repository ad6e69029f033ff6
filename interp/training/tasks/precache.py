"""The pre-caching regression task of Wu, Morris & Levine (2024), "Do Language Models Plan
for Future Tokens?".

Definition: x_0..x_{N−1} are i.i.d. N(0, 1) (N = 64 by default) and the target at position n is

    y_n = Σ_{i=1..k} sin(ω · x_{n−i})        (k = 10, ω = 10; terms with n − i < 0 are absent)

The target at n never depends on x_n itself. The only efficient solution computes
sin(ω·x_j) at position j, for the benefit of the next k positions (*pre-caching*), and sums the
cached values with attention later: a linear mixture of raw x's cannot be turned into a sum of
sines afterwards. Myopic training, which blocks the gradient from later losses into position
j, gives no reason to compute sin(ω·x_j) at j, so it stays near the trivial baseline
(predicting 0: normalised loss 1), while ordinary training goes far below it.

Real values through the bridge: every position holds the same token ``x``; a learned input
projection ``x_n ↦ x_n·w + b`` replaces the ``hook_embed`` output (see
:func:`interp.training.toy.real_inputs`), and the prediction is the output logit of token id 0. The
loss is the mean squared error over positions n ≥ 1 (y_0 = 0 exactly), and the
*normalised loss* is Σ (ŷ_n − y_n)² / Σ y_n², which is 1 for the trivial predictor ŷ = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import InterpError
from ._base import RawExample, Task, TaskBatch, Vocab

__all__ = ["Precache", "precache_targets"]


def precache_targets(x: np.ndarray, k: int = 10, freq: float = 10.0) -> np.ndarray:
    """y_n = Σ_{i=1..k} sin(freq · x_{n−i}) along the last axis (absent terms are zero)."""
    s = np.sin(freq * x)
    y = np.zeros_like(s)
    for i in range(1, k + 1):
        y[..., i:] += s[..., :-i] if i < s.shape[-1] else 0.0
    return y


class Precache(Task):
    """Wu et al.'s pre-caching regression (see the module docstring).

    Args:
        length: positions per sequence (N).
        k: how many earlier inputs each target sums.
        freq: the frequency ω inside the sine.
        pauses: must be 0 (every position is already an input and an output).
    """

    name = "precache"
    kind = "regression"

    def __init__(self, length: int = 64, k: int = 10, freq: float = 10.0, **pause_options):
        super().__init__(**pause_options)
        if self.pauses or self.policy is not None:
            raise InterpError("the precache task takes no pauses (every position is an input "
                              "and an output)", "drop --pauses / pauses= for this task")
        if length < 2 or k < 1:
            raise InterpError(f"precache needs length >= 2 and k >= 1; got length={length}, k={k}",
                              "use length >= 2 and k >= 1")
        self.length, self.k, self.freq = length, k, float(freq)
        self.vocab = Vocab(["x"])

    def options(self) -> dict:
        return dict(length=self.length, k=self.k, freq=self.freq)

    def sample(self, rng: np.random.Generator) -> RawExample:
        x = rng.standard_normal(self.length)
        return RawExample(("x",) * self.length, ("regular",) * self.length, inputs=x,
                          values=precache_targets(x, self.k, self.freq))

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        raise InterpError("the precache task has real-valued answers, not words",
                          "read TaskBatch.values")

    def batch(self, n: int, seed: int | Sequence[int] = 0) -> TaskBatch:
        """``n`` sequences: ``inputs`` x, ``values`` y, loss on positions 1..N−1 (y_0 = 0)."""
        if n < 1:
            raise InterpError(f"batch size must be >= 1, got {n}", "ask for n >= 1 examples")
        rng = np.random.default_rng(seed)
        raws = [self.sample(rng) for _ in range(n)]
        tokens = torch.full((n, self.length), self.vocab["x"], dtype=torch.long)
        mask = torch.ones((n, self.length), dtype=torch.bool)
        mask[:, 0] = False
        return TaskBatch(
            tokens=tokens, roles=[("regular",) * self.length] * n, loss_mask=mask,
            targets=torch.full_like(tokens, -100),
            inputs=torch.from_numpy(np.stack([r.inputs for r in raws])),
            values=torch.from_numpy(np.stack([r.values for r in raws])),
        )
