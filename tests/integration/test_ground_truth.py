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
from interp.figures import tokens as tv

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


# ------------------------------------------------------------------ gradients by distance


def _site_grads(hf, tokens, site, layer, t):
    """∂ℓ_t/∂(site activation) [pos, head, d] on the plain HF model, by ordinary autograd
    (ℓ_t = −log p(tokens[t + 1] | tokens[:t + 1]); ``t=None``: the gradient of Σ_t ℓ_t)."""
    box = {}

    def hook(mod, args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        box["a"] = hidden
        return out

    handle = _module(hf, site, layer).register_forward_hook(hook)
    try:
        logits = hf(tokens[None]).logits[0]
    finally:
        handle.remove()
    loss = (torch.nn.functional.cross_entropy(logits[:-1], tokens[1:], reduction="sum")
            if t is None else torch.nn.functional.cross_entropy(logits[t:t + 1], tokens[t + 1:t + 2]))
    (g,) = torch.autograd.grad(loss, box["a"])
    return g[0] if site == "resid_post" else g[0].view(len(tokens), -1, D_HEAD)


@pytest.mark.parametrize("max_distance", [0, 3, 20])
def test_by_distance_equals_per_target_autograd(hf, bridge, max_distance):
    """grad_norm (mean ‖∂ℓ_{i+d}/∂x_i‖ over sources i ≥ 1, heads and targets) and share
    (Σ⟨∂ℓ_{i+d}/∂x_i, g_i⟩ / Σ‖g_i‖², g_i the gradient of Σ_t ℓ_t) at every distance, against
    one backward pass per target through the plain HF model."""
    g = torch.Generator().manual_seed(1)
    seqs = torch.randint(3, 61, (2, 9), generator=g)
    got = interp.by_distance(bridge, seqs, max_distance=max_distance, sites=("k", "resid_post"),
                             chunk_size=3, verbose=False).table
    for site in ("k", "resid_post"):
        for layer in range(2):
            norm = np.zeros(max_distance + 1)
            dot = np.zeros(max_distance + 1)
            count = np.zeros(max_distance + 1)
            total_sq = 0.0
            for tokens in seqs:
                n = len(tokens)
                per_t = [_site_grads(hf, tokens, site, layer, t) for t in range(n - 1)]
                per_t = [p if p.ndim == 3 else p[:, None] for p in per_t]
                total = _site_grads(hf, tokens, site, layer, None)
                total = total if total.ndim == 3 else total[:, None]
                total_sq += float((total[1:] ** 2).sum())
                for t, grad in enumerate(per_t):
                    for i in range(1, t + 1):
                        d = t - i
                        if d > max_distance:
                            continue
                        for h in range(grad.shape[1]):
                            norm[d] += float(grad[i, h].norm())
                            dot[d] += float(grad[i, h] @ total[i, h])
                            count[d] += 1
            rows = got[(got.site == site) & (got.layer == layer)].sort_values("distance")
            kept = count > 0
            assert rows.distance.tolist() == list(np.flatnonzero(kept))
            np.testing.assert_array_equal(rows.n, count[kept])
            np.testing.assert_allclose(rows.grad_norm, norm[kept] / count[kept], rtol=1e-10)
            # the share's denominator is the total pass, which runs through the blocked attention
            # (issue 23): its float64 softmax differs from the model's float32 one at float32
            # roundoff (measured 9e-9 absolute on shares of order 0.3), hence atol 1e-7
            np.testing.assert_allclose(rows.share, dot[kept] / total_sq, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ patching statistics


def test_compare_patching_statistics_equal_scipy(bridge):
    """Spearman, Pearson and the top-k overlap, recomputed with scipy and numpy."""
    from scipy import stats

    clean, corrupt = _pair(10)
    result = interp.attribution_patch(bridge, clean, corrupt, _logit_diff, sites=("v", "z"),
                                      verify=True, verbose=False)
    got = interp.compare_patching(result, k=5).set_index("group")
    t = result.table
    for group, rows in [("all", t), ("v", t[t.site == "v"]), ("z", t[t.site == "z"])]:
        rows = rows[(rows.atp != 0) | (rows.activation_patch != 0)]
        x, y = rows.atp.to_numpy(), rows.activation_patch.to_numpy()
        top = lambda a: set(np.argsort(-np.abs(a), kind="stable")[:5])  # noqa: E731
        assert got.loc[group, "n"] == len(x) and len(x) < len(t[t.site == group]) + len(t)
        np.testing.assert_allclose(got.loc[group, "spearman"], stats.spearmanr(x, y).statistic,
                                   rtol=1e-12)
        np.testing.assert_allclose(got.loc[group, "pearson"], stats.pearsonr(x, y).statistic,
                                   rtol=1e-12)
        assert got.loc[group, "top_k_overlap"] == len(top(x) & top(y)) / 5


# ------------------------------------------------------------------ a Llama forward by hand


def _manual_logits(hf, tokens, keep=None):
    """The Llama forward written out from the weights: RMSNorm, RoPE, grouped-query attention
    over the keys ``keep[q, k]`` (default: causal), SwiGLU MLP. As in HF's eager code, the
    RMSNorm and the softmax round through float32."""
    cfg = hf.config
    n, h, kvh = len(tokens), cfg.num_attention_heads, cfg.num_key_value_heads
    keep = torch.ones(n, n, dtype=torch.bool).tril() if keep is None else keep

    def norm(x, w):
        x32 = x.float()
        return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)).to(x.dtype)

    theta = cfg.rope_parameters["rope_theta"]  # 10000, the Llama default
    inv = 1.0 / (theta ** (torch.arange(0, D_HEAD, 2, dtype=torch.int64).float() / D_HEAD))
    ang = torch.arange(n).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos().double(), torch.cat([ang, ang], -1).sin().double()

    def rope(x):  # [head, pos, d]
        x1, x2 = x[..., :D_HEAD // 2], x[..., D_HEAD // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = hf.model.embed_tokens.weight[tokens]
    for block in hf.model.layers:
        a, y = block.self_attn, norm(x, block.input_layernorm.weight)
        q = rope((y @ a.q_proj.weight.T).view(n, h, D_HEAD).transpose(0, 1))
        k = rope((y @ a.k_proj.weight.T).view(n, kvh, D_HEAD).transpose(0, 1))
        v = (y @ a.v_proj.weight.T).view(n, kvh, D_HEAD).transpose(0, 1)
        k, v = k.repeat_interleave(h // kvh, 0), v.repeat_interleave(h // kvh, 0)
        scores = (q @ k.transpose(-1, -2)) / D_HEAD ** 0.5
        pattern = scores.masked_fill(~keep, float("-inf")).softmax(-1, dtype=torch.float32)
        z = (pattern.double() @ v).transpose(0, 1).reshape(n, h * D_HEAD)
        x = x + z @ a.o_proj.weight.T
        m, y = block.mlp, norm(x, block.post_attention_layernorm.weight)
        x = x + (torch.nn.functional.silu(y @ m.gate_proj.weight.T) * (y @ m.up_proj.weight.T)) @ m.down_proj.weight.T
    return norm(x, hf.model.norm.weight) @ hf.lm_head.weight.T


def test_cache_eviction_equals_a_masked_forward(hf, bridge):
    """Each condition's per-position loss, mean and perplexity, against a forward written out
    here whose attention masks the evicted keys (query i keeps keys i − W < j ≤ i and j < S)."""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(3, 61, (24,), generator=g)
    tokens[0] = 1
    window, sinks = 5, (0, 1, 3)
    with torch.no_grad():
        torch.testing.assert_close(_manual_logits(hf, tokens), hf(tokens[None]).logits[0],
                                   rtol=0, atol=1e-12)  # the hand-written forward is Llama's
    res = interp.cache_eviction(bridge, tokens, eviction_window=window, sinks=sinks,
                                verbose=False)
    n, start = len(tokens), max(sinks) + window
    # the library renormalises HF's causal pattern over the kept keys, the forward here takes
    # the softmax over the kept keys; HF's eager softmax rounds to float32 (unit roundoff
    # 2^-24 ≈ 6e-8), so the two agree to ~1e-7 relative (measured: 3.5e-9); full attention
    # runs the same computation, so exactly (up to float64 rounding)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None]
    for s in (None, *sinks):
        keep = (j <= i) if s is None else (j <= i) & ((i - j < window) | (j < s))
        with torch.no_grad():
            logp = _manual_logits(hf, tokens, keep).log_softmax(-1)
        nll = -logp[torch.arange(start, n - 1), tokens[start + 1:]]
        rows = res.per_position[res.per_position.n_sinks == (-1 if s is None else s)]
        assert rows.position.tolist() == list(range(start, n - 1))
        rtol = 1e-10 if s is None else 1e-7
        np.testing.assert_allclose(rows.nll, nll.numpy(), rtol=rtol)
        np.testing.assert_allclose(res.perplexity(s), float(nll.mean().exp()), rtol=rtol)
        wrong = (j <= i) & ((i - j < window + 1) | (j < s if s else False))
        with torch.no_grad():  # a window one key wider changes the losses far beyond rtol
            off = -_manual_logits(hf, tokens, wrong).log_softmax(-1)[torch.arange(start, n - 1),
                                                                     tokens[start + 1:]]
        assert s is None or np.abs(rows.nll.to_numpy() - off.numpy()).max() > 1e3 * rtol
    full, evicted = res.perplexity(None), res.perplexity(0)
    assert full != evicted  # the eviction changed the forward


# ------------------------------------------------------------------ self and future gradients


def test_future_gradients_equal_per_target_autograd(hf, bridge):
    """self_norm = ‖∂ℓ_i/∂x_i‖, future_norm = ‖Σ_{t>i} ∂ℓ_t/∂x_i‖, total_norm and the cosine
    of self and future, from one backward pass per target on the plain HF model (the future
    term summed here, not taken as total − self). The library gets the self term from a
    detached forward and the future one as total − self; HF's float32 softmax and RMSNorm
    round the two ways differently at the float32 unit roundoff 6e-8, amplified through the
    softmax's gradient (measured: 4e-7 relative), hence rtol 1e-5 there; a term taken at the
    wrong position or target is off by O(1). The total is one backward through the blocked
    attention (issue 23), which recomputes the softmax in float64 where the model's own forward
    rounds it through float32: float32 roundoff again (measured 1.0e-7 relative), rtol 1e-6."""
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(3, 61, (1, 9), generator=g)
    fg = interp.future_gradients(bridge, tokens, sites=("k", "resid_post"), verbose=False).table
    n = tokens.shape[1]
    for site in ("k", "resid_post"):
        for layer in range(2):
            per_t = [_site_grads(hf, tokens[0], site, layer, t) for t in range(n - 1)]
            per_t = [p if p.ndim == 3 else p[:, None] for p in per_t]
            zero = torch.zeros_like(per_t[0])
            self_g = torch.stack([per_t[i][i] if i < n - 1 else zero[i] for i in range(n)])
            future = torch.stack([sum((per_t[t][i] for t in range(i + 1, n - 1)), zero[i])
                                  for i in range(n)])
            total = _site_grads(hf, tokens[0], site, layer, None)
            total = total if total.ndim == 3 else total[:, None]
            rows = fg[(fg.site == site) & (fg.layer == layer)].sort_values(["position", "head"])
            np.testing.assert_allclose(rows.self_norm, self_g.norm(dim=-1).flatten(),
                                       rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(rows.total_norm, total.norm(dim=-1).flatten(), rtol=1e-6)
            np.testing.assert_allclose(rows.future_norm, future.norm(dim=-1).flatten(),
                                       rtol=1e-5, atol=1e-9)  # total − self: 4e-11 where 0
            cos = torch.nn.functional.cosine_similarity(self_g, future, dim=-1).flatten().numpy()
            has = rows.cos_self_future.notna().to_numpy()
            # the cosine exists where both terms do (not after the last attention, where no
            # later loss depends on x_i, nor at the last two positions, nor for the first key,
            # which attends to itself alone)
            both = ((self_g.norm(dim=-1) > 0) & (future.norm(dim=-1) > 0)).flatten().numpy()
            np.testing.assert_array_equal(has, both)
            assert both.any() == (site != "resid_post" or layer == 0)
            np.testing.assert_allclose(rows.cos_self_future[has], cos[has], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ recorded activations


def test_recorded_activations_equal_the_plain_hf_model(hf, bridge):
    """resid_post (the decoder layer's output: HF's hidden_states, except that HF's last one
    is taken after the final norm), q, k, v (the outputs of q_proj, k_proj, v_proj, split
    into heads: before RoPE) as interp.record stores them. The same comparison for 14
    families is tests/integration/test_families.py."""
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(3, 61, (2, 7), generator=g)
    rec = interp.record(bridge, tokens, sites=("resid_post", "q", "k", "v"), roles=None,
                        verbose=False)
    idx = rec.index.reset_index(drop=True)
    proj: dict = {}  # (site, layer) -> the HF activation of the sequence being checked
    for s, seq in enumerate(tokens):
        rows = idx[idx.sequence == idx.sequence.unique()[s]].sort_values("position")
        ids = torch.tensor(rows.token.to_numpy())
        assert ids[-len(seq):].tolist() == seq.tolist()
        proj.clear()
        handles = [getattr(hf.model.layers[layer].self_attn, f"{site}_proj").register_forward_hook(
            lambda m, a, out, key=(site, layer): proj.__setitem__(key, out[0]))
            for layer in range(2) for site in "qkv"]
        handles += [hf.model.layers[layer].register_forward_hook(
            lambda m, a, out, key=("resid_post", layer): proj.__setitem__(
                key, (out[0] if isinstance(out, tuple) else out)[0])) for layer in range(2)]
        try:
            with torch.no_grad():
                hidden = hf(ids[None], output_hidden_states=True).hidden_states
        finally:
            for h in handles:
                h.remove()
        r = torch.tensor(rows.index.to_numpy())
        for layer in range(2):
            torch.testing.assert_close(rec["resid_post"][r, layer].double(),
                                       proj[("resid_post", layer)], rtol=0, atol=1e-12)
            if layer == 0:
                torch.testing.assert_close(proj[("resid_post", 0)], hidden[1][0], rtol=0, atol=0)
            for site in "qkv":
                want = proj[(site, layer)].view(len(ids), -1, D_HEAD)
                torch.testing.assert_close(rec[site][r, layer].double(), want, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ attention sinks


def test_registers_equal_hf_attentions_with_a_sliding_window(tmp_path):
    """attn_received (mean over heads and later queries of the pattern), resid_norm and the
    uniform baseline on a sliding-window model (Mistral, window 4): from HF's
    ``output_attentions``, ``hidden_states`` and the keys each query's row of the pattern
    actually reads. Past the window a query spreads over w keys, not i + 1, and gives
    nothing to the keys it cannot see."""
    from conftest import word_tokenizer_at
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                        max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    MistralForCausalLM(cfg).eval().save_pretrained(tmp_path)
    word_tokenizer_at(tmp_path)
    hf = MistralForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.float64,
                                            attn_implementation="eager").eval()
    bridge = interp.load_model(tmp_path, device="cpu", dtype=torch.float64)
    tokens = torch.randint(3, 61, (2, 11), generator=torch.Generator().manual_seed(5))
    table = interp.sinks.registers(bridge, tokens, verbose=False).table
    for s, seq in enumerate(tokens):
        with torch.no_grad():
            out = hf(seq[None], output_attentions=True, output_hidden_states=True)
        n = len(seq)
        for layer in range(2):
            rows = table[(table.sequence == s) & (table.layer == layer)].sort_values("position")
            att = out.attentions[layer][0]  # [head, q, k]
            reads = att[0] > 0  # the keys each query reads (float64: no weight underflows)
            assert reads.sum(-1).max() == 4  # the window is on
            received = [float(att[:, j + 1:, j].mean()) for j in range(n - 1)]
            uniform = [np.mean([int(reads[i, j]) / int(reads[i].sum()) for i in range(j + 1, n)])
                       for j in range(n - 1)]
            np.testing.assert_allclose(rows.attn_received[:-1], received, rtol=1e-10)
            np.testing.assert_allclose(rows.uniform[:-1], uniform, rtol=1e-12)
            assert rows.attn_received.isna().iloc[-1] and rows.uniform.isna().iloc[-1]
            # full causal attention's baseline is far off past the window
            causal = [np.mean([1 / (i + 1) for i in range(j + 1, n)]) for j in range(n - 1)]
            assert np.abs(np.array(causal) - uniform).max() > 0.05
            # the attention view marks sinks against the same windowed baseline
            rec = interp.record(bridge, seq, sites=("pattern",), layers=[layer],
                                roles=interp.recording.RECORDABLE_ROLES, verbose=False)
            assert rec.meta["model"]["attention_windows"] == [4, 4]
            later = np.arange(n - 1, 0, -1)
            differs = False
            for ratio in (0.8, 1.2, 1.6):
                view = tv.attention_view(rec, sink_ratio=ratio, min_queries=1)
                for h in range(4):
                    got = next(x for x in view.data["series"] if x["label"] == f"layer {layer} · head {h}")
                    rec_h = np.array([float(att[h, j + 1:, j].mean()) for j in range(n - 1)])
                    want = np.nonzero((rec_h > ratio * np.array(uniform)) & (later >= 1))[0].tolist()
                    assert got["sinks"] == want, (layer, h, ratio)
                    differs |= want != np.nonzero(rec_h > ratio * np.array(causal))[0].tolist()
            assert differs  # the windowed baseline changes which keys are sinks here
            # resid_post of block l is hidden_states[l + 1] (the last one after the final norm)
            if layer == 0:
                np.testing.assert_allclose(rows.resid_norm, out.hidden_states[1][0].norm(dim=-1),
                                           rtol=1e-12)


# ------------------------------------------------------------------ generation


def test_generation_equals_hf_generate_and_its_cache(hf, bridge, tiny_llama_dir, tmp_path):
    """``interp record --generate``: the generated tokens are Hugging Face's greedy
    ``generate``; the recorded k and v at every position (prompt and generated) are what
    k_proj and v_proj wrote during HF's own cached decoding, and rot_k (after RoPE) what HF's
    ``past_key_values`` holds. HF never feeds its last token, interp does: that position is
    checked against one HF forward over the whole sequence. The command runs the model in
    float32, checked against the float64 library call on the same prompt."""
    from interp.cli import main

    prompt = torch.tensor([1, 7, 12, 30, 9])
    gen = interp.generate(bridge, prompt, 6, record=("k", "v", "rot_k"), stop_at_eos=False)
    wrote: dict = {"k": [], "v": []}
    handles = [getattr(hf.model.layers[layer].self_attn, f"{s}_proj").register_forward_hook(
        lambda m, a, out, s=s, layer=layer: wrote[s].append((layer, out[0].detach())))
        for layer in range(2) for s in "kv"]
    try:
        with torch.no_grad():
            ref = hf.generate(prompt[None], max_new_tokens=6, do_sample=False, min_new_tokens=6,
                              return_dict_in_generate=True, use_cache=True, pad_token_id=0)
            during = {s: list(a) for s, a in wrote.items()}
            for a in wrote.values():
                a.clear()
            hf(gen.tokens[None])
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(gen.tokens, ref.sequences[0])
    assert len(set(gen.tokens[5:].tolist())) > 1  # not one repeated token
    n = len(gen.tokens)
    for s in "kv":
        for layer in range(2):
            steps = [a for lay, a in during[s] if lay == layer]
            assert [len(a) for a in steps] == [5] + [1] * 5  # a prefill, then one per step
            hf_written = torch.cat(steps).view(n - 1, -1, D_HEAD)
            last = [a for lay, a in wrote[s] if lay == layer][0].view(n, -1, D_HEAD)[-1]
            want = torch.cat([hf_written, last[None]])
            torch.testing.assert_close(gen.recording[s][:, layer], want, rtol=0, atol=1e-12)
        cache = ref.past_key_values.layers
        for layer in range(2):
            held = cache[layer].keys if s == "k" else cache[layer].values
            mine = gen.recording["rot_k" if s == "k" else "v"][: n - 1, layer]
            torch.testing.assert_close(mine, held[0].transpose(0, 1), rtol=0, atol=1e-12)
    out = tmp_path / "gen"
    assert main(["record", "--model", str(tiny_llama_dir), "--text", "w07 w12 w30 w09",
                 "--generate", "6", "--layers", "0,1", "--out", str(out), "--quiet"]) == 0
    written = interp.load_recording(out)
    assert torch.equal(torch.tensor(written.index.token.to_numpy()), gen.tokens[:n])
    for s in "kv":
        torch.testing.assert_close(written[s].double(), gen.recording[s], rtol=1e-5, atol=1e-5)
