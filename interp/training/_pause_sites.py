"""Decision-site rows for learned pauses on an LM, their loss and their readout (the pieces
:func:`interp.pause_train` needs in learned mode; the study and its documentation are in
:mod:`interp.training.learned_pauses_lm`, which re-exports them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._types import Bool, Float, Int, Tensor
from ..core import model as core_model
from ..core.model import Bridge
from ..core.pauses import PausedSequence
from ..errors import InterpError
from .learned_pauses import _readings, _split, explore_term, halting_loss
from .tasks._base import IGNORE

__all__ = ["LMPauseReadout", "SiteBatch", "lm_readout_batch", "site_batch", "site_loss",
           "training_sites"]


@dataclass
class SiteBatch:
    """Site rows ``x_0 .. x_t <pause> × K``, right-padded.

    Attributes:
        tokens: the rows.
        site: t per row (the reading after 0 pauses is there).
        target: ``x_{t+1}`` per row.
        prefix_mask: the positions 0 .. t − 1 whose ordinary next-token loss counts.
        window: which window each row came from.
    """

    tokens: Int[Tensor, "row pos"]
    site: Int[Tensor, " row"]
    target: Int[Tensor, " row"]
    prefix_mask: Bool[Tensor, "row pos"]
    window: Int[Tensor, " row"]


def site_batch(windows: Sequence[PausedSequence], sites: Sequence[Sequence[int]], pause_id: int,
               max_pauses: int, pad_id: int = 0) -> SiteBatch:
    """One row per (window, site): the window's tokens up to ``x_t`` and ``max_pauses`` pauses.

    Args:
        windows: token windows without pauses.
        sites: for each window, the positions t (0 <= t <= len − 2) to read.
        pause_id: the ``<pause>`` id.
        max_pauses: the cap K.
        pad_id: right padding.
    """
    if len(sites) != len(windows):
        raise InterpError(f"{len(sites)} site lists for {len(windows)} windows",
                          "give one list of positions per window")
    rows, site, target, window = [], [], [], []
    for w, (seq, ts) in enumerate(zip(windows, sites, strict=True)):
        ids = seq.tokens
        if (ids == pause_id).any():
            raise InterpError(f"window {w} already holds <pause> tokens",
                              "give windows of plain text (learned pauses insert their own)")
        for t in ts:
            if not 0 <= t <= len(ids) - 2:
                raise InterpError(f"site {t} is outside window {w} of {len(ids)} tokens",
                                  f"give sites in 0..{len(ids) - 2} (a site needs a next token)")
            rows.append(torch.cat([ids[:t + 1], torch.full((max_pauses,), pause_id)]))
            site.append(t)
            target.append(int(ids[t + 1]))
            window.append(w)
    if not rows:
        raise InterpError("no decision sites to read", "give at least one window and site")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = r
    site_t = torch.tensor(site)
    prefix = torch.arange(width)[None] < site_t[:, None]
    return SiteBatch(tokens, site_t, torch.tensor(target), prefix, torch.tensor(window))


def training_sites(n_sites: int, windows: Sequence[PausedSequence], seeds: Sequence[int]
                   ) -> list[list[int]]:
    """``n_sites`` distinct positions t (each with a next token) per window, window b drawn
    with ``seeds[b]``."""
    out = []
    for seq, seed in zip(windows, seeds, strict=True):
        n = len(seq.tokens) - 1
        rng = np.random.default_rng(seed)
        out.append(sorted(rng.choice(n, size=min(n_sites, n), replace=False).tolist()))
    return out


def _reading_parts(model: Bridge, batch: SiteBatch, n_k: int, pause_id: int):
    device = core_model.device(model)
    logits = model(batch.tokens.to(device))
    read = _readings(logits, batch.site.to(device), n_k)
    log_pause, logp, ce = _split(read, batch.target.to(device), pause_id)
    return logits, read, log_pause, logp, ce


def site_loss(model: Bridge, batch: SiteBatch, pause_id: int, lam: float, *,
              explore: float = 0.0, ramp: float = 1.0
              ) -> tuple[Float[Tensor, ""], dict[str, float]]:
    """The learned-pause training loss of one batch of site rows (see the module docstring)
    and its parts: ``halt_loss``, ``ce_at_once`` (k = 0), ``ce_at_cap`` (k = K),
    ``mean_pauses`` (expected under the stop distribution) and ``lm_loss``.

    Args:
        model: the adapted model.
        batch: the site rows (:func:`site_batch`; K is their number of pauses).
        pause_id: the ``<pause>`` id.
        lam: the cost λ of one pause.
        explore: the exploration weight β.
        ramp: the cost curriculum's fraction
            (:func:`~interp.training.learned_pauses.cost_ramp`): λ·ramp is charged and
            β·(1 − ramp) weights the exploration term; 1: the objective itself.
    """
    n_k = int((batch.tokens == pause_id).sum(1)[0]) + 1
    logits, _, log_pause, _, ce = _reading_parts(model, batch, n_k, pause_id)
    halt, p_stop = halting_loss(log_pause, ce, ramp * lam)
    # the prefix's own next-token loss; the targets at the site and the pauses (a <pause>,
    # whose logit is -inf here) are ignored
    targets = torch.where(batch.prefix_mask[:, :-1], batch.tokens[:, 1:], IGNORE)
    rest = logits[:, :-1].clone()
    rest[..., pause_id] = -torch.inf
    lm = (torch.nn.functional.cross_entropy(rest.flatten(0, 1), targets.to(logits.device).flatten(),
                                            ignore_index=IGNORE)
          if batch.prefix_mask.any() else logits.new_zeros(()))
    loss = halt.mean() + ce.mean() + lm
    if explore and ramp < 1:
        loss = loss + explore * (1 - ramp) * explore_term(p_stop).mean()
    ks = torch.arange(p_stop.shape[1], device=p_stop.device, dtype=p_stop.dtype)
    parts = dict(halt_loss=float(halt.detach().mean()), ce_at_once=float(ce[:, 0].detach().mean()),
                 ce_at_cap=float(ce[:, -1].detach().mean()),
                 mean_pauses=float((p_stop.detach() * ks).sum(1).mean()), lm_loss=float(lm.detach()))
    return loss, parts


@dataclass
class LMPauseReadout:
    """What the model does at every held-out site, for every pause count at once.

    Attributes:
        lam: the cost the adapter was trained with.
        window, position: where each site is.
        wants_pause: ``[site, k]``: after k pauses ``<pause>`` is the argmax (False at k = K).
        loss: ``[site, k]``: CE of the next real token after k pauses (``<pause>`` excluded).
        entropy: ``[site, k]``: entropy (nats) of that next-token distribution.
        prediction: ``[site, k]``: its argmax (the token the model writes after k pauses).
        stop: the greedy decision, the first k where the model does not pause.
        difficulty: the base model's next-token entropy at the site (``None`` if not given).
    """

    lam: float
    window: Int[Tensor, " site"]
    position: Int[Tensor, " site"]
    wants_pause: Bool[Tensor, "site k"]
    loss: Float[Tensor, "site k"]
    entropy: Float[Tensor, "site k"]
    prediction: Int[Tensor, "site k"]
    stop: Int[Tensor, " site"]
    difficulty: Float[Tensor, " site"] | None = None

    @property
    def mean_pauses(self) -> float:
        return float(self.stop.float().mean())

    def loss_at(self, stop: Int[Tensor, " site"]) -> float:
        """Mean loss on the next real token when site i answers after ``stop[i]`` pauses."""
        return float(self.loss.gather(1, stop[:, None].long()).mean())


@torch.no_grad()
def lm_readout_batch(model: Bridge, full: SiteBatch, max_pauses: int, pause_id: int, *,
                     lam: float = float("nan"), batch_size: int = 32,
                     difficulty: Float[Tensor, " site"] | None = None) -> LMPauseReadout:
    """:func:`lm_readout` of site rows already built (:func:`site_batch`)."""
    was = model.training
    model.eval()
    wants, loss, ent, pred = [], [], [], []
    for i in range(0, len(full.site), batch_size):
        part = SiteBatch(*(getattr(full, f.name)[i:i + batch_size]
                           for f in dataclasses.fields(SiteBatch)))
        _, read, _, logp, ce = _reading_parts(model, part, max_pauses + 1, pause_id)
        w = read.argmax(-1) == pause_id
        w[:, -1] = False  # the cap: after K pauses the model must answer
        wants.append(w.cpu())
        loss.append(ce.double().cpu())
        ent.append((-(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)).double().cpu())
        pred.append(logp.argmax(-1).cpu())
    model.train(was)
    wants_t = torch.cat(wants)
    return LMPauseReadout(lam, full.window, full.site, wants_t, torch.cat(loss),
                          torch.cat(ent), torch.cat(pred), wants_t.logical_not().float().argmax(1),
                          difficulty)
