"""The next-token loss, written once for every analysis that needs it.

ℓ_t = −log p(token t+1 | tokens ≤ t), from the model's logits. Half-precision logits are
upcast to float32 first (a log-softmax over tens of thousands of entries loses digits in
float16/bfloat16); float32 and float64 stay as they are, so float64 checks stay exact.
"""

from __future__ import annotations

import torch

from .._types import Bool, Float, Int, Tensor

__all__ = ["next_token_nll", "token_losses"]


def next_token_nll(logits: Float[Tensor, "*batch d_vocab"],
                   targets: Int[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """−log softmax(logits)[target] for each row: the logits at position t, the token t + 1 as
    the target."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    return -logp.gather(-1, targets[..., None])[..., 0]


def token_losses(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    loss_mask: Bool[Tensor, "batch pos"],
) -> Float[Tensor, "batch pos"]:
    """ℓ_t at every position where the mask keeps it, else 0; ℓ at the last position is 0 (no
    target)."""
    nll = next_token_nll(logits[:, :-1], tokens[:, 1:])
    nll = torch.cat([nll, nll.new_zeros(nll.shape[0], 1)], 1)
    return torch.where(loss_mask, nll, torch.zeros_like(nll))
