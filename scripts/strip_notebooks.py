"""Strip outputs from the notebooks so that git holds only their source.

    python scripts/strip_notebooks.py            # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check    # exit 1 listing notebooks that hold outputs
    python scripts/strip_notebooks.py a.ipynb    # particular files

Stripping removes every code cell's outputs and execution count and the per-cell execution
metadata (timings), and keeps the notebook's kernel and language metadata. Run it before
committing a notebook you executed; the test suite checks that none holds outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")


def is_stripped(nb: nbformat.NotebookNode) -> bool:
    """True when no cell holds outputs, an execution count or execution metadata."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            return False
        if any(k in cell.get("metadata", {}) for k in VOLATILE_CELL_METADATA):
            return False
    return True


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and volatile metadata, in place; returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEPT_NOTEBOOK_METADATA}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any notebook holds outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if is_stripped(nb):
            continue
        dirty.append(path)
        if not args.check:
            tmp = path.with_name(path.name + ".tmp")
            nbformat.write(strip(nb), tmp)
            os.replace(tmp, path)  # atomic: an interrupted run never leaves half a notebook
    for path in dirty:
        print(f"{'holds outputs' if args.check else 'stripped'}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
