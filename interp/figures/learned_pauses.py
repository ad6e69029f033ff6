"""Figures for learned pause requests (:mod:`interp.training.learned_pauses`): the
accuracy-vs-pauses frontier (the model's own decision at each urgency λ beside the same budget
placed at fixed counts, at random and by the entropy trigger) and pauses against difficulty."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import CYCLE, apply_style

__all__ = ["pause_difficulty", "pause_frontier"]

_POLICY_COLORS = {"learned": CYCLE[1], "fixed": CYCLE[0], "random": CYCLE[7], "entropy": CYCLE[2]}
_POLICY_NAMES = {"learned": "the model decides (urgency λ)", "fixed": "same count for all",
                 "random": "random count", "entropy": "entropy trigger"}


def pause_frontier(frontier: pd.DataFrame) -> go.Figure:
    """Held-out accuracy against mean pauses per answer: one point per λ and policy, the
    policies' points joined in order of their budget (``pause_frontier`` output)."""
    fig = go.Figure()
    for policy, g in frontier.groupby("policy", sort=False):
        g = g.sort_values("mean_pauses")
        fig.add_trace(go.Scatter(
            x=g["mean_pauses"], y=g["accuracy"], name=_POLICY_NAMES.get(policy, policy),
            mode="lines+markers", line=dict(color=_POLICY_COLORS.get(policy)),
            text=[f"λ = {lam:g}" for lam in g["lam"]],
            hovertemplate="%{text}<br>%{x:.2f} pauses, accuracy %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0.5, line=dict(dash="dash", color="#777777"))
    fig.update_xaxes(title="mean pauses per answer")
    fig.update_yaxes(title="held-out accuracy", range=[0.4, 1.02])
    return apply_style(fig, title="Learned pauses: accuracy against pauses taken")


def pause_difficulty(difficulty: pd.DataFrame, by_ones: pd.DataFrame | None = None
                     ) -> go.Figure:
    """Mean self-requested pauses against the bit-string length n (``pause_frontier``'s
    difficulty table), one line per urgency λ; with ``by_ones`` (``pauses_by_ones``) a second
    panel against the count of ones c."""
    panels = [(difficulty, "n_bits", "bit-string length n", "n")]
    if by_ones is not None:
        panels.append((by_ones, "ones", "count of ones c", "c"))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True,
                        subplot_titles=[title for _, _, title, _ in panels]
                        if len(panels) > 1 else None)
    for col, (table, key, title, short) in enumerate(panels, start=1):
        for i, (lam, g) in enumerate(table.groupby("lam")):
            fig.add_trace(go.Scatter(
                x=g[key], y=g["mean_pauses"], name=f"λ = {lam:g}", mode="lines+markers",
                line=dict(color=CYCLE[i % len(CYCLE)]), customdata=g[["accuracy", "count"]],
                legendgroup=f"{lam:g}", showlegend=col == 1,
                hovertemplate=f"{short} = %{{x}}: %{{y:.2f}} pauses, accuracy "
                              "%{customdata[0]:.3f} (%{customdata[1]} examples)<extra></extra>"),
                row=1, col=col)
        fig.update_xaxes(title=f"{title} (difficulty)", dtick=1, row=1, col=col)
    fig.update_yaxes(title="mean pauses the model requests", row=1, col=1)
    return apply_style(fig, title="Learned pauses: where the model pauses")
