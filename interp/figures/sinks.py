"""Figures for registers and attention sinks (:mod:`interp.sinks`).

Each function takes a result object and returns a styled ``go.Figure``:

* :func:`attention_received` — attention received by position, per role, against the
  uniform-attention baseline (log scale);
* :func:`norms_by_position` — residual-stream and value norms by position, per role (log scale);
* :func:`register_heatmap` — a quantity over layer × position (log colour scale);
* :func:`sink_heads` — per layer and head, the attention the first position receives;
* :func:`massive_by_layer` — top-1/2/3 activation magnitudes and the median per layer
  (Sun et al. 2024, Fig. 1);
* :func:`ablation_bars` — loss change under zero- versus mean-ablation;
* :func:`eviction_perplexity` — perplexity with the first tokens evicted or kept (StreamingLLM).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import CYCLE, ROLE_COLORS, ROLE_MARKERS, SEQUENTIAL, apply_style

__all__ = [
    "ablation_bars",
    "attention_received",
    "eviction_perplexity",
    "massive_by_layer",
    "norms_by_position",
    "register_heatmap",
    "sink_heads",
]

# draw the many regular points first so rarer roles stay visible on top
_ROLE_ORDER = ("regular", "prompt", "answer", "generated", "filler", "pause", "bos", "pad")


# log axes spanning decades: labels at powers of ten only, unlabelled minor ticks between
_LOG_DECADES = dict(type="log", exponentformat="power", dtick=1,
                    minor=dict(ticks="outside", dtick="D1", showgrid=False))


def _roles(df: pd.DataFrame) -> list[str]:
    present = set(df["role"])
    return [r for r in _ROLE_ORDER if r in present]


def _hover(df: pd.DataFrame, value: str) -> list[str]:
    tokens = df["token_str"] if "token_str" in df.columns else [""] * len(df)
    return [f"position {p}<br>token {t!r}<br>{value} = {v:.4g}"
            for p, t, v in zip(df["position"], tokens, df[value], strict=True)]


def _role_scatter(df: pd.DataFrame, value: str, *, show_legend: bool = True) -> list[go.Scatter]:
    traces = []
    for role in _roles(df):
        d = df[df["role"] == role].dropna(subset=[value])
        traces.append(go.Scatter(
            x=d["position"], y=d[value], mode="markers", name=role, legendgroup=role,
            showlegend=show_legend,
            marker=dict(color=ROLE_COLORS[role], symbol=ROLE_MARKERS[role],
                        size=11 if role in ("bos", "pause") else 6,
                        line=dict(width=0.5, color="white")),
            hovertext=_hover(d, value), hoverinfo="text"))
    return traces


def _layer_note(layers: Sequence[int] | None) -> str:
    return "mean over layers" if layers is None else f"layers {', '.join(map(str, layers))}"


def attention_received(res, *, layers: Sequence[int] | None = None) -> go.Figure:
    """Attention each position receives (mean over heads, later queries, windows and layers),
    by role, with the uniform-attention baseline ``mean_{i>j} 1/(i+1)``: a sink sits far above
    it, an ordinary position near it."""
    df = res.by_position(layers)
    fig = go.Figure(_role_scatter(df, "attn_received"))
    base = df.drop_duplicates("position").sort_values("position").dropna(subset=["uniform"])
    fig.add_trace(go.Scatter(x=base["position"], y=base["uniform"], mode="lines",
                             name="uniform attention", line=dict(color="#777777", dash="dash")))
    apply_style(fig, title=f"Attention received by position ({_layer_note(layers)})")
    fig.update_yaxes(title="attention received", **_LOG_DECADES)
    fig.update_xaxes(title="position")
    return fig


def norms_by_position(res, *, layer: int | None = None) -> go.Figure:
    """Residual-stream norm ``‖h_l(j)‖`` and value norm by position at one layer (default: the
    middle layer), by role, on log scales; massive activations show as a high residual norm
    with a low value norm at the sink."""
    layer = int(sorted(res.table["layer"].unique())[len(res.table["layer"].unique()) // 2]) \
        if layer is None else layer
    df = res.by_position([layer])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("residual-stream norm", "value norm"),
                        horizontal_spacing=0.12)
    for col, value in ((1, "resid_norm"), (2, "value_norm")):
        for trace in _role_scatter(df, value, show_legend=col == 1):
            fig.add_trace(trace, row=1, col=col)
    apply_style(fig, title=f"Norms by position at layer {layer}", width=900, height=420)
    fig.update_yaxes(**_LOG_DECADES, row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)  # within a decade: plotly's own ticks read best
    fig.update_yaxes(title="‖resid_post‖", row=1, col=1)
    fig.update_yaxes(title="mean ‖v‖ over KV heads", row=1, col=2)
    fig.update_xaxes(title="position")
    fig.update_annotations(font_size=14)
    return fig


_QUANTITY_LABELS = {"attn_received": "attention received", "resid_norm": "residual norm",
                    "value_norm": "value norm"}


def register_heatmap(res, quantity: str = "attn_received") -> go.Figure:
    """A quantity (mean over windows) over layer × position, log10 colour scale."""
    if quantity not in _QUANTITY_LABELS:
        from ..errors import InterpError

        raise InterpError(f"unknown quantity {quantity!r}",
                          f"choose one of: {', '.join(_QUANTITY_LABELS)}")
    grid = res.table.groupby(["layer", "position"])[quantity].mean().unstack("position")
    z = np.log10(grid.to_numpy(dtype=float).clip(min=1e-12))
    label = _QUANTITY_LABELS[quantity]
    fig = go.Figure(go.Heatmap(
        z=z, x=grid.columns, y=grid.index, colorscale=SEQUENTIAL,
        colorbar=dict(title=dict(text=f"log10 {label}", side="right")),
        hovertemplate="layer %{y}<br>position %{x}<br>log10 value %{z:.2f}<extra></extra>"))
    apply_style(fig, title=f"{label.capitalize()} by layer and position (mean over windows)")
    fig.update_xaxes(title="position", showgrid=False)
    fig.update_yaxes(title="layer", showgrid=False, dtick=max(1, len(grid.index) // 10))
    return fig


def sink_heads(res, role: str | None = None) -> go.Figure:
    """Per layer and query head, the mean attention that the positions of ``role`` receive
    from later queries (default: ``bos`` if present, else the most common role), as a
    heatmap: which heads use the sink."""
    heads = res.heads
    if role is None:
        role = "bos" if "bos" in set(heads["role"]) else heads["role"].mode().iloc[0]
    if role not in set(heads["role"]):
        from ..errors import InterpError

        raise InterpError(f"no position has role {role!r}",
                          f"roles present: {', '.join(sorted(set(heads['role'])))}")
    grid = heads[heads["role"] == role].pivot_table(index="layer", columns="head",
                                                   values="attn_received")
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=grid.columns, y=grid.index, colorscale=SEQUENTIAL, zmin=0,
        colorbar=dict(title=dict(text="attention received", side="right")),
        hovertemplate="layer %{y}<br>head %{x}<br>attention %{z:.3f}<extra></extra>"))
    who = "the BOS position" if role == "bos" else f"{role} positions"
    apply_style(fig, title=f"Attention received by {who}, per head", width=620, height=520)
    fig.update_xaxes(title="query head", showgrid=False, dtick=1)
    fig.update_yaxes(title="layer", showgrid=False, dtick=max(1, len(grid.index) // 10))
    return fig


def massive_by_layer(massive) -> go.Figure:
    """The three largest activation magnitudes and the median magnitude of ``resid_post`` per
    layer (mean over windows), log scale, as in Sun et al. (2024, Fig. 1); the dotted line is
    the massive threshold (``ratio`` × median)."""
    s = massive.layer_stats.groupby("layer")[["median", "top1", "top2", "top3"]].mean()
    fig = go.Figure()
    for i, (col, name) in enumerate((("top1", "top 1"), ("top2", "top 2"), ("top3", "top 3"))):
        fig.add_trace(go.Scatter(x=s.index, y=s[col], mode="lines+markers", name=name,
                                 line=dict(color=CYCLE[i]), marker=dict(size=6)))
    fig.add_trace(go.Scatter(x=s.index, y=s["median"], mode="lines+markers", name="median",
                             line=dict(color="#555555"), marker=dict(size=5)))
    fig.add_trace(go.Scatter(x=s.index, y=s["median"] * massive.ratio, mode="lines",
                             name=f"{massive.ratio:g} × median",
                             line=dict(color="#555555", dash="dot")))
    apply_style(fig, title="Massive activations: largest |h| per layer")
    fig.update_yaxes(title="|activation| (resid_post)", **_LOG_DECADES)
    fig.update_xaxes(title="layer")
    first = massive.first_appearance()
    if len(first):
        top = first.sort_values("max_abs", ascending=False).iloc[0]
        fig.add_annotation(
            x=int(massive.emergence_layer()), y=np.log10(float(top["max_abs"])), yref="y",
            text=f"dim {int(top['dim'])} at position {int(top['position'])} ({top['role']})",
            showarrow=True, arrowhead=2, ax=60, ay=30, font=dict(size=12))
    return fig


def ablation_bars(ab) -> go.Figure:
    """Increase in next-token loss when the massive activations, or the sink position's K/V,
    are set to zero versus to their mean (Sun et al. 2024)."""
    t = ab.table[ab.table["method"] != "none"]
    labels = {"massive": "massive activations", "sink_kv": "sink K/V"}
    fig = go.Figure()
    for i, method in enumerate(("zero", "mean")):
        d = t[t["method"] == method]
        fig.add_trace(go.Bar(
            x=[labels.get(x, x) for x in d["component"]], y=d["delta_loss"], name=f"{method}-ablation",
            marker_color=CYCLE[i], text=[f"{v:+.3g}" for v in d["delta_loss"]],
            textposition="outside", cliponaxis=False,
            hovertext=d["ablated"], hoverinfo="text+y"))
    base = float(ab.table.loc[ab.table["method"] == "none", "loss"].iloc[0])
    apply_style(fig, title=f"Ablations: change in loss (baseline {base:.3f} nats)")
    fig.update_layout(barmode="group", bargap=0.3)
    fig.update_yaxes(title="Δ loss (nats per token)", zeroline=True, zerolinecolor="#999999")
    return fig


def eviction_perplexity(ev) -> go.Figure:
    """Perplexity on the same scored positions with full attention, with only a recent window
    (the first tokens evicted), and with the window plus the first S tokens (StreamingLLM)."""
    t = ev.table
    window = int(t["eviction_window"].iloc[0])
    names = []
    for c, s in zip(t["condition"], t["n_sinks"], strict=True):
        names.append("full attention" if c == "full" else
                     f"window {window}" if s == 0 else
                     f"{s} sink{'s' if s > 1 else ''} + window")
    colors = ["#555555" if c == "full" else "#D55E00" if s == 0 else CYCLE[0]
              for c, s in zip(t["condition"], t["n_sinks"], strict=True)]
    fig = go.Figure(go.Bar(x=names, y=t["perplexity"], marker_color=colors,
                           text=[f"{v:.1f}" for v in t["perplexity"]], textposition="outside",
                           cliponaxis=False))
    n = ev.settings.get("n_tokens")
    apply_style(fig, title=f"KV-cache eviction ({n} tokens, last {int(t['n_scored'].iloc[0])} "
                "scored)" if n else "KV-cache eviction")
    fig.update_yaxes(title="perplexity", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return fig
