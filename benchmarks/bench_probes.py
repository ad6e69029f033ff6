"""Benchmark: interp's all-cells-at-once probe training vs scikit-learn, on the same activations.

One run collects residual-stream activations of the bundled model once (layers x offsets
cells, top-V tokens + "other"), then trains

* interp: every (layer, offset) softmax probe in one batched pass (Adam, weight decay λ, early
  stopping on the validation split), and
* scikit-learn: ``LogisticRegression`` (multinomial, L-BFGS) fitted once per (layer, offset) on
  the same standardised training rows, with the same penalty (``C = 1 / (2 λ n_train)``),

and prints the wall time of each, the speed-up, and the test accuracy of both per cell.

    OMP_NUM_THREADS=2 python benchmarks/bench_probes.py [--windows 80] [--layers 0,2,...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import interp
from interp.probes import ProbeSpec, collect, load_sequences, split_groups
from interp.probes._fit import fit_softmax, softmax_outputs
from interp.probes._run import _encode_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=80)
    ap.add_argument("--n-tokens", type=int, default=48)
    ap.add_argument("--layers", default="0,2,4,6,8,10,12,14")
    ap.add_argument("--offsets", default="1,2")
    ap.add_argument("--vocab", type=int, default=63)
    ap.add_argument("--sklearn-max-iter", type=int, default=300)
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    offsets = [int(x) for x in args.offsets.split(",")]
    spec = ProbeSpec.from_dict(dict(
        name="bench", data=dict(n_tokens=args.n_tokens, max_windows=args.windows, windows_per_doc=2),
        inputs=dict(layers=layers), target=dict(offsets=offsets, vocab=args.vocab),
        train=dict(control=False, max_epochs=30, patience=3, lr=0.005, batch_size=512, device="cpu"),
    ))
    model = interp.load_model(device="cpu")
    t0 = time.perf_counter()
    data = collect(spec, model, load_sequences(spec, model), ["resid_post"], layers)
    t_collect = time.perf_counter() - t0
    split = split_groups(data.groups, spec.train.val_fraction, spec.train.test_fraction, spec.train.seed)
    train = torch.tensor(np.flatnonzero(split == "train"))
    val = torch.tensor(np.flatnonzero(split == "val"))
    test = torch.tensor(np.flatnonzero(split == "test"))
    y, classes = _encode_tokens(data.targets, torch.tensor(split == "train"), args.vocab, spec.train.min_per_class)
    X = data.features["resid_post"]
    print(f"activations: {X.shape[0]} layers x {X.shape[1]} positions x {X.shape[2]} dims "
          f"(collected once in {t_collect:.1f} s); {len(classes)} classes; "
          f"train/val/test = {len(train)}/{len(val)}/{len(test)}; torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    state = fit_softmax(X, y, len(classes), train, val, spec.train, torch.device("cpu"))
    W, b = state.raw()
    t_ours = time.perf_counter() - t0
    ours = softmax_outputs(X, y, W, b, torch.device("cpu"))["correct"][:, :, test].float().mean(-1)
    print(f"interp: {t_ours:.2f} s for {ours.numel()} cells; now scikit-learn, one cell at a time...", flush=True)

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    C = 1.0 / (2 * spec.train.weight_decay * len(train))
    ref = torch.zeros(len(layers), len(offsets))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for u in range(len(layers)):
            x = X[u].numpy()
            mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
            xs = (x - mu) / sd
            for k in range(len(offsets)):
                clf = LogisticRegression(C=C, max_iter=args.sklearn_max_iter)
                clf.fit(xs[train], y[train, k].numpy())
                ref[u, k] = clf.score(xs[test], y[test, k].numpy())
    t_sk = time.perf_counter() - t0
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)

    print(f"\n{'layer':>5} {'offset':>6} {'interp acc':>10} {'sklearn acc':>11}")
    for u, layer in enumerate(layers):
        for k, off in enumerate(offsets):
            print(f"{layer:>5} {off:>6} {ours[u, k]:>10.3f} {ref[u, k]:>11.3f}")
    print(f"\n{'method':<34} {'time (s)':>9} {'mean test acc':>14}")
    print(f"{'interp (all cells, one pass)':<34} {t_ours:>9.2f} {ours.mean():>14.4f}")
    print(f"{'sklearn LogisticRegression/cell':<34} {t_sk:>9.2f} {ref.mean():>14.4f}")
    print(f"speed-up: {t_sk / t_ours:.1f}x; accuracy difference (interp - sklearn): "
          f"{float(ours.mean() - ref.mean()):+.4f} (per cell: min {float((ours - ref).min()):+.3f}, "
          f"max {float((ours - ref).max()):+.3f}); {len(layers) * len(offsets)} cells, "
          f"{unconverged} sklearn fits stopped at max_iter={args.sklearn_max_iter}")


if __name__ == "__main__":
    main()
