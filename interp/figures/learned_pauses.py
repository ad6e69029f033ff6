"""Figures for learned pause requests (:mod:`interp.training.learned_pauses`, and on an LM
:mod:`interp.training.learned_pauses_lm`): the accuracy- (or loss-) vs-pauses frontier (the
model's own decision at each λ beside the same budget placed at fixed counts, at random and
by the entropy trigger), pauses against difficulty, and the instruments at the
self-requested pauses (:func:`interp.controls.self_pause_instruments`), each beside its null
and positive control."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import CYCLE, apply_style

__all__ = ["pause_difficulty", "pause_frontier", "self_pause_attention", "self_pause_patching",
           "self_pause_probes"]

_POLICY_COLORS = {"learned": CYCLE[1], "fixed": CYCLE[0], "random": CYCLE[7], "entropy": CYCLE[2]}
_POLICY_NAMES = {"learned": "the model decides (cost λ)", "fixed": "same count for all",
                 "random": "random count", "entropy": "entropy trigger"}


def pause_frontier(frontier: pd.DataFrame) -> go.Figure:
    """Held-out accuracy (the toy) or loss on real tokens (an LM, a ``loss`` column) against
    mean pauses per answer: one point per λ and policy, the policies' points joined in order
    of their budget (``pause_frontier`` / ``lm_pause_frontier`` output)."""
    metric = "accuracy" if "accuracy" in frontier else "loss"
    fig = go.Figure()
    for policy, g in frontier.groupby("policy", sort=False):
        g = g.sort_values("mean_pauses")
        fig.add_trace(go.Scatter(
            x=g["mean_pauses"], y=g[metric], name=_POLICY_NAMES.get(policy, policy),
            mode="lines+markers", line=dict(color=_POLICY_COLORS.get(policy)),
            text=[f"λ = {lam:g}" for lam in g["lam"]],
            hovertemplate=f"%{{text}}<br>%{{x:.2f}} pauses, {metric} %{{y:.3f}}<extra></extra>"))
    if metric == "accuracy":
        fig.add_hline(y=0.5, line=dict(dash="dash", color="#777777"))
        fig.update_xaxes(title="mean pauses per answer")
        fig.update_yaxes(title="held-out accuracy", range=[0.4, 1.02])
        return apply_style(fig, title="Learned pauses: accuracy against pauses taken")
    fig.update_xaxes(title="mean pauses per position")
    fig.update_yaxes(title="held-out loss on the next real token (nats)")
    return apply_style(fig, title="Learned pauses: loss against pauses taken")


def pause_difficulty(difficulty: pd.DataFrame, by_ones: pd.DataFrame | None = None
                     ) -> go.Figure:
    """Mean self-requested pauses against difficulty, one line per urgency λ: the bit-string
    length n (the toy, ``pause_frontier``'s difficulty table) or the base model's next-token
    entropy, binned (an LM, an ``entropy`` column); with ``by_ones`` (``pauses_by_ones``, the
    toy) a second panel against the count of ones c."""
    toy = "n_bits" in difficulty
    x, metric = ("n_bits", "accuracy") if toy else ("entropy", "loss")
    title = ("bit-string length n (difficulty)" if toy else
             "base model's next-token entropy, nats (difficulty; bin means)")
    panels = [(difficulty, x, metric, title)]
    if by_ones is not None:
        panels.append((by_ones, "ones", "accuracy", "count of ones c (difficulty)"))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True)
    for col, (table, key, what, axis_title) in enumerate(panels, start=1):
        for i, (lam, g) in enumerate(table.groupby("lam")):
            fig.add_trace(go.Scatter(
                x=g[key], y=g["mean_pauses"], name=f"λ = {lam:g}", mode="lines+markers",
                line=dict(color=CYCLE[i % len(CYCLE)]), customdata=g[[what]],
                legendgroup=f"{lam:g}", showlegend=col == 1,
                hovertemplate=f"{key} = %{{x:.2f}}: %{{y:.2f}} pauses, {what} "
                              "%{customdata[0]:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title=axis_title, row=1, col=col, **(dict(dtick=1) if key != "entropy"
                                                                else {}))
    fig.update_yaxes(title="mean pauses the model requests", row=1, col=1)
    return apply_style(fig, title="Learned pauses: where the model pauses")


_PATCH_COLORS = {"pauses from donor": CYCLE[1], "pauses, equal-norm random": CYCLE[7],
                 "bits from donor": CYCLE[0]}


def self_pause_patching(result) -> go.Figure:
    """Held-out accuracy (examples of every length pooled) clean and with K/V patched, per
    patched layers: the self-requested pauses' K/V from another example, the equal-norm random
    change of them (null), the bits' K/V from the donor (positive control)."""
    t = result.patching.assign(w_patched=lambda d: d["patched_accuracy"] * d["count"],
                               w_clean=lambda d: d["clean_accuracy"] * d["count"])
    fig = go.Figure()
    for patch, g in t.groupby("patch", sort=False):
        g = g.groupby("layers", sort=False)[["w_patched", "w_clean", "count"]].sum()
        x = ["clean"] + [f"layer {x}" if x != "all" else "all layers" for x in g.index]
        y = [float(g["w_clean"].iloc[0] / g["count"].iloc[0])] + (
            g["w_patched"] / g["count"]).tolist()
        fig.add_trace(go.Bar(x=x, y=y, name=patch, marker_color=_PATCH_COLORS.get(patch)))
    fig.add_hline(y=0.5, line=dict(dash="dash", color="#777777"))
    fig.update_yaxes(title="held-out accuracy", range=[0, 1.02])
    fig.update_layout(barmode="group")
    lam = result.settings.get("lam")
    return apply_style(fig, title=f"Patching the self-requested pauses' keys and values "
                                  f"(λ = {lam:g}, {result.settings.get('mean_pauses', 0):.2f} "
                                  "pauses per answer)")


def self_pause_probes(result) -> go.Figure:
    """Held-out probe accuracy by layer at the self-requested pauses (answer, partial result,
    shuffled labels: the null) and at the answer position (positive control); the majority
    baseline dashed."""
    t = result.probes
    fig = go.Figure()
    for i, ((where, target), g) in enumerate(t.groupby(["where", "target"], sort=False)):
        fig.add_trace(go.Scatter(
            x=g["layer"], y=g["accuracy"], mode="lines+markers", name=f"{target} at {where}",
            line=dict(color=CYCLE[i % len(CYCLE)],
                      dash="dot" if "shuffled" in target else "solid")))
    fig.add_hline(y=float(t["baseline"].mean()), line=dict(dash="dash", color="#777777"))
    fig.update_xaxes(title="residual stream entering layer (last: final)", dtick=1)
    fig.update_yaxes(title="held-out probe accuracy", range=[0.0, 1.02])
    return apply_style(fig, title="Probes at the self-requested pauses", width=860)


def self_pause_attention(result) -> go.Figure:
    """Attention received over uniform by layer and position kind: the self-requested pauses
    beside random positions (null), the bits, ``<bos>`` and the answer position's mass on the
    pauses."""
    t = result.attention
    fig = go.Figure()
    for i, (kind, g) in enumerate(t.groupby("kind", sort=False)):
        fig.add_trace(go.Bar(x=[f"layer {x}" for x in g["layer"]], y=g["attn_ratio"], name=kind,
                             marker_color=CYCLE[i % len(CYCLE)], customdata=g[["n"]],
                             hovertemplate="%{y:.2f}× uniform (%{customdata[0]} positions)"
                                           "<extra></extra>"))
    fig.add_hline(y=1.0, line=dict(dash="dash", color="#777777"))
    fig.update_yaxes(title="attention received / uniform")
    fig.update_layout(barmode="group")
    return apply_style(fig, title="Attention at the self-requested pauses")
