"""Figures for pause training: base vs pause-trained on the loss and on every instrument, and
entropy-triggered against random pauses.

Each takes a :class:`interp.reporting.pause_compare.PauseComparison` (``interp pause-compare --out DIR``)
and returns a ``go.Figure``; the model is the colour (base, pause-trained) throughout.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InterpError
from ._style import CYCLE, apply_style

__all__ = ["pause_adaptive", "pause_future_lens", "pause_future_share", "pause_generation",
           "pause_losses", "pause_registers"]

_ERR = dict(type="data", color="#444444", thickness=1.2)


def _colors(models) -> dict[str, str]:
    return {m: CYCLE[i % len(CYCLE)] for i, m in enumerate(dict.fromkeys(models))}


def _table(result, name: str):
    t = result.tables.get(name)
    if t is None or t.empty:
        raise InterpError(f"this pause comparison has no {name} table",
                          "rerun `interp pause-compare CKPT --out DIR` with the instruments on")
    return t


def pause_losses(result, *, title: str | None = None) -> go.Figure:
    """Mean loss on real tokens, without and with random pauses, per model (±1 standard error
    over windows and seeds); with the training history, the held-out losses against step."""
    s = result.loss_summary()
    hist = result.tables.get("history")
    cols = 2 if hist is not None and not hist.empty else 1
    fig = make_subplots(rows=1, cols=cols, horizontal_spacing=0.14,
                        subplot_titles=("base vs pause-trained", "during training")[:cols]
                        if cols == 2 else None)
    colors = _colors(s["model"])
    for m, sub in s.groupby("model", sort=False):
        fig.add_trace(go.Bar(x=sub["condition"], y=sub["loss"], name=m, marker_color=colors[m],
                             error_y=dict(array=sub["loss_sem"].fillna(0.0), **_ERR),
                             hovertemplate=f"{m}<br>%{{x}}: %{{y:.3f}} nats<extra></extra>"),
                      row=1, col=1)
    if cols == 2:
        for i, (col, label) in enumerate((("eval_loss_plain", "no pauses"),
                                          ("eval_loss_pauses", "random pauses"))):
            fig.add_trace(go.Scatter(x=hist["step"], y=hist[col], mode="lines+markers",
                                     name=f"held-out, {label}", marker_size=5,
                                     line=dict(color=CYCLE[2 + i], width=1.5)), row=1, col=2)
        fig.update_xaxes(title_text="training step", row=1, col=2)
    fig.update_yaxes(title_text="loss on real tokens (nats)", row=1, col=1)
    lo = float((s["loss"] - s["loss_sem"].fillna(0)).min())
    fig.update_yaxes(range=[max(lo - 0.3, 0), float((s["loss"] + s["loss_sem"].fillna(0)).max())
                            + 0.15], row=1, col=1)
    fig.update_layout(barmode="group")
    return apply_style(fig, title=title or "Loss on real tokens: does the model use pauses?",
                       width=460 * cols)


def pause_registers(result, *, title: str | None = None) -> go.Figure:
    """Per layer: attention received over the uniform baseline, and the residual norm, at
    pause and regular positions, per model (is a trained pause register-like?)."""
    t = _table(result, "registers")
    t = t[t["role"].isin(["pause", "regular"])]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("attention received / uniform", "residual norm"))
    colors = _colors(t["model"])
    for (m, role), sub in t.groupby(["model", "role"], sort=False):
        dash = "solid" if role == "pause" else "dot"
        for c, col in enumerate(("attn_ratio", "resid_norm"), start=1):
            fig.add_trace(go.Scatter(x=sub["layer"], y=sub[col], mode="lines",
                                     line=dict(color=colors[m], dash=dash, width=1.8),
                                     name=f"{m} · {role}", legendgroup=f"{m}{role}",
                                     showlegend=c == 1), row=1, col=c)
    fig.add_hline(y=1.0, line=dict(color="#777777", dash="dash", width=1), row=1, col=1)
    fig.update_xaxes(title_text="layer")
    return apply_style(fig, title=title or "Pause positions vs regular ones, per layer",
                       width=920)


def pause_future_share(result, *, title: str | None = None) -> go.Figure:
    """Future share of the K and V gradient at regular positions, at masked pauses (share 1 by
    construction: no loss of their own) and at the last pause of a run, per model."""
    t = _table(result, "future_share")
    sites = list(dict.fromkeys(t["site"]))
    fig = make_subplots(rows=1, cols=len(sites), subplot_titles=sites, horizontal_spacing=0.1)
    colors = _colors(t["model"])
    for c, site in enumerate(sites, start=1):
        for m, sub in t[t["site"] == site].groupby("model", sort=False):
            fig.add_trace(go.Bar(x=sub["role"], y=sub["future_share"], name=m,
                                 marker_color=colors[m], showlegend=c == 1, legendgroup=m,
                                 error_y=dict(array=sub["future_share_sem"].fillna(0.0), **_ERR)),
                          row=1, col=c)
    fig.update_yaxes(title_text="future share of the gradient", range=[0, 1.05], col=1)
    fig.update_layout(barmode="group")
    return apply_style(fig, title=title or "Who is a position's K/V gradient for?",
                       width=420 * len(sites))


def pause_future_lens(result, *, title: str | None = None) -> go.Figure:
    """Future Lens top-1 agreement with the model's own prediction of the next text tokens,
    read at pause and at regular positions, per layer, model and offset; the bigram baseline
    (from the text before the position) in grey."""
    t = _table(result, "future_lens")
    offsets = sorted(set(t["offset"]))
    fig = make_subplots(rows=1, cols=len(offsets), horizontal_spacing=0.08,
                        subplot_titles=[f"offset {k} (text tokens ahead)" for k in offsets])
    colors = _colors(t["model"])
    for c, k in enumerate(offsets, start=1):
        for (m, role), sub in t[t["offset"] == k].groupby(["model", "role"], sort=False):
            fig.add_trace(go.Scatter(x=sub["layer"], y=sub["agreement_top1"], mode="lines+markers",
                                     line=dict(color=colors[m], dash="solid" if role == "pause" else "dot",
                                               width=1.8), marker_size=5,
                                     name=f"{m} · {role}", legendgroup=f"{m}{role}", showlegend=c == 1,
                                     hovertemplate=f"{m} · {role}<br>layer %{{x}}: %{{y:.3f}} "
                                                   f"(n = {int(sub['n'].iloc[0])})<extra></extra>"),
                          row=1, col=c)
            fig.add_hline(y=float(sub["bigram_agreement"].iloc[0]), row=1, col=c,
                          line=dict(color="#999999", dash="dash" if role == "pause" else "dot", width=1))
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="top-1 agreement with the model", range=[0, 1.02], col=1)
    return apply_style(fig, title=title or "Future Lens at pauses vs regular positions (grey: bigram)",
                       width=440 * len(offsets))


def pause_generation(result, *, title: str | None = None) -> go.Figure:
    """Norm of the keys written into the KV cache during generation with forced pauses, per
    layer and role (prompt, pause, generated), per model."""
    t = _table(result, "generation")
    fig = go.Figure()
    colors = _colors(t["model"])
    dashes = dict(prompt="dot", pause="solid", generated="dash")
    for (m, role), sub in t.groupby(["model", "role"], sort=False):
        fig.add_trace(go.Scatter(x=sub["layer"], y=sub["k_norm"], mode="lines",
                                 line=dict(color=colors[m], dash=dashes.get(role, "solid")),
                                 name=f"{m} · {role}"))
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="mean key norm in the cache")
    return apply_style(fig, title=title or "KV cache during generation with forced pauses")


def pause_adaptive(result, *, title: str | None = None) -> go.Figure:
    """Change in the loss of the tokens right after a pause run, entropy-triggered vs random
    placement, per model (mean ± standard deviation over windows and seeds)."""
    s = result.adaptive_summary()
    if s is None or s.empty:
        raise InterpError("this pause comparison has no adaptive table",
                          "rerun `interp pause-compare CKPT --out DIR`")
    fig = go.Figure()
    for i, (placement, sub) in enumerate(s.groupby("placement", sort=False)):
        fig.add_trace(go.Bar(x=sub["model"], y=sub["delta_following"], name=placement,
                             marker_color=CYCLE[i % len(CYCLE)],
                             error_y=dict(array=sub["delta_following_std"].fillna(0.0), **_ERR)))
    fig.add_hline(y=0.0, line=dict(color="#777777", width=1))
    fig.update_yaxes(title_text="Δ loss of the token after the pauses (nats)")
    fig.update_layout(barmode="group")
    return apply_style(fig, title=title or "Adaptive pauses: high-entropy vs random positions",
                       width=560)
