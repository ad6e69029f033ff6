"""Multi-digit addition.

Definition: a and b are uniform in [0, 10^n); the answer is a + b written with n + 1 digits
(zero-padded), least significant digit first when ``reverse`` (the order in which carries are
computed, which makes the task learnable left to right), else most significant first.

Format (n = 3, reverse)::

    <bos> 4 7 2 + 0 5 9 = 1 3 5 0        (472 + 059 = 531, written 1 3 5 0)
    bos   prompt ........ answer .....
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InterpError
from ._base import BOS, RawExample, Task, Vocab, digits

__all__ = ["Addition"]


class Addition(Task):
    """Add two ``n_digits``-digit numbers.

    Args:
        n_digits: digits of each operand.
        reverse: write the sum least significant digit first.
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "addition"

    def __init__(self, n_digits: int = 3, reverse: bool = True, **pause_options):
        super().__init__(**pause_options)
        if n_digits < 1:
            raise InterpError(f"addition n_digits must be >= 1, got {n_digits}", "use n_digits >= 1")
        self.n_digits = n_digits
        self.reverse = reverse
        self.vocab = Vocab([*"0123456789", "+", "="])

    def options(self) -> dict:
        return dict(n_digits=self.n_digits, reverse=self.reverse)

    def sample(self, rng: np.random.Generator) -> RawExample:
        a, b = (int(v) for v in rng.integers(0, 10**self.n_digits, 2))
        prompt = (BOS, *digits(a, self.n_digits), "+", *digits(b, self.n_digits), "=")
        ans = self.answer(prompt)
        return RawExample(prompt + ans, ("bos",) + ("prompt",) * (len(prompt) - 1)
                          + ("answer",) * len(ans))

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        a, b = "".join(prompt[1:-1]).split("+")
        out = digits(int(a) + int(b), self.n_digits + 1)
        return tuple(reversed(out)) if self.reverse else tuple(out)
