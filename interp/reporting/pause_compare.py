"""Base vs pause-trained, side by side: the loss on real tokens, every instrument at pause
positions, and adaptive (entropy-triggered) pauses against random ones.

Each function takes ``models``, a mapping from a label (``"base"``, ``"pause-trained"``) to a
bridge with a ``<pause>`` token (the base gets the mean-embedding row of
:func:`interp.add_pause_token`, which is where pause training starts), and returns tidy tables
with a ``model`` column, so any table compares the two.

* :func:`pause_losses`: the mean next-token loss on real tokens, without pauses and with
  pauses inserted at random (several seeds), per held-out window.
* :func:`compare_instruments`: attention received and norms by role (:func:`interp.registers`),
  massive activations at pauses, the future share of the K/V gradient at pause and regular
  positions (:func:`interp.future_gradients`; pauses split into masked ones, whose self term
  is zero by construction, and the last pause of a run, which predicts the next token), and
  the K/V written during generation with forced pauses (:func:`interp.generate`).
* :func:`lens_by_role`: the Future Lens (:func:`interp.future_lens`) read at pause and at
  regular positions: how well a linear map from a position's residual stream names the
  next text tokens (offsets count text tokens, so a pause's offset 1 is the token after
  its run), against bigram baselines from the text before it.
* :func:`adaptive_vs_random`: do pauses before the tokens the model is least sure of
  (``PausePolicy(entropy_top=...)``) lower the loss of those tokens more than the same number
  of pauses at random positions?

Example:
    >>> models = {"base": base, "pause-trained": interp.load_model("results/pause_ckpt")}
    >>> losses = interp.reporting.pause_compare.pause_losses(models, held_out)
    >>> interp.reporting.pause_compare.loss_summary(losses)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from .._types import Float, Int, Tensor
from ..core import hooks
from ..core import model as core_model
from ..core.inputs import as_sequences
from ..core.model import Bridge
from ..core.pauses import (
    PausedSequence,
    PausePolicy,
    add_pause_token,
    insert_pauses,
    next_token_entropy,
)
from ..core.result import Figure, SavedResult
from ..errors import InterpError, refuse_renamed

__all__ = [
    "TABLES",
    "PauseComparison",
    "adaptive_summary",
    "adaptive_vs_random",
    "compare_checkpoint",
    "compare_instruments",
    "lens_by_role",
    "loss_summary",
    "pause_losses",
    "target_losses",
]


@torch.no_grad()
def target_losses(model: Bridge, seq: PausedSequence) -> Float[Tensor, " pos"]:
    """The loss of every real token of ``seq`` by its original position: ``out[p]`` is
    −log p(token p | everything before it, pauses included); NaN at position 0 (no
    prediction) and where the loss mask drops the target."""
    from ..core.loss import token_losses

    tokens = seq.tokens[None].to(core_model.device(model))
    mask = seq.loss_mask[None].to(core_model.device(model))
    losses = token_losses(model(tokens), tokens, mask)[0].float().cpu()
    n = int(seq.original_position.max()) + 1
    out = torch.full((n,), float("nan"))
    keep = seq.loss_mask.clone()
    keep[-1] = False
    src = torch.nonzero(keep)[:, 0]
    out[seq.original_position[src + 1]] = losses[src]
    return out


def _check(models: Mapping[str, object], windows) -> list[PausedSequence]:
    """The held-out windows as sequences (anything :func:`interp.core.inputs.as_sequences`
    reads), checked to hold no pauses yet."""
    if not models:
        raise InterpError("no models to compare", "pass {'base': ..., 'pause-trained': ...}")
    if isinstance(windows, list | tuple) and not windows:
        raise InterpError("no windows to evaluate on", "give at least one held-out window")
    windows = as_sequences(next(iter(models.values())), windows)
    if any((w.original_position < 0).any() for w in windows):
        raise InterpError("these windows already have pauses", "pass windows without pauses")
    return windows


def pause_losses(models: Mapping[str, object], windows: Sequence[PausedSequence], *,
                 policy: PausePolicy | None = None, seeds: Sequence[int] = (0, 1, 2),
                 verbose: bool = False) -> pd.DataFrame:
    """The mean loss on real tokens, without and with random pauses, per model and window.

    Args:
        models: label → bridge (each gets a ``<pause>`` token if it has none).
        windows: held-out windows without pauses.
        policy: where to insert pauses (default ``PausePolicy(rate=0.1, n=1, n_max=3)``, the
            training distribution); its seed is replaced by ``seed · 10⁴ + window``.
        seeds: one pause placement per seed and window.
        verbose: progress bar.

    Returns:
        One row per model, condition (``"no pauses"``, ``"random pauses"``), seed (−1 without
        pauses) and ``sequence`` (the window's running number): ``loss`` (mean over the real
        targets, the same tokens in both conditions), ``n_targets``, ``n_pauses``.
    """
    from tqdm.auto import tqdm

    windows = _check(models, windows)
    policy = policy or PausePolicy(rate=0.1, n=1, n_max=3)
    rows = []
    for label, model in models.items():
        pid = add_pause_token(model)
        for w, seq in enumerate(tqdm(windows, desc=f"losses {label}", disable=not verbose)):
            plain = target_losses(model, seq)
            rows.append(dict(model=label, condition="no pauses", seed=-1, sequence=w,
                             loss=float(np.nanmean(plain)), n_targets=int((~plain.isnan()).sum()),
                             n_pauses=0))
            for s in seeds:
                p = insert_pauses(seq, dataclasses.replace(policy, seed=s * 10_000 + w), pid)
                loss = target_losses(model, p)
                rows.append(dict(model=label, condition="random pauses", seed=s, sequence=w,
                                 loss=float(np.nanmean(loss)),
                                 n_targets=int((~loss.isnan()).sum()),
                                 n_pauses=int((p.original_position < 0).sum())))
    return pd.DataFrame(rows)


def loss_summary(losses: pd.DataFrame) -> pd.DataFrame:
    """Per model and condition: mean loss, its standard deviation and standard error over
    windows (and seeds), and the number of rows."""
    g = losses.groupby(["model", "condition"], sort=False)["loss"]
    out = g.agg(["mean", "std", "sem", "count"]).reset_index()
    return out.rename(columns={"mean": "loss", "std": "loss_std", "sem": "loss_sem", "count": "n"})


def adaptive_vs_random(models: Mapping[str, object], windows: Sequence[PausedSequence], *,
                       entropy_top: float = 0.1, n: int = 1, seeds: Sequence[int] = (0, 1, 2),
                       verbose: bool = False) -> pd.DataFrame:
    """Entropy-triggered pauses against the same number of pauses at random positions.

    For every window: the next-token entropy H_t at each position (one forward); the plain
    per-token losses; pauses before the tokens t + 1 with the top ``entropy_top`` fraction of
    H_t (``PausePolicy(entropy_top=...)``); and, per seed, the same number of pause runs before
    uniformly drawn tokens. For each placement, ``delta_following`` is the mean change in the
    loss of the tokens that directly follow a pause run (the tokens the pauses are for), and
    ``delta_all`` the change in the mean loss over every real token.

    Args:
        models: label → bridge.
        windows: held-out windows without pauses.
        entropy_top: fraction of positions that get a pause run.
        n: pauses per run.
        seeds: random placements per window.
        verbose: progress bar.

    Returns:
        One row per model, placement (``"entropy"``, ``"random"``), seed (−1 for entropy) and
        ``sequence`` (the window's running number): ``n_runs``, ``loss_following_plain`` (their
        loss without pauses), ``loss_following``, ``delta_following``, ``delta_all``,
        ``entropy_following`` (mean H of the positions that predict them).
    """
    from tqdm.auto import tqdm

    windows = _check(models, windows)
    if not 0 < entropy_top <= 1:
        raise InterpError(f"entropy_top={entropy_top} is outside (0, 1]", "use e.g. 0.1")
    rows = []
    for label, model in models.items():
        pid = add_pause_token(model)
        for w, seq in enumerate(tqdm(windows, desc=f"adaptive {label}", disable=not verbose)):
            ent = next_token_entropy(model, seq)
            plain = target_losses(model, seq)
            chosen = insert_pauses(seq, PausePolicy(entropy_top=entropy_top, n=n), pid,
                                   entropy=ent)
            placements = [("entropy", -1, chosen)]
            where = _followers(chosen)
            eligible = [p for p, r in enumerate(seq.roles) if r not in ("bos", "pad")][1:]
            for s in seeds:
                rng = np.random.default_rng([s, w])
                pos = tuple(int(p) for p in rng.choice(eligible, size=len(where), replace=False))
                placements.append(("random", s, insert_pauses(seq, PausePolicy(positions=pos, n=n),
                                                              pid)))
            for name, s, p in placements:
                loss = target_losses(model, p)
                f = torch.tensor(_followers(p))
                rows.append(dict(
                    model=label, placement=name, seed=s, sequence=w, n_runs=len(f),
                    loss_following_plain=float(plain[f].mean()),
                    loss_following=float(loss[f].mean()),
                    delta_following=float((loss[f] - plain[f]).mean()),
                    delta_all=float(np.nanmean(loss) - np.nanmean(plain)),
                    entropy_following=float(ent[f - 1].mean())))
    return pd.DataFrame(rows)


def _followers(seq: PausedSequence) -> list[int]:
    """Original positions of the tokens that directly follow a pause run."""
    orig = seq.original_position.tolist()
    return [orig[i] for i in range(1, len(orig)) if orig[i] >= 0 and orig[i - 1] < 0]


def adaptive_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and placement: mean and standard deviation (over windows, and seeds for the
    random placement) of each measure, and the number of rows."""
    cols = ["loss_following_plain", "loss_following", "delta_following", "delta_all",
            "entropy_following"]
    g = table.groupby(["model", "placement"], sort=False)
    out = g[cols].mean()
    for c in ("delta_following", "delta_all"):
        out[f"{c}_std"] = g[c].std()
    out["n"] = g.size()
    return out.reset_index()


def _role_kind(table: pd.DataFrame) -> pd.Series:
    """The role, with pauses split into ``pause (masked)`` and ``pause (last)`` (in the loss:
    the last pause of a run predicts the next real token)."""
    kind = table["role"].astype(str).copy()
    pause = kind == "pause"
    kind[pause & table["in_loss"].astype(bool)] = "pause (last)"
    kind[pause & ~table["in_loss"].astype(bool)] = "pause (masked)"
    return kind


def compare_instruments(models: Mapping[str, object], windows: Sequence[PausedSequence], *,
                        layers: Sequence[int] | None = None,
                        prompt: str | Int[Tensor, " pos"] | None = None,
                        generation_pauses: int = 3, max_new_tokens: int = 8,
                        gradient_windows: int = 2, verbose: bool = False,
                        **old) -> dict[str, pd.DataFrame]:
    """Every instrument on every model, at pause and regular positions.

    Args:
        models: label → bridge (each with the ``<pause>`` token the windows use).
        windows: sequences with pauses inserted (e.g. by the training policy).
        layers: layers to read (default all).
        prompt: a text (or token ids) for generation with ``generation_pauses`` forced
            pauses before the answer (``None``: no generation).
        generation_pauses: forced pauses in generation (``--generation-pauses``; ``pauses=``
            in earlier releases, which now raises).
        max_new_tokens: generated tokens.
        gradient_windows: how many of the windows the gradient decomposition runs on (one
            forward and two backward passes each).
        verbose: progress bars.

    Returns:
        Tables, each with a ``model`` column:

        * ``registers``: per model, layer and role: ``attn_received``, ``uniform``,
          ``attn_ratio`` (received / uniform at the same positions), ``resid_norm``,
          ``value_norm``;
        * ``massive``: per model and role: the largest ``|h|`` at those positions over the
          scanned layers, its ratio to the layer median, and how many massive entries
          (``> ratio · median``) they hold;
        * ``future_share``: per model, site (``k``, ``v``) and kind (``regular``,
          ``pause (masked)``, ``pause (last)``): mean and pooled future share of the gradient;
        * ``generation`` (with ``prompt``): per model, layer and role (``prompt``, ``pause``,
          ``generated``): mean K and V norms written into the cache, and the generated text.
    """
    refuse_renamed("compare_instruments", old, {"pauses": "generation_pauses"})
    from ..gradients import future_gradients
    from ..sinks import registers

    if not windows:
        raise InterpError("no windows to analyse", "give at least one sequence with pauses")
    reg_rows, massive_rows, share_rows, gen_rows = [], [], [], []
    for label, model in models.items():
        reg = registers(model, list(windows), layers=layers, verbose=verbose)
        t = reg.table.dropna(subset=["attn_received"])
        g = t.groupby(["layer", "role"])[["attn_received", "uniform", "resid_norm",
                                           "value_norm"]].mean().reset_index()
        g["attn_ratio"] = g["attn_received"] / g["uniform"]
        reg_rows.append(g.assign(model=label))
        massive_rows.append(_massive_by_role(model, windows, layers, label))
        fg = future_gradients(model, list(windows[:gradient_windows]), sites=("k", "v"),
                              layers=layers, verbose=verbose)
        kinds = dataclasses.replace(fg, table=fg.table.assign(role=_role_kind(fg.table)))
        share_rows.append(kinds.by_role().assign(model=label))
        if prompt is not None:
            gen_rows.append(_generation(model, prompt, generation_pauses, max_new_tokens, layers, label))
    out = dict(registers=pd.concat(reg_rows, ignore_index=True),
               massive=pd.concat(massive_rows, ignore_index=True),
               future_share=pd.concat(share_rows, ignore_index=True))
    if gen_rows:
        out["generation"] = pd.concat(gen_rows, ignore_index=True)
    return {k: _model_first(v) for k, v in out.items()}


LENS_KEEP = ["layer", "offset", "n", "agreement_top1", "agreement_top5", "accuracy", "model_accuracy",
             "bigram_agreement", "bigram_accuracy", "val_r2"]


def lens_by_role(models: Mapping[str, object], windows: Sequence, *, layers: Sequence[int],
                 offsets: Sequence[int] = (1, 2), roles: Sequence[str] = ("pause", "regular"),
                 eval_positions: int = 1000, seed: int = 0, verbose: bool = False) -> pd.DataFrame:
    """The Future Lens of every model read at each role: one ridge map per (model, role,
    layer, offset), fitted on the training documents' positions of that role and scored on
    held-out documents (:func:`interp.future_lens`; no learned prompt).

    Args:
        models: label → bridge with the ``<pause>`` token the windows use.
        windows: :class:`interp.probes.ProbeSequence` items (group = document) with pauses
            inserted; enough that each role has thousands of training positions (the map is
            d_model × d_model).
        layers: block indices read.
        offsets: text tokens ahead (1: the token after a pause run).
        roles: roles read, each with its own maps.
        eval_positions: held-out positions scored per role.

    Returns:
        One row per model, role, layer and offset: ``n``, ``agreement_top1``/``_top5`` (with
        the model's own prediction of that token), ``accuracy`` (true token),
        ``model_accuracy``, ``bigram_agreement``/``bigram_accuracy`` (from the last text token
        at or before the position) and the map's validation ``val_r2``.
    """
    from ..probes import FutureLensSpec, future_lens

    rows = []
    for label, model in models.items():
        for role in roles:
            res = future_lens(model, list(windows), layers=list(layers), offsets=list(offsets),
                              roles=(role,), seed=seed, verbose=verbose,
                              config=FutureLensSpec(prompt_layers=[], eval_positions=eval_positions,
                                                    save_weights=False))
            rows.append(res.table[LENS_KEEP].assign(model=label, role=role))
    out = pd.concat(rows, ignore_index=True)
    return out[["model", "role"] + LENS_KEEP]


def _model_first(df: pd.DataFrame) -> pd.DataFrame:
    return df[["model"] + [c for c in df.columns if c != "model"]]


@torch.no_grad()
def _massive_by_role(model: Bridge, windows, layers, label, ratio: float = 100.0) -> pd.DataFrame:
    """Largest residual entry per role (over windows and layers), relative to the median."""
    layer_list = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    rows = []
    for w, seq in enumerate(windows):
        _, cache = model.run_with_cache(seq.tokens[None].to(core_model.device(model)),
                                        names_filter=[hooks.resid(layer) for layer in layer_list])
        for layer in layer_list:
            h = cache[hooks.resid(layer)][0].abs().float().cpu()
            med = float(h.median())
            top = h.max(-1).values
            for role in sorted(set(seq.roles)):
                m = seq.role_mask(role)
                rows.append(dict(sequence=w, layer=layer, role=role, max_abs=float(top[m].max()),
                                 ratio_to_median=float(top[m].max()) / med,
                                 n_massive=int((h[m] > ratio * med).sum())))
    df = pd.DataFrame(rows)
    i = df.groupby("role")["max_abs"].idxmax()
    out = df.loc[i, ["role", "max_abs", "ratio_to_median", "layer"]].rename(
        columns={"layer": "at_layer"})
    out["n_massive"] = df.groupby("role")["n_massive"].sum().loc[out["role"]].to_numpy()
    return out.assign(model=label).reset_index(drop=True)


def _generation(model: Bridge, prompt, pauses, max_new_tokens, layers, label) -> pd.DataFrame:
    from ..recording import generate

    gen = generate(model, prompt, max_new_tokens, pauses_before_answer=pauses, layers=layers)
    rec = gen.recording
    rows = []
    roles = rec.index["role"].replace({"bos": "prompt"}).to_numpy()
    for slot, layer in enumerate(rec.layers):
        kn = rec["k"][:, slot].float().norm(dim=-1).mean(-1)
        vn = rec["v"][:, slot].float().norm(dim=-1).mean(-1)
        for role in ("prompt", "pause", "generated"):
            m = torch.from_numpy(roles == role)
            if m.any():
                rows.append(dict(layer=layer, role=role, k_norm=float(kn[m].mean()),
                                 v_norm=float(vn[m].mean()), n=int(m.sum())))
    return pd.DataFrame(rows).assign(model=label, text=gen.text)


# -- the whole comparison, saved and loaded ---------------------------------------------------

#: columns of tables saved by earlier releases, under today's names (``window`` was the
#: window's running number, now ``sequence``, as in the register tables)
RENAMED_COLUMNS = {"window": "sequence"}

#: The tables of a :class:`PauseComparison`, by file stem (``pause_<name>.csv``).
TABLES = ("losses", "adaptive", "registers", "massive", "future_share", "future_lens", "generation",
          "history")


@dataclass
class PauseComparison(SavedResult):
    """Everything :func:`compare_checkpoint` measures, as tables (see the functions above).

    Attributes:
        tables: ``losses`` (:func:`pause_losses`), ``adaptive`` (:func:`adaptive_vs_random`),
            ``registers``, ``massive``, ``future_share``, ``generation``
            (:func:`compare_instruments`), ``history`` (the training run's evaluations);
            a table that was not computed is absent.
        settings: what was run (checkpoint, windows, seeds, ...).
    """

    tables: dict[str, pd.DataFrame]
    settings: dict = field(default_factory=dict)

    FILES: ClassVar[tuple[str, ...]] = ("pause_losses.csv",)
    MADE_BY: ClassVar[str] = "interp pause-compare CKPT --out DIR"
    SAVED: ClassVar[dict] = {"tables": "pause_*.csv", "settings": "pause_compare.json"}
    RENAMED: ClassVar[dict[str, str]] = RENAMED_COLUMNS
    #: a comparison saved without settings reads them as empty
    EMPTY: ClassVar[dict] = {"settings": dict}

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(TABLES)
        if unknown:
            raise InterpError(f"unknown pause-comparison table(s) {sorted(unknown)}",
                              f"known: {', '.join(TABLES)}")
        if "losses" not in self.tables:
            raise InterpError("a pause comparison needs its losses table",
                              "make it with `interp pause-compare CKPT --out DIR`")

    def loss_summary(self) -> pd.DataFrame:
        return loss_summary(self.tables["losses"])

    def adaptive_summary(self) -> pd.DataFrame | None:
        t = self.tables.get("adaptive")
        return None if t is None else adaptive_summary(t)

    def figures(self) -> list[Figure]:
        from ..figures import pause_training as f

        figs = [Figure("pause_losses", f.pause_losses,
                       "Loss on held-out real tokens without and with random pauses, base vs "
                       "pause-trained: pauses hurt an untrained model; does training undo that?")]
        if self.adaptive_summary() is not None:
            figs.append(Figure("pause_adaptive", f.pause_adaptive,
                               "Δloss of the token right after a pause run: pauses before "
                               "high-entropy tokens vs the same number at random positions."))
        for name, draw, caption in (
                ("registers", f.pause_registers, "Attention received (over uniform) and "
                 "residual norm at pause vs regular positions, per layer: register-like or not."),
                ("future_share", f.pause_future_share, "Future share of the K/V gradient at "
                 "regular positions, masked pauses (1 by construction) and the last pause of a "
                 "run."),
                ("future_lens", f.pause_future_lens, "Future Lens agreement with the model's own "
                 "prediction of the next text tokens, read at pauses and at regular positions, "
                 "per layer: do trained pauses carry the upcoming token? (grey: bigram "
                 "baseline)"),
                ("generation", f.pause_generation, "Key norms written into the KV cache during "
                 "generation with forced pauses, per role and layer.")):
            if name in self.tables:
                figs.append(Figure(f"pause_{name}", draw, caption))
        return figs


def compare_checkpoint(checkpoint: str | os.PathLike, *, max_windows: int = 8, seeds: Sequence[int] = (0, 1, 2),
                       entropy_top: float = 0.1, layers: Sequence[int] | None = None,
                       gradient_windows: int = 2, prompt: str | None = "The capital of France is",
                       generation_pauses: int = 3, instruments: bool = True, lens_windows: int = 256,
                       lens_layers: Sequence[int] | None = None,
                       verbose: bool = True, **old) -> PauseComparison:
    """Load the base and the pause-trained model of ``checkpoint`` and run every comparison
    on held-out windows (the documents the training run held out).

    Args:
        checkpoint: a folder written by :func:`interp.training.pause.pause_train`.
        max_windows: held-out windows (the first ones of the held-out documents;
            ``--max-windows``; ``n_windows=`` in earlier releases, which now raises).
        seeds: random pause placements per window (losses and the adaptive control).
        entropy_top: fraction of positions that get an entropy-triggered pause run.
        layers: layers the instruments read (default all).
        gradient_windows: windows for the gradient decomposition.
        prompt: generation prompt (``None``: no generation).
        generation_pauses: forced pauses in generation (``--generation-pauses``; ``pauses=``
            in earlier releases, which now raises).
        instruments: also run :func:`compare_instruments` (the slowest part).
        lens_windows: corpus windows (spread evenly over every document, pauses inserted by
            the training policy) for :func:`lens_by_role` (0: skip it). The lens needs
            thousands of pause positions; windows the adapter trained on may be among them,
            which is the same for both models.
        lens_layers: layers the lens reads (default: every 4th and the last).
        verbose: progress bars.
    """
    refuse_renamed("compare_checkpoint", old, {"n_windows": "max_windows",
                                               "pauses": "generation_pauses"})
    from ..models import load_model
    from ..training.pause import PauseTrainConfig, read_adapter_config, split_windows

    checkpoint = Path(checkpoint)
    acfg = read_adapter_config(checkpoint)
    state = json.loads((checkpoint / "state.json").read_text())
    config = dataclasses.replace(PauseTrainConfig.from_dict(state["config"]),
                                 eval_windows=max_windows)
    trained = load_model(checkpoint)
    base = load_model(config.base if not isinstance(config.base, dict) else acfg["base"])
    add_pause_token(base)
    if getattr(trained, "tokenizer", None) is None:
        raise InterpError("the checkpoint's base model has no tokenizer, so it cannot read the "
                          "corpus", "compare tiny models with pause_losses() on token windows")
    _, held = split_windows(trained, config)
    models = {"base": base, "pause-trained": trained}
    policy = PausePolicy(rate=config.pause_rate, n=config.pause_n, n_max=config.pause_n_max)
    tables = dict(losses=pause_losses(models, held, policy=policy, seeds=seeds, verbose=verbose),
                  adaptive=adaptive_vs_random(models, held, entropy_top=entropy_top,
                                              n=config.pause_n, seeds=seeds, verbose=verbose))
    if instruments:
        pid = core_model.pause_id(trained)
        paused = [insert_pauses(w, dataclasses.replace(policy, seed=i), pid)
                  for i, w in enumerate(held)]
        tables.update(compare_instruments(models, paused, layers=layers, prompt=prompt,
                                          generation_pauses=generation_pauses,
                                          gradient_windows=gradient_windows,
                                          verbose=verbose))
    if lens_windows:
        n_layers = int(trained.cfg.n_layers)
        lens_layers = sorted(set(lens_layers if lens_layers is not None
                                 else [*range(0, n_layers, 4), n_layers - 1]))
        tables["future_lens"] = lens_by_role(models, _lens_windows(trained, config, policy, lens_windows),
                                             layers=lens_layers, verbose=verbose)
    if (checkpoint / "history.csv").is_file():
        tables["history"] = pd.read_csv(checkpoint / "history.csv")
    settings = dict(checkpoint=str(checkpoint), base=acfg["base"], step=state["step"],
                    n_windows=len(held), n_tokens=config.n_tokens, seeds=list(seeds),
                    entropy_top=entropy_top, policy=policy.to_dict(), prompt=prompt,
                    generation_pauses=generation_pauses, layers=None if layers is None else list(layers),
                    gradient_windows=gradient_windows, lens_windows=lens_windows)
    return PauseComparison(tables, settings)


def _lens_windows(model, config, policy: PausePolicy, n: int) -> list:
    """``n`` windows spread evenly over the corpus (every document), pauses inserted by
    ``policy`` (seeded per window), grouped by document."""
    from ..core.corpora import load_corpus, windows
    from ..probes._data import ProbeSequence

    every = list(windows(model, load_corpus(config.corpus), config.n_tokens))
    pick = np.unique(np.linspace(0, len(every) - 1, min(n, len(every))).round().astype(int))
    pid = core_model.pause_id(model)
    return [ProbeSequence(every[i].doc_id, insert_pauses(every[i].seq, dataclasses.replace(policy, seed=10_000 + j),
                                                         pid)) for j, i in enumerate(pick)]
