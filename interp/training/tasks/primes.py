"""Digit sum mod 7 of the first n primes after a start number.

Definition: s is uniform in [0, 10^d); p_1 < p_2 < ... < p_n are the first n primes greater
than s; the answer is ``(Σ_k digitsum(p_k)) mod m`` (m = 7 by default), one token in 0..m−1.

Format (d = 3, n = 3)::

    <bos> 0 1 3 = 2        (17, 19, 23: digit sums 8 + 10 + 5 = 23 ≡ 2 mod 7)
    bos   prompt  answer

The model must enumerate primes it never sees: a task with a long serial computation behind a
one-token answer, where pauses could in principle hold intermediate results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InterpError
from ._base import BOS, RawExample, Task, Vocab, digits

__all__ = ["PrimeDigitSum", "next_primes"]


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def next_primes(start: int, n: int) -> list[int]:
    """The first ``n`` primes strictly greater than ``start`` (trial division)."""
    out: list[int] = []
    p = start
    while len(out) < n:
        p += 1
        if _is_prime(p):
            out.append(p)
    return out


class PrimeDigitSum(Task):
    """Digit sum mod ``mod`` of the first ``n_primes`` primes after a ``n_digits``-digit start.

    Args:
        n_primes: how many primes after the start to sum.
        n_digits: digits of the start number.
        mod: the modulus of the answer.
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "primes"

    def __init__(self, n_primes: int = 3, n_digits: int = 3, mod: int = 7, **pause_options):
        super().__init__(**pause_options)
        if n_primes < 1 or n_digits < 1 or not 2 <= mod <= 10:
            raise InterpError(
                f"primes needs n_primes >= 1, n_digits >= 1 and 2 <= mod <= 10; got "
                f"n_primes={n_primes}, n_digits={n_digits}, mod={mod}",
                "choose values in those ranges (the defaults are valid)")
        self.n_primes, self.n_digits, self.mod = n_primes, n_digits, mod
        self.vocab = Vocab([*"0123456789", "="])

    def options(self) -> dict:
        return dict(n_primes=self.n_primes, n_digits=self.n_digits, mod=self.mod)

    def sample(self, rng: np.random.Generator) -> RawExample:
        start = int(rng.integers(0, 10**self.n_digits))
        prompt = (BOS, *digits(start, self.n_digits), "=")
        return RawExample(prompt + self.answer(prompt),
                          ("bos",) + ("prompt",) * (self.n_digits + 1) + ("answer",))

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        start = int("".join(prompt[1:-1]))
        total = sum(sum(map(int, str(p))) for p in next_primes(start, self.n_primes))
        return (str(total % self.mod),)
