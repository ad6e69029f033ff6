"""Figures for toy-task training: learning curves, and final metrics compared across
conditions (pauses, fillers, vanilla vs myopic) with every seed shown.

Both take a :class:`interp.training.toy.ToyResult` (one run) or :class:`interp.training.toy.ToyComparison`
(a grid). The y axis is the task's metric: exact-match accuracy for token tasks, normalised
loss Σ(ŷ − y)² / Σy² for the ``precache`` regression (log scale; 1 is the trivial predictor).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InterpError
from ._style import CYCLE, apply_style

__all__ = ["compare_bars", "training_curves"]

_LOG_TICKS = [m * 10.0**e for e in range(-4, 1) for m in (1, 2, 5)] + [1.0, 2.0]
_METRIC_LABEL = {"accuracy": "accuracy (exact match)",
                 "normalised_loss": "normalised loss Σ(ŷ−y)²/Σy²"}


def _condition(df: pd.DataFrame) -> pd.Series:
    """A readable label per row: ``vanilla``, ``myopic · 4 pauses``, ``vanilla · 4 fillers``,
    ``vanilla · 40 fillers + CoT mix`` (trained with the chain-of-thought mixture)."""
    def one(r) -> str:
        if not r["pauses"]:
            return r["mode"]
        kind = "pause" if r["insert"] == "pause" else "filler"
        mix = " + CoT mix" if r["insert"] == "filler_cot" else ""
        return f"{r['mode']} · {r['pauses']} {kind}{'s' if r['pauses'] > 1 else ''}{mix}"

    return df.apply(one, axis=1)


def _tables(result) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(final metrics per run, histories, metric name) of a ToyResult or ToyComparison."""
    if hasattr(result, "histories"):
        runs, hist = result.runs, result.histories
    elif hasattr(result, "history"):
        hist = result.to_pandas()
        m = result.metrics
        runs = pd.DataFrame([dict(task=m["task"], mode=m["mode"], pauses=m["pauses"],
                                  insert=m["insert"], seed=m["seed"], metric=m["metric"],
                                  value=m[m["metric"]], baseline=m["baseline"])])
    else:
        raise InterpError(f"cannot plot a {type(result).__name__}",
                          "pass a ToyResult (train_toy) or a ToyComparison (compare_toy)")
    if runs.empty:
        raise InterpError("no runs to plot", "train at least one run first (interp.train_toy or `interp toy`)")
    return runs, hist, str(runs["metric"].iloc[0])


def _baseline(fig: go.Figure, y: float, col: int) -> None:
    """A dashed line at the task's baseline, named once in the legend. (A line annotation
    would be misplaced on log axes, so the legend carries the name.)"""
    style = dict(dash="dash", color="#777777", width=1.2)
    fig.add_hline(y=y, line=style, row=1, col=col)
    if col == 1:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=style, name="baseline",
                                 hoverinfo="skip"), row=1, col=1)


def training_curves(result, *, title: str | None = None) -> go.Figure:
    """Held-out metric against training step: one colour per condition, one line per seed.

    Args:
        result: a ``ToyResult`` or ``ToyComparison``.
        title: figure title (default: the task names).
    """
    runs, hist, metric = _tables(result)
    hist = hist.assign(condition=_condition(hist))
    tasks = list(dict.fromkeys(hist["task"]))
    conditions = list(dict.fromkeys(hist["condition"]))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks if len(tasks) > 1 else None,
                        horizontal_spacing=0.08)
    for c, task in enumerate(tasks, start=1):
        sub = hist[hist["task"] == task]
        for i, cond in enumerate(conditions):
            for j, (seed, run) in enumerate(sub[sub["condition"] == cond].groupby("seed")):
                fig.add_trace(go.Scatter(
                    x=run["step"], y=run["metric"], mode="lines+markers", marker_size=4,
                    line=dict(color=CYCLE[i % len(CYCLE)], width=1.5),
                    name=cond, legendgroup=cond, showlegend=c == 1 and j == 0,
                    hovertemplate=f"{cond}, seed {seed}<br>step %{{x}}<br>{metric} %{{y:.4f}}"
                    "<extra></extra>"), row=1, col=c)
        _baseline(fig, float(runs.loc[runs["task"] == task, "baseline"].mean()), c)
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text=_METRIC_LABEL.get(metric, metric), col=1)
    if metric == "normalised_loss":
        fig.update_yaxes(type="log", tickvals=_LOG_TICKS, tickformat="~g")
    apply_style(fig, title=title or "Training curves: " + ", ".join(tasks),
                width=max(560, 420 * len(tasks)))
    return fig


def compare_bars(result, *, title: str | None = None) -> go.Figure:
    """Final metric per condition: a bar at the mean over seeds, ±1 standard deviation, and
    every seed as a point; the task's baseline (majority answer, or the trivial predictor
    for ``precache``) as a dashed line.

    Args:
        result: a ``ToyComparison`` (or a single ``ToyResult``).
        title: figure title.
    """
    runs, _, metric = _tables(result)
    runs = runs.assign(condition=_condition(runs))
    tasks = list(dict.fromkeys(runs["task"]))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks if len(tasks) > 1 else None,
                        horizontal_spacing=0.1)
    for c, task in enumerate(tasks, start=1):
        sub = runs[runs["task"] == task]
        conditions = list(dict.fromkeys(sub["condition"]))
        stats = sub.groupby("condition", sort=False)["value"].agg(["mean", "std", "count"])
        colors = [CYCLE[i % len(CYCLE)] for i in range(len(conditions))]
        fig.add_trace(go.Bar(
            x=conditions, y=stats.loc[conditions, "mean"],
            error_y=dict(type="data", array=stats.loc[conditions, "std"].fillna(0.0),
                         color="#444444", thickness=1.2),
            marker=dict(color=colors, opacity=0.55), showlegend=False,
            customdata=stats.loc[conditions, "count"],
            hovertemplate="%{x}<br>mean %{y:.4f} over %{customdata} seed(s)<extra></extra>",
        ), row=1, col=c)
        fig.add_trace(go.Scatter(
            x=sub["condition"], y=sub["value"], mode="markers",
            marker=dict(color="#222222", size=7, symbol="circle-open"),
            name="one seed", showlegend=c == 1, customdata=sub["seed"],
            hovertemplate="%{x}, seed %{customdata}<br>%{y:.4f}<extra></extra>",
        ), row=1, col=c)
        _baseline(fig, float(sub["baseline"].mean()), c)
    fig.update_yaxes(title_text="final " + _METRIC_LABEL.get(metric, metric), col=1)
    if metric == "normalised_loss":
        fig.update_yaxes(type="log", tickvals=_LOG_TICKS, tickformat="~g")
    elif metric == "accuracy":
        fig.update_yaxes(range=[0, 1.05])
    apply_style(fig, title=title or "Final " + metric.replace("_", " ") + " by condition",
                width=max(560, 120 + 190 * len(runs["condition"].unique()) * len(tasks)))
    fig.update_layout(legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"))
    return fig
