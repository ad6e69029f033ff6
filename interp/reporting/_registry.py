"""Which figure functions draw which saved table, so figures are rebuilt from disk, never from
a model: ``interp figures RESULT_DIR`` and the report both go through :func:`figures_for`.

Each :class:`TableKind` names a table file that an interp command writes, the companion files
it needs, the command that makes them, how to load the result object, and the figures drawn
from it with a one-sentence caption each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from ..errors import InterpError

__all__ = ["KINDS", "Figure", "TableKind", "figures_for", "find_tables"]


@dataclass(frozen=True)
class Figure:
    """One figure drawn from a loaded result.

    Attributes:
        name: file stem of the exported figure.
        draw: result object -> ``go.Figure``.
        caption: one sentence saying what to look at.
    """

    name: str
    draw: Callable[[object], go.Figure]
    caption: str


@dataclass(frozen=True)
class TableKind:
    """A table file interp writes and the figures drawn from it.

    Attributes:
        table: the file name that identifies the kind (e.g. ``registers.csv``).
        needs: companion files that must sit beside it.
        command: the command that writes them (named in errors).
        load: folder (or file) -> result object.
        figures: the figures drawn from the result.
        applies: an extra test on the folder (e.g. ``metrics.csv`` only with a probe spec).
    """

    table: str
    needs: tuple[str, ...]
    command: str
    load: Callable[[Path], object]
    figures: Callable[[object], list[Figure]]
    applies: Callable[[Path], bool] = lambda folder: True


def _register_figures(res) -> list[Figure]:
    from ..figures import registers as f

    return [
        Figure("attention_received", f.attention_received,
               "Attention each position receives (mean over heads, later queries, windows and "
               "layers) against uniform attention: the first token is a sink far above it."),
        Figure("norms_by_position", f.norms_by_position,
               "Residual-stream and value norms at the middle layer: the sink has a huge "
               "residual norm but a small value vector, so attending to it adds little."),
        Figure("attention_heatmap", f.register_heatmap,
               "Attention received over layers and positions: in which layers the sink forms."),
        Figure("sink_heads", f.sink_heads,
               "Attention the first (BOS) position receives, per layer and query head: which "
               "heads park their attention on the sink."),
    ]


def _massive_figures(res) -> list[Figure]:
    from ..figures import registers as f

    return [Figure("massive_by_layer", f.massive_by_layer,
                   "The largest residual activations per layer against the median (Sun et al. "
                   "2024): a few dimensions jump by orders of magnitude at one layer and stay.")]


def _ablation_figures(res) -> list[Figure]:
    from ..figures import registers as f

    return [Figure("ablation_bars", f.ablation_bars,
                   "Loss increase when the massive activations or the sink's K/V are zeroed "
                   "versus set to their mean: zero ≫ mean marks a constant, bias-like role.")]


def _eviction_figures(res) -> list[Figure]:
    from ..figures import registers as f

    return [Figure("eviction_perplexity", f.eviction_perplexity,
                   "Perplexity with a sliding KV window: evicting the first tokens blows it up; "
                   "keeping them as sinks (StreamingLLM) recovers most of full attention.")]


def _gradient_figures(fg) -> list[Figure]:
    from ..figures import gradients as f

    sites = list(dict.fromkeys(fg.table["site"]))
    site = "k" if "k" in sites else sites[0]
    return [
        Figure("future_share_heatmap", lambda r: f.future_share_heatmap(r, site),
               f"Share of the gradient at each {site} that comes from later tokens' losses, "
               "by layer and position: how much each position computes for the future."),
        Figure("future_share_by_position", f.future_share_by_position,
               "Future share against position, beside the fraction of later positions that "
               "naive counting predicts (the first, sink position is reported apart)."),
    ]


def _distance_figures(bd) -> list[Figure]:
    from ..figures import gradients as f

    sites = list(dict.fromkeys(bd.table["site"]))
    site = "k" if "k" in sites else sites[0]
    return [Figure("gradient_by_distance", lambda r: f.gradient_by_distance(r, site),
                   "Gradient norm from the loss d tokens ahead: how far ahead a position's "
                   "key is used.")]


def _length_figures(table) -> list[Figure]:
    from ..figures import gradients as f

    return [Figure("future_share_by_length", f.future_share_by_length,
                   "Future share of the key gradient against position for windows of several "
                   "lengths N (dashed: the fraction of later positions, the naive prediction). "
                   "Counting later losses predicts the share grows with N.")]


def _load_lengths(d: Path):
    import pandas as pd

    return pd.read_csv(d / "long_context.csv")


def _patching_figures(att) -> list[Figure]:
    from ..figures import patching as f

    figs = []
    if "activation_patch" in att.table.columns:
        figs.append(Figure("atp_scatter", f.atp_scatter,
                           "Attribution patching (a gradient estimate) against real activation "
                           "patching for every node: points on the diagonal are estimated well."))
    sites = list(dict.fromkeys(att.table["site"]))
    site = "v" if "v" in sites else sites[0]
    figs.append(Figure("atp_heatmap", lambda r: f.atp_heatmap(r, site),
                       f"Estimated effect of patching the {site} at each layer and position on "
                       "the metric."))
    return figs


def _probe_figures(res) -> list[Figure]:
    from ..figures import probes as f

    return [Figure("probe_accuracy", f.probe_accuracy,
                   "Test accuracy of linear probes predicting the token k positions ahead from "
                   "each layer, against the bigram baseline (dashed) and a control task.")]


def _lens_figures(res) -> list[Figure]:
    from ..figures import probes as f

    return [Figure("future_lens_agreement", f.future_lens_agreement,
                   "Future Lens: how often a linear map from layer l at position t, decoded by "
                   "the model's own head, names the token the model will predict for t + k, "
                   "against bigram (dashed) and trigram (dotted) baselines; diamonds: learned "
                   "prompt."),
            Figure("future_lens_accuracy", lambda r: f.future_lens_agreement(r, metric="accuracy"),
                   "The same maps scored on the true token t + k.")]


def _toy_figures(res) -> list[Figure]:
    from ..figures import toy as f

    return [Figure("toy_compare", f.compare_bars,
                   "Final held-out metric of tiny models trained on a synthetic task, per "
                   "condition (vanilla / myopic, with or without pauses), over seeds."),
            Figure("toy_curves", f.training_curves,
                   "Held-out metric during training, one line per seed.")]


def _load_registers(d: Path):
    from ..sinks import RegisterResult

    return RegisterResult.load(d)


def _load_massive(d: Path):
    from ..sinks import MassiveActivations

    return MassiveActivations.load(d)


def _load_ablations(d: Path):
    from ..sinks import AblationResult

    return AblationResult.load(d)


def _load_eviction(d: Path):
    from ..sinks import EvictionResult

    return EvictionResult.load(d)


def _load_gradients(d: Path):
    from ..gradients import FutureGradients

    return FutureGradients.from_csv(d / "future_gradients.csv")


def _load_distance(d: Path):
    from ..gradients import ByDistance

    return ByDistance.from_csv(d / "by_distance.csv")


def _load_attribution(d: Path):
    from ..patching import Attribution

    return Attribution.from_csv(d / "attribution.csv")


def _load_probes(d: Path):
    from ..probes import load_probes

    return load_probes(d)


def _load_lens(d: Path):
    from ..probes import load_future_lens

    return load_future_lens(d)


def _load_toy(d: Path):
    from ..train import load_comparison

    return load_comparison(d)


def _load_pause_comparison(d: Path):
    from ..pause_compare import PauseComparison

    return PauseComparison.load(d)


def _pause_figures(res) -> list[Figure]:
    from ..figures import pause_training as f

    figs = [Figure("pause_losses", f.pause_losses,
                   "Loss on held-out real tokens without and with random pauses, base vs "
                   "pause-trained: pauses hurt an untrained model; does training undo that?")]
    if res.adaptive_summary() is not None:
        figs.append(Figure("pause_adaptive", f.pause_adaptive,
                           "Δloss of the token right after a pause run: pauses before "
                           "high-entropy tokens vs the same number at random positions."))
    for name, draw, caption in (
            ("registers", f.pause_registers, "Attention received (over uniform) and residual "
             "norm at pause vs regular positions, per layer: register-like or not."),
            ("future_share", f.pause_future_share, "Future share of the K/V gradient at regular "
             "positions, masked pauses (1 by construction) and the last pause of a run."),
            ("future_lens", f.pause_future_lens, "Future Lens agreement with the model's own "
             "prediction of the next text tokens, read at pauses and at regular positions, per "
             "layer: do trained pauses carry the upcoming token? (grey: bigram baseline)"),
            ("generation", f.pause_generation, "Key norms written into the KV cache during "
             "generation with forced pauses, per role and layer.")):
        if name in res.tables:
            figs.append(Figure(f"pause_{name}", draw, caption))
    return figs


KINDS: tuple[TableKind, ...] = (
    TableKind("registers.csv", ("registers_heads.csv", "massive.csv", "massive_layers.csv",
                                "massive.json"),
              "interp registers --out DIR", _load_registers, _register_figures),
    TableKind("massive.csv", ("massive_layers.csv", "massive.json"),
              "interp registers --out DIR", _load_massive, _massive_figures),
    TableKind("ablations.csv", (), "interp registers --out DIR (without --no-ablate)",
              _load_ablations, _ablation_figures),
    TableKind("eviction.csv", ("eviction_positions.csv",),
              "interp registers --eviction-window W --out DIR", _load_eviction,
              _eviction_figures),
    TableKind("future_gradients.csv", (), "interp gradients --out DIR", _load_gradients,
              _gradient_figures),
    TableKind("long_context.csv", (), "interp report (ReportConfig.long_context_tokens)",
              _load_lengths, _length_figures),
    TableKind("by_distance.csv", (), "interp gradients --by-distance D --out DIR",
              _load_distance, _distance_figures),
    TableKind("attribution.csv", (), "interp patch --clean T --corrupt T --out DIR",
              _load_attribution, _patching_figures),
    TableKind("metrics.csv", ("spec.toml", "probes.json"), "interp probe train SPEC --out DIR",
              _load_probes, _probe_figures, applies=lambda d: (d / "probes.json").is_file()
              or (d / "spec.toml").is_file()),
    TableKind("future_lens.csv", ("future_lens.json",), "interp probe train probes/lookahead.toml --out DIR",
              _load_lens, _lens_figures),
    TableKind("compare.csv", ("histories.csv",), "interp toy compare --out DIR", _load_toy,
              _toy_figures),
    TableKind("pause_losses.csv", (), "interp pause-compare CKPT --out DIR",
              _load_pause_comparison, _pause_figures),
)


def find_tables(root: str | Path) -> list[tuple[TableKind, Path]]:
    """Every known table under ``root`` (recursively), as (kind, folder) pairs.

    Raises:
        InterpError: ``root`` is missing, holds no known table, or a table lacks a companion
            file a figure needs (naming the command that writes it).
    """
    root = Path(root)
    if not root.is_dir():
        raise InterpError(f"results folder {root} not found", "give the --out folder of an "
                          "interp command (registers, gradients, patch, probe train, report)")
    found = []
    for kind in KINDS:
        for path in sorted(root.rglob(kind.table)):
            folder = path.parent
            if not kind.applies(folder):
                continue
            missing = [n for n in kind.needs if not (folder / n).is_file()]
            if missing:
                raise InterpError(
                    f"{folder} has {kind.table} but lacks {', '.join(missing)}, which its "
                    "figures need",
                    f"rerun `{kind.command}` into that folder")
            found.append((kind, folder))
    if not found:
        known = "; ".join(f"{k.table} (from `{k.command}`)" for k in KINDS)
        raise InterpError(f"{root} holds none of the tables interp draws figures from",
                          f"make one first: {known}")
    return found


def figures_for(kind: TableKind, folder: Path) -> list[tuple[Figure, go.Figure]]:
    """Load the result in ``folder`` and draw every figure of ``kind``."""
    result = kind.load(folder)
    return [(f, f.draw(result)) for f in kind.figures(result)]
