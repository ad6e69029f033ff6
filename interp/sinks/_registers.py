"""Attention received, residual and value norms, and massive activations, from one forward
pass per sequence (:func:`registers`, :func:`massive_activations`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ..core import hooks
from ..core import model as core_model
from ..core.attention import attention_window, uniform_attention
from ..core.inputs import as_sequences
from ..core.model import Bridge
from ..core.pauses import PausedSequence
from ..core.result import Figure, SavedResult
from ..core.sites import resolve_layers
from ..errors import InterpError
from ._common import (
    LAYER_STAT_COLUMNS,
    MASSIVE_COLUMNS,
    REGISTER_COLUMNS,
    RENAMED_COLUMNS,
    _check_sequence,
    _massive_mask,
    _received,
    _token_strings,
)


@dataclass
class MassiveActivations(SavedResult):
    """Massive activations found in the residual stream (``resid_post``).

    Attributes:
        table: one row per massive entry: sequence, layer, position, role, token, dim, value,
            ratio_to_median.
        layer_stats: per sequence and layer: the median magnitude and the top-1/2/3 magnitudes
            (Sun et al. 2024, Fig. 1).
        ratio: the threshold, as a multiple of the layer median.
    """

    table: pd.DataFrame
    layer_stats: pd.DataFrame
    ratio: float

    MADE_BY: ClassVar[str] = "interp registers --out DIR"
    SAVED: ClassVar[dict] = {"table": "massive.csv", "layer_stats": "massive_layers.csv",
                             "ratio": "massive.json:ratio"}
    RENAMED: ClassVar[dict] = RENAMED_COLUMNS

    def __post_init__(self) -> None:
        self.ratio = float(self.ratio)
        missing = set(MASSIVE_COLUMNS) - set(self.table.columns)
        missing |= set(LAYER_STAT_COLUMNS) - set(self.layer_stats.columns)
        if missing:
            raise InterpError(f"massive-activation tables lack column(s) {sorted(missing)}",
                              "make them with interp.massive_activations() or `interp registers`")

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def dims(self) -> list[int]:
        """The massive dimensions, most frequent first."""
        return [int(d) for d in self.table["dim"].value_counts().index]

    def first_appearance(self) -> pd.DataFrame:
        """For each (position, dim): the first layer where it is massive, its value there,
        the number of sequences and layers where it is massive, and its largest magnitude."""
        if self.table.empty:
            return pd.DataFrame(columns=["position", "role", "dim", "first_layer", "value",
                                         "n_sequences", "n_layers", "max_abs"])
        t = self.table.assign(abs_value=self.table["value"].abs())
        first = t.sort_values("layer").groupby(["position", "dim"], as_index=False).first()
        agg = t.groupby(["position", "dim"]).agg(
            n_sequences=("sequence", "nunique"), n_layers=("layer", "nunique"),
            max_abs=("abs_value", "max")).reset_index()
        out = first.rename(columns={"layer": "first_layer"})[
            ["position", "role", "dim", "first_layer", "value"]].merge(agg, on=["position", "dim"])
        return out.sort_values(["first_layer", "max_abs"], ascending=[True, False],
                               ignore_index=True)

    @property
    def first_layer(self) -> int | None:
        """The earliest layer with any massive activation (``None`` when there is none)."""
        return None if self.table.empty else int(self.table["layer"].min())

    def emergence_layer(self) -> int | None:
        """The layer where the largest massive activation emerges: the first layer at which
        its (position, dim) entry reaches half of its largest magnitude. On SmolLM2 moderate
        spikes appear from layer 1 and the dominant one (about 25,000 at the first token)
        abruptly at layer 11, so this is 11, not :attr:`first_layer`."""
        if self.table.empty:
            return None
        t = self.table.assign(abs_value=self.table["value"].abs())
        top = t.loc[t["abs_value"].idxmax()]
        same = t[(t["position"] == top["position"]) & (t["dim"] == top["dim"])]
        return int(same.loc[same["abs_value"] >= top["abs_value"] / 2, "layer"].min())

    def mean_values(self, layer: int) -> dict[int, float]:
        """Per massive dimension at ``layer``, the mean of its massive entries over windows and
        positions (the mean-ablation value of Sun et al.)."""
        t = self.table[self.table["layer"] == layer]
        return {int(d): float(v) for d, v in t.groupby("dim")["value"].mean().items()}

    def figures(self) -> list[Figure]:
        from ..figures import sinks as f

        return [Figure("massive_by_layer", f.massive_by_layer,
                       "The largest residual activations per layer against the median (Sun et "
                       "al. 2024): a few dimensions jump by orders of magnitude at one layer "
                       "and stay.")]


@dataclass
class RegisterResult(SavedResult):
    """Attention received and norms per window, layer and position (see module docstring).

    Attributes:
        table: sequence (the input's running number), layer, position, role, token,
            token_str, attn_received, uniform (what uniform attention over the keys each query
            may see would give the position: :func:`~interp.sinks.uniform_attention` with the
            sequence's length and the layer's sliding window), resid_norm, value_norm (one row
            per sequence, layer and position).
        heads: layer, head, role, attn_received: per head, the mean attention received by the
            positions of each role.
        massive: the massive activations found in the same forward passes.
        settings: what was run (model, number of windows, ratio...).
    """

    table: pd.DataFrame
    heads: pd.DataFrame
    massive: MassiveActivations
    settings: dict = field(default_factory=dict)

    MADE_BY: ClassVar[str] = "interp registers --out DIR"
    SAVED: ClassVar[dict] = {"table": "registers.csv", "heads": "registers_heads.csv",
                             "massive": MassiveActivations, "settings": "registers.json"}
    RENAMED: ClassVar[dict] = RENAMED_COLUMNS
    #: files that releases before the per-head table and the settings did not write
    EMPTY: ClassVar[dict] = {"heads": lambda: pd.DataFrame(
        columns=["layer", "head", "role", "attn_received"]), "settings": dict}

    def __post_init__(self) -> None:
        if "uniform" not in self.table.columns and {"sequence", "position"} <= set(self.table):
            # tables saved before the column: full causal attention, as those releases assumed
            n = (self.table.groupby("sequence")["position"].transform("max") + 1).tolist()
            base = {k: uniform_attention(k) for k in set(n)}
            self.table = self.table.assign(uniform=[
                base[k][p] for k, p in zip(n, self.table["position"].tolist(), strict=True)])
        missing = set(REGISTER_COLUMNS) - set(self.table.columns)
        if missing:
            raise InterpError(f"the register table lacks column(s) {sorted(missing)}",
                              "make it with interp.registers() or `interp registers`")

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def by_position(self, layers: Sequence[int] | None = None) -> pd.DataFrame:
        """Mean over windows (and the given layers, default all) per position and role, with
        the uniform-attention baseline and a token string where all windows agree."""
        t = self.table if layers is None else self.table[self.table["layer"].isin(layers)]
        g = t.groupby(["position", "role"], as_index=False)
        out = g[["attn_received", "uniform", "resid_norm", "value_norm"]].mean()
        out["n"] = g.size()["size"].to_numpy()
        if "token_str" in t.columns:
            first = g["token_str"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else "(varies)")
            out["token_str"] = first["token_str"].to_numpy()
        return out

    def by_role(self) -> pd.DataFrame:
        """Mean over layers, windows and positions per role: is a pause register-like?

        ``attn_ratio`` is the attention received over the uniform baseline at the same
        positions, so early positions are not favoured merely by having more later queries.
        """
        t = self.table.dropna(subset=["attn_received"])
        g = t.groupby("role")
        out = g[["attn_received", "uniform", "resid_norm", "value_norm"]].mean()
        out["attn_ratio"] = out["attn_received"] / out["uniform"]
        out["n_positions"] = g["position"].size() // max(t["layer"].nunique(), 1)
        return out.reset_index()

    def figures(self) -> list[Figure]:
        from ..figures import sinks as f

        return [
            Figure("attention_received", f.attention_received,
                   "Attention each position receives (mean over heads, later queries, windows "
                   "and layers) against uniform attention: the first token is a sink far above "
                   "it."),
            Figure("norms_by_position", f.norms_by_position,
                   "Residual-stream and value norms at the middle layer: the sink has a huge "
                   "residual norm but a small value vector, so attending to it adds little."),
            Figure("attention_heatmap", f.register_heatmap,
                   "Attention received over layers and positions: in which layers the sink "
                   "forms."),
            # a folder saved before the per-head table reads it as empty: nothing to draw
            *([Figure("sink_heads", f.sink_heads,
                      "Attention the first (BOS) position receives, per layer and query head: "
                      "which heads park their attention on the sink.")] if len(self.heads) else []),
        ]


def _value_norm(v: Float[Tensor, "pos kv_head d_head"]) -> Float[Tensor, " pos"]:
    return v.norm(dim=-1).mean(-1)


def _keeper(store: dict, key: tuple[str, int], reduce):
    """A forward hook that stores ``reduce(x[0])`` (batch of one) and leaves ``x`` unchanged."""
    def hook(x, hook):
        store[key] = reduce(x[0].detach())
    return hook


def _scan(model: Bridge, seqs: list[PausedSequence], layers: list[int], ratio: float,
          want_attention: bool, verbose: bool) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """One forward pass per sequence, reducing every hooked tensor in its hook (bounded memory)."""
    rows, head_rows, massive_rows, stat_rows = [], [], [], []
    dev = core_model.device(model)
    window = {layer: attention_window(model, layer) for layer in layers} if want_attention else {}
    for w, seq in enumerate(tqdm(seqs, desc="registers", disable=not verbose)):
        _check_sequence(model, seq)
        n = len(seq)
        got: dict[tuple[str, int], Tensor] = {}
        fwd = []
        for layer in layers:
            fwd.append((hooks.resid(layer, "post"), _keeper(got, ("resid", layer), torch.clone)))
            if want_attention:
                fwd.append((hooks.pattern(layer), _keeper(got, ("received", layer), _received)))
                fwd.append((hooks.v(layer), _keeper(got, ("value", layer), _value_norm)))
        with torch.no_grad():
            model.run_with_hooks(seq.tokens[None].to(dev), fwd_hooks=fwd)
        toks = seq.tokens.tolist()
        for layer in layers:
            h = got[("resid", layer)]
            mask, med = _massive_mask(h, ratio)
            top = h.abs().flatten().topk(min(3, h.numel())).values.tolist() + [np.nan] * 2
            stat_rows.append(dict(sequence=w, layer=layer, median=float(med), top1=top[0],
                                  top2=top[1], top3=top[2]))
            for p, d in mask.nonzero().tolist():
                massive_rows.append(dict(sequence=w, layer=layer, position=p, role=seq.roles[p],
                                         token=toks[p], dim=d, value=float(h[p, d]),
                                         ratio_to_median=float(h[p, d].abs() / med)))
            if not want_attention:
                continue
            recv = got[("received", layer)]  # [head, pos]
            attn = recv.mean(0).tolist()
            rnorm = h.norm(dim=-1).tolist()
            vnorm = got[("value", layer)].tolist()
            uniform = uniform_attention(n, window[layer]).tolist()
            for p in range(n):
                rows.append(dict(sequence=w, layer=layer, position=p, role=seq.roles[p],
                                 token=toks[p], attn_received=attn[p], uniform=uniform[p],
                                 resid_norm=rnorm[p], value_norm=vnorm[p]))
            roles = np.array(seq.roles)
            rec = recv.cpu().numpy()
            for role in dict.fromkeys(seq.roles):
                cols = np.nonzero(roles == role)[0]
                cols = cols[cols < n - 1]  # the last position has no later query
                if len(cols):
                    for head, value in enumerate(rec[:, cols].mean(1)):
                        head_rows.append(dict(sequence=w, layer=layer, head=head, role=role,
                                              attn_received=float(value)))
    return rows, head_rows, massive_rows, stat_rows


def _massive_from_rows(massive_rows, stat_rows, ratio) -> MassiveActivations:
    table = pd.DataFrame(massive_rows, columns=list(MASSIVE_COLUMNS))
    return MassiveActivations(table, pd.DataFrame(stat_rows, columns=list(LAYER_STAT_COLUMNS)),
                              ratio=ratio)


def registers(
    model: Bridge,
    inputs,
    *,
    layers: Sequence[int] | None = None,
    ratio: float = 100.0,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> RegisterResult:
    """Attention received, residual and value norms per layer and position, and massive
    activations, from one forward pass per sequence.

    Args:
        model: a ``TransformerBridge``.
        inputs: anything :func:`interp.core.inputs.as_sequences` reads: texts, token ids,
            :class:`~interp.PausedSequence` s (roles are kept, so pauses show as ``pause``),
            corpus documents or windows. Sequences may differ in length.
        layers: layers to analyse (default all).
        ratio: a residual entry is massive when ``|h| > ratio * median|h|`` of its layer.
        n_tokens: window length when ``inputs`` are corpus documents.
        max_windows: at most this many windows of corpus documents.
        verbose: show a progress bar.

    Returns:
        A :class:`RegisterResult`; its ``massive`` field holds the :class:`MassiveActivations`.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    if ratio <= 1:
        raise InterpError(f"ratio={ratio} would flag ordinary activations", "use ratio > 1 (e.g. 100)")
    layer_list = list(resolve_layers(model, layers))
    rows, head_rows, massive_rows, stat_rows = _scan(model, seqs, layer_list, ratio, True, verbose)
    table = pd.DataFrame(rows, columns=list(REGISTER_COLUMNS))
    table.insert(5, "token_str", _token_strings(model, table["token"].tolist()))
    heads = (pd.DataFrame(head_rows).groupby(["layer", "head", "role"], as_index=False)
             ["attn_received"].mean())
    settings = dict(n_sequences=len(seqs), lengths=[len(s) for s in seqs],
                    layers=layer_list, ratio=ratio, model=str(model.cfg.model_name))
    return RegisterResult(table, heads, _massive_from_rows(massive_rows, stat_rows, ratio),
                          settings)


def massive_activations(
    model: Bridge,
    inputs,
    *,
    ratio: float = 100.0,
    layers: Sequence[int] | None = None,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> MassiveActivations:
    """Find massive activations (Sun et al. 2024) in the residual stream.

    An entry ``h_l(j)[d]`` of ``resid_post`` at layer l is massive when
    ``|h_l(j)[d]| > ratio * median_{j', d'} |h_l(j')[d']|`` (median over the whole window at that
    layer). Sun et al. use a ratio of about 1000 together with an absolute floor of 100 on 7B
    models; smaller models have smaller spikes, hence the default of 100.

    Args:
        model: a ``TransformerBridge``.
        inputs: texts, token ids, sequences, corpus documents or windows, as for
            :func:`registers` (``n_tokens`` and ``max_windows`` cut documents into windows).
        ratio: the threshold as a multiple of the layer median.
        layers: layers to scan (default all).
        verbose: show a progress bar.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    _, _, massive_rows, stat_rows = _scan(model, seqs, list(resolve_layers(model, layers)), ratio, False,
                                         verbose)
    return _massive_from_rows(massive_rows, stat_rows, ratio)
