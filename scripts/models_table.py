"""Print the Markdown table of docs/models.md: key numbers of finished reports, side by side.

    python scripts/models_table.py results/report-smollm2 results/report-gemma3
    python scripts/models_table.py --short ...   # the README's rows only

Each argument is an ``interp report --out DIR`` folder; the numbers are read from the
``section.json`` of its registers, gradients and probes sections (a section that did not run
shows a dash), and the settings of the first report are printed under the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: (section, key in its numbers, row label)
ROWS = [
    ("registers", "first-position attention / uniform", "attention received by the first position / uniform"),
    ("registers", "regular attention / uniform", "attention received by a regular position / uniform"),
    ("registers", "residual norm, first position / regular", "residual norm, first position / regular"),
    ("registers", "massive (position, dim) pairs", "massive (position, dim) pairs (over 100 × the median magnitude)"),
    ("registers", "largest massive activation", "largest massive activation"),
    ("registers", "layer where it emerges", "layer where it emerges"),
    ("registers", "Δloss, massive zeroed", "Δloss (nats/token), massive dims zeroed"),
    ("registers", "Δloss, massive set to mean", "Δloss (nats/token), massive dims set to their mean"),
    ("registers", "Δloss, sink K/V zeroed", "Δloss (nats/token), first position's K/V zeroed"),
    ("registers", "perplexity, full attention", "perplexity, full attention"),
    ("registers", "perplexity, window only (64)", "perplexity, KV cache of the last 64 positions only"),
    ("registers", "perplexity, 4 sinks + window (64)", "perplexity, 4 sink positions + the last 64"),
    ("gradients", "mean future share, k", "mean future share of the gradient, k"),
    ("gradients", "mean future share, v", "mean future share of the gradient, v"),
    ("gradients", "first-position future share, k", "future share at the first position, k"),
    ("gradients", "first-position future share, v", "future share at the first position, v"),
    ("probes", "offset 1: best layer", "Future Lens offset 1 (the identity check): best layer"),
    ("probes", "offset 1: top-1 agreement with the model", "Future Lens offset 1: top-1 agreement with the model"),
    ("probes", "offset 2: best layer", "Future Lens offset 2: best layer"),
    ("probes", "offset 2: top-1 agreement with the model", "Future Lens offset 2: top-1 agreement with the model"),
    ("probes", "offset 2: bigram agreement", "bigram baseline: agreement with the model"),
    ("probes", "offset 2: true-token accuracy", "Future Lens offset 2: true-token accuracy"),
    ("probes", "offset 2: bigram accuracy", "bigram baseline: true-token accuracy"),
]


def _section(report: Path, name: str) -> dict:
    path = report / name / "section.json"
    return json.loads(path.read_text()) if path.is_file() else {}


#: the rows of the README's shorter table
SHORT = {"first-position attention / uniform", "residual norm, first position / regular",
         "massive (position, dim) pairs", "largest massive activation", "Δloss, massive zeroed",
         "Δloss, massive set to mean", "mean future share, k", "mean future share, v",
         "offset 2: top-1 agreement with the model", "offset 2: bigram agreement"}


def table(reports: list[Path], names: list[str], short: bool = False) -> str:
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for section, key, label in ROWS:
        if short and key not in SHORT:
            continue
        cells = []
        for r in reports:
            v = _section(r, section).get("numbers", {}).get(key)
            cells.append("—" if v is None else f"{v:,}" if isinstance(v, int) else str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    short = "--short" in args
    args = [a for a in args if a != "--short"]
    if len(args) < 1:
        print(__doc__)
        return 2
    reports = [Path(a) for a in args]
    names = [str(_section(r, "registers").get("settings", {}).get("model", r.name)) for r in reports]
    print(table(reports, names, short))
    for r, n in zip(reports, names, strict=True):
        secs = {s: _section(r, s).get("seconds") for s in ("registers", "gradients", "probes")}
        print(f"\n{n}: seconds per section {secs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
