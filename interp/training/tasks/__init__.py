"""Synthetic tasks with pauses: seeded generators for controlled experiments on tiny models.

Each task is one module with its definition in the docstring, its own small word-level
vocabulary, and examples as :class:`interp.PausedSequence` with roles ``bos`` / ``prompt`` /
``answer`` / ``pause`` / ``filler`` and an answer-only loss:

=================  =========================================================================
name               task
=================  =========================================================================
``precache``       Wu et al.'s regression y_n = Σ_{i=1..10} sin(10·x_{n−i}) (real-valued)
``parity``         parity of a bit string (with a parallel chain of thought: the count in unary)
``3sum``           does some triple of tuples sum to 0 mod 10 (Pfau et al.)
``2sum_transform`` does some pair sum to 0, inputs shifted by a key given last (Pfau et al.)
``primes``         digit sum mod 7 of the first n primes after a start number
``addition``       multi-digit addition
``rhyme``          a couplet whose last word must rhyme with line 1 (the planning toy)
=================  =========================================================================

Example:
    >>> task = interp.training.tasks.get_task("parity", n_bits=6, pauses=2)
    >>> task.decode(task.examples(1, seed=0)[0])
    '<bos> 1 1 1 0 0 0 = <pause> <pause> 1'
    >>> batch = task.batch(64, seed=0)      # padded tensors, targets on answer positions
"""

from __future__ import annotations

import inspect

from ...errors import InterpError
from ._base import PLACEMENTS, RawExample, Task, TaskBatch, Vocab
from .addition import Addition
from .parity import Parity
from .precache import Precache, precache_targets
from .primes import PrimeDigitSum, next_primes
from .rhyme import Rhyme
from .sums import ThreeSum, TwoSumTransform

__all__ = [
    "PLACEMENTS",
    "TASKS",
    "Addition",
    "Parity",
    "Precache",
    "PrimeDigitSum",
    "RawExample",
    "Rhyme",
    "Task",
    "TaskBatch",
    "ThreeSum",
    "TwoSumTransform",
    "Vocab",
    "get_task",
    "next_primes",
    "precache_targets",
]

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Precache, Parity, ThreeSum, TwoSumTransform, PrimeDigitSum, Addition,
                              Rhyme)
}
_PAUSE_OPTIONS = ("pauses", "placement", "filler", "policy", "cot_mixture")


def task_options(name: str) -> list[str]:
    """The options ``get_task(name, ...)`` accepts: the task's own, then the pause options."""
    own = [p for p in inspect.signature(TASKS[name].__init__).parameters
           if p not in ("self", "pause_options")]
    return own + list(_PAUSE_OPTIONS)


def get_task(name: str, **options) -> Task:
    """Build a task by name.

    Args:
        name: one of :data:`TASKS` (``precache``, ``parity``, ``3sum``, ``2sum_transform``,
            ``primes``, ``addition``, ``rhyme``).
        **options: the task's own options (see its class) and the pause options ``pauses``,
            ``placement`` (one of ``before_answer``, ``interleaved``), ``filler``, ``policy``,
            ``cot_mixture`` (see :class:`Task`).

    Raises:
        InterpError: an unknown task (listing the tasks) or option (listing the valid ones).
    """
    if name not in TASKS:
        raise InterpError(f"unknown task {name!r}", f"choose one of: {', '.join(TASKS)}")
    valid = task_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InterpError(f"unknown option(s) for task {name!r}: {', '.join(unknown)}",
                          f"valid options: {', '.join(valid)}")
    task = TASKS[name](**options)
    task.check_cot_mixture()
    return task
