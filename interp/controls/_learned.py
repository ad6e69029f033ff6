"""Instruments at self-requested pauses: patching the keys and values of the pauses a
learned-pause model (:mod:`interp.training.learned_pauses`) chose to take."""

from __future__ import annotations

import pandas as pd
import torch

from ..core import model as core_model
from ..errors import InterpError
from ..training.learned_pauses import LearnedPauses, held_out_batch, readout, urgency_input
from ..training.tasks import TaskBatch
from ..training.tasks._base import IGNORE
from ._pauses import patch_inserted_kv

__all__ = ["self_pause_patching"]


def _answers(logits: torch.Tensor, at: torch.Tensor, pause_id: int) -> torch.Tensor:
    """The answer-now argmax (``<pause>`` excluded) at position ``at[b]`` of each example."""
    read = logits[torch.arange(len(at), device=at.device), at].clone()
    read[:, pause_id] = -torch.inf
    return read.argmax(-1)


@torch.no_grad()
def self_pause_patching(run: LearnedPauses, lam: float = 0.0, *, n_examples: int = 512,
                        seed: int = 12345) -> pd.DataFrame:
    """Does the answer read what the model computed at the pauses it asked for?

    For every string length n, the held-out examples of that length (same positions) are
    run with the pause positions' keys and values, at all layers and at each layer alone,
    taken from the next example of the same length (:func:`interp.controls.patch_inserted_kv`).
    The answer is read where the model itself stops (its greedy decision at urgency ``lam``,
    unpatched). Where the model answers before any pause the patch cannot matter (a control
    built in: rows with ``mean_pauses`` 0 must not move).

    Returns:
        One row per n and patched layers: ``n_bits``, ``layers``, ``mean_pauses``,
        ``clean_accuracy``, ``patched_accuracy``, ``follows_donor`` (among examples whose
        donor's answer differs, the fraction answering the donor's answer) and ``count``.

    Raises:
        InterpError: λ outside the trained range.
    """
    r = readout(run, lam, n_examples=n_examples, seed=seed)
    pb = held_out_batch(run.config, n_examples, seed)
    model, pid = run.model, run.pause_id
    device = core_model.device(model)
    n_layers = int(model.cfg.n_layers)
    rows = []
    for n in sorted(set(pb.n.tolist())):
        idx = (pb.n == n).nonzero()[:, 0]
        if len(idx) < 2:
            continue
        tokens, eq = pb.tokens[idx], int(pb.eq[idx[0]])  # one layout per length
        roles = tuple("bos" if t == 0 else "prompt" if t <= eq else
                      "pause" if int(tok) == pid else "pad"
                      for t, tok in enumerate(tokens[0]))
        batch = TaskBatch(tokens.to(device), [roles] * len(idx),
                          torch.zeros_like(tokens, dtype=torch.bool, device=device),
                          torch.full_like(tokens, IGNORE, device=device))
        at = (pb.eq[idx] + r.stop[idx]).to(device)
        answer = pb.answer[idx].to(device)
        donor = torch.roll(torch.arange(len(idx)), -1)
        differ = answer != answer[donor]

        with urgency_input(model, run.urgency, lam):
            clean = _answers(model(batch.tokens), at, pid)
            for layers in [list(range(n_layers))] + [[layer] for layer in range(n_layers)]:
                got = _answers(patch_inserted_kv(model, batch, layers, donor=donor.tolist()),
                               at, pid)
                follows = (got == answer[donor])[differ].float().mean() if differ.any() else \
                    torch.tensor(float("nan"))
                rows.append(dict(n_bits=n, layers="all" if len(layers) > 1 else str(layers[0]),
                                 mean_pauses=float(r.stop[idx].float().mean()),
                                 clean_accuracy=float((clean == answer).float().mean()),
                                 patched_accuracy=float((got == answer).float().mean()),
                                 follows_donor=float(follows), count=len(idx)))
    if not rows:
        raise InterpError(f"no string length has two held-out examples among {n_examples}",
                          "give more examples (n_examples)")
    return pd.DataFrame(rows)
