"""Parity of a bit string (London & Kanade 2025: a 2-layer causal transformer learns it with
pause tokens).

Definition: bits b_1..b_n are i.i.d. uniform in {0, 1}; the answer is
``b_1 ⊕ b_2 ⊕ ... ⊕ b_n`` (1 when the number of ones is odd).

Format (n = 4, two pauses before the answer)::

    <bos> 1 0 1 1 = <pause> <pause> 1
    bos   prompt ........... pause ... answer

Parity needs every bit at once; with a fixed depth, extra positions between the prompt and the
answer give the model more places to count and combine.
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
            raise InterpError(f"parity n_bits must be >= 1, got {n_bits}")
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
