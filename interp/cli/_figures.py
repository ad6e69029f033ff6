"""``interp figures``: redraw every figure from saved result tables, without a model."""

from __future__ import annotations

from pathlib import Path

from ._common import add_formats_arg


def register(sub) -> None:
    p = sub.add_parser(
        "figures", help="regenerate every figure from saved results (no model needed)",
        description="Find every table an interp command wrote under RESULT_DIR (registers.csv, "
        "massive.csv, ablations.csv, eviction.csv, future_gradients.csv, by_distance.csv, "
        "attribution.csv, a probe run's metrics.csv, a toy comparison's compare.csv) and "
        "redraw its figures, next to the table or under --out.")
    p.add_argument("result_dir", metavar="RESULT_DIR", help="a folder of saved results")
    add_formats_arg(p, "pdf", "figure formats")
    p.add_argument("--out", default=None,
                   help="write the figures here (default: beside each table)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..figures._export import export_many
    from ..reporting._registry import figures_for, find_tables
    from ._common import parse_formats

    formats = parse_formats(args.formats)  # fail before drawing anything
    root = Path(args.result_dir)
    todo = []
    for kind, folder in find_tables(root):
        dest = folder if args.out is None else Path(args.out) / folder.relative_to(root)
        todo += [(fig, dest / f.name) for f, fig in figures_for(kind, folder)]
    for fmt in formats:
        for path in export_many(todo, fmt):
            print(path)
    return 0
