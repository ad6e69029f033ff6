"""Benchmark learned pause requests, side by side in one run:

1. the cost of one training step with the halting objective (K + 1 readings per example,
   urgency input, chain-of-thought mixture) against one step of ordinary training with K
   fixed filler tokens and the same mixture (:func:`interp.train_toy`'s loss), same model
   size, batch and longest sequence; the ratio learned / fixed;
2. greedy generation through :func:`interp.generate` (K/V recorded) on the same prompts:
   answering at once, with self-requested pauses (``max_pauses=K``) as the model trained for
   ``--steps`` steps takes them, and with a ``<pause>`` bias that makes it take all K:
   tokens/s (pauses count as tokens), answers/s and pauses per answer.

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
    VOCAB,
    LearnedPauseConfig,
    generate_with_pauses,
    prompt_words,
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
                            batch_size=cfg.batch_size, n_layers=cfg.n_layers,
                            d_model=cfg.d_model, n_heads=cfg.n_heads, d_mlp=cfg.d_mlp)
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
    print(f"== generation, {n_prompts} prompts, K/V recorded ==")
    _generation_row("answering at once (no max_pauses)", run, prompts, paused=False)
    _generation_row("self-requested pauses, as trained", run, prompts, paused=True)
    with torch.no_grad():  # a model that always asks for a pause: every answer takes K
        run.model.unembed.b_U[run.pause_id] += 100.0
    _generation_row(f"self-requested pauses, at the cap K = {cfg.max_pauses}", run, prompts,
                    paused=True)


def _generation_row(label: str, run, prompts: list[str], *, paused: bool) -> None:
    t = time.perf_counter()
    if paused:
        gens = [generate_with_pauses(run, p, lam=0.0) for p in prompts]
        n_pauses = [g.n_pauses for g in gens]
    else:
        for p in prompts:  # the same prompt tokens, no urgency input, no pause allowed
            generate(run.model, VOCAB.encode(prompt_words(run.config, p)), max_new_tokens=1)
        n_pauses = [0] * len(prompts)
    s = time.perf_counter() - t
    tokens = sum(n_pauses) + len(prompts)
    print(f"{label:45s} {tokens / s:7.1f} tokens/s  {len(prompts) / s:6.1f} answers/s  "
          f"{np.mean(n_pauses):5.2f} pauses per answer")


if __name__ == "__main__":
    main()
