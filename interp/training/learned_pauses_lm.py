"""Learned pause requests on a real LM: a LoRA adapter (:mod:`interp.training.pause`) trained
with the halting objective of :mod:`interp.training.learned_pauses`, so the model itself
decides, before each next token, how many ``<pause>`` tokens to take (the "System 1 /
System 2" switch on text).

**Decision sites.** A held-out or training window ``x_0 .. x_{T−1}`` has a decision before
every next token: after reading ``x_t`` the model may pause up to K times before it predicts
``x_{t+1}``. A *site row* is the window's prefix followed by the whole run of pauses,

    x_0 .. x_t <pause> × K,

and its K + 1 readings are the outputs at ``x_t`` (after 0 pauses) and at each pause (after
k): π_k = softmax(logits)[<pause>], the probability of one more pause, and the next-token
distribution with ``<pause>`` excluded, whose cross-entropy on ``x_{t+1}`` is CE_k. Under the
causal mask the reading after k pauses does not see the later ones, so one forward pass gives
all K + 1 (as in the toy); the prefix holds no other pause, so the reading is exactly what the
model does at that point of the text when it requests its own pauses (:func:`generate` with
``max_pauses``; the tests check the two agree).

**Training** (``PauseTrainConfig(learned=True)``, ``interp pause-train --learned``). The
adapter, the windows, the optimiser and the checkpoint/resume files are those of
:func:`interp.pause_train`; only the batch changes. Each training window gets ``sites``
decision sites t drawn uniformly (seeded by step and window, so a resumed run is the
uninterrupted one), one site row each, and the loss is

    mean over sites [ Σ_k P(stop at k)(CE_k + λ·k) + mean_k CE_k ] + LM loss on the prefix,

the first term :func:`~interp.training.learned_pauses.halting_loss` (P(stop at k) =
(1 − π_k) Π_{j<k} π_j, π_K := 0), the second trains the answers after every k even while the
model rarely takes that many (the toy's reason), the third the ordinary next-token loss on
``x_1 .. x_t`` so the adapter keeps the model a language model. All cross-entropies exclude
``<pause>`` from the softmax: with a full softmax every real target would push the pause
logit down and teach "never pause" (the toy measured exactly that); π is trained by the
halting term alone, through the pause logit's own row (the adapter's ``pause_logit``: on a
tied model such as SmolLM2 the pause row, which pause training otherwise trains only as an
input). As on the toy, β·KL(P(stop) ‖ uniform) is added and the cost ramped up
(:func:`~interp.training.learned_pauses.cost_ramp`; ``explore``, ``ramp_start``,
``ramp_end``).

**Not done here** (the toy has it): the urgency input (one adapter per λ instead, so a sweep
trains several adapters). The pause runs of earlier sites are not in the prefix, so the
model is never asked to continue text after its own pauses (the measurement reads one
decision at a time).

**Measurement** (:func:`learned_pause_lm_study`). On held-out windows, every position t is a
site: the readings give the greedy decision (pause while ``<pause>`` is the argmax of the
full softmax, at most K), the loss on ``x_{t+1}`` after the chosen count, and the same mean
budget placed by the outside policies of the toy (:func:`matched_stops`: the same count for
every position, a random count, the entropy trigger). Difficulty is the BASE model's
next-token entropy at t (no adapter, no pause), binned in quantiles: the System 1/2 claim is
that the pauses go where it is high.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .._types import Float, Tensor
from ..core import model as core_model
from ..core.io import atomic_write_csv, atomic_write_json
from ..core.model import Bridge
from ..core.pauses import PausedSequence
from ..errors import InterpError
from ._pause_sites import (
    LMPauseReadout,
    SiteBatch,
    lm_readout_batch,
    site_batch,
    site_loss,
    training_sites,
)
from .learned_pauses import POLICIES, matched_stops
from .pause import PauseTrainConfig, _load_base, _pad_id, pause_train, split_windows

__all__ = [
    "LMPauseReadout",
    "SiteBatch",
    "base_entropy",
    "learned_pause_lm_study",
    "lm_pause_frontier",
    "lm_readout",
    "lm_readout_batch",
    "site_batch",
    "site_loss",
    "training_sites",
]


def _all_sites(windows: Sequence[PausedSequence]) -> list[list[int]]:
    return [list(range(len(w.tokens) - 1)) for w in windows]


def lm_readout(model: Bridge, windows: Sequence[PausedSequence], max_pauses: int, *,
               lam: float = float("nan"), sites: Sequence[Sequence[int]] | None = None,
               batch_size: int = 32, difficulty: Float[Tensor, " site"] | None = None
               ) -> LMPauseReadout:
    """The model's decisions and next-token losses after every pause count at the ``sites``
    of ``windows`` (default: every position with a next token), in batches of site rows.

    Args:
        model: a bridge with a ``<pause>`` token (e.g. ``interp.load_model(adapter_dir)``).
        windows: plain token windows.
        max_pauses: the cap K.
        lam: the cost the adapter was trained with (kept on the readout).
        sites: positions t per window.
        batch_size: site rows per forward pass.
        difficulty: the base entropy per site, kept on the readout (:func:`base_entropy`).

    Raises:
        InterpError: a model without a ``<pause>`` token, a cap below 1, or windows that
            already hold pauses.
    """
    pid = core_model.pause_id(model, required=True)
    if max_pauses < 1:
        raise InterpError(f"max_pauses={max_pauses}: a cap of {max_pauses} pauses leaves the "
                          "model nothing to decide", "give max_pauses >= 1")
    sites = _all_sites(windows) if sites is None else sites
    full = site_batch(windows, sites, pid, max_pauses, _pad_id(model))
    return lm_readout_batch(model, full, max_pauses, pid, lam=lam, batch_size=batch_size,
                            difficulty=difficulty)


@torch.no_grad()
def base_entropy(model: Bridge, windows: Sequence[PausedSequence]) -> Float[Tensor, " site"]:
    """The base model's next-token entropy (nats) at every position with a next token, in
    the order of :func:`lm_readout`'s default sites: one plain forward pass per window.

    Raises:
        InterpError: the model already has a ``<pause>`` token (give the base model).
    """
    if core_model.pause_id(model) is not None:
        raise InterpError("base_entropy needs the base model, and this one has a <pause> token",
                          "load a fresh base model (interp.load_model(name)) for the difficulty")
    device = core_model.device(model)
    out = []
    for seq in windows:
        logp = model(seq.tokens[None].to(device))[0, :-1].double().log_softmax(-1)
        out.append(-(logp.exp() * logp).sum(-1).cpu())
    return torch.cat(out)


def lm_pause_frontier(readouts: Sequence[LMPauseReadout], *, bins: int = 6,
                      budgets: Sequence[float] = (), seed: int = 0
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out loss on real tokens against mean pauses per position, one row per λ and
    policy (the model's own decision, and its mean budget placed by :func:`matched_stops`),
    and pauses against difficulty.

    Args:
        readouts: one :func:`lm_readout` per adapter (λ).
        bins: quantile bins of the base entropy.
        budgets: further mean pause counts at which the outside policies are read on each
            adapter (rows with ``matched`` False): what pauses placed from outside buy, even
            where the model itself takes none.
        seed: seeds the random policy.

    Returns:
        ``frontier``: ``lam``, ``policy``, ``mean_pauses``, ``loss``, ``n``, ``matched``
        (True: at the learned budget);
        ``difficulty``: per λ and quantile bin of the base entropy: ``lam``, ``bin``,
        ``entropy`` (mean in the bin), ``mean_pauses``, ``loss``, ``loss_no_pause``,
        ``count``, and ``spearman`` (base entropy vs pauses over all sites, repeated per row).
    """
    rows, diff = [], []
    for r in readouts:
        for policy in POLICIES:
            stop = matched_stops(r, policy, r.mean_pauses, seed)
            rows.append(dict(lam=r.lam, policy=policy, mean_pauses=float(stop.float().mean()),
                             loss=r.loss_at(stop), n=len(stop), matched=True))
        for budget in budgets:
            for policy in POLICIES[1:]:
                stop = matched_stops(r, policy, budget, seed)
                rows.append(dict(lam=r.lam, policy=policy, mean_pauses=float(stop.float().mean()),
                                 loss=r.loss_at(stop), n=len(stop), matched=False))
        if r.difficulty is None:
            continue
        d = r.difficulty.numpy()
        if len(d) != len(r.stop):
            raise InterpError(f"{len(d)} difficulties for {len(r.stop)} sites",
                              "give the base entropy at the same sites as the readout")
        edges = np.quantile(d, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, bins - 1)
        stop = r.stop.numpy()
        chosen = r.loss.gather(1, r.stop[:, None])[:, 0].numpy()
        rho = float(spearmanr(d, stop).statistic) if stop.std() > 0 else float("nan")
        for b in range(bins):
            m = which == b
            if not m.any():
                continue
            diff.append(dict(lam=r.lam, bin=b, entropy=float(d[m].mean()),
                             mean_pauses=float(stop[m].mean()), loss=float(chosen[m].mean()),
                             loss_no_pause=float(r.loss[m, 0].mean()), count=int(m.sum()),
                             spearman=rho))
    return pd.DataFrame(rows), pd.DataFrame(diff)


def _lam_dir(out: Path, lam: float) -> Path:
    return out / f"lam_{lam:g}"


def learned_pause_lm_study(config: PauseTrainConfig, lams: Sequence[float],
                           out: str | os.PathLike, *, bins: int = 6,
                           budgets: Sequence[float] = (0.25, 1.0),
                           device: str | None = None, verbose: bool = True
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train one learned-pause adapter per λ (``out/lam_<λ>``, each an ordinary
    :func:`interp.pause_train` folder: rerun to resume) and measure them on the held-out
    windows (``config.eval_windows`` of them, every position a site):
    :func:`lm_pause_frontier`, written to ``out/frontier.csv`` and
    ``out/difficulty.csv``, with ``out/base.json`` (the base model's loss on the same sites).

    Args:
        config: the run (``learned=True``); its ``lam`` is replaced by each of ``lams``.
        lams: the pause costs.
        out: the output folder.
        bins: quantile bins of the base entropy.
        budgets: further mean pause counts for the outside policies (:func:`lm_pause_frontier`).
        device: ``None``: CUDA when present.
        verbose: progress.

    Raises:
        InterpError: ``config.learned`` is False, no λ, or a λ below 0.
    """
    if not config.learned:
        raise InterpError("learned_pause_lm_study needs PauseTrainConfig(learned=True)",
                          "set learned=True (`interp pause-train --learned`)")
    if not lams:
        raise InterpError("no pause costs λ to sweep", "give e.g. lams=[0, 0.05, 0.2]")
    configs = [dataclasses.replace(config, lam=float(lam)) for lam in lams]  # validates each λ
    out = Path(out)
    base = _load_base(config, device)
    held = split_windows(base, config)[1]
    difficulty = base_entropy(base, held)
    base_loss = []
    with torch.no_grad():
        for seq in held:
            logits = base(seq.tokens[None].to(core_model.device(base)))[0, :-1].double()
            base_loss.append(torch.nn.functional.cross_entropy(logits, seq.tokens[1:].to(
                logits.device), reduction="none").cpu())
    del base
    readouts = []
    for cfg in configs:
        res = pause_train(cfg, _lam_dir(out, cfg.lam), device=device, verbose=verbose)
        readouts.append(lm_readout(res.model, held, cfg.max_pauses, lam=cfg.lam,
                                   difficulty=difficulty))
        del res
    frontier, diff = lm_pause_frontier(readouts, bins=bins, budgets=budgets)
    atomic_write_csv(out / "frontier.csv", frontier)
    atomic_write_csv(out / "difficulty.csv", diff)
    atomic_write_json(out / "base.json", dict(
        base_loss=float(torch.cat(base_loss).mean()), sites=int(len(difficulty)),
        eval_windows=len(held), config=config.to_dict(), lams=[float(x) for x in lams]))
    return frontier, diff

