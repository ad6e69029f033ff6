"""The one reproduction of a model's attention (interp.core.attention) on its own."""

from __future__ import annotations

import pytest
import torch
from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function

import interp
from interp.core.attention import AttentionSpec, attention_spec


@pytest.mark.parametrize("window", [None, 1, 3, 8])
def test_mask_is_transformers_own(window):
    """The mask from position indices equals transformers' mask functions, also on a block
    of queries and keys that does not start at 0 (as a blocked computation would ask)."""
    fn = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
    spec = AttentionSpec(0, 1.0, window=window)
    q_pos, k_pos = torch.arange(5, 17), torch.arange(2, 20)
    theirs = torch.tensor([[bool(fn(0, 0, q, k)) for k in k_pos]
                           for q in q_pos])
    assert torch.equal(spec.allowed(q_pos, k_pos), theirs)


def test_soft_cap_scale_and_pattern():
    dots = torch.randn(2, 6, 6, dtype=torch.float64) * 30
    spec = AttentionSpec(0, 0.25, softcap=5.0, window=2)
    logits = spec.logits(dots)
    torch.testing.assert_close(logits, 5.0 * torch.tanh(dots * 0.25 / 5.0))
    assert logits.abs().max() <= 5.0
    p = spec.pattern(logits)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 6, dtype=torch.float64))
    assert (p[:, ~spec.allowed(torch.arange(6), torch.arange(6))] == 0).all()
    assert spec.describe() == "causal, window 2, soft-cap 5"


def test_bad_specs_name_the_field():
    with pytest.raises(interp.InterpError, match="sliding window 0 < 1"):
        AttentionSpec(3, 1.0, window=0)
    with pytest.raises(interp.InterpError, match="soft-cap -1.0 is not positive"):
        AttentionSpec(3, 1.0, softcap=-1.0)


def test_native_model_spec(tiny_model):
    spec = attention_spec(tiny_model, 1)
    assert spec.window is None and spec.softcap is None and not spec.joint_k_norm
    assert spec.scale == pytest.approx(tiny_model.cfg.d_head ** -0.5)
