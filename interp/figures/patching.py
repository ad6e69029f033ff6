"""Figures of attribution patching.

* :func:`atp_scatter`: the AtP estimate against activation patching, one point per node
* :func:`atp_heatmap`: the estimated effect, layer × position, for one site

Each takes an :class:`~interp.patching.Attribution` (rebuild one from its CSV with
``Attribution.from_csv``).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..errors import InterpError
from ._style import CYCLE, DIVERGING, apply_style

__all__ = ["atp_heatmap", "atp_scatter"]


def atp_scatter(result, *, estimate: str = "atp", title: str | None = None
                ) -> go.Figure:
    """Estimate (x) against the activation-patching ground truth (y), coloured by site, with
    the identity line and each site's Spearman correlation in the legend."""
    t = result.table
    if "activation_patch" not in t:
        raise InterpError("no activation_patch column", "run attribution_patch(..., verify=True)")
    if estimate not in t:
        raise InterpError(f"no {estimate!r} column", "use estimate='atp', or qk_fix=True for atp_star")
    t = t.dropna(subset=[estimate, "activation_patch"])
    stats = result.compare(estimate=estimate).set_index("group")
    fig = go.Figure()
    lo = float(min(t[estimate].min(), t.activation_patch.min()))
    hi = float(max(t[estimate].max(), t.activation_patch.max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line=dict(color="#888888", dash="dot"), hoverinfo="skip"))
    for color, (site, g) in zip(CYCLE, t.groupby("site", sort=True), strict=False):
        label = g.get("token_str", g.position.astype(str))
        extra = (" → ℓ_" + g.loss_position.astype(str)) if "loss_position" in g else ""
        text = ("layer " + g.layer.astype(str) + ", head " + g["head"].astype(str)
                + ", pos " + g.position.astype(str) + " " + label.map(repr) + extra)
        rho = stats.loc[site, "spearman"]
        fig.add_trace(go.Scatter(
            x=g[estimate], y=g.activation_patch, mode="markers", name=f"{site} (ρ = {rho:.2f})",
            marker=dict(color=color, size=6, opacity=0.7), text=text,
            hovertemplate="%{text}<br>estimate %{x:.3g}<br>patching %{y:.3g}<extra></extra>"))
    fig.update_xaxes(title=f"{'AtP*' if estimate == 'atp_star' else 'AtP'} estimate")
    fig.update_yaxes(title="activation patching (ground truth)")
    rho = stats.loc["all", "spearman"]
    return apply_style(fig, title=title or f"Attribution vs activation patching (ρ = {rho:.2f})",
                       width=640, height=560)


def atp_heatmap(result, site: str = "v", *, column: str = "atp",
                title: str | None = None) -> go.Figure:
    """Effect summed over heads for each layer and position of one site (diverging scale,
    centred on zero); the hover shows the token."""
    t = result.table
    t = t[t.site == site]
    if t.empty or column not in t:
        raise InterpError(f"no {column!r} rows for site {site!r}",
                          f"sites present: {', '.join(sorted(result.table.site.unique()))}")
    if "loss_position" in t:
        t = t.groupby(["layer", "site", "head", "position"], as_index=False)[column].sum()
    grid = t.pivot_table(index="layer", columns="position", values=column, aggfunc="sum")
    m = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
    tokens = (result.table.drop_duplicates("position").set_index("position").token_str
              if "token_str" in result.table else None)
    xt = [f"{p}<br>{tokens[p]!r}" if tokens is not None else str(p) for p in grid.columns]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=xt, y=list(grid.index), zmid=0, zmin=-m,
                               zmax=m, colorscale=DIVERGING,
                               colorbar=dict(title=dict(text=column, side="top"))))
    fig.update_xaxes(title="position", showgrid=False, tickangle=0)
    fig.update_yaxes(title="layer")
    return apply_style(fig, title=title or f"Estimated effect of patching {site}",
                       height=max(360, 200 + 12 * len(grid.index)))
