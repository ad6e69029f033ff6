"""Benchmark toy training, and reproduce the pre-caching and pause findings at CPU scale.

Measured side by side in one run (the machine is shared, so ratios are what count):

1. **Step cost**: training throughput (tokens/s) of vanilla and myopic steps on the default
   ``precache`` and ``parity`` configs, interleaved in blocks; ratio myopic / vanilla.
2. **Pre-caching** (Wu, Morris & Levine 2024): the default ``precache`` comparison, vanilla vs
   myopic: final normalised loss (1 = the trivial predictor), time to the target; then, on
   each trained model, a closed-form ridge probe reading sin(ω·x_n) at position n from the
   residual stream entering layer 1 (R² on held-out sequences), and the future share of the
   K/V gradient ⟨g_future, g_total⟩ / ‖g_total‖², with the self term from
   :func:`interp.gradients.detached_attention` (future = total − self).
3. **Pauses**: the default ``parity`` comparison, with and without pauses, across seeds.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_toy.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from interp import controls
from interp.core import hooks
from interp.training.toy import (
    build_model,
    compare_toy,
    default_config,
    forward,
    grid,
    train_toy,
    training_loss,
)


def step_cost(task: str, steps: int, blocks: int = 3) -> dict[str, float]:
    """Seconds per training step (forward + backward + AdamW), vanilla and myopic, measured in
    alternating blocks so both see the same machine load."""
    cfg = default_config(task)
    t = cfg.make_task()
    batch = t.batch(cfg.batch_size, seed=0)
    model = build_model(cfg, t, batch.tokens.shape[1])
    params = [p for p in model.parameters()] + (
        list(model.interp_real_input.parameters()) if t.kind == "regression" else [])
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    times = {"vanilla": [], "myopic": []}
    for _ in range(blocks):
        for mode in times:
            start = time.perf_counter()
            for _ in range(steps):
                loss = training_loss(model, t, batch, myopic=mode == "myopic")
                opt.zero_grad()
                loss.backward()
                opt.step()
            times[mode].append((time.perf_counter() - start) / steps)
    tokens = batch.tokens.numel()
    v, m = np.median(times["vanilla"]), np.median(times["myopic"])
    return dict(task=task, tokens_per_step=tokens, vanilla_tok_s=tokens / v,
                myopic_tok_s=tokens / m, ratio=m / v)


def probe_r2(model, task, layer: int, n_train: int = 256, n_test: int = 128,
             ridge: float = 1e-3) -> float:
    """R² on held-out sequences of a ridge probe reading sin(ω·x_n) at position n from the
    residual stream entering ``layer`` (closed form w = (XᵀX + λI)⁻¹ Xᵀy, with a bias)."""
    def features(seed: int, n: int):
        b = task.batch(n, seed=seed).to(next(model.parameters()).device)
        acts = {}
        with torch.no_grad(), model.hooks(fwd_hooks=[(hooks.resid(layer, "pre"),
                                                      lambda x, hook: acts.setdefault("x", x))]):
            forward(model, task, b)
        x = acts["x"].flatten(0, 1).double().cpu().numpy()
        y = np.sin(task.freq * b.inputs.flatten().cpu().numpy())
        return np.c_[x, np.ones(len(x))], y

    x_tr, y_tr = features(101, n_train)
    x_te, y_te = features(202, n_test)
    w = np.linalg.solve(x_tr.T @ x_tr + ridge * np.eye(x_tr.shape[1]), x_tr.T @ y_tr)
    resid = y_te - x_te @ w
    return float(1 - resid.var() / y_te.var())


def kv_future_share(model, task, n: int = 64) -> float:
    """Mean over layers, sites (k, v) and positions 1..N−2 of the future share of the K/V
    gradient of the summed loss (:func:`interp.controls.kv_future_share`, on ``n`` held-out
    sequences)."""
    b = task.batch(n, seed=303).to(next(model.parameters()).device)
    return float(controls.kv_future_share(model, task, b).future_share.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    ap.add_argument("--out", default="/tmp/bench_toy",
                    help="folder for the trained runs (a rerun resumes finished ones)")
    ap.add_argument("--parts", default="cost,precache,parity",
                    help="comma-separated sections to run: cost, precache, parity")
    args = ap.parse_args()
    parts = args.parts.split(",")
    short = dict(steps=40, eval_every=20) if args.quick else {}
    seeds = [0] if args.quick else [0, 1, 2]

    if "cost" in parts:
        cost_table(steps=5 if args.quick else 20)
    if "precache" in parts:
        precache_table(default_config("precache", **short), Path(args.out) / "precache")
    if "parity" in parts:
        parity_table(default_config("parity", **short), seeds, Path(args.out) / "parity")


def cost_table(steps: int) -> None:
    print("== step cost (median of 3 alternating blocks) ==")
    print(f"{'task':<10}{'tokens/step':>12}{'vanilla tok/s':>15}{'myopic tok/s':>14}{'myopic/vanilla':>16}")
    for task in ("precache", "parity"):
        r = step_cost(task, steps=steps)
        print(f"{r['task']:<10}{r['tokens_per_step']:>12}{r['vanilla_tok_s']:>15.0f}"
              f"{r['myopic_tok_s']:>14.0f}{r['ratio']:>16.2f}", flush=True)


def precache_table(base, out: Path) -> None:
    print("\n== pre-caching: vanilla vs myopic (default precache config) ==")
    print(f"task options {base.task_options}, d_model {base.d_model}, {base.steps} steps")
    print(f"{'mode':<9}{'norm. loss':>11}{'s to target':>13}{'wall s':>8}{'tok/s':>8}"
          f"{'probe R2 L1':>13}{'K/V future share':>18}")
    for mode in ("vanilla", "myopic"):
        start = time.perf_counter()
        res = train_toy(dataclasses.replace(base, myopic=mode == "myopic"), out / mode,
                        verbose=False)
        wall = time.perf_counter() - start
        m = res.metrics
        tt = "-" if m["seconds_to_target"] is None else f"{m['seconds_to_target']:.0f}"
        print(f"{mode:<9}{m['normalised_loss']:>11.4f}{tt:>13}{wall:>8.0f}"
              f"{m['tokens_per_second']:>8.0f}{probe_r2(res.model, res.task, 1):>13.3f}"
              f"{kv_future_share(res.model, res.task):>18.3f}", flush=True)


def parity_table(base, seeds: list[int], out: Path) -> None:
    print("\n== pauses: parity with and without pauses (default parity config) ==")
    start = time.perf_counter()
    comp = compare_toy(grid(base, pauses=[0, base.task_options.get("n_bits", 8)],
                            modes=["vanilla"], inserts=["pause"], seeds=seeds), out,
                       verbose=False)
    wall = time.perf_counter() - start
    print(f"task options {base.task_options}, {base.steps} steps, seeds {seeds}; "
          f"comparison wall time {wall:.0f} s")
    print(comp.summary().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(comp.runs[["pauses", "seed", "value", "steps_to_target", "seconds_to_target",
                     "tokens_per_second"]].to_string(index=False))


if __name__ == "__main__":
    main()
