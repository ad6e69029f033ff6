"""Figures of the future-loss gradient decomposition.

* :func:`future_share_heatmap`: mean future share, layer × position, roles marked under the axis
* :func:`future_share_by_position`: future share against position, beside the naive
  prediction from counting later losses (N − 1 − i, normalised)
* :func:`gradient_by_distance`: ‖∂ℓ_{i+d}/∂x_i‖ against the distance d, one line per layer

Each takes a result object (:class:`~interp.gradients.FutureGradients`,
:class:`~interp.gradients.ByDistance`), which can be rebuilt from its CSV with ``from_csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import InterpError
from ._style import CYCLE, ROLE_COLORS, ROLE_MARKERS, SEQUENTIAL, apply_style

__all__ = ["future_share_by_position", "future_share_heatmap", "gradient_by_distance"]


def _site_rows(fg, site: str):
    t = fg.table[fg.table.site == site]
    if t.empty:
        raise InterpError(f"no rows for site {site!r}",
                          f"choose among: {', '.join(sorted(fg.table.site.unique()))}")
    return t


def _position_labels(t) -> tuple[list[int], list[str], list[str]]:
    """Per position: the most common role and a hover label (the token when every sequence
    has the same one there, as for a single text)."""
    positions = sorted(int(p) for p in t.position.unique())
    roles, labels = [], []
    has_str = "token_str" in t
    for p, g in t.groupby("position", sort=True):
        roles.append(g.role.mode().iloc[0])
        toks = g.token_str.unique() if has_str else []
        labels.append(f"{p}: {toks[0]!r}" if len(toks) == 1 else str(p))
    return positions, roles, labels


def future_share_heatmap(fg, site: str = "k", *, title: str | None = None
                         ) -> go.Figure:
    """Mean future share (over heads and sequences) for each layer and position.

    Positions with zero gradient (the last) are blank; markers under the axis show each
    position's role (the first position, usually BOS / a sink, is marked as such)."""
    t = _site_rows(fg, site)
    grid = t.pivot_table(index="layer", columns="position", values="future_share",
                         aggfunc="mean")
    positions, roles, labels = _position_labels(t)
    grid = grid.reindex(columns=positions)
    label_of = dict(zip(positions, labels, strict=True))
    hover = [[f"layer {layer}<br>position {label_of[p]}<br>future share {v:.3f}"
              for p, v in zip(grid.columns, row, strict=True)]
             for layer, row in zip(grid.index, grid.to_numpy(), strict=True)]
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), zmin=0, zmax=1,
        colorscale=SEQUENTIAL, text=hover, hoverinfo="text",
        colorbar=dict(title=dict(text="future<br>share", side="top"), len=0.8)))
    layers = list(grid.index)
    step = (layers[1] - layers[0]) if len(layers) > 1 else 1
    below = layers[0] - step
    for role in dict.fromkeys(roles):
        xs = [p for p, r in zip(positions, roles, strict=True) if r == role]
        fig.add_trace(go.Scatter(
            x=xs, y=[below] * len(xs), mode="markers", name=role,
            marker=dict(symbol=ROLE_MARKERS.get(role, "circle"), size=8,
                        color=ROLE_COLORS.get(role, "#666666")),
            text=[label_of[p] for p in xs], hoverinfo="text"))
    fig.update_yaxes(title="layer", range=[below - 0.6 * step, layers[-1] + 0.5 * step])
    fig.update_xaxes(title="position", showgrid=False)
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom",
                                  title_text="role"))
    return apply_style(fig, title=title or f"Future share of the {_site_name(site)} gradient",
                       height=max(360, 200 + 12 * len(grid.index)))


def future_share_by_position(fg, sites: list[str] | None = None, *,
                             title: str | None = None) -> go.Figure:
    """Mean future share against position (± s.e.m. over layers, heads, sequences), with the
    fraction of later positions in the loss, n_later / max(n_later), as the naive prediction."""
    by = fg.by_position()
    sites = sites or [s for s in ("k", "v", "resid_pre", "resid_mid", "resid_post")
                      if s in set(by.site)]
    fig = go.Figure()
    for color, site in zip(CYCLE, sites, strict=False):
        b = by[by.site == site]
        fig.add_trace(go.Scatter(
            x=b.position, y=b.future_share, name=_site_name(site), mode="lines+markers",
            line=dict(color=color), marker=dict(size=4),
            error_y=dict(type="data", array=b.future_share_sem.fillna(0), thickness=1, width=0),
            hovertemplate="position %{x}<br>future share %{y:.3f}<extra>" + site + "</extra>"))
    b = by[by.site == sites[0]]
    fig.add_trace(go.Scatter(x=b.position, y=b.later_fraction, name="later positions (normalised)",
                             mode="lines", line=dict(color="#555555", dash="dash")))
    first = b[b.position == 0]
    if len(first):
        fig.add_trace(go.Scatter(
            x=first.position, y=first.future_share, mode="markers", name="first position",
            marker=dict(symbol=ROLE_MARKERS["bos"], size=13, color=ROLE_COLORS["bos"])))
    fig.update_xaxes(title="position")
    fig.update_yaxes(title="future share", range=[-0.05, 1.1])
    fig.update_layout(legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))
    fig = apply_style(fig, title=title or "Future share against position", height=520)
    fig.update_layout(margin=dict(b=130))
    return fig


def gradient_by_distance(bd, site: str = "k", *, layers: list[int] | None = None,
                         log: bool = True, title: str | None = None) -> go.Figure:
    """Mean ‖∂ℓ_{i+d}/∂x_i‖ against the distance d = t − i, one line per layer (at most eight
    evenly spaced layers unless ``layers`` is given), coloured from shallow to deep."""
    t = bd.table[bd.table.site == site]
    if t.empty:
        raise InterpError(f"no rows for site {site!r}",
                          f"choose among: {', '.join(sorted(bd.table.site.unique()))}")
    all_layers = sorted(t.layer.unique())
    if layers is None:
        idx = np.unique(np.linspace(0, len(all_layers) - 1, min(8, len(all_layers))).round())
        layers = [all_layers[int(i)] for i in idx]
    import plotly.colors as pc

    colors = pc.sample_colorscale(SEQUENTIAL, [i / max(len(layers) - 1, 1) * 0.9
                                              for i in range(len(layers))])
    fig = go.Figure()
    for color, layer in zip(colors, layers, strict=True):
        g = t[t.layer == layer]
        fig.add_trace(go.Scatter(
            x=g.distance, y=g.grad_norm, name=f"layer {layer}", mode="lines+markers",
            line=dict(color=color), marker=dict(size=4),
            customdata=np.stack([g.share, g.n], -1),
            hovertemplate="d = %{x}<br>‖grad‖ %{y:.3g}<br>share of total %{customdata[0]:.3f}"
                          "<br>n = %{customdata[1]}<extra>layer " + str(layer) + "</extra>"))
    fig.update_xaxes(title="distance d = t − i (tokens ahead)")
    fig.update_yaxes(title=f"mean ‖∂ℓ_(i+d) / ∂{_site_name(site)}_i‖",
                     type="log" if log else "linear")
    return apply_style(fig, title=title or f"How far ahead: {_site_name(site)} gradient by distance")


def _site_name(site: str) -> str:
    return {"k": "key", "v": "value"}.get(site, site.replace("_", " "))


def _log_bins(b: pd.DataFrame, per_decade: int) -> pd.DataFrame:
    """Mean future share over log-spaced position bins (x: the bins' geometric mean position)."""
    edges = np.unique(np.floor(np.geomspace(1, b.position.max() + 1,
                                            int(np.log10(b.position.max() + 1) * per_decade) + 2)))
    bins = pd.cut(b.position, edges, right=False)
    return (b.assign(logpos=np.log(b.position)).groupby(bins, observed=True)
            .agg(logpos=("logpos", "mean"), future_share=("future_share", "mean"),
                 n=("position", "size"))
            .assign(position=lambda g: np.exp(g.logpos)))


def future_share_by_length(by_position: pd.DataFrame, site: str = "k", *,
                           per_decade: int = 12, title: str | None = None) -> go.Figure:
    """Future share against position, one line per window length N (a table of
    :meth:`FutureGradients.by_position` rows with an ``n_tokens`` column, as the report's
    ``long_context.csv``), on a log position axis, with each length's fraction of later
    positions dashed: counting later losses predicts the share grows with N at a given
    position. One window of thousands of tokens is noisy position by position, so each
    length is drawn as its mean over ``per_decade`` log-spaced bins per decade, over the
    per-position values drawn faintly."""
    t = by_position[(by_position.site == site) & (by_position.position > 0)]
    if t.empty:
        raise InterpError(f"no rows for site {site!r}",
                          f"choose among: {', '.join(sorted(by_position.site.unique()))}")
    if per_decade < 1:
        raise InterpError(f"per_decade={per_decade}", "give at least 1 bin per decade")
    fig = go.Figure()
    for color, (n, b) in zip(CYCLE, t.groupby("n_tokens"), strict=False):
        fig.add_trace(go.Scatter(
            x=b.position, y=b.future_share, showlegend=False, mode="lines", opacity=0.2,
            line=dict(color=color, width=0.8),
            hovertemplate="position %{x}<br>future share %{y:.3f}<extra>N = " + str(n)
            + "</extra>"))
        m = _log_bins(b, per_decade)
        fig.add_trace(go.Scatter(
            x=m.position, y=m.future_share, name=f"N = {n}", mode="lines+markers",
            line=dict(color=color, width=2), marker=dict(size=4), customdata=m.n,
            hovertemplate="positions near %{x:.0f}<br>mean future share %{y:.3f}"
            "<br>%{customdata} positions<extra>N = " + str(n) + "</extra>"))
        fig.add_trace(go.Scatter(x=b.position, y=b.later_fraction, showlegend=False,
                                 mode="lines", line=dict(color=color, dash="dash", width=1),
                                 hoverinfo="skip"))
    fig.update_xaxes(title="position (log scale)", type="log")
    fig.update_yaxes(title=f"future share ({_site_name(site)})", range=[-0.05, 1.1])
    fig.update_layout(legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))
    fig = apply_style(fig, title=title or "Future share against position, by window length",
                      height=520)
    fig.update_layout(margin=dict(b=130))
    return fig
