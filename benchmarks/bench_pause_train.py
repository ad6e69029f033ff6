"""Benchmark pause training on the bundled SmolLM2.

Measured side by side in one run (the machine may be shared, so the ratio is what counts):

1. **Step cost**: seconds per optimiser step of pause training (``<pause>`` runs inserted at
   the default rate, loss masked) and of plain fine-tuning (the same adapter, ``pause_rate=0``),
   in alternating blocks so both see the same load; the ratio pause / plain, and the ratio of
   the tokens each step processes (pauses lengthen the windows).
2. **Wall time of the default** ``interp pause-train``: the default steps times the measured
   seconds per pause step, plus its evaluations (the measured seconds of one evaluation times
   their number). This is an extrapolation from the measured steps, not a full run; pass
   ``--full`` to run the default training end to end instead (≈ the extrapolated time).

Run: ``python benchmarks/bench_pause_train.py`` (``--steps 2 --blocks 2``: 8 timed steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import numpy as np

import interp
from interp.training.pause import PauseTrainConfig, pause_train, real_token_loss, split_windows


def _timed(model, cfg, train, held, steps: int) -> tuple[float, int]:
    """Seconds per step of ``steps`` steps, and the tokens (pauses included) they processed."""
    start = time.perf_counter()
    res = pause_train(cfg, None, model=model, train_windows=train, eval_windows=held,
                      stop_after=steps, verbose=False)
    seconds = (time.perf_counter() - start) / steps
    res.adapter.detach()
    pid = res.adapter.pause_id
    from interp.training.pause import _paused

    tokens = sum(len(s) for step in range(steps) for s in _paused(
        cfg, train[step * cfg.batch_size:(step + 1) * cfg.batch_size], pid, (cfg.seed, step)))
    return seconds, tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=2, help="alternating blocks per mode")
    ap.add_argument("--full", action="store_true", help="also run the default training")
    args = ap.parse_args(argv)

    model = interp.load_model()
    default = PauseTrainConfig()
    # every step of a block is before the first evaluation, so blocks time training only
    cfg = dataclasses.replace(default, eval_every=default.steps)
    train, held = split_windows(model, cfg)
    held = held[:1]
    plain = dataclasses.replace(cfg, pause_rate=0.0)
    times: dict[str, list[float]] = {"pause": [], "plain": []}
    tokens: dict[str, int] = {"pause": 0, "plain": 0}
    for b in range(args.blocks):
        for mode, c in (("pause", cfg), ("plain", plain)):
            s, n = _timed(model, c, train, held, args.steps)
            times[mode].append(s)
            tokens[mode] += n
            print(f"block {b} {mode}: {s:.2f} s/step", flush=True)
    pause_s, plain_s = float(np.median(times["pause"])), float(np.median(times["plain"]))
    print(f"\nstep cost (median over {args.blocks} blocks of {args.steps} steps, batch "
          f"{cfg.batch_size} × {cfg.n_tokens} tokens):")
    print(f"  pause training {pause_s:.2f} s/step, plain fine-tuning {plain_s:.2f} s/step, "
          f"ratio {pause_s / plain_s:.2f}; tokens per step ratio "
          f"{tokens['pause'] / tokens['plain']:.2f}")

    _, ev = split_windows(model, default)
    interp.add_pause_token(model)
    start = time.perf_counter()
    real_token_loss(model, ev)
    real_token_loss(model, ev)
    eval_s = time.perf_counter() - start
    n_evals = int(np.ceil(default.steps / default.eval_every))
    est = default.steps * pause_s + n_evals * eval_s
    print(f"default pause-train ({default.steps} steps, {n_evals} evaluations of "
          f"{default.eval_windows} windows × 2 at {eval_s:.1f} s): extrapolated "
          f"{est / 60:.1f} min")
    if args.full:
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            pause_train(default, d, verbose=True)
            print(f"default pause-train, measured: {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
