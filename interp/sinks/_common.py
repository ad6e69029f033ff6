"""What the sink measurements share: table columns, the uniform-attention baseline, the
massive-entry threshold, token strings and the masked next-token loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core import model as core_model
from ..core.loss import next_token_nll
from ..core.model import Bridge, check_context
from ..core.pauses import PausedSequence
from ..errors import InterpError

REGISTER_COLUMNS = ("sequence", "layer", "position", "role", "token", "attn_received",
                    "uniform", "resid_norm", "value_norm")
MASSIVE_COLUMNS = ("sequence", "layer", "position", "role", "token", "dim", "value",
                   "ratio_to_median")
LAYER_STAT_COLUMNS = ("sequence", "layer", "median", "top1", "top2", "top3")


# ----------------------------------------------------------------------------- inputs


def _token_strings(model: Bridge, tokens: Sequence[int]) -> list[str]:
    """The decoded string of each token id (the id itself without a tokenizer)."""
    tok = getattr(model, "tokenizer", None)
    decoded = {t: str(t) if tok is None else tok.decode([t]) for t in set(tokens)}
    return [decoded[t] for t in tokens]


def _check_sequence(model: Bridge, seq: PausedSequence) -> None:
    if len(seq) < 2:
        raise InterpError("a sequence of length 1 has no later queries to attend to it",
                          "give sequences of at least 2 tokens")
    check_context(model, len(seq))


# ----------------------------------------------------------------------------- statistics


def _received(pattern: Float[Tensor, "head_index q_pos k_pos"]) -> Float[Tensor, "head_index k_pos"]:
    """Per head, the mean attention key j receives from the queries after it (NaN for the last)."""
    n = pattern.shape[-1]
    later = torch.arange(n - 1, -1, -1, device=pattern.device, dtype=pattern.dtype)
    return pattern.tril(-1).sum(dim=1) / later  # 0/0 = NaN at the last key


def _massive_mask(
    h: Float[Tensor, "pos d_model"], ratio: float
) -> tuple[Bool[Tensor, "pos d_model"], Float[Tensor, ""]]:
    """Entries whose magnitude exceeds ``ratio`` times the median magnitude of the layer."""
    med = h.abs().median()
    return h.abs() > ratio * med, med


#: columns of tables saved by earlier releases, under today's names: ``window`` was the
#: input's running number, now ``sequence``; an ablation's ``target`` is now ``component``,
#: since ``target`` names a loss position in patching tables
RENAMED_COLUMNS = {"window": "sequence", "target": "component"}


# ----------------------------------------------------------------------------- ablations


def _loss(model: Bridge, seq: PausedSequence, fwd_hooks: list) -> tuple[float, int]:
    """Summed next-token loss over the loss mask, and the number of targets."""
    dev = core_model.device(model)
    with torch.no_grad():
        logits = model.run_with_hooks(seq.tokens[None].to(dev), fwd_hooks=fwd_hooks)[0]
    mask = seq.loss_mask[:-1].to(dev)
    nll = next_token_nll(logits[:-1], seq.tokens[1:].to(dev))
    return float(nll[mask].sum()), int(mask.sum())
