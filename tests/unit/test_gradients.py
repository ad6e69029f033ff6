"""Future-loss decomposition on tiny models, checked against brute force in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interp
from interp import hooks
from interp.gradients import detached_attention


def _token_losses(model, tokens):
    logp = F.log_softmax(model(tokens), -1)
    return -logp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # [batch, pos - 1]


def test_detached_forward_leaves_logits_unchanged(tiny_model64):
    tokens = torch.randint(0, 61, (2, 12))
    before = tiny_model64(tokens)
    with detached_attention(tiny_model64):
        during = tiny_model64(tokens)
    torch.testing.assert_close(during, before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("positional", ["rotary", "standard"])
def test_myopic_parameter_gradient_matches_per_target_detaching(positional):
    """Training use: the parameter gradient of Σ_t ℓ_t under detached_attention equals
    Σ_t ∇θ ℓ_t computed with every K/V except position t's detached (brute force)."""
    model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2,
                                                d_vocab=61, positional=positional),
                              device="cpu", dtype=torch.float64)
    model.train()
    tokens = torch.randint(0, 61, (2, 7))
    params = [p for p in model.parameters() if p.requires_grad]
    with detached_attention(model):
        myopic = torch.autograd.grad(_token_losses(model, tokens).sum(), params)

    brute = [torch.zeros_like(p) for p in params]
    for t in range(tokens.shape[1] - 1):
        def keep_only(x, hook, t=t):
            live = torch.zeros_like(x, dtype=torch.bool)
            live[:, t] = True
            return torch.where(live, x, x.detach())

        sites = [hooks.k(layer) for layer in range(2)] + [hooks.v(layer) for layer in range(2)]
        with model.hooks(fwd_hooks=[(s, keep_only) for s in sites]):
            grads = torch.autograd.grad(_token_losses(model, tokens)[:, t].sum(), params,
                                        allow_unused=True)
        brute = [b + (g if g is not None else 0) for b, g in zip(brute, grads, strict=True)]
    vanilla = torch.autograd.grad(_token_losses(model, tokens).sum(), params)
    for m, b in zip(myopic, brute, strict=True):
        torch.testing.assert_close(m, b, rtol=1e-9, atol=1e-12)
    assert max(float((m - v).abs().max()) for m, v in zip(myopic, vanilla, strict=True)) > 1e-4


def test_detached_attention_rejects_bad_layer(tiny_model):
    with pytest.raises(interp.InterpError, match="out of range"):
        with detached_attention(tiny_model, layers=[5]):
            pass
