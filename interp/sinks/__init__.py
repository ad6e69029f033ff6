"""Registers and attention sinks: which positions soak up attention or carry global state.

Four measurements, each returning a result with a tidy ``.to_pandas()`` table:

* :func:`registers` — per window, layer and position: the **attention received**
  ``a_l(j) = mean_{h, i > j} A_l[h, i, j]`` (the mean over heads and over the later queries of
  the attention pattern; ``NaN`` at the last position, which no query follows), the
  **residual-stream norm** ``‖h_l(j)‖`` (``resid_post`` of block l) and the **value norm**
  (the mean over KV heads of ``‖v_l(j, g)‖``), with the role of every position; per head, the
  attention received by each role. Under uniform attention query i gives ``1/(i+1)`` to every
  key, so ``uniform(j) = mean_{i > j} 1/(i+1)`` is the no-sink baseline to compare with (on a
  sliding-window layer query i spreads over its last ``min(i+1, w)`` keys only; the table's
  ``uniform`` column holds the baseline of each row's layer and sequence length).
* :func:`massive_activations` — Sun et al. (2024): entries ``h_l(j)[d]`` of the residual stream
  whose magnitude exceeds ``ratio`` times the median magnitude of that layer's activations
  (over all positions and dimensions of the window), where each (position, dimension) first
  appears, and the per-layer top-1/2/3 magnitudes against the median.
* :func:`ablate_massive` — the change in next-token loss when the massive activations are set to
  zero versus to their mean value (at the layer where they first appear), and when the sink
  position's keys and values are set to zero versus to the mean over the other positions (at
  every layer). Zero-ablation damage far above mean-ablation damage marks a bias-like sink:
  the value is constant and needed, not informative.
* :func:`cache_eviction` — StreamingLLM (Xiao et al. 2023): perplexity on a long text when each
  query sees only a recent window of W keys, versus the window plus the first S ("sink")
  tokens, versus full attention.

How eviction is simulated: every query keeps its own absolute (RoPE) position, and the
attention pattern of every layer is restricted to the kept keys and renormalised — exactly the
softmax over the kept keys. This is what a real KV cache does when it stores keys already
rotated and drops the evicted entries without re-rotating the rest: each cached K/V was itself
computed when its position was the newest, under its own window. StreamingLLM additionally
re-numbers the positions inside the cache, which matters only beyond the pretraining context;
:func:`cache_eviction` refuses texts longer than the model's context, so both agree on which
keys are seen and differ only in the sink-to-query RoPE distance (absolute here).

Example:
    >>> docs = interp.load_corpus()
    >>> reg = interp.registers(model, docs, n_tokens=128, max_windows=4)
    >>> reg.by_role()                 # attention received and norms: bos vs regular vs pause
    >>> abl = interp.ablate_massive(model, docs, reg.massive, n_tokens=128, max_windows=4)
    >>> ev = interp.cache_eviction(model, long_tokens, eviction_window=64, sinks=(0, 1, 4))
"""

from __future__ import annotations

from ..core.attention import uniform_attention
from ._ablation import AblationResult, ablate_massive
from ._eviction import EvictionResult, cache_eviction
from ._eviction import eviction_mask as eviction_mask
from ._registers import MassiveActivations, RegisterResult, massive_activations, registers

__all__ = [
    "AblationResult",
    "EvictionResult",
    "MassiveActivations",
    "RegisterResult",
    "ablate_massive",
    "cache_eviction",
    "massive_activations",
    "registers",
    "uniform_attention",
]
