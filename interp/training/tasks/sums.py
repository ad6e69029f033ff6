"""3SUM and 2SUM-Transform with filler tokens (Pfau, Merrill & Bowman 2024, "Let's Think Dot
by Dot").

**3SUM.** The input is ``length`` tuples x_1..x_n, each of ``dim`` digits mod ``mod``. The
answer is ``Y`` when some triple i < j < k sums to zero mod ``mod`` in every dimension,
``x_i + x_j + x_k ≡ 0``, else ``N``. Checking all C(n, 3) triples does not fit in one pass of
a shallow model; filler positions give it room to check them in parallel.

**2SUM-Transform.** The input is ``length`` tuples shown *shifted*: z_i = x_i + t (mod
``mod``, per dimension), followed by ``|`` and the shift t itself. The answer is ``Y`` when
some pair i < j has ``x_i + x_j ≡ 0`` in every dimension. Since t arrives last, the model
cannot start on the pairs before it reads t: all pairwise work must happen at or after the
end of the input, i.e. on filler positions.

Format (3SUM, length 3, dim 2, two fillers)::

    <bos> 1 3 4 0 5 7 : . . Y        (13 + 40 + 57 = 100 ≡ 00 digit-wise mod 10)
    bos   prompt .......  filler answer

Each tuple is ``dim`` digit tokens, no separator (positions are fixed). Classes are balanced:
half the examples get a planted solution (a random pair/triple whose last member is set to
make the sum vanish), the other half are resampled until they have none.

**Parallel chain of thought.** Pfau et al. only got models to use fillers when training mixed
filler sequences with sequences whose filler positions hold a *parallel* chain of thought:
intermediate results that can all be computed at once, from the input alone. Here it is every
k-subset's sum, digit by digit: for each pair/triple c = (i < j [< l]) in lexicographic order
and each dimension d, the token ``(Σ_{i∈c} x_i[d]) mod mod`` (for 2SUM-Transform, of the
unshifted x). That is ``dim · C(length, k)`` tokens, and the answer is ``Y`` exactly when some
subset's ``dim`` tokens are all ``0``. Each token needs one gather of k digits (one attention
step) and a sum; the answer needs one more step over the tokens: a width-bound, depth-2
solution, where answering at once needs every subset checked in a single position::

    <bos> 1 3 4 0 5 7 : 0 0 Y        (length 3, dim 2: the one triple's sums, 10 and 10)

Pfau et al.'s own 3SUM chain names one summand of each pair and then either the matching third
tuple or one digit of the pair's sum; the digit-wise subset sums are simpler and equally
parallel. Use it with ``pauses=task.n_cot, filler=True, cot_mixture=f`` (see
:class:`interp.training.tasks.Task`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from ...errors import InterpError
from ._base import BOS, RawExample, Task, Vocab

__all__ = ["ThreeSum", "TwoSumTransform"]

_MAX_TRIES = 10_000


class _KSum(Task):
    """Shared generator for k-SUM tasks over ``dim``-digit tuples mod ``mod``."""

    k: int
    transform: bool = False

    def __init__(self, length: int = 8, dim: int = 2, mod: int = 10, **pause_options):
        super().__init__(**pause_options)
        if length < self.k or dim < 1 or not 2 <= mod <= 10:
            raise InterpError(
                f"{self.name} needs length >= {self.k}, dim >= 1 and 2 <= mod <= 10; got "
                f"length={length}, dim={dim}, mod={mod}",
                "choose values in those ranges (the defaults are valid)")
        self.length, self.dim, self.mod = length, dim, mod
        self.vocab = Vocab([*"0123456789"[:mod], "|", ":", "Y", "N"])

    def options(self) -> dict:
        return dict(length=self.length, dim=self.dim, mod=self.mod)

    def _has_solution(self, x: np.ndarray) -> bool:
        return any(not ((x[list(c)].sum(0)) % self.mod).any()
                   for c in combinations(range(len(x)), self.k))

    def sample(self, rng: np.random.Generator) -> RawExample:
        positive = bool(rng.integers(0, 2))
        for _ in range(_MAX_TRIES):
            x = rng.integers(0, self.mod, (self.length, self.dim))
            if positive:
                idx = np.sort(rng.choice(self.length, self.k, replace=False))
                x[idx[-1]] = (-x[idx[:-1]].sum(0)) % self.mod
                break
            if not self._has_solution(x):
                break
        else:
            raise InterpError(
                f"{self.name}: no example without a solution found in {_MAX_TRIES} draws",
                "use fewer tuples (length) or more dimensions (dim)")
        words = [BOS]
        if self.transform:
            t = rng.integers(0, self.mod, self.dim)
            words += [str(d) for d in ((x + t) % self.mod).ravel()] + ["|"]
            words += [str(d) for d in t]
        else:
            words += [str(d) for d in x.ravel()]
        words.append(":")
        words += self.answer(words)
        return RawExample(tuple(words),
                          ("bos",) + ("prompt",) * (len(words) - 2) + ("answer",))

    def _tuples(self, prompt: Sequence[str]) -> np.ndarray:
        """The tuples x_i of a prompt (undoing the shift for 2SUM-Transform)."""
        body = [int(w) for w in prompt[1:] if w.isdigit()]
        x = np.array(body[: self.length * self.dim]).reshape(self.length, self.dim)
        if self.transform:
            x = (x - np.array(body[self.length * self.dim:])) % self.mod
        return x

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        return ("Y" if self._has_solution(self._tuples(prompt)) else "N",)

    @property
    def n_cot(self) -> int:
        return self.dim * math.comb(self.length, self.k)

    def cot(self, prompt: Sequence[str]) -> tuple[str, ...]:
        """Every k-subset's sum mod ``mod``, digit by digit, subsets in lexicographic order."""
        x = self._tuples(prompt)
        subsets = np.array(list(combinations(range(self.length), self.k)))
        sums = x[subsets].sum(1) % self.mod  # [subset, dim]
        return tuple(str(d) for d in sums.ravel())


class ThreeSum(_KSum):
    """3SUM over ``length`` tuples of ``dim`` digits mod ``mod`` (see the module docstring).

    Args:
        length: number of tuples.
        dim: digits per tuple.
        mod: the modulus (at most 10, so each digit is one token).
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "3sum"
    k = 3


class TwoSumTransform(_KSum):
    """2SUM over shifted tuples, the shift given last (see the module docstring).

    Args:
        length: number of tuples.
        dim: digits per tuple.
        mod: the modulus (at most 10, so each digit is one token).
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "2sum_transform"
    k = 2
    transform = True
