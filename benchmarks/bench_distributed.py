"""Benchmark: data parallelism with torch.distributed, 1 against P processes on this machine.

Runs the command line under ``torchrun --standalone --nproc-per-node P`` (gloo on CPU) for
P = 1 and each of ``--procs``, on the bundled model and corpus:

* ``interp record``: windows of ``--n-tokens`` tokens, residual stream + K + V at
  ``--layers``, into one recording (merged by rank 0); windows per second;
* ``interp gradients``: the self / future decomposition (k, v) of ``--grad-windows``
  windows; windows per second.

Each time is the whole command's wall clock (process start, model load and merge included,
so the ratio is a lower bound on the speed-up of the work itself), and each process gets
``--threads`` torch threads, so P processes use P × threads cores. On a machine with fewer
free cores than that the ratio measures contention, not scaling: say so when you quote it.

    python benchmarks/bench_distributed.py [--procs 2] [--windows 32] [--grad-windows 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def _run(procs: int, args: list[str], threads: int) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={procs}", "-m", "interp", *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="2", help="process counts to compare with 1")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--grad-windows", type=int, default=4)
    ap.add_argument("--n-tokens", type=int, default=128)
    ap.add_argument("--layers", default="0,10,20")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    counts = [1, *map(int, args.procs.split(","))]
    print(f"{'command':<12} {'procs':>5} {'windows':>7} {'wall s':>8} {'windows/s':>9} "
          f"{'vs 1':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, windows, extra in (
            ("record", args.windows, ["record", "--corpus", "pydoc", "--sites", "resid_post,k,v",
                                      "--layers", args.layers, "--roles", "all", "--quiet"]),
            ("gradients", args.grad_windows, ["gradients", "--corpus", "pydoc", "--sites", "k,v"]),
        ):
            base = None
            for procs in counts:
                out = os.path.join(tmp, f"{name}-{procs}")
                wall = _run(procs, [*extra, "--n-tokens", str(args.n_tokens), "--max-windows",
                                    str(windows), "--out", out], args.threads)
                rate = windows / wall
                base = base or rate
                print(f"{name:<12} {procs:>5} {windows:>7} {wall:8.1f} {rate:9.3f} "
                      f"{rate / base:6.2f}", flush=True)


if __name__ == "__main__":
    main()
