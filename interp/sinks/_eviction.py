"""Perplexity with the first tokens evicted from a sliding KV window or kept as sinks
(StreamingLLM; :func:`cache_eviction`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..core import hooks
from ..core import model as core_model
from ..core.inputs import as_sequence
from ..core.loss import next_token_nll
from ..core.model import Bridge, check_context
from ..core.pauses import PausedSequence
from ..core.result import Figure, SavedResult
from ..errors import InterpError, refuse_renamed

# ----------------------------------------------------------------------------- eviction


def eviction_mask(n: int, window: int, n_sinks: int, device=None) -> Bool[Tensor, "q_pos k_pos"]:
    """Keys each query keeps: the ``window`` most recent (itself included) and the first
    ``n_sinks``; ``window >= n`` gives full causal attention."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    return (j <= i) & ((i - j < window) | (j < n_sinks))


@dataclass
class EvictionResult(SavedResult):
    """Perplexity with the first tokens evicted from the KV cache or kept (StreamingLLM).

    Attributes:
        table: condition (``full``, ``window``, ``sinks+window``), n_sinks, eviction_window
            (the recent keys kept, ``eviction_window`` of :func:`cache_eviction`), nll (mean
            over the scored positions), perplexity, n_scored.
        per_position: position, condition, n_sinks, nll: the loss of every scored position.
        settings: n_tokens, eviction_window, the first scored position, and how eviction was
            simulated.
    """

    table: pd.DataFrame
    per_position: pd.DataFrame
    settings: dict = field(default_factory=dict)

    MADE_BY: ClassVar[str] = "interp registers --eviction-window W --out DIR"
    SAVED: ClassVar[dict] = {"table": "eviction.csv", "per_position": "eviction_positions.csv",
                             "settings": "eviction.json"}
    #: ``window`` was the recent keys kept (now ``eviction_window``; ``window`` elsewhere is a
    #: corpus window); the settings file may be missing in earlier releases
    RENAMED: ClassVar[dict] = {"window": "eviction_window"}
    EMPTY: ClassVar[dict] = {"settings": dict}

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def perplexity(self, n_sinks: int | None) -> float:
        """Perplexity with ``n_sinks`` sink tokens kept; ``None`` for full attention."""
        t = self.table
        row = t[t["condition"] == "full"] if n_sinks is None else t[
            (t["condition"] != "full") & (t["n_sinks"] == n_sinks)]
        return float(row["perplexity"].iloc[0])

    def figures(self) -> list[Figure]:
        from ..figures import sinks as f

        return [Figure("eviction_perplexity", f.eviction_perplexity,
                       "Perplexity with a sliding KV window: evicting the first tokens blows it "
                       "up; keeping them as sinks (StreamingLLM) recovers most of full "
                       "attention.")]


def cache_eviction(
    model: Bridge,
    tokens: Int[Tensor, " pos"] | PausedSequence | str,
    *,
    eviction_window: int = 64,
    sinks: Sequence[int] = (0, 1, 4),
    verbose: bool = True,
    **old,
) -> EvictionResult:
    """Perplexity on a long text with a sliding KV window, with and without sink tokens.

    For each ``S`` in ``sinks`` every query at position i attends to the keys in
    ``(i - window, i]`` plus the first ``S`` positions (``S = 0``: window only, i.e. the first
    tokens evicted); ``full`` is ordinary causal attention. Each layer's attention pattern is
    restricted to the kept keys and renormalised (see the module docstring for why this equals
    a real KV cache with evicted entries). Only positions ``i >= max(sinks) + window`` are
    scored, where eviction has happened under every condition, so all conditions are compared
    on the same targets.

    Args:
        model: a ``TransformerBridge``.
        tokens: the text, or its token ids (BOS first, if the model expects one), or its
            :class:`~interp.PausedSequence`.
        eviction_window: recent keys kept per query (the query's own key included;
            ``--eviction-window``; ``window=`` in earlier releases, which now raises).
        sinks: numbers of initial tokens kept; include 0 for the evicted condition.
        verbose: show a progress bar.

    Raises:
        InterpError: a text not longer than ``max(sinks) + window`` (nothing would be evicted),
            a text longer than the model's context, or a window below 1.
    """
    refuse_renamed("cache_eviction", old, {"window": "eviction_window"})
    window = eviction_window
    seq = as_sequence(model, tokens, what="the text to evict from")
    n = len(seq)
    sinks = sorted(set(int(s) for s in sinks))
    if window < 1 or (sinks and sinks[0] < 0):
        raise InterpError(f"eviction_window={window}, sinks={sinks}",
                          "use eviction_window >= 1 and sinks >= 0")
    start = (sinks[-1] if sinks else 0) + window
    if n <= start + 1:
        raise InterpError(
            f"the text has {n} tokens, not more than the eviction window plus sinks "
            f"({window} + {start - window}), so no token would be evicted",
            f"give a text longer than {start + 1} tokens (e.g. --eviction-tokens 1024 from a "
            f"corpus) or a smaller eviction_window (now {window})",
        )
    check_context(model, n)
    dev = core_model.device(model)
    ids = seq.tokens.to(dev)
    scored = torch.arange(start, n - 1, device=dev)
    scored = scored[seq.loss_mask[start:n - 1].to(dev)]

    def restrict(keep: Bool[Tensor, "q_pos k_pos"]):
        def hook(pattern, hook):
            p = pattern * keep
            return p / p.sum(-1, keepdim=True)
        return hook

    conditions = [("full", None)] + [("window" if s == 0 else "sinks+window", s) for s in sinks]
    rows, pos_rows = [], []
    for name, s in tqdm(conditions, desc="eviction", disable=not verbose):
        fwd = []
        if s is not None:
            keep = eviction_mask(n, window, s, device=dev)
            fwd = [(hooks.pattern(layer), restrict(keep)) for layer in range(model.cfg.n_layers)]
        with torch.no_grad():
            logits = model.run_with_hooks(ids[None], fwd_hooks=fwd)[0]
        nll = next_token_nll(logits[scored], ids[scored + 1])
        mean = float(nll.mean())
        rows.append(dict(condition=name, n_sinks=-1 if s is None else s, eviction_window=window,
                         nll=mean, perplexity=float(np.exp(mean)), n_scored=int(len(scored))))
        pos_rows += [dict(position=int(p), condition=name, n_sinks=-1 if s is None else s,
                          nll=float(v)) for p, v in zip(scored.tolist(), nll.tolist(), strict=True)]
    settings = dict(n_tokens=n, eviction_window=window, sinks=sinks, first_scored=start,
                    method="attention restricted to kept keys and renormalised; absolute RoPE "
                    "positions kept (a KV cache of pre-rotated keys with entries evicted)")
    return EvictionResult(pd.DataFrame(rows), pd.DataFrame(pos_rows), settings)
