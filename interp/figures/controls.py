"""Figures for the positive controls (:mod:`interp.controls`): accuracy against task length per
condition, the pause K/V patching bars, probes at pause positions by layer, the lookahead
patching slopes by offset, the planning control's probes and patch follow-rates by layer, and
the Future Lens's readout beside its causal tests by layer."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import CYCLE, apply_style
from .toy import _condition

__all__ = ["control_lengths", "future_lens_causal", "lookahead_patching", "pause_patching",
           "pause_probes", "planning"]

_MODEL_COLORS = {"pause-trained": CYCLE[1], "no pauses": CYCLE[0], "pauses untrained": CYCLE[7],
                 "vanilla": CYCLE[0], "myopic": CYCLE[1]}


def control_lengths(comparison) -> go.Figure:
    """Held-out accuracy against task length, one line per condition: the mean over seeds
    with min–max bars, every seed as a dot (a ``pause_control`` comparison)."""
    runs = comparison.runs.assign(condition=_condition(comparison.runs).str.replace(
        r" · \d+ ", " · ", regex=True))
    fig = go.Figure()
    for i, (cond, g) in enumerate(runs.groupby("condition", sort=False)):
        s = g.groupby("length")["value"].agg(["mean", "min", "max"]).reset_index()
        color = CYCLE[i % len(CYCLE)]
        fig.add_trace(go.Scatter(
            x=s["length"], y=s["mean"], name=cond, mode="lines+markers", line=dict(color=color),
            error_y=dict(type="data", symmetric=False, array=s["max"] - s["mean"],
                         arrayminus=s["mean"] - s["min"], color=color)))
        fig.add_trace(go.Scatter(x=g["length"], y=g["value"], mode="markers", showlegend=False,
                                 marker=dict(color=color, size=5, opacity=0.45)))
    fig.add_hline(y=float(runs["baseline"].mean()), line=dict(dash="dash", color="#777777"))
    fig.update_xaxes(title="task length (bits / tuples)")
    fig.update_yaxes(title="held-out accuracy", range=[0.4, 1.02])
    return apply_style(fig, title="Pause control: accuracy against length")


def pause_patching(result) -> go.Figure:
    """Accuracy clean and with the inserted positions' K/V taken from another example, per
    model and patched layers."""
    t = result.patching
    fig = go.Figure()
    for model, g in t.groupby("model", sort=False):
        x = ["clean"] + [f"patch K/V, layer {x}" if x != "all" else "patch K/V, all layers"
                         for x in g["layers"]]
        y = [float(g["clean_accuracy"].iloc[0])] + g["accuracy"].tolist()
        fig.add_trace(go.Bar(x=x, y=y, name=model, marker_color=_MODEL_COLORS.get(model)))
    fig.add_hline(y=0.5, line=dict(dash="dash", color="#777777"))
    fig.update_yaxes(title="held-out accuracy", range=[0, 1.02])
    fig.update_layout(barmode="group")
    return apply_style(fig, title="Corrupting the pause positions' keys and values")


def pause_probes(result) -> go.Figure:
    """Held-out probe accuracy by layer, one line per model, place and target; the majority
    baselines dotted."""
    t = result.probes
    fig = go.Figure()
    dash = {("inserted", "answer"): "solid", ("inserted", "partial"): "dot",
            ("answer position", "answer"): "dash"}
    for (model, where, target), g in t.groupby(["model", "where", "target"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["layer"], y=g["accuracy"], mode="lines+markers",
            name=f"{model}: {target} at {where}",
            line=dict(color=_MODEL_COLORS.get(model), dash=dash.get((where, target)))))
    fig.add_hline(y=float(t["baseline"].mean()), line=dict(dash="dash", color="#777777"))
    fig.update_xaxes(title="residual stream entering layer (last: final)", dtick=1)
    fig.update_yaxes(title="held-out probe accuracy", range=[0.4, 1.02])
    return apply_style(fig, title="Probes at pause positions", width=860)


def lookahead_patching(result) -> go.Figure:
    """Slope of the prediction at t + i on the feature change at t, per offset i."""
    t = result.patching
    fig = go.Figure()
    for (model, direction), g in t.groupby(["model", "direction"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["offset"], y=g["slope"], mode="lines+markers", name=f"{model}, {direction}",
            line=dict(color=_MODEL_COLORS.get(model),
                      dash="solid" if direction == "feature" else "dot")))
    k = result.settings.get("k")
    if k:
        fig.add_vrect(x0=0.5, x1=k + 0.5, fillcolor="#eeeeee", opacity=0.5, line_width=0)
    fig.update_xaxes(title="offset i (prediction at t + i)", dtick=1)
    fig.update_yaxes(title="slope Σ Δŷ·δ / Σ δ²")
    return apply_style(fig, title="Patching the pre-cached feature at t")


def future_lens_causal(result) -> go.Figure:
    """By layer, one row per offset (the lookahead offsets first, offset 1, the positive
    control, last): the lens's top-1 accuracy on the true token beside the bigram baseline;
    the transplant's follow rate, source beside null donor; the steering change of log p(y),
    lens direction beside random directions (bars: the paired effect's standard error)."""
    t = result.summary
    offsets = sorted(t["offset"].unique(), key=lambda k: (k == 1, k))
    fig = make_subplots(rows=len(offsets), cols=3, horizontal_spacing=0.09, vertical_spacing=0.14,
                        subplot_titles=[f"{name}, offset {k}" for k in offsets for name in
                                        ("lens readout", "transplant h_t^l", "steer along lens")])
    grey = CYCLE[7]
    for r, k in enumerate(offsets, start=1):
        g = t[t["offset"] == k].sort_values("layer")
        first = r == 1
        lines = [
            (1, "lens top-1 (true token)", g["lens_accuracy"], None, CYCLE[0], "solid"),
            (1, "bigram", g["bigram_accuracy"], None, grey, "dash"),
            (2, "follow: source", g["follow_source"], g["follow_effect_se"], CYCLE[1], "solid"),
            (2, "follow: null donor", g["follow_null"], None, grey, "dot"),
            (3, "Δ log p(y): lens direction", g["steer_lens"], g["steer_effect_se"], CYCLE[2], "solid"),
            (3, "Δ log p(y): random direction", g["steer_random"], None, grey, "dot"),
        ]
        for col, name, y, err, color, dash in lines:
            fig.add_trace(go.Scatter(
                x=g["layer"], y=y, name=name, mode="lines+markers", showlegend=first,
                legendgroup=name, line=dict(color=color, dash=dash),
                error_y=None if err is None else dict(type="data", array=err, color=color)),
                row=r, col=col)
        fig.update_yaxes(title_text="accuracy", row=r, col=1)
        fig.update_yaxes(title_text="follow rate", row=r, col=2)
        fig.update_yaxes(title_text="Δ log p(y)", row=r, col=3)
    fig.update_xaxes(title_text="layer l")
    eps = result.settings.get("epsilon")
    fig = apply_style(fig, title=f"Future Lens: read vs used (steering ε = {eps})", width=1200,
                      height=330 * len(offsets) + 80)
    fig.update_layout(legend=dict(orientation="h", y=-0.12))
    return fig


def _by_layer(fig: go.Figure, g, value: str, name: str, color: str, dash: str, col: int,
              legend: bool = True) -> None:
    """One line by layer: the mean over seeds, min–max bars."""
    s = g.groupby("layer")[value].agg(["mean", "min", "max"]).reset_index()
    fig.add_trace(go.Scatter(
        x=s["layer"], y=s["mean"], name=name, mode="lines+markers", showlegend=legend,
        line=dict(color=color, dash=dash),
        error_y=dict(type="data", symmetric=False, array=s["max"] - s["mean"],
                     arrayminus=s["mean"] - s["min"], color=color)), row=1, col=col)


def planning(result) -> go.Figure:
    """The planning control (:func:`interp.controls.planning_control`): left, held-out probe
    accuracy at the separator by layer (trained solid, untrained dotted; majority baseline
    grey); right, how often the written final word takes the donor's rhyme class when one
    position's residual stream entering a layer is patched from the donor (chance dashed)."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "probes at the separator", "patch → final word in donor's class"))
    colors = {"rhyme class": CYCLE[1], "planned word": CYCLE[2], "first word's class": CYCLE[7]}
    for (model, target), g in result.probes.groupby(["model", "target"], sort=False):
        _by_layer(fig, g, "accuracy", f"probe {target} ({model})", colors.get(target, CYCLE[0]),
                  "solid" if model == "trained" else "dot", 1)
    base = result.probes.groupby("layer")["baseline"].mean()
    fig.add_trace(go.Scatter(x=base.index, y=base.to_numpy(), name="majority baseline",
                             mode="lines", line=dict(color="#bbbbbb", dash="dash")), row=1, col=1)
    n_layers = int(result.probes["layer"].max())
    patches = {("trained", "separator", "donor"): (CYCLE[1], "solid"),
               ("trained", "separator", "random"): (CYCLE[1], "dot"),
               ("trained", "rhyme word", "donor"): (CYCLE[0], "solid"),
               ("trained", "distractor", "donor"): (CYCLE[7], "solid"),
               ("untrained", "separator", "donor"): (CYCLE[4], "dash")}
    for key, g in result.patching.groupby(["model", "place", "intervention"], sort=False):
        if key not in patches:  # the untrained model's other patches: the same chance level
            continue
        color, dash = patches[key]
        model, place, intervention = key
        what = "random vector" if intervention == "random" else "donor"
        _by_layer(fig, g, "follows_donor", f"patch {place}, {what} ({model})", color, dash, 2)
    chance = float(result.settings["chance"])
    fig.add_trace(go.Scatter(x=[0, n_layers], y=[chance, chance], mode="lines",
                             name="chance (1 / classes)",
                             line=dict(color="#777777", dash="dash")), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(title=f"residual stream entering layer ({n_layers}: final)", dtick=1,
                         row=1, col=col)
    fig.update_yaxes(title="held-out probe accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title="follows the donor", range=[0, 1.02], row=1, col=2)
    fig = apply_style(fig, title="Planning control: a rhyme plan at the separator",
                      width=1100, height=500)
    fig.update_layout(margin=dict(t=90))
    return fig
