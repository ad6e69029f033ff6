"""Benchmark recording on the bundled SmolLM2-135M. Prints ratios measured side by side.

1. Throughput: recording resid_post + K + V at all 30 layers, at pause and regular positions,
   streamed to disk, versus a bare forward pass over the same padded batches (goal <= 1.3x).
   Recording never computes the unembedding (the forward stops after the last recorded
   block), so it is also compared with a bare forward stopped at the same place: that ratio
   is the cost of the hooks, copies and disk writes alone.
2. Peak memory recording N1 vs N2 tokens of the bundled corpus, streamed to disk with 32 MiB
   shards (goal: flat), each in a fresh process. The resident set size is sampled every 20 ms
   during the recording (``ru_maxrss`` would report the model load's own peak). To keep the
   run to minutes on a shared 2-core machine it records layers 0-2 only (the forward stops
   after layer 2) and 10k vs 40k tokens by default (100k takes ~7 min here: pass
   ``--tokens 10000 100000``); memory depends on shards and batches, not on how many layers
   a row holds.
3. Load time: cached dequantized weights versus dequantizing the GGUF (``use_cache=False``),
   each in a fresh process.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_record.py [--windows 16] [--tokens 10000 40000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import torch

import interp
from interp.core.pauses import pad_batch
from interp.recording._capture import BatchCapture
from interp.recording._items import iter_items

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

    def blocks_only() -> None:
        stop = BatchCapture(model, [], range(30), torch.zeros(0, dtype=torch.long),
                            torch.zeros(0, dtype=torch.long), 0, torch.float32)
        for tokens in batches:
            stop.run(tokens)

    def rec() -> None:
        with tempfile.TemporaryDirectory() as out:
            interp.record(model, wins, sites=("resid_post", "k", "v"), roles=("regular", "pause"),
                          policy=POLICY, batch_size=BATCH, out=out, verbose=False)

    times: dict[str, list[float]] = {"bare": [], "blocks": [], "record": []}
    bare()  # warm-up
    for _ in range(repeats):  # interleaved, so machine load hits all alike
        for name, fn in (("bare", bare), ("blocks", blocks_only), ("record", rec)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    mb = n_pos * 30 * (576 + 2 * 3 * 64) * 4 / 2**20
    return dict(positions=n_pos, written_mb=mb, **best)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """Samples this process's resident set size until stopped; ``peak`` is the largest seen."""

    def __init__(self, every: float = 0.02):
        super().__init__(daemon=True)
        self.every, self.peak, self._stop_event = every, _rss_mb(), threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def child_memory(n_tokens: int) -> None:
    """Run in a fresh process: record ``n_tokens`` tokens, print the peak RSS as JSON."""
    model = interp.load_model(device="cpu")
    interp.add_pause_token(model)
    gc.collect()
    base = _rss_mb()
    wins = interp.windows(model, interp.load_corpus(), 128, max_windows=n_tokens // 128)
    t = time.perf_counter()
    sampler = RssSampler()
    sampler.start()
    with tempfile.TemporaryDirectory() as out:
        rec = interp.record(model, wins, sites=("resid_post", "k", "v"), layers=[0, 1, 2],
                            policy=POLICY, shard_bytes=32 * 2**20, out=out, verbose=False)
        n_rows, n_shards = len(rec), len(rec.meta["shards"])
    peak = sampler.stop()
    print(json.dumps(dict(tokens=n_tokens // 128 * 128, rows=n_rows, shards=n_shards,
                          base_mb=base, peak_mb=peak, seconds=time.perf_counter() - t)))


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
    p.add_argument("--tokens", type=int, nargs=2, default=[10_000, 40_000])
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
    print(f"   bare forward {t['bare']:.2f} s | bare forward stopped after block 29 "
          f"{t['blocks']:.2f} s | record {t['record']:.2f} s")
    print(f"   ratio record / bare forward {t['record'] / t['bare']:.2f}x (goal <= 1.3x); "
          f"record / stopped forward {t['record'] / t['blocks']:.2f}x")
    small, large = (_child("--child-memory", str(n)) for n in args.tokens)
    print("2. peak RSS recording the bundled corpus (layers 0-2, 32 MiB shards)")
    for m in (small, large):
        print(f"   {m['tokens']:>7} tokens: {m['rows']:>7} rows, {m['shards']:>3} shards, "
              f"{m['seconds']:.0f} s, RSS before {m['base_mb']:.0f} MiB, "
              f"peak while recording {m['peak_mb']:.0f} MiB")
    print(f"   peak ratio {large['peak_mb'] / small['peak_mb']:.2f}x "
          f"(growth over the model {(large['peak_mb'] - large['base_mb']):.0f} vs "
          f"{(small['peak_mb'] - small['base_mb']):.0f} MiB) for "
          f"{large['tokens'] / small['tokens']:.0f}x the tokens (goal: flat)")
    cached, gguf = _child("--child-load", "cached"), _child("--child-load", "gguf")
    print(f"3. load: GGUF dequantization {gguf['seconds']:.1f} s | cached weights "
          f"{cached['seconds']:.1f} s | ratio {gguf['seconds'] / cached['seconds']:.1f}x")


if __name__ == "__main__":
    main()
