"""Baselines every probe is compared against, and the control task.

For a classification target y (the token at offset k, or a label) and the input token x at the
probed position, all estimated from training counts only:

* **majority**: always predict the most frequent training class; accuracy = its test frequency.
  (Ties between classes break towards the smaller class id, here and below.)
* **unigram**: predict by sampling from the training class distribution q; its expected
  accuracy is ``mean q(y)``, top-5 uses the five most frequent classes and the cross-entropy is
  ``−log q̂(y)`` with add-one smoothing.
* **bigram**: predict y from x alone (for k ≥ 2 a "skip-bigram"): ``argmax_c count(x, c)``,
  backing off to the majority class for an x never seen in training; cross-entropy from
  ``p(c | x) = (count(x, c) + q̂(c)) / (count(x) + 1)``. A probe that beats it reads more than
  the current token.
* **control task** (Hewitt & Liang 2019, adapted to lookahead): each input token type x is
  mapped to a random other training type σ(x), and its label is drawn from the real labels
  that followed σ(x) in training (:func:`control_labels`); a probe trained on it measures
  what memorising token identity buys. ``selectivity = accuracy − control accuracy``.

For regression targets the baselines are the training mean (R² ≈ 0) and the mean target of the
input token type (the regression analogue of the bigram).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["classification_baselines", "control_labels", "regression_baselines"]


def classification_baselines(
    x: Int[Tensor, " n"], y: Int[Tensor, "n task"], n_classes: int, train: Bool[Tensor, " n"]
) -> dict[str, Float[Tensor, "task n"]]:
    """Per-example scores of the majority, unigram and bigram baselines (module docstring).

    Returns:
        ``majority``, ``unigram`` (expected accuracy contribution q(y)), ``unigram_top5``,
        ``unigram_xent``, ``bigram``, ``bigram_top5``, ``bigram_xent``, each ``[task, n]``; the
        mean over a split's rows gives the metric.
    """
    types, inv = torch.unique(x, return_inverse=True)
    T = y.shape[1]
    out: dict[str, list[Tensor]] = {k: [] for k in (
        "majority", "unigram", "unigram_top5", "unigram_xent", "bigram", "bigram_top5", "bigram_xent")}
    k = min(5, n_classes)
    for t in range(T):
        yt = y[:, t]
        counts = torch.bincount(yt[train], minlength=n_classes).double()
        q = counts / counts.sum()
        q_hat = (counts + 1) / (counts.sum() + n_classes)
        top_uni = (counts * n_classes + torch.arange(n_classes - 1, -1, -1)).topk(k).indices
        out["majority"].append((yt == top_uni[0]).double())
        out["unigram"].append(q[yt])
        out["unigram_top5"].append((yt[:, None] == top_uni[None]).any(1).double())
        out["unigram_xent"].append(-q_hat[yt].log())
        pair = torch.zeros(len(types), n_classes, dtype=torch.float64)
        pair.index_put_((inv[train], yt[train]), torch.ones(int(train.sum()), dtype=torch.float64), accumulate=True)
        # Rank classes by (pair count, training frequency, smaller id): exact in float64, so
        # ties break the same way everywhere; unseen types rank by frequency alone.
        n_train = float(train.sum())
        key = (pair * (n_train + 1) + counts[None]) * n_classes + torch.arange(n_classes - 1, -1, -1)
        ranked = key.topk(k, 1).indices  # [types, k]
        top = ranked[inv]
        out["bigram"].append((top[:, 0] == yt).double())
        out["bigram_top5"].append((top == yt[:, None]).any(1).double())
        p = (pair[inv, yt] + q_hat[yt]) / (pair.sum(1)[inv] + 1)
        out["bigram_xent"].append(-p.log())
    return {key: torch.stack(v).float() for key, v in out.items()}


def control_labels(x: Int[Tensor, " n"], y: Int[Tensor, "n task"], n_classes: int,
                   train: Bool[Tensor, " n"], seed: int) -> Int[Tensor, " n"]:
    """Control-task labels that keep the target's uncertainty (Hewitt & Liang 2019, adapted
    to targets that token i does not determine).

    Every input token type x is assigned, by a seeded random map σ, a training token type
    σ(x) (a permutation of the training types; types never seen in training get a random
    one). Each example's control label is the real label of a random training example whose
    input type is σ(x), at a random task (seeded). So the control task has the real task's
    output space and marginal, and labels that token identity predicts exactly as well as it
    predicts the real ones — but from the *wrong* token. A probe that only memorises token
    identity scores about the bigram baseline on it; selectivity = accuracy − control
    accuracy is positive only when the probe reads more than the current token.

    (The textbook control, one fixed label per type drawn from the label marginal, is a
    function of token i, so it is easier than any lookahead target and its selectivity comes
    out negative whatever the probe reads; with top-V targets its labels are also mostly
    "other".)
    """
    gen = torch.Generator().manual_seed(seed + 7919)  # its own stream, apart from the split's
    types, inv = torch.unique(x, return_inverse=True)
    seen = torch.zeros(len(types), dtype=torch.bool)
    seen[inv[train]] = True
    seen_ids = torch.nonzero(seen)[:, 0]
    sigma = seen_ids[torch.randint(0, len(seen_ids), (len(types),), generator=gen)]
    sigma[seen_ids] = seen_ids[torch.randperm(len(seen_ids), generator=gen)]
    rows = torch.nonzero(train)[:, 0]
    rows = rows[torch.argsort(inv[rows], stable=True)]  # training rows grouped by type
    count = torch.bincount(inv[rows], minlength=len(types))
    start = torch.cumsum(count, 0) - count
    src = sigma[inv]
    pick = (torch.rand(len(x), generator=gen, dtype=torch.float64) * count[src]).long()
    task = torch.randint(0, y.shape[1], (len(x),), generator=gen)
    return y[rows[start[src] + pick], task]


def regression_baselines(x: Int[Tensor, " n"], Y: Float[Tensor, "n task out"],
                         train: Bool[Tensor, " n"]) -> dict[str, Float[Tensor, "n task out"]]:
    """Predictions of the mean and token-type-mean baselines for every example."""
    types, inv = torch.unique(x, return_inverse=True)
    mean = Y[train].double().mean(0)
    sums = torch.zeros(len(types), *Y.shape[1:], dtype=torch.float64)
    sums.index_add_(0, inv[train], Y[train].double())
    count = torch.bincount(inv[train], minlength=len(types)).double()
    by_type = torch.where(count[:, None, None] > 0, sums / count.clamp_min(1)[:, None, None], mean)
    return {"mean": mean.expand_as(Y).float(), "token": by_type[inv].float()}
