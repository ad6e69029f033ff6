"""The blocked attention backward (linear memory) against the dense one, in float64."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny

import interp
from interp.core.attention import AttentionSpec, expand_kv
from interp.gradients._detach import blocked_attention, check_rows, myopic_attention

SPECS = [AttentionSpec(0, 0.3), AttentionSpec(0, 0.3, window=4),
         AttentionSpec(0, 0.3, softcap=2.0, window=5)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
@pytest.mark.parametrize("detach", [True, False])
def test_blocked_gradient_equals_dense(spec, detach):
    """q, k, v gradients of Σ w · z: the dense autograd graph against blocks of 1, 3 (not
    dividing 11), 4, 11 and 64 queries; GQA (4 query heads on 2 KV heads)."""
    n_pos, g = 11, torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, h, n_pos, 6, generator=g, dtype=torch.float64, requires_grad=True)
               for h in (4, 2, 2))
    w = torch.randn(2, 4, n_pos, 6, generator=g, dtype=torch.float64)
    pos = torch.arange(n_pos)
    z, _ = myopic_attention(q, expand_kv(k, 4), expand_kv(v, 4), spec, pos, pos, detach=detach)
    dense = torch.autograd.grad((z * w).sum(), (q, k, v))
    for block in (1, 3, 4, 11, 64):
        zero = blocked_attention(q, [k], [v], spec, block, detach=detach)
        assert (zero == 0).all()
        blocked = torch.autograd.grad((zero * w).sum(), (q, k, v))
        for a, b in zip(blocked, dense, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    if detach:  # only the diagonal reaches k: the key of a position its query alone reads
        assert float(dense[1].abs().max()) > 0


def test_check_rows_cover_first_and_last():
    assert check_rows(10, None, "cpu").tolist() == list(range(10))
    assert check_rows(10, 16, "cpu").tolist() == list(range(10))
    rows = check_rows(1000, 16, "cpu")
    assert len(rows) == 16 and rows[0] == 0 and rows[-1] == 999


@pytest.mark.parametrize("variant", ["mha", "gqa"])
def test_future_gradients_blocked_equals_dense_with_pauses_and_padding(variant):
    """Two sequences of different lengths (right-padded) with pauses inserted: every self,
    future and total norm agrees between the dense path and blocks that do and do not
    divide the length."""
    model = tiny(variant, dtype=torch.float64)
    interp.add_pause_token(model)
    g = torch.Generator().manual_seed(1)
    seqs = [interp.make_sequence(torch.randint(1, 61, (n,), generator=g)) for n in (13, 9)]
    policy = interp.PausePolicy(every=4, n=1)
    kw = dict(sites=("k", "v", "resid_mid"), policy=policy, verbose=False)
    dense = interp.future_gradients(model, seqs, block_size=None, **kw).table
    assert (dense.role == "pause").any()
    for block in (1, 5, 7, 64):
        blocked = interp.future_gradients(model, seqs, block_size=block, **kw).table
        for col in ("self_norm", "future_norm", "total_norm"):
            torch.testing.assert_close(torch.tensor(blocked[col].to_numpy()),
                                       torch.tensor(dense[col].to_numpy()), rtol=1e-9, atol=1e-13)


def test_block_size_below_one_is_refused(tiny_model):
    with pytest.raises(interp.InterpError, match=r"(?s)block_size=0.*at least one query"):
        interp.future_gradients(tiny_model, torch.randint(0, 61, (1, 5)), block_size=0,
                                verbose=False)
    with pytest.raises(interp.InterpError, match=r"block_size=-1"):
        with interp.detached_attention(tiny_model, block_size=-1):
            pass
    with pytest.raises(interp.InterpError, match=r"(?s)block_size=0.*at least one query"):
        interp.by_distance(tiny_model, torch.randint(0, 61, (1, 5)), 4, block_size=0,
                           verbose=False)


def test_window_beyond_the_context_is_refused(tiny_model):
    n_ctx = tiny_model.cfg.n_ctx
    for fn in (interp.future_gradients, lambda m, t, **kw: interp.by_distance(m, t, 4, **kw)):
        with pytest.raises(interp.InterpError, match=rf"(?s){n_ctx + 1} tokens is longer than "
                                                     rf"the model's context of {n_ctx}.*at most"):
            fn(tiny_model, torch.randint(0, 61, (1, n_ctx + 1)), verbose=False)


def test_window_that_does_not_fit_names_the_estimate(tiny_model, monkeypatch):
    """With (pretended) 1 MiB available, a window is refused before any forward pass, with
    the estimate, what is available and a window length that fits."""
    from interp.gradients import _memory

    shape = _memory.Shape.from_model(tiny_model)
    need = _memory.estimate_bytes(shape, 1, 60, 16)
    assert need > _memory.estimate_bytes(shape, 1, 30, 16) > shape.n_params * shape.elem
    # the dense path's estimate grows with N² per layer; the blocked one does not
    assert (_memory.estimate_bytes(shape, 1, 4096, None)
            > 2 * _memory.estimate_bytes(shape, 1, 4096, 16))
    # run in chunks (a model with a KV cache) the blocked estimate is linear in N; whole (a
    # native model) the model's own forward adds N²
    for chunked, lo, hi in ((True, 1.99, 2.01), (False, 3.0, 4.0)):
        s = dataclasses.replace(shape, chunked=chunked)
        steps = [_memory.estimate_bytes(s, 1, n, 16) for n in (2048, 4096, 8192)]
        assert lo <= (steps[2] - steps[1]) / (steps[1] - steps[0]) <= hi, chunked
    monkeypatch.setattr(_memory, "available_bytes", lambda device: need / 2)
    calls = []
    tiny_model.add_hook("blocks.0.hook_resid_pre", lambda t, hook: calls.append(1))
    with pytest.raises(interp.InterpError, match=r"(?s)60 tokens need about .* GiB.*"
                                                 r"available on cpu.*n_tokens=\d+"):
        interp.future_gradients(tiny_model, torch.randint(0, 61, (1, 60)), block_size=16,
                                verbose=False)
    # by_distance holds chunk_size copies of the key and value gradients more: refused too
    chunked = dataclasses.replace(shape, chunked=True)  # (a model with a KV cache)
    assert (_memory.estimate_bytes(chunked, 1, 60, 16, targets=16)
            > _memory.estimate_bytes(chunked, 1, 60, 16))
    with pytest.raises(interp.InterpError, match=r"(?s)60 tokens need about .* GiB for "
                                                 r"by_distance.*smaller chunk_size"):
        interp.by_distance(tiny_model, torch.randint(0, 61, (1, 60)), 4, block_size=16,
                           verbose=False)
    tiny_model.reset_hooks()
    assert not calls


def test_blocked_pieces_equal_one_tensor():
    """Queries of a later chunk (positions 7..10) over keys given in pieces from position 2 (a
    window of 6): the same gradients as the dense rows over one key tensor."""
    spec, g = AttentionSpec(0, 0.3, window=6), torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, h, 11, 6, generator=g, dtype=torch.float64, requires_grad=True)
               for h in (4, 2, 2))
    w = torch.randn(1, 4, 4, 6, generator=g, dtype=torch.float64)
    pos = torch.arange(11)
    z, _ = myopic_attention(q[..., 7:, :], expand_kv(k, 4), expand_kv(v, 4), spec, pos[7:], pos)
    dense = torch.autograd.grad((z * w).sum(), (q, k, v))
    for block in (1, 3, 4):
        ks, vs = [k[..., 2:5, :], k[..., 5:11, :]], [v[..., 2:5, :], v[..., 5:11, :]]
        zero = blocked_attention(q[..., 7:, :], ks, vs, spec, block, detach=True, q_start=7,
                                 k_start=2)
        blocked = torch.autograd.grad((zero * w).sum(), (q, k, v))
        for a, b in zip(blocked, dense, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.fixture
def llama64(tiny_llama_dir):
    """The tiny Hugging Face Llama in float64 (a KV cache, so the forward runs in chunks)."""
    return interp.load_model(str(tiny_llama_dir), device="cpu", dtype=torch.float64)


def test_chunked_forward_equals_dense_with_pauses_and_padding(llama64):
    """On a Hugging Face model the blocked path runs the forward in chunks of a block over a
    KV cache: every norm agrees with the dense path at chunks of 1, 3, 5 and 7 positions (none
    divides the 17 and 12 positions, right-padded, with pauses). The bridge's softmax is
    float32 even in float64, and the chunks' scores may round to the other float32 neighbour:
    1e-5 relative (measured 3e-6 at the smallest norms, 2e-7 at the largest)."""
    interp.add_pause_token(llama64)
    g = torch.Generator().manual_seed(1)
    seqs = [interp.make_sequence(torch.randint(3, 61, (n,), generator=g)) for n in (13, 9)]
    kw = dict(sites=("k", "v", "resid_mid"), policy=interp.PausePolicy(every=4, n=1),
              verbose=False)
    dense = interp.future_gradients(llama64, seqs, block_size=None, **kw).table
    assert (dense.role == "pause").any() and (dense.future_norm > 0).any()
    for block in (1, 3, 5, 7):
        blocked = interp.future_gradients(llama64, seqs, block_size=block, **kw).table
        for col in ("self_norm", "future_norm", "total_norm"):
            torch.testing.assert_close(torch.tensor(blocked[col].to_numpy()),
                                       torch.tensor(dense[col].to_numpy()), rtol=1e-5, atol=1e-12)


def test_chunked_forward_is_checked_against_one_whole_forward(llama64, monkeypatch):
    """A cached forward that is not the model's whole-sequence computation (here every chunk
    restarts its rotary positions at 0) agrees with itself, so the pattern checks pass; the
    losses of the first chunk and the start of the second, against one whole forward, do not.
    (The queries are scaled up: the random model's attention is near uniform, so its losses
    hardly depend on positions.)"""
    with torch.no_grad():
        for block in llama64.blocks:
            block.attn.original_component.q_proj.weight.mul_(30.0)
    forward = llama64.forward

    def restarting(tokens, *args, past_key_values=None, **kw):
        if past_key_values is not None:
            kw["position_ids"] = torch.arange(tokens.shape[1])[None]
        return forward(tokens, *args, past_key_values=past_key_values, **kw)

    monkeypatch.setattr(llama64, "forward", restarting)
    tokens = torch.randint(3, 61, (1, 12), generator=torch.Generator().manual_seed(0))
    with pytest.raises(interp.InterpError, match=r"(?s)chunks of 4 positions .* losses .* away "
                                                 r"from the same positions in one whole "
                                                 r"forward.*block_size=None"):
        interp.future_gradients(llama64, tokens, block_size=4, verbose=False)


def test_a_cache_the_hooks_did_not_fill_is_refused(llama64):
    """Inside recomputed_attention, a forward over a cache filled outside it cannot be
    reproduced (the hooks never saw those keys): refused by name, dense or blocked."""
    from transformers import DynamicCache

    from interp.gradients._detach import recomputed_attention

    tokens = torch.randint(3, 61, (1, 8))
    for block in (None, 4):
        cache = DynamicCache()
        llama64(tokens[:, :4], past_key_values=cache)
        with recomputed_attention(llama64, detach=True, block_size=block):
            with pytest.raises(interp.InterpError, match=r"layer 0: the model attended over 4 "
                                                         r"cached positions"):
                llama64(tokens[:, 4:], past_key_values=cache)
