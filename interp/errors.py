"""Errors that name the problem and the fix.

Every error interp raises on bad input is an :class:`InterpError` (a ``ValueError``), so a
notebook user can catch one type and the command line can print the message without a
traceback from deep inside torch.
"""

from __future__ import annotations


class InterpError(ValueError):
    """Bad input, with a message that says what is wrong and how to fix it.

    Args:
        problem: what is wrong, in one sentence.
        fix: what to do about it (a command, an argument to change, valid choices).
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


def check_choice(kind: str, value: object, valid: list | tuple) -> None:
    """Raise an :class:`InterpError` listing the valid choices when ``value`` is not one."""
    if value not in valid:
        raise InterpError(
            f"unknown {kind} {value!r}", f"choose one of: {', '.join(map(str, valid))}"
        )
