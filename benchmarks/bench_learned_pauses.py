"""Benchmark learned pause requests, side by side in one run:

1. the cost of one training step with the halting objective (K + 1 readings per example,
   urgency input, chain-of-thought mixture) against one step of ordinary training with K
   fixed filler tokens and the same mixture (:func:`interp.train_toy`'s loss), same model
   size, batch and longest sequence; the ratio learned / fixed;
2. greedy generation through :func:`interp.generate` (K/V recorded) with self-requested pauses
   (``max_pauses=K``) against answering at once, on the same prompts: tokens/s (pauses count
   as tokens), answers/s, and mean pauses per answer.

The model is trained for ``--steps`` steps first, so it does pause (at λ = 0 a model that has
learned to wait takes several pauses on long strings).

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_learned_pauses.py`` (``--quick``: a smaller
model and fewer repetitions).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp.recording import generate
from interp.training.learned_pauses import (
    LearnedPauseConfig,
    generate_with_pauses,
    train_learned_pauses,
    training_step_loss,
)
from interp.training.toy import TrainConfig, build_model, training_loss


def _step_seconds(step_fn, params, reps: int) -> float:
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for s in range(reps + 2):
        t = time.perf_counter()
        loss = step_fn(s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[2:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    n_max, reps, n_prompts = (8, 5, 16) if args.quick else (12, 20, 64)
    cfg = LearnedPauseConfig(n_min=2, n_max=n_max, steps=20 if args.quick else args.steps,
                             lam_max=0.2)
    run = train_learned_pauses(cfg, verbose=False)
    run.model.train()

    fixed_cfg = TrainConfig(task="parity", task_options=dict(n_bits=n_max), pauses=n_max,
                            filler=True, cot_mixture=cfg.cot_mixture, positional="standard",
                            batch_size=cfg.batch_size)
    task = fixed_cfg.make_task()
    fixed_model = build_model(fixed_cfg, task, int(task.batch(1, 0).tokens.shape[1]))
    fixed_model.train()

    learned = _step_seconds(lambda s: training_step_loss(run.model, run.urgency, cfg, s)[0],
                            [*run.model.parameters(), *run.urgency.parameters()], reps)
    fixed = _step_seconds(lambda s: training_loss(fixed_model, task, task.batch(cfg.batch_size,
                                                                                (0, s))),
                          list(fixed_model.parameters()), reps)
    print(f"== training step ({cfg.n_layers} layers, d {cfg.d_model}, batch {cfg.batch_size}, "
          f"parity up to {n_max} bits, K = {cfg.max_pauses}) ==")
    print(f"learned pauses {learned * 1e3:.1f} ms/step, fixed fillers {fixed * 1e3:.1f} ms/step, "
          f"ratio learned / fixed = {learned / fixed:.2f}x")

    run.model.eval()
    rng = np.random.default_rng(0)
    prompts = ["".join(map(str, rng.integers(0, 2, int(rng.integers(2, n_max + 1)))))
               for _ in range(n_prompts)]
    t = time.perf_counter()
    gens = [generate_with_pauses(run, p, lam=0.0) for p in prompts]
    paused_s = time.perf_counter() - t
    paused_tokens = sum(g.n_pauses + 1 for g in gens)
    seqs = [g.tokens[:len(p) + 2] for g, p in zip(gens, prompts, strict=True)]
    t = time.perf_counter()
    for seq in seqs:
        generate(run.model, seq, max_new_tokens=1)
    plain_s = time.perf_counter() - t
    print(f"== generation, {n_prompts} prompts, K/V recorded ==")
    print(f"self-requested pauses: {paused_tokens / paused_s:.1f} tokens/s, "
          f"{n_prompts / paused_s:.1f} answers/s, {np.mean([g.n_pauses for g in gens]):.2f} "
          f"pauses per answer")
    print(f"answering at once:     {n_prompts / plain_s:.1f} tokens/s, {n_prompts / plain_s:.1f} "
          f"answers/s")
    print(f"tokens/s ratio paused / at once = {(paused_tokens / paused_s) / (n_prompts / plain_s):.2f}x, "
          f"answers/s ratio = {plain_s / paused_s:.2f}x")


if __name__ == "__main__":
    main()
