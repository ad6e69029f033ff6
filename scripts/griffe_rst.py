"""A griffe extension that lets the API reference render interp's docstrings, which use a
few reStructuredText habits, as Markdown (mkdocstrings reads docstrings as Markdown):

* Sphinx roles: ``:func:`future_gradients``` and ``:class:`~interp.PausePolicy``` become code
  spans (``future_gradients``, ``PausePolicy``: a leading ``~`` keeps the last component);
* doctest blocks: a run of ``>>>`` / ``...`` lines with their output becomes a fenced
  ``pycon`` block, so each example keeps its own lines;
* literal blocks: a paragraph ending in ``::`` followed by an indented block becomes a
  paragraph ending in ``:`` followed by a fenced block.

The docstrings themselves are untouched; only what the site shows changes.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj|const|ref):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fence(block: list[str], indent: int, lang: str = "") -> list[str]:
    pad = " " * indent
    return [pad + "```" + lang, *block, pad + "```"]


def convert(text: str) -> str:
    """The docstring ``text`` with roles, doctests and literal blocks made Markdown."""
    text = _ROLE.sub(_role, text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>"):
            indent = _indent(line)
            block = []
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= indent:
                block.append(lines[i])
                i += 1
            out += _fence(block, indent, "pycon")
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            out.append(line[: line.rstrip().rfind("::")] + (":" if stripped != "::" else ""))
            indent = _indent(line)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = []
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                inner = min(_indent(b) for b in block if b.strip())
                out.append("")
                out += _fence([b[inner - indent:] if b.strip() else "" for b in block], indent)
                out.append("")
                i = j
                continue
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
