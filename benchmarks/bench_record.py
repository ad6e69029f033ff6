"""Benchmark recording on the bundled SmolLM2-135M. Prints ratios measured side by side.

1. Throughput: recording resid_post + K + V at all 30 layers, at pause and regular positions,
   streamed to disk, versus a bare forward pass over the same padded batches (goal <= 1.3x).
2. Peak memory (max RSS of a fresh process) recording N1 vs N2 tokens of the bundled corpus,
   streamed to disk with 32 MiB shards (goal: flat). To keep the run to minutes on a shared
   2-core machine it records layers 0-2 only (the forward stops after layer 2); memory
   behaviour depends on shards and batches, not on how many layers each row holds.
3. Load time: cached dequantized weights versus dequantizing the GGUF (``use_cache=False``),
   each in a fresh process.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_record.py [--windows 16] [--tokens 10000 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

import interp
from interp.pauses import pad_batch
from interp.recording._inputs import iter_items

POLICY = interp.PausePolicy(every=8)
BATCH = 8


def throughput(n_windows: int, repeats: int) -> dict:
    model = interp.load_model(device="cpu")
    interp.add_pause_token(model)
    wins = list(interp.windows(model, interp.load_corpus(), 128, max_windows=n_windows))
    items = list(iter_items(model, wins, n_tokens=128, policy=POLICY))
    batches = [pad_batch([it.seq for it in items[i:i + BATCH]])[0]
               for i in range(0, len(items), BATCH)]
    n_pos = sum(len(it.seq) for it in items)

    def bare() -> None:
        with torch.no_grad():
            for tokens in batches:
                model(tokens)

    def rec() -> None:
        with tempfile.TemporaryDirectory() as out:
            interp.record(model, wins, sites=("resid_post", "k", "v"), roles=("regular", "pause"),
                          policy=POLICY, batch_size=BATCH, out=out, verbose=False)

    times: dict[str, list[float]] = {"bare": [], "record": []}
    bare()  # warm-up
    for _ in range(repeats):  # interleaved, so machine load hits both alike
        for name, fn in (("bare", bare), ("record", rec)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    mb = n_pos * 30 * (576 + 2 * 3 * 64) * 4 / 2**20
    return dict(positions=n_pos, written_mb=mb, **best)


def child_memory(n_tokens: int) -> None:
    """Run in a fresh process: record ``n_tokens`` tokens, print the max RSS as JSON."""
    model = interp.load_model(device="cpu")
    interp.add_pause_token(model)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wins = interp.windows(model, interp.load_corpus(), 128, max_windows=n_tokens // 128)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        rec = interp.record(model, wins, sites=("resid_post", "k", "v"), layers=[0, 1, 2],
                            policy=POLICY, shard_bytes=32 * 2**20, out=out, verbose=False)
        n_rows, n_shards = len(rec), len(rec.meta["shards"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(tokens=n_tokens // 128 * 128, rows=n_rows, shards=n_shards,
                          base_mb=base / 1024, peak_mb=peak / 1024,
                          seconds=time.perf_counter() - t)))


def child_load(use_cache: bool) -> None:
    t = time.perf_counter()
    interp.load_model(device="cpu", use_cache=use_cache)
    print(json.dumps(dict(seconds=time.perf_counter() - t)))


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True, env=dict(os.environ, TQDM_DISABLE="1"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=16, help="windows of 128 tokens for part 1")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tokens", type=int, nargs=2, default=[10_000, 100_000])
    p.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-load", choices=["cached", "gguf"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_memory:
        return child_memory(args.child_memory)
    if args.child_load:
        return child_load(args.child_load == "cached")

    t = throughput(args.windows, args.repeats)
    print(f"1. throughput, {t['positions']} positions ({args.windows} windows of 128 + pauses "
          f"every 8), {t['written_mb']:.0f} MiB written")
    print(f"   bare forward {t['bare']:.2f} s | record {t['record']:.2f} s | "
          f"ratio {t['record'] / t['bare']:.2f}x (goal <= 1.3x)")
    small, large = (_child("--child-memory", str(n)) for n in args.tokens)
    print("2. peak RSS recording the bundled corpus (layers 0-2, 32 MiB shards)")
    for m in (small, large):
        print(f"   {m['tokens']:>7} tokens: {m['rows']:>7} rows, {m['shards']:>3} shards, "
              f"{m['seconds']:.0f} s, RSS after model load {m['base_mb']:.0f} MiB, "
              f"peak {m['peak_mb']:.0f} MiB")
    print(f"   peak ratio {large['peak_mb'] / small['peak_mb']:.2f}x for "
          f"{large['tokens'] / small['tokens']:.0f}x the tokens (goal: flat)")
    cached, gguf = _child("--child-load", "cached"), _child("--child-load", "gguf")
    print(f"3. load: GGUF dequantization {gguf['seconds']:.1f} s | cached weights "
          f"{cached['seconds']:.1f} s | ratio {gguf['seconds'] / cached['seconds']:.1f}x")


if __name__ == "__main__":
    main()
