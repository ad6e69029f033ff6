"""Linear probes for lookahead and pause-position content, with baselines and control tasks.

A probe reads one activation at position i — the residual stream at a layer and site, or the
key or value of one KV head — and predicts

* the token at i + k (``k = 1`` is the model's own job; ``k >= 2`` is lookahead, as in Future
  Lens, Pal et al. 2023), over the full vocabulary or the top-V training tokens plus "other";
* the hidden state at i + k (ridge regression, R²);
* a label or a number from a table aligned to positions (e.g. a synthetic task's answer read at
  pause positions).

All layers, KV heads and offsets of a site are trained in one pass (:mod:`._fit`): a batched
softmax regression with weight decay and per-cell early stopping, or closed-form ridge. Splits
are by document or prompt, never inside a sequence. Every number comes with the majority,
unigram and bigram baselines and a control task (selectivity, Hewitt & Liang 2019), per role.

**Future Lens** (``method = "future_lens"``, :func:`future_lens`; Pal et al. 2023): for
lookahead, a ridge map from each layer's residual stream at t to the model's own last-block
state at t + k − 1, solved from sums streamed in one pass (:class:`LensStats`), decoded through
the model's final norm and unembedding over the full vocabulary, optionally with a learned
prompt; scored as agreement with the model's own prediction and on the true token, against
bigram and trigram baselines (``probes/lookahead.toml``). Classifier probes remain for labels.

From Python::

    >>> import interp
    >>> res = interp.train_probes("probes/lookahead.toml", "results/probes/lookahead",
    ...                           overrides=["data.max_windows=100"], verbose=True)
    >>> res.to_pandas().query("split == 'test' and role == 'all' and offset == 2")
    >>> from interp.figures import probe_accuracy
    >>> fig = probe_accuracy(res, metric="top5")       # or res.figure()

From the shell: ``interp probe train probes/lookahead.toml --set data.max_windows=100``,
``interp probe show results/probes/lookahead``, ``interp probe eval results/probes/lookahead``.
"""

from __future__ import annotations

from ._data import ProbeData, collect, load_sequences, split_groups
from ._future_lens import (
    LENS_COLUMNS,
    FutureLensResults,
    LensStats,
    accumulate_stats,
    fit_lens,
    future_lens,
    load_future_lens,
)
from ._run import METRIC_COLUMNS, ProbeResults, evaluate_probes, load_probes, train_probes
from ._spec import DataSpec, FutureLensSpec, InputSpec, ModelSpec, ProbeSpec, TargetSpec, TrainSpec

__all__ = [
    "LENS_COLUMNS",
    "METRIC_COLUMNS",
    "DataSpec",
    "FutureLensResults",
    "FutureLensSpec",
    "LensStats",
    "accumulate_stats",
    "fit_lens",
    "future_lens",
    "load_future_lens",
    "InputSpec",
    "ModelSpec",
    "ProbeData",
    "ProbeResults",
    "ProbeSpec",
    "TargetSpec",
    "TrainSpec",
    "collect",
    "evaluate_probes",
    "load_probes",
    "load_sequences",
    "split_groups",
    "train_probes",
]
