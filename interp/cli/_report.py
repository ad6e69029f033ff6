"""``interp report``: the main job, one self-contained HTML report.

Its options are generated from :class:`interp.reporting.ReportConfig`: one flag per field
(``--max-windows`` for ``max_windows``), with the field's documentation as its help and the
field's default as its default, so the command line and the dataclass cannot drift apart (as
``interp pause-train`` is generated from its config).
"""

from __future__ import annotations

import dataclasses
import inspect
import re

from ._common import add_renamed, parse_formats, parse_int_list

#: fields whose flag keeps the shorter name it has always had
_FLAGS = {"toy_dir": "--toy", "long_context_tokens": "--long-context"}
#: fields with no flag: token-id windows are given from Python only
_NO_FLAG = ("tokens",)


def _field_help(cls: type) -> dict[str, str]:
    """Each field's text from the ``Attributes:`` section of ``cls``'s docstring (an entry
    ``a, b: ...`` documents both)."""
    doc = inspect.cleandoc(cls.__doc__ or "").split("Attributes:", 1)[-1]
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.splitlines():
        m = re.match(r"^    (\w+(?:, \w+)*): (.*)$", line)
        if m:
            names = m.group(1).split(", ")
            for n in names:
                out[n] = m.group(2)
        elif line.startswith("        "):
            for n in names:
                out[n] += " " + line.strip()
    # plain text for a terminal: :func:`x` and ``x`` become x
    return {n: re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m.group(1) or m.group(2),
                      t).rstrip(".") for n, t in out.items()}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _fields():
    from ..reporting import ReportConfig

    return [f for f in dataclasses.fields(ReportConfig) if f.name not in _NO_FLAG]


def register(sub) -> None:
    from ..reporting import ReportConfig
    from ..reporting._config import SECTIONS

    p = sub.add_parser(
        "report", help="the main job: one HTML report of registers, gradients, probes, patching",
        description="On the bundled model and corpus (pauses inserted at random, rate 0.1): "
        "register and sink analysis, the future-loss gradient decomposition, fast lookahead "
        "probes and an attribution-patching example, written as one self-contained "
        "report.html (works offline) plus every table and figure. Finished sections are "
        "reused on a rerun unless --fresh. A few minutes on 2 idle CPU cores. Every option "
        "but --out, --fresh and --quiet is a field of interp.reporting.ReportConfig.")
    p.add_argument("--out", default="results/report", help="output folder (default results/report)")
    p.add_argument("--fresh", action="store_true", help="recompute every section")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    helps = _field_help(ReportConfig)
    defaults = ReportConfig()
    for f in _fields():
        value = getattr(defaults, f.name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        extra = f" (one of: {', '.join(SECTIONS)})" if f.name == "sections" else ""
        extra += "; comma-separated, 'none' for none" if isinstance(value, tuple) else ""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        metavar = ("A,B" if isinstance(value, tuple) else "DIR" if f.name.endswith("_dir")
                   else "N" if isinstance(value, int) else "X" if number else "TEXT")
        p.add_argument(_flag(f.name), dest=f.name, default=None, type=type(value) if number else str,
                       metavar=metavar, help=f"{helps[f.name]}{extra} (default: {shown})")
    add_renamed(p, "--n-windows")
    add_renamed(p, "--pauses", "--pause-dir")
    add_renamed(p, "--format")
    p.set_defaults(func=run)


def _parse(name: str, value, default):
    """The value of field ``name`` from its flag (numbers are already converted by argparse):
    comma-separated lists become tuples of the default's element type."""
    if name == "formats":
        return parse_formats(value)
    if not isinstance(default, tuple):
        return value
    if value == "none":
        return ()
    if default and isinstance(default[0], int):
        return tuple(parse_int_list(value, name.replace("_", "-")) or ())
    return tuple(s.strip() for s in value.split(",") if s.strip())


def config_from_args(args):
    """The :class:`~interp.reporting.ReportConfig` of parsed ``interp report`` flags (a field
    whose flag is not given keeps its default)."""
    from ..reporting import ReportConfig

    defaults = ReportConfig()
    return ReportConfig(**{f.name: _parse(f.name, getattr(args, f.name), getattr(defaults, f.name))
                           for f in _fields() if getattr(args, f.name) is not None})


def run(args) -> int:
    from ..reporting import report

    path = report(config_from_args(args), args.out, fresh=args.fresh, verbose=not args.quiet)
    print(f"open {path}")
    return 0
