"""Benchmark: the default report (``interp report``) on 2 CPU cores. Goal: <= 10 minutes.

One run, side by side:

* the default report from scratch (bundled SmolLM2, bundled corpus, pauses at rate 0.1,
  PNG figures), with each section's share of the wall time;
* the same report rerun: every section is reused from disk (ratio fresh / rerun);
* static export of the report's figures: one ``plotly.io.write_images`` call for all of them
  (what the report does) against one ``interp.figures.export`` call per figure (ratio);
* the CPU seconds the fresh run used (this process, all threads, plus Chrome for the figures)
  and the machine's load average: these machines are shared, so the wall time alone is noisy;
  on 2 idle cores the wall time lies between CPU / 2 and CPU.

    OMP_NUM_THREADS=2 python benchmarks/bench_report.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

import interp
from interp.figures import export
from interp.figures._export import export_many
from interp.reporting import ReportConfig, report
from interp.reporting._registry import figures_for, find_tables


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="a small setting (a smoke test)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_report_"))
    config = ReportConfig(sections=("registers", "gradients", "probes", "patching"))
    if args.quick:
        config = ReportConfig(max_windows=2, n_tokens=48, eviction_tokens=256, gradient_windows=1,
                              probe_windows=24, probe_tokens=16, probe_layer_stride=10,
                              sections=config.sections)
    print(f"torch threads: {torch.get_num_threads()}, load average before: "
          f"{os.getloadavg()[0]:.1f}")

    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    report(config, out, fresh=True, verbose=False)
    fresh = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    load_fresh = os.getloadavg()[0]
    t0 = time.perf_counter()
    report(config, out, verbose=False)
    rerun = time.perf_counter() - t0

    figs = [(fig, Path(tempfile.mkdtemp()) / f.name)
            for kind, folder in find_tables(out) for f, fig in figures_for(kind, folder)]
    t0 = time.perf_counter()
    export_many(figs, "png")
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for fig, path in figs:
        export(fig, path.with_name(path.name + "_single.png"))
    single = time.perf_counter() - t0

    print(f"\n{'part':<34}{'seconds':>10}{'share':>9}")
    total_sections = 0.0
    for s in config.sections:
        rec = json.loads((out / s / "section.json").read_text())
        total_sections += rec["seconds"]
        print(f"{'section ' + s:<34}{rec['seconds']:>10.1f}{rec['seconds'] / fresh:>9.0%}")
    other = fresh - total_sections
    print(f"{'model load, figures, HTML':<34}{other:>10.1f}{other / fresh:>9.0%}")
    print(f"{'default report, fresh':<34}{fresh:>10.1f}{'':>9}   goal <= 600 s: "
          f"{'met' if fresh <= 600 else 'NOT met'}")
    print(f"{'rerun (all sections reused)':<34}{rerun:>10.1f}   fresh / rerun = "
          f"{fresh / rerun:.1f}x")
    print(f"{'PNG export, one batch':<34}{batched:>10.1f}   ({len(figs)} figures)")
    print(f"{'PNG export, one call per figure':<34}{single:>10.1f}   single / batch = "
          f"{single / batched:.1f}x")
    print(f"{'CPU seconds of the fresh run':<34}{cpu:>10.1f}   on 2 idle cores: "
          f"{cpu / 2:.0f}-{cpu:.0f} s wall")
    print(f"load average during the fresh run: {load_fresh:.1f} (2 cores); report in {out}")
    print(f"interp {interp.__version__}")


if __name__ == "__main__":
    main()
