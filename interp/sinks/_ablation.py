"""Zero- versus mean-ablation of the massive activations and of the sink position's K/V
(:func:`ablate_massive`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core import hooks
from ..core.inputs import as_sequences
from ..core.model import Bridge
from ..core.result import Figure, SavedResult
from ..core.sites import resolve_layer
from ..errors import InterpError
from ._common import RENAMED_COLUMNS, _loss, _massive_mask
from ._registers import MassiveActivations, massive_activations


@dataclass
class AblationResult(SavedResult):
    """Change in next-token loss under zero- and mean-ablation (Sun et al. 2024).

    Attributes:
        table: component (``massive`` or ``sink_kv``: what is ablated), method (``none``,
            ``zero``, ``mean``), loss (mean next-token cross-entropy over the loss mask),
            delta_loss (vs ``none``), perplexity, n_targets, and a description of what was
            ablated (``ablated``).
    """

    table: pd.DataFrame

    MADE_BY: ClassVar[str] = "interp registers --out DIR (without --no-ablate)"
    SAVED: ClassVar[dict] = {"table": "ablations.csv"}
    RENAMED: ClassVar[dict] = RENAMED_COLUMNS

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def delta(self, component: str, method: str) -> float:
        """The loss change when ``component`` (``massive`` or ``sink_kv``) is ablated by
        ``method`` (``zero`` or ``mean``); NaN when that condition was not run."""
        row = self.table[(self.table["component"] == component) & (self.table["method"] == method)]
        return float(row["delta_loss"].iloc[0]) if len(row) else float("nan")

    def figures(self) -> list[Figure]:
        from ..figures import sinks as f

        return [Figure("ablation_bars", f.ablation_bars,
                       "Loss increase when the massive activations or the sink's K/V are zeroed "
                       "versus set to their mean: zero ≫ mean marks a constant, bias-like role.")]


def ablate_massive(
    model: Bridge,
    inputs,
    massive: MassiveActivations | None = None,
    *,
    layer: int | None = None,
    ratio: float = 100.0,
    sink_position: int = 0,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> AblationResult:
    """Zero- versus mean-ablation of the massive activations and of the sink position's K/V.

    * ``massive``: in ``resid_post`` of ``layer`` (default: where the largest massive
      activation emerges, :meth:`MassiveActivations.emergence_layer`), every entry of a massive
      dimension that is massive in the sequence at hand (``|h| > ratio * median``) is set to 0
      (``zero``) or to that dimension's mean over the massive entries found at that layer
      (``mean``; Sun et al. 2024). The layers after it recompute everything downstream.
    * ``sink_kv``: at every layer, the key and value of ``sink_position`` (before RoPE, which is
      the identity at position 0) are set to 0 (``zero``) or to their mean over the sequence's
      other positions (``mean``). A mean over sequences at the same position would change
      nothing: position 0 always holds BOS, so its K/V are the same in every sequence.

    A mean-ablation of the BOS entries is, for the same reason, close to a no-op: that is the
    point of the comparison (a constant, bias-like activation), not a flaw of it.

    The loss is the mean next-token cross-entropy over the loss masks of all sequences.

    Args:
        model: a ``TransformerBridge``.
        inputs: texts, token ids, sequences, corpus documents or windows, as for
            :func:`registers` (``n_tokens`` and ``max_windows`` cut documents into windows).
        massive: massive activations found on these (or similar) inputs; found here if ``None``.
        layer: where to ablate the massive activations (see above).
        ratio: threshold for massive entries when ``massive`` is ``None``.
        sink_position: the sink whose K/V are ablated.
        verbose: show a progress bar.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    if massive is None:
        massive = massive_activations(model, seqs, ratio=ratio, verbose=verbose)
    if any(len(s) <= sink_position + 1 for s in seqs):
        raise InterpError(f"sink_position={sink_position} leaves no later target in some sequence",
                          "use longer sequences or a smaller sink_position")
    layer = massive.emergence_layer() if layer is None else resolve_layer(model, layer)
    means = massive.mean_values(layer) if layer is not None else {}
    conditions: list[tuple[str, str, str]] = [("none", "none", "no ablation")]
    if means:
        desc = f"massive entries of dims {sorted(means)[:8]} at layer {layer} (resid_post)"
        conditions += [("massive", "zero", desc), ("massive", "mean", desc)]
    kv_desc = f"K and V at position {sink_position}, all layers"
    conditions += [("sink_kv", "zero", kv_desc), ("sink_kv", "mean", kv_desc)]
    dims = torch.tensor(sorted(means), dtype=torch.long)
    mean_row = torch.tensor([means[d] for d in sorted(means)])

    def massive_hook(method: str):
        def hook(x, hook):
            h = x[0]
            mask, _ = _massive_mask(h, massive.ratio)
            sel = torch.zeros_like(mask)
            sel[:, dims] = mask[:, dims]
            fill = torch.zeros_like(h)
            if method == "mean":
                fill[:, dims] = mean_row.to(h)
            return torch.where(sel, fill, h)[None]
        return hook

    def kv_hook(method: str):
        def hook(x, hook):
            x = x.clone()
            others = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
            others[sink_position] = False
            x[:, sink_position] = 0 if method == "zero" else x[:, others].mean(1)
            return x
        return hook

    rows = []
    bar = tqdm(total=len(conditions) * len(seqs), desc="ablations", disable=not verbose)
    for target, method, desc in conditions:
        if target == "massive":
            fwd = [(hooks.resid(layer, "post"), massive_hook(method))]
        elif target == "sink_kv":
            fwd = [(name(k), kv_hook(method)) for k in range(model.cfg.n_layers)
                   for name in (hooks.k, hooks.v)]
        else:
            fwd = []
        loss, count = 0.0, 0
        for seq in seqs:
            s, c = _loss(model, seq, fwd)
            loss, count = loss + s, count + c
            bar.update()
        rows.append(dict(component=target, method=method, loss=loss / max(count, 1),
                         n_targets=count, ablated=desc))
    bar.close()
    table = pd.DataFrame(rows)
    table["delta_loss"] = table["loss"] - table.loc[table["method"] == "none", "loss"].iloc[0]
    table["perplexity"] = np.exp(table["loss"])
    return AblationResult(table[["component", "method", "loss", "delta_loss", "perplexity",
                                 "n_targets", "ablated"]])
