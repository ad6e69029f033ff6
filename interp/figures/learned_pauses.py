"""Figures for learned pause requests (:mod:`interp.training.learned_pauses`, and on an LM
:mod:`interp.training.learned_pauses_lm`): the accuracy- (or loss-) vs-pauses frontier (the
model's own decision at each urgency λ beside the same budget placed at fixed counts, at
random and by the entropy trigger) and pauses against difficulty."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ._style import CYCLE, apply_style

__all__ = ["pause_difficulty", "pause_frontier"]

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


def pause_difficulty(difficulty: pd.DataFrame) -> go.Figure:
    """Mean self-requested pauses against difficulty, one line per urgency λ: the bit-string
    length n (the toy) or the base model's next-token entropy, binned (an LM, an
    ``entropy`` column)."""
    toy = "n_bits" in difficulty
    x, metric = ("n_bits", "accuracy") if toy else ("entropy", "loss")
    fig = go.Figure()
    for i, (lam, g) in enumerate(difficulty.groupby("lam")):
        fig.add_trace(go.Scatter(
            x=g[x], y=g["mean_pauses"], name=f"λ = {lam:g}", mode="lines+markers",
            line=dict(color=CYCLE[i % len(CYCLE)]), customdata=g[[metric]],
            hovertemplate=f"{x} = %{{x:.2f}}: %{{y:.2f}} pauses, {metric} "
                          "%{customdata[0]:.3f}<extra></extra>"))
    if toy:
        fig.update_xaxes(title="bit-string length n (difficulty)", dtick=1)
    else:
        fig.update_xaxes(title="base model's next-token entropy, nats (difficulty; bin means)")
    fig.update_yaxes(title="mean pauses the model requests")
    return apply_style(fig, title="Learned pauses: where the model pauses")
