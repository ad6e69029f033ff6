"""Independent ground truths: each quantity interp reports, recomputed by code written here.

Nothing below calls interp to get the expected number. The reference is a plain Hugging Face
``LlamaForCausalLM`` loaded from the same folder as the bridge (``tiny_llama_dir``), hooked
with ``torch`` forward hooks written in this file, or a formula recomputed with numpy/scipy.
Everything runs in float64, so agreement is to rounding (1e-10 or better), not to a tolerance
tuned on an earlier run. The per-family parity of recordings with plain HF models is
``tests/integration/test_families.py``; see ``docs/patterns/testing.md``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

import interp

D_HEAD = 8  # hidden 32 / 4 heads in conftest.tiny_llama_dir


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    """The plain Hugging Face model, float64: the reference. Eager attention, as the bridge
    runs it: HF's eager softmax and RMSNorm round through float32 by design, and sdpa (which
    does not) would differ from them by ~1e-9 in the logits."""
    return LlamaForCausalLM.from_pretrained(tiny_llama_dir, torch_dtype=torch.float64,
                                            attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def bridge(tiny_llama_dir):
    """The same weights through interp."""
    return interp.load_model(tiny_llama_dir, device="cpu", dtype=torch.float64)


def _pair(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, 61, (n,), generator=g)
    clean[0] = 1  # BOS
    corrupt = clean.clone()
    corrupt[3] = (corrupt[3] + 7) % 58 + 3
    corrupt[5] = (corrupt[5] + 11) % 58 + 3
    return clean, corrupt


def _logit_diff(logits):
    return (logits[:, -1, 3] - logits[:, -1, 4]).sum()


# ------------------------------------------------------------------ hand-written patching


def _module(hf, site, layer):
    """The HF module whose output (or, for z, whose input) is the site."""
    block = hf.model.layers[layer]
    return {"k": block.self_attn.k_proj, "v": block.self_attn.v_proj,
            "z": block.self_attn.o_proj, "resid_post": block}[site]


def _run(hf, tokens, site=None, layer=None, edit=None):
    """HF logits, with ``edit(activation [pos, head, d] or [pos, d])`` applied in place to the
    site (k/v: the projection's output split into KV heads; z: o_proj's input split into query
    heads; resid_post: the decoder layer's output). Returns (logits, the site's activation)."""
    seen = {}

    def split(t):
        return t[0] if site == "resid_post" else t[0].view(t.shape[1], -1, D_HEAD)

    def out_hook(mod, args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        hidden = hidden.clone()
        seen["a"] = split(hidden).clone()
        if edit is not None:
            edit(split(hidden))
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    def in_hook(mod, args):
        x = args[0].clone()
        seen["a"] = split(x).clone()
        if edit is not None:
            edit(split(x))
        return (x,)

    handle = None
    if site is not None:
        mod = _module(hf, site, layer)
        handle = (mod.register_forward_pre_hook(in_hook) if site == "z"
                  else mod.register_forward_hook(out_hook))
    try:
        with torch.no_grad():
            logits = hf(tokens[None]).logits
    finally:
        if handle is not None:
            handle.remove()
    return logits, seen.get("a")


@pytest.mark.parametrize("per_head", [True, False])
def test_activation_patch_equals_a_hand_written_patch(hf, bridge, per_head):
    """Every node of activation_patch (k, v, z per head or all heads; resid_post) against the
    same patch written as a forward hook on the plain HF model's modules."""
    clean, corrupt = _pair()
    sites = ("k", "v", "z", "resid_post")
    got = interp.activation_patch(bridge, clean, corrupt, _logit_diff, sites=sites,
                                  per_head=per_head, verbose=False).table
    base = float(_logit_diff(_run(hf, clean)[0]))
    want = []
    for layer in range(2):
        for site in sites:
            source = _run(hf, corrupt, site, layer)[1]
            n_heads = 1 if site == "resid_post" or not per_head else source.shape[1]
            for p in range(len(clean)):
                for h in range(n_heads):
                    def edit(a, p=p, h=h, source=source, whole=n_heads == 1):
                        if whole:
                            a[p] = source[p]
                        else:
                            a[p, h] = source[p, h]

                    logits = _run(hf, clean, site, layer, edit)[0]
                    want.append(dict(layer=layer, site=site, head=-1 if n_heads == 1 else h,
                                     position=p, want=float(_logit_diff(logits)) - base))
    import pandas as pd

    merged = got.merge(pd.DataFrame(want), on=["layer", "site", "head", "position"])
    assert len(merged) == len(want) == len(got)
    assert merged.want.abs().max() > 1e-3  # the corruption does change the metric
    np.testing.assert_allclose(merged.activation_patch, merged.want, rtol=1e-9, atol=1e-12)
