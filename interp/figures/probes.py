"""Probe figures: accuracy (or R²) by layer, one line per offset, against the baselines."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..errors import InterpError
from ._style import CYCLE, apply_style

__all__ = ["probe_accuracy", "probe_traces"]


def _rows(results, site: str | None, role: str, split: str) -> tuple[pd.DataFrame, str]:
    m = results.to_pandas()
    site = site or results.spec.inputs.sites[0]
    sel = m[(m.site == site) & (m.role == role) & (m.split == split)]
    if sel.empty:
        raise InterpError(
            f"no probe metrics for site={site!r}, role={role!r}, split={split!r}",
            f"sites: {sorted(m.site.unique())}; roles: {sorted(m.role.unique())}; splits: {sorted(m.split.unique())}",
        )
    return sel, site


def _default_metric(rows: pd.DataFrame) -> str:
    return "accuracy" if rows["accuracy"].notna().any() else "r2"


def probe_traces(results, *, site: str | None = None, role: str = "all", split: str = "test",
                 metric: str | None = None) -> list[go.Scatter]:
    """The traces of :func:`probe_accuracy`: per offset, the probe (solid) and the bigram
    baseline (dashed, same colour); the majority baseline and the control task (grey).

    For K/V sites (several heads per layer) each layer shows its best head.
    """
    sel, site = _rows(results, site, role, split)
    metric = metric or _default_metric(sel)
    if metric not in ("accuracy", "top5", "xent", "r2"):
        raise InterpError(f"unknown metric {metric!r}", "use accuracy, top5, xent or r2")
    agg = "min" if metric == "xent" else "max"
    per = sel.groupby(["offset", "layer"], as_index=False).agg(
        value=(metric, agg), bigram=("baseline_bigram", "first"), majority=("baseline_majority", "first"),
        control=("control_accuracy", agg), selectivity=("selectivity", agg), n=("n", "first"))
    base_col = {"accuracy": "bigram", "r2": "bigram"}.get(metric)
    traces: list[go.Scatter] = []
    for i, (k, g) in enumerate(per.groupby("offset")):
        color = CYCLE[i % len(CYCLE)]
        label = f"offset {k}" if k else "label"
        traces.append(go.Scatter(
            x=g.layer, y=g.value, mode="lines+markers", name=f"probe, {label}", legendgroup=str(k),
            line=dict(color=color, width=2), marker=dict(size=6, color=color),
            customdata=g[["bigram", "selectivity", "n"]].to_numpy(),
            hovertemplate=(f"{label}<br>layer %{{x}}<br>{metric} %{{y:.3f}}<br>bigram %{{customdata[0]:.3f}}"
                           "<br>selectivity %{customdata[1]:.3f}<br>n = %{customdata[2]}<extra></extra>"),
        ))
        if base_col and g[base_col].notna().any():
            traces.append(go.Scatter(
                x=g.layer, y=g[base_col], mode="lines", name=f"bigram, {label}" if metric == "accuracy"
                else f"token mean, {label}", legendgroup=str(k), line=dict(color=color, dash="dash", width=1.5),
                hovertemplate=f"{label} baseline %{{y:.3f}}<extra></extra>",
            ))
    if metric == "accuracy":
        first = per[per.offset == per.offset.min()]
        traces.append(go.Scatter(x=first.layer, y=first.majority, mode="lines", name="majority",
                                 line=dict(color="#999999", dash="dot", width=1.5),
                                 hovertemplate="majority %{y:.3f}<extra></extra>"))
        if first.control.notna().any():
            traces.append(go.Scatter(x=first.layer, y=first.control, mode="lines+markers", name="control task",
                                     line=dict(color="#555555", dash="dot", width=1.5),
                                     marker=dict(size=4, symbol="x", color="#555555"),
                                     hovertemplate="layer %{x}<br>control accuracy %{y:.3f}<extra></extra>"))
    return traces


def probe_accuracy(results, *, site: str | None = None, role: str = "all", split: str = "test",
                   metric: str | None = None, title: str | None = None) -> go.Figure:
    """Probe accuracy (or R², top-5, cross-entropy) by layer, one line per offset, against the
    bigram (dashed), majority and control-task baselines.

    Args:
        results: :class:`interp.probes.ProbeResults`.
        site: which input site (default: the spec's first).
        role: a position role, or ``"all"``.
        split: ``"test"`` (default), ``"val"`` or ``"train"``.
        metric: ``accuracy`` (default for classification), ``top5``, ``xent`` or ``r2``
            (default for regression).
        title: figure title (default: spec name, site, role and split).
    """
    rows, site = _rows(results, site, role, split)
    metric = metric or _default_metric(rows)
    fig = go.Figure(probe_traces(results, site=site, role=role, split=split, metric=metric))
    ylab = {"accuracy": "accuracy", "top5": "top-5 accuracy", "xent": "cross-entropy (nats)", "r2": "R²"}[metric]
    heads = "" if site.startswith("resid") else ", best KV head"
    apply_style(fig, title=title or f"{results.spec.name}: {site}{heads}, role {role}, {split} split")
    fig.update_xaxes(title_text="layer", dtick=1 if results.to_pandas().layer.nunique() <= 12 else 2)
    fig.update_yaxes(title_text=f"{split} {ylab}", rangemode="tozero" if metric != "r2" else "normal")
    # title aligned with the plot area; legend outside it, so no line is hidden
    fig.update_layout(title=dict(xref="paper", x=0), legend=dict(x=1.02, xanchor="left", y=1, yanchor="top"),
                      margin=dict(r=180))
    return fig
