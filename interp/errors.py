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


def refuse_renamed(where: str, given: dict, renamed: dict) -> None:
    """Fail on keywords of earlier releases, naming the new one.

    A function whose keyword was renamed takes ``**old`` and calls this first, so a script
    written for an earlier release gets an :class:`InterpError` that says what to pass instead,
    not a bare ``TypeError``.

    Args:
        where: the function's name, as the user calls it.
        given: the keywords caught by ``**old`` (nothing to do when empty).
        renamed: old keyword -> new keyword, or -> ``(new keyword, value -> new value)`` when
            the meaning flips (``resume=False`` is ``fresh=True``).

    Raises:
        InterpError: a renamed keyword.
        TypeError: any other unexpected keyword, as Python itself would say.
    """
    for old, value in given.items():
        if old not in renamed:
            raise TypeError(f"{where}() got an unexpected keyword argument {old!r}")
        new, convert = renamed[old] if isinstance(renamed[old], tuple) else (renamed[old], None)
        raise InterpError(f"{where}({old}=...) was renamed {new}",
                          f"pass {new}={value if convert is None else convert(value)!r}")
