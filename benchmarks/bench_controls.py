"""Benchmark the positive controls: training time per condition and the total time of the
default controls run (``interp controls all``), which must fit in 30 minutes on 2 CPU cores.

Prints, per pause-control condition (none, filler_cot) and seed, the training wall time and
tokens/s, the time of the lookahead runs (vanilla, myopic), of the planning runs (rhyme, one
per seed), of each instrument suite, and the total; then the ratio of the slowest condition to ``none`` per run (the cost of 16 fillers
and the chain). A rerun on the same ``--out`` resumes finished runs, so time a fresh folder.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_controls.py --out /tmp/bench_controls``
(``--quick`` for a smoke run: 8-bit parity, 50 steps, one seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from interp.controls import (
    control_run,
    lookahead_control,
    lookahead_runs,
    pause_control,
    pause_control_config,
    pause_instruments,
    planning_control,
    planning_runs,
)
from interp.training.toy import load_toy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_controls")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    n_bits, seeds = (8, [0]) if args.quick else (16, [0, 1, 2])
    base = pause_control_config(n_bits=n_bits)
    if args.quick:
        base = dataclasses.replace(base, steps=50, eval_every=25)
    t0 = time.perf_counter()
    comp = pause_control(base, lengths=[n_bits], conditions=("none", "filler_cot"), seeds=seeds,
                         out=out / "pauses", verbose=False)
    t_pause = time.perf_counter() - t0
    print("== pause control: training time per run ==")
    print(comp.runs[["length", "insert", "seed", "value", "train_seconds",
                     "tokens_per_second"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    per = comp.runs.groupby("insert")["train_seconds"].mean()
    print(f"mean seconds per run: {per.to_dict()}; filler_cot / none = "
          f"{per['filler_cot'] / per['none']:.2f}x")
    t1 = time.perf_counter()
    pause_instruments(load_toy(control_run(out / "pauses", n_bits, "filler_cot", seeds[0])),
                      load_toy(control_run(out / "pauses", n_bits, "none", seeds[0])))
    t_inst = time.perf_counter() - t1
    t2 = time.perf_counter()
    steps = dict(steps=50, eval_every=25) if args.quick else {}
    vanilla, myopic = lookahead_runs(out / "lookahead", verbose=False, **steps)
    t_look_train = time.perf_counter() - t2
    t3 = time.perf_counter()
    lookahead_control(vanilla, myopic)
    t_look = time.perf_counter() - t3
    t4 = time.perf_counter()
    plans = planning_runs(out / "planning", seeds=seeds, verbose=False, **steps)
    t_plan_train = time.perf_counter() - t4
    t5 = time.perf_counter()
    planning_control(plans)
    t_plan = time.perf_counter() - t5
    total = time.perf_counter() - t0
    print("\n== lookahead runs ==")
    for run in (vanilla, myopic):
        m = run.metrics
        print(f"{m['mode']:<8} normalised loss {m['normalised_loss']:.4f}, "
              f"{m['train_seconds']:.0f} s, {m['tokens_per_second']:.0f} tokens/s")
    print("\n== wall time (s) ==")
    print(f"pause control training {t_pause:.0f} | pause instruments {t_inst:.0f} | "
          f"lookahead training {t_look_train:.0f} | lookahead instruments {t_look:.0f} | "
          f"planning training {t_plan_train:.0f} | planning instruments {t_plan:.0f} | "
          f"total {total:.0f} ({total / 60:.1f} min; budget 30 min)")


if __name__ == "__main__":
    main()
