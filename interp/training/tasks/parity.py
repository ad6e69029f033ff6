"""Parity of a bit string (London & Kanade 2025: a 2-layer causal transformer learns it with
pause tokens).

Definition: bits b_1..b_n are i.i.d. uniform in {0, 1}; the answer is
``b_1 ⊕ b_2 ⊕ ... ⊕ b_n`` (1 when the number of ones is odd).

Format (n = 4, two pauses before the answer)::

    <bos> 1 0 1 1 = <pause> <pause> 1
    bos   prompt ........... pause ... answer

Parity needs every bit at once; with a fixed depth, extra positions between the prompt and the
answer give the model more places to count and combine.

**Parallel chain of thought** (for the filler mixture of Pfau et al. 2024, see
:class:`interp.training.tasks.Task`): the count of ones in unary, one token per threshold,
``[c ≥ 1] [c ≥ 2] ... [c ≥ n]`` with c = b_1 + ... + b_n. Every token is a threshold of one
global average (what a filler position reads with uniform attention), so all are computable at
once from the input, and the parity is *linear* in them:
``c mod 2 = Σ_j (−1)^(j+1)·[c ≥ j]``, one more attention step. This is the construction by
which pause tokens let a 2-layer transformer compute parity (London & Kanade 2025); answering
at once needs the parity of c from c/n in the MLPs of the last two positions, a function with
n sign changes::

    <bos> 1 0 1 1 = 1 1 1 0 1        (c = 3: thresholds 1 1 1 0, answer 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InterpError
from ._base import BOS, RawExample, Task, Vocab

__all__ = ["Parity"]


class Parity(Task):
    """Parity of ``n_bits`` random bits.

    Args:
        n_bits: length of the bit string.
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "parity"

    def __init__(self, n_bits: int = 8, **pause_options):
        super().__init__(**pause_options)
        if n_bits < 1:
            raise InterpError(f"parity n_bits must be >= 1, got {n_bits}", "use n_bits >= 1")
        self.n_bits = n_bits
        self.vocab = Vocab(["0", "1", "="])

    def options(self) -> dict:
        return dict(n_bits=self.n_bits)

    def sample(self, rng: np.random.Generator) -> RawExample:
        bits = [str(b) for b in rng.integers(0, 2, self.n_bits)]
        prompt = (BOS, *bits, "=")
        return RawExample(prompt + self.answer(prompt),
                          ("bos",) + ("prompt",) * (self.n_bits + 1) + ("answer",))

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        return (str(sum(w == "1" for w in prompt) % 2),)

    @property
    def n_cot(self) -> int:
        return self.n_bits

    def cot(self, prompt: Sequence[str]) -> tuple[str, ...]:
        """The count of ones in unary: ``[c ≥ j]`` for j = 1..n (see the module docstring)."""
        c = sum(w == "1" for w in prompt)
        return tuple(str(int(c >= j)) for j in range(1, self.n_bits + 1))
