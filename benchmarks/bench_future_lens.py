"""Benchmark: Future Lens sufficient statistics on the bundled model, time and memory.

Two measurements, side by side in one run:

* **time per 100k tokens** for all layers: one pass over ``--time-tokens`` corpus tokens,
  split into the forward pass (stopped after the last block, as the accumulation runs it) and
  the float64 accumulation of Σh, Σy, Σhhᵀ, Σhyᵀ for every layer and offset; extrapolated
  linearly to 100k tokens (both parts are linear in the token count);
* **peak RSS against the number of tokens**: for each size in ``--tokens`` a fresh process
  streams that many tokens (the corpus repeated when it is shorter) through
  :func:`interp.probes.accumulate_stats` and reports its peak resident memory. Streaming keeps
  only the sums (fixed size), so the peak should not grow with the tokens.

    python benchmarks/bench_future_lens.py                      # 20k vs 100k tokens, 30 layers
    python benchmarks/bench_future_lens.py --tokens 50000 500000 --time-tokens 10000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import interp
from interp.core.corpora import load_corpus, windows
from interp.probes import LensStats, accumulate_stats
from interp.probes._data import ProbeSequence
from interp.probes._future_lens import _pass


def _sequences(model, n_tokens: int, window: int) -> list[ProbeSequence]:
    """At least ``n_tokens`` tokens of corpus windows, the corpus repeated as often as needed."""
    base = [ProbeSequence(w.doc_id, w.seq) for w in windows(model, load_corpus(), window)]
    need = -(-n_tokens // window)
    return [base[i % len(base)] for i in range(need)]


def _run(model, n_tokens: int, window: int, layers: list[int], offsets: list[int]) -> tuple[float, float]:
    seqs = _sequences(model, n_tokens, window)
    pos = [np.arange(1, len(s.seq) - max(offsets)) for s in seqs]
    t0 = time.perf_counter()
    _pass(model, seqs, layers, offsets, 8, False, [(pos, lambda *a: None)])  # the forward alone
    t_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = accumulate_stats(model, seqs, layers, offsets, pos, batch_size=8)
    t_all = time.perf_counter() - t0
    assert isinstance(stats, LensStats) and float(stats.n) == sum(len(p) for p in pos)
    return t_fwd, t_all


def child(n_tokens: int, window: int, offsets: list[int]) -> None:
    model = interp.load_model(device="cpu")
    layers = list(range(model.cfg.n_layers))
    seqs = _sequences(model, n_tokens, window)
    pos = [np.arange(1, len(s.seq) - max(offsets)) for s in seqs]
    t0 = time.perf_counter()
    stats = accumulate_stats(model, seqs, layers, offsets, pos, batch_size=8)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(tokens=int(stats.n), seconds=time.perf_counter() - t0, peak_mib=peak)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[20000, 100000],
                    help="token counts whose peak RSS is compared (one fresh process each)")
    ap.add_argument("--time-tokens", type=int, default=4096, help="tokens timed for the per-100k figure")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--offsets", default="1,2,3")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    offsets = [int(k) for k in args.offsets.split(",")]
    if args.child is not None:
        child(args.child, args.window, offsets)
        return
    model = interp.load_model(device="cpu")
    layers = list(range(model.cfg.n_layers))
    print(f"SmolLM2-135M, {len(layers)} layers, offsets {offsets}, windows of {args.window}, "
          f"torch threads {torch.get_num_threads()}")
    t_fwd, t_all = _run(model, args.time_tokens, args.window, layers, offsets)
    scale = 100_000 / args.time_tokens
    print(f"time, {args.time_tokens} tokens: forward to the last block {t_fwd:.1f} s; forward + float64 "
          f"accumulation {t_all:.1f} s (accumulation {t_all - t_fwd:.1f} s)")
    print(f"  extrapolated per 100k tokens: {t_all * scale / 60:.1f} min "
          f"(forward {t_fwd * scale / 60:.1f} min, accumulation {(t_all - t_fwd) * scale / 60:.1f} min)")
    rows = []
    for n in args.tokens:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--window", str(args.window),
                              "--offsets", args.offsets], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"peak RSS, {r['tokens']} positions: {r['peak_mib']:.0f} MiB ({r['seconds']:.0f} s)")
    if len(rows) > 1:
        print(f"peak RSS ratio, {rows[-1]['tokens']} vs {rows[0]['tokens']} positions: "
              f"{rows[-1]['peak_mib'] / rows[0]['peak_mib']:.2f}x for "
              f"{rows[-1]['tokens'] / rows[0]['tokens']:.1f}x the tokens")


if __name__ == "__main__":
    main()
