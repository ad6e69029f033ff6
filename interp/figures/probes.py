"""Probe figures: accuracy (or R²) by layer, one line per offset, against the baselines."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..errors import InterpError
from ._style import CYCLE, apply_style

__all__ = ["future_lens_agreement", "future_lens_traces", "probe_accuracy", "probe_traces"]


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


# For each metric: the bigram-like baseline column and the context-free one (name, column).
_BASELINES = {
    "accuracy": ("baseline_bigram", ("majority", "baseline_majority")),
    "top5": ("baseline_bigram_top5", None),
    "xent": ("baseline_bigram_xent", ("unigram", "baseline_unigram_xent")),
    "r2": ("baseline_bigram", ("training mean", "baseline_majority")),
}


def probe_traces(results, *, site: str | None = None, role: str = "all", split: str = "test",
                 metric: str | None = None) -> list[go.Scatter]:
    """The traces of :func:`probe_accuracy`: per offset, the probe (solid) and the bigram
    baseline of the same metric (dashed, same colour; for R² the token-type mean); the
    context-free baseline (majority / unigram / training mean) and, for accuracy, the
    control task (grey).

    For K/V sites (several heads per layer) each layer shows its best head.
    """
    sel, site = _rows(results, site, role, split)
    metric = metric or _default_metric(sel)
    if metric not in _BASELINES:
        raise InterpError(f"unknown metric {metric!r}", f"use one of: {', '.join(_BASELINES)}")
    bigram_col, flat = _BASELINES[metric]
    agg = "min" if metric == "xent" else "max"
    per = sel.groupby(["offset", "layer"], as_index=False).agg(
        value=(metric, agg), bigram=(bigram_col, "first"),
        flat=(flat[1] if flat else bigram_col, "first"),
        control=("control_accuracy", "max"), selectivity=("selectivity", "max"), n=("n", "first"))
    bigram_name = "token mean" if metric == "r2" else "bigram"
    traces: list[go.Scatter] = []
    for i, (k, g) in enumerate(per.groupby("offset")):
        color = CYCLE[i % len(CYCLE)]
        label = f"offset {k}" if k else "label"
        traces.append(go.Scatter(
            x=g.layer, y=g.value, mode="lines+markers", name=f"probe, {label}", legendgroup=str(k),
            line=dict(color=color, width=2), marker=dict(size=6, color=color),
            customdata=g[["bigram", "selectivity", "n"]].to_numpy(),
            hovertemplate=(f"{label}<br>layer %{{x}}<br>{metric} %{{y:.3f}}<br>{bigram_name} %{{customdata[0]:.3f}}"
                           "<br>selectivity %{customdata[1]:.3f}<br>n = %{customdata[2]}<extra></extra>"),
        ))
        if g["bigram"].notna().any():
            traces.append(go.Scatter(
                x=g.layer, y=g["bigram"], mode="lines", name=f"{bigram_name}, {label}", legendgroup=str(k),
                line=dict(color=color, dash="dash", width=1.5),
                hovertemplate=f"{label}: {bigram_name} baseline %{{y:.3f}}<extra></extra>",
            ))
    first = per[per.offset == per.offset.min()]
    if flat and first.flat.notna().any():
        traces.append(go.Scatter(x=first.layer, y=first.flat, mode="lines", name=flat[0],
                                 line=dict(color="#999999", dash="dot", width=1.5),
                                 hovertemplate=f"{flat[0]} %{{y:.3f}}<extra></extra>"))
    if metric == "accuracy" and first.control.notna().any():
        traces.append(go.Scatter(x=first.layer, y=first.control, mode="lines+markers", name="control task",
                                 line=dict(color="#555555", dash="dot", width=1.5),
                                 marker=dict(size=4, symbol="x", color="#555555"),
                                 hovertemplate="layer %{x}<br>control accuracy %{y:.3f}<extra></extra>"))
    return traces


def probe_accuracy(results, *, site: str | None = None, role: str = "all", split: str = "test",
                   metric: str | None = None, title: str | None = None) -> go.Figure:
    """Probe accuracy (or top-5, cross-entropy, R²) by layer, one line per offset, against the
    baselines of the same metric: bigram (dashed, per offset), majority or unigram (grey
    dotted) and, for accuracy, the control task.

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
    layers = sorted(results.to_pandas().layer.unique().tolist())
    if len(layers) <= 12:  # tick exactly the layers probed (e.g. every third layer)
        fig.update_xaxes(title_text="layer", tickmode="array", tickvals=layers, tickangle=0)
    else:
        step = max(1, -(-(layers[-1] - layers[0]) // 10))
        fig.update_xaxes(title_text="layer", dtick=step, tickangle=0)
    fig.update_yaxes(title_text=f"{split} {ylab}")
    # title aligned with the plot area; legend outside it, so no line is hidden
    fig.update_layout(title=dict(xref="paper", x=0), legend=dict(x=1.02, xanchor="left", y=1, yanchor="top"),
                      margin=dict(r=180))
    return fig


# Future Lens metrics and the n-gram baseline column scored the same way.
_LENS_BASELINES = {
    "agreement_top1": ("bigram_agreement", "trigram_agreement"),
    "accuracy": ("bigram_accuracy", "trigram_accuracy"),
    "accuracy_top5": ("bigram_top5_accuracy", "trigram_top5_accuracy"),
    "agreement_top5": (None, None),
}


def future_lens_traces(results, *, metric: str = "agreement_top1") -> list[go.Scatter]:
    """The traces of :func:`future_lens_agreement`: per offset the linear lens by layer
    (solid), its bigram (dashed) and trigram (dotted) baselines in the same colour, and the
    learned prompt's layers as diamonds."""
    if metric not in _LENS_BASELINES:
        raise InterpError(f"unknown Future Lens metric {metric!r}", f"use one of: {', '.join(_LENS_BASELINES)}")
    t = results.to_pandas()
    traces: list[go.Scatter] = []
    for i, (k, g) in enumerate(t[t.method == "linear"].groupby("offset")):
        g = g.sort_values("layer")
        color = CYCLE[i % len(CYCLE)]
        traces.append(go.Scatter(
            x=g.layer, y=g[metric], mode="lines+markers", name=f"linear, offset {k}", legendgroup=str(k),
            line=dict(color=color, width=2), marker=dict(size=6, color=color),
            customdata=g[["bigram_agreement", "accuracy", "n"]].to_numpy(),
            hovertemplate=(f"offset {k}<br>layer %{{x}}<br>{metric} %{{y:.3f}}<br>bigram agreement "
                           "%{customdata[0]:.3f}<br>true-token accuracy %{customdata[1]:.3f}"
                           "<br>n = %{customdata[2]}<extra></extra>"),
        ))
        for col, dash, name in zip(_LENS_BASELINES[metric], ("dash", "dot"), ("bigram", "trigram"), strict=True):
            if col is not None:
                traces.append(go.Scatter(
                    x=g.layer, y=g[col], mode="lines", name=f"{name}, offset {k}", legendgroup=str(k),
                    line=dict(color=color, dash=dash, width=1.5),
                    hovertemplate=f"offset {k}: {name} baseline %{{y:.3f}}<extra></extra>"))
        p = t[(t.method == "prompt") & (t.offset == k)]
        if len(p):
            traces.append(go.Scatter(
                x=p.layer, y=p[metric], mode="markers", name=f"learned prompt, offset {k}", legendgroup=str(k),
                marker=dict(size=11, symbol="diamond", color=color, line=dict(color="#222222", width=1)),
                hovertemplate=f"learned prompt, offset {k}<br>layer %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>"))
    return traces


def future_lens_agreement(results, *, metric: str = "agreement_top1", title: str | None = None) -> go.Figure:
    """Future Lens by layer, one colour per offset: how often the lens's top token is the
    model's own prediction at t + k − 1 (``agreement_top1``, the paper's metric), or its
    ``agreement_top5``, ``accuracy`` or ``accuracy_top5`` on the true token t + k, against the
    bigram (dashed) and trigram (dotted) baselines scored the same way, with learned-prompt
    results as diamonds.

    Args:
        results: :class:`interp.probes.FutureLensResults`.
        metric: the column to plot.
        title: figure title.
    """
    fig = go.Figure(future_lens_traces(results, metric=metric))
    label = {"agreement_top1": "top-1 agreement with the model", "agreement_top5": "top-5 agreement with the model",
             "accuracy": "true-token accuracy", "accuracy_top5": "true-token top-5 accuracy"}[metric]
    apply_style(fig, title=title or "Future Lens: the token at t + k from h_t")
    fig.update_xaxes(title_text="layer", tickangle=0)
    fig.update_yaxes(title_text=f"test {label}")
    fig.update_layout(title=dict(xref="paper", x=0), legend=dict(x=1.02, xanchor="left", y=1, yanchor="top"),
                      margin=dict(r=200))
    return fig
