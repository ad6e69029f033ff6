"""Future-loss decomposition on tiny models, checked against brute force in float64."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import interp
from interp.core import hooks
from interp.core.sites import hook_name as site_hook
from interp.gradients import ByDistance, detached_attention


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


def _brute_force_self(model, tokens, site_hook_name):
    """∂ℓ_t/∂x_t by one backward pass per target t (independent of detached_attention)."""
    grads = {}

    def read(t, hook):
        t.register_hook(lambda g: grads.__setitem__("g", g))
        return t

    rows = []
    for t in range(tokens.shape[1]):
        with model.hooks(fwd_hooks=[(site_hook_name, read)]):
            losses = _token_losses(model, tokens)
            loss = losses[:, t].sum() if t < losses.shape[1] else 0 * losses.sum()
            loss.backward()
        rows.append(grads["g"][:, t])
    return torch.stack(rows, 1)  # [batch, pos, ...]


def _norms(fg, site, layer, column):
    t = fg.table[(fg.table.site == site) & (fg.table.layer == layer)]
    t = t.sort_values(["sequence", "position", "head"])
    return torch.tensor(t[column].to_numpy())


@pytest.mark.parametrize("site", ["k", "v", "resid_pre", "resid_mid"])
def test_self_term_equals_brute_force(tiny_model64, site):
    tokens = torch.randint(0, 61, (2, 9))
    fg = interp.future_gradients(tiny_model64, tokens, sites=[site], verbose=False)
    for layer in range(2):
        brute = _brute_force_self(tiny_model64, tokens, site_hook(site, layer))
        expected = brute.norm(dim=-1).flatten()  # [batch, pos, (head)] -> sequence, pos, head
        torch.testing.assert_close(_norms(fg, site, layer, "self_norm"), expected,
                                   rtol=1e-5, atol=1e-12)


def test_total_matches_ordinary_backward_and_self_plus_future(tiny_model64):
    tokens = torch.randint(0, 61, (1, 11))
    fg = interp.future_gradients(tiny_model64, tokens, sites=["k", "resid_post"], verbose=False)
    grads = {}

    def read(t, hook):
        t.register_hook(lambda g: grads.__setitem__("g", g))
        return t

    with tiny_model64.hooks(fwd_hooks=[(hooks.k(0), read)]):
        _token_losses(tiny_model64, tokens).sum().backward()
    torch.testing.assert_close(_norms(fg, "k", 0, "total_norm"), grads["g"].norm(dim=-1).flatten())
    # the future term and its cosine with the self term are checked against a sum of
    # per-target gradients in tests/integration/test_ground_truth.py; here, where it is zero
    # by construction it is reported as exactly zero, with no cosine
    last = fg.table.layer == 1
    resid_last = fg.table[last & (fg.table.site == "resid_post")]
    assert (resid_last.future_norm == 0).all() and resid_last.cos_self_future.isna().all()
    no_later = fg.table[fg.table.n_later == 0]
    assert len(no_later) > 0 and (no_later.future_norm == 0).all()


def test_pause_with_masked_loss_has_zero_self_term():
    model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2,
                                                d_vocab=61), device="cpu", dtype=torch.float64)
    interp.add_pause_token(model)
    seq = interp.make_sequence(torch.randint(0, 61, (10,)))
    policy = interp.PausePolicy(every=3, n=2)
    fg = interp.future_gradients(model, seq, policy=policy, sites=("k", "v", "resid_mid"),
                                 verbose=False)
    masked = fg.table[(fg.table.role == "pause") & ~fg.table.in_loss]
    assert len(masked) > 0 and (masked.self_norm == 0).all()
    kv = masked[masked.site != "resid_mid"]  # the last layer's resid_mid feeds only ℓ_i
    assert (kv.total_norm > 0).all() and ((kv.future_share - 1).abs() < 1e-12).all()
    kept = fg.table[(fg.table.role == "pause") & fg.table.in_loss & (fg.table.site == "v")]
    assert (kept.self_norm > 0).all()  # the last pause of a run predicts the next token


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_by_distance_terms_sum_to_total(n_kv_heads):
    # no normalisation: the native RMSNorm computes in float32 even in a float64 model, which
    # breaks the linearity Σ_t ∂ℓ_t/∂x = ∂(Σ_t ℓ_t)/∂x at the 1e-8 level
    tiny_model64 = interp.load_model(
        interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=n_kv_heads, d_vocab=61,
                          normalization=None), device="cpu", dtype=torch.float64)
    tokens = torch.randint(0, 61, (2, 10))
    bd = interp.by_distance(tiny_model64, tokens, max_distance=20, batch_size=2, chunk_size=4,
                            verbose=False)
    shares = bd.table.groupby(["site", "layer"]).share.sum()
    torch.testing.assert_close(torch.tensor(shares.to_numpy()), torch.ones(len(shares), dtype=torch.float64),
                               rtol=0, atol=1e-10)
    # distance 0 is the self term: its share equals the pooled self share of the decomposition
    fg = interp.future_gradients(tiny_model64, tokens, verbose=False)
    pooled = fg.by_layer().set_index(["site", "layer"]).pooled_future_share
    d0 = bd.table[bd.table.distance == 0].set_index(["site", "layer"]).share
    torch.testing.assert_close(torch.tensor(d0.sort_index().to_numpy()),
                               torch.tensor(1 - pooled.sort_index().to_numpy()))
    # the prefix-truncated methods (the default is "prefix-batched") against the reference
    # loop, which runs one backward pass per target through the whole sequence's graph
    loop = interp.by_distance(tiny_model64, tokens, max_distance=20, batch_size=2,
                              method="loop", verbose=False)
    batched = interp.by_distance(tiny_model64, tokens, max_distance=20, batch_size=2,
                                 chunk_size=3, method="prefix-batched", verbose=False)
    for other in (bd, batched):
        for col in ("grad_norm", "share", "n"):
            torch.testing.assert_close(torch.tensor(other.table[col].to_numpy()),
                                       torch.tensor(loop.table[col].to_numpy()),
                                       rtol=1e-12, atol=1e-15)


def test_future_gradients_tables_round_trip(tiny_model, tmp_path):
    fg = interp.future_gradients(tiny_model, torch.randint(0, 61, (3, 8)), batch_size=2,
                                 verbose=False)
    assert set(fg.table.sequence) == {"0", "1", "2"}
    back = interp.FutureGradients.from_csv(fg.to_csv(tmp_path / "fg.csv"))
    assert len(back.table) == len(fg.table) and back.meta["sites"] == ["k", "v", "resid_post"]
    assert {"first_position_share", "future_share"} <= set(back.summary())
    by_pos = back.by_position()
    assert by_pos.later_fraction.max() == 1.0


def test_bad_inputs(tiny_model):
    tokens = torch.randint(0, 61, (1, 6))
    with pytest.raises(interp.InterpError, match="no position in the loss"):
        interp.future_gradients(tiny_model, tokens, loss_mask=torch.zeros(6, dtype=torch.bool),
                                verbose=False)
    with pytest.raises(interp.InterpError, match="length 1"):
        interp.future_gradients(tiny_model, tokens[:, :1], verbose=False)
    with pytest.raises(interp.InterpError, match="unknown site"):
        interp.future_gradients(tiny_model, tokens, sites=["q"], verbose=False)
    with pytest.raises(interp.InterpError, match="loss_mask of shape"):
        interp.future_gradients(tiny_model, tokens, loss_mask=torch.ones(4, dtype=torch.bool),
                                verbose=False)


class _InfGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def test_non_finite_gradient_names_the_layer(tiny_model):
    tokens = torch.randint(0, 61, (1, 6))
    with tiny_model.hooks(fwd_hooks=[(hooks.resid(1, "mid"), lambda x, hook: _InfGradient.apply(x))]):
        with pytest.raises(interp.InterpError, match="non-finite gradient at layer 1"):
            interp.future_gradients(tiny_model, tokens, verbose=False)


def test_figures_from_results_and_from_csv(tiny_model, tmp_path):
    from interp.figures import gradients as figs

    tokens = torch.randint(0, 61, (2, 9))
    fg = interp.future_gradients(tiny_model, tokens, verbose=False)
    back = interp.FutureGradients.from_csv(fg.to_csv(tmp_path / "fg.csv"))
    heat = figs.future_share_heatmap(back, "k")
    assert heat.data[0].z.shape == (2, 9) and {t.name for t in heat.data[1:]} == {"regular"}
    by_pos = figs.future_share_by_position(fg)
    assert [t.name for t in by_pos.data][:3] == ["key", "value", "resid post"]
    bd = interp.by_distance(tiny_model, tokens, max_distance=4, verbose=False)
    line = figs.gradient_by_distance(ByDistance.from_csv(bd.to_csv(tmp_path / "bd.csv")))
    assert len(line.data) == 2 and list(line.data[0].x) == [0, 1, 2, 3, 4]
    with pytest.raises(interp.InterpError, match="no rows for site"):
        figs.future_share_heatmap(fg, "resid_pre")


def test_by_distance_prefix_equals_loop_with_padding_and_pauses(tiny_model64):
    # unequal lengths (right padding) and masked pause outputs: the prefix forward must cut
    # and mask exactly as the full one
    seqs = [interp.make_sequence(torch.randint(0, 61, (n,))) for n in (12, 7)]
    policy = interp.PausePolicy(every=3, filler=5)
    kw = dict(max_distance=6, batch_size=2, policy=policy, sites=("k", "v", "resid_mid"),
              include_first=True, verbose=False)
    loop = interp.by_distance(tiny_model64, seqs, method="loop", **kw).table
    for method, chunk in (("prefix", 4), ("prefix-batched", 5)):
        got = interp.by_distance(tiny_model64, seqs, method=method, chunk_size=chunk, **kw).table
        pd.testing.assert_frame_equal(got, loop, rtol=1e-10, atol=1e-13)
    with pytest.raises(interp.InterpError, match="unknown method"):
        interp.by_distance(tiny_model64, seqs, method="vmap", **kw)


def test_by_distance_window_over_kv_cache_equals_loop(tiny_llama_dir, monkeypatch):
    # a Hugging Face model has a KV cache: on the dense path (block_size=None) chunks that
    # start more than max_distance tokens in run on a window over a cache of the prefix.
    # Exact against the reference loop (float64), with right padding and filler positions,
    # and the window path is really taken. Tolerance 1e-6: Hugging Face's LlamaRMSNorm
    # computes in float32 even in a float64 model, so the unwindowed prefix methods differ
    # from the loop by 4e-8 too; a wrong window (positions, cache ignored) is off by far more
    from interp.core import model as core_model

    model = interp.load_model(tiny_llama_dir, device="cpu", dtype=torch.float64)
    seqs = [interp.make_sequence(torch.randint(3, 61, (n,))) for n in (30, 21)]
    kw = dict(max_distance=5, batch_size=2, policy=interp.PausePolicy(every=4, filler=5),
              sites=("k", "v", "resid_post"), block_size=None, verbose=False)
    starts = []
    cut = core_model.cache_prefix
    monkeypatch.setattr(core_model, "cache_prefix",
                        lambda past, n, total: starts.append(n) or cut(past, n, total))
    loop = interp.by_distance(model, seqs, method="loop", **kw).table
    assert starts == []  # the loop runs the whole graph
    for method, chunk in (("prefix", 4), ("prefix-batched", 6), ("auto", 16)):
        got = interp.by_distance(model, seqs, method=method, chunk_size=chunk, **kw).table
        pd.testing.assert_frame_equal(got, loop, rtol=1e-6, atol=1e-12)
    assert starts and min(starts) > 0 and max(starts) > 20
    # all distances kept: every chunk needs the whole prefix, so no window is cut
    starts.clear()
    interp.by_distance(model, seqs, **dict(kw, max_distance=40))
    assert starts == []


@pytest.mark.parametrize("max_distance", [5, 40])
def test_by_distance_chunked_equals_loop_and_dense(tiny_llama_dir, monkeypatch, max_distance):
    # at linear memory (the default on a model with a KV cache): a prefill, the chunked total
    # backward, then per chunk of targets the forward recomputed block_size positions at a
    # time over the prefill's cache, last first, with batched cotangents through the blocked
    # attention. Against the reference loop and the dense path (block_size=None), float64,
    # right padding and fillers, blocks that do not divide the lengths (30 and 21 positions
    # with pauses), a target chunk that straddles blocks, and windows (max_distance 5) as well
    # as every distance (40). Tolerance as above: the bridge's float32 RMSNorm and softmax
    from interp.gradients import _detach

    model = interp.load_model(tiny_llama_dir, device="cpu", dtype=torch.float64)
    seqs = [interp.make_sequence(torch.randint(3, 61, (n,))) for n in (30, 21)]
    kw = dict(max_distance=max_distance, batch_size=2, policy=interp.PausePolicy(every=4, filler=5),
              sites=("k", "v", "resid_post"), verbose=False)
    loop = interp.by_distance(model, seqs, method="loop", **kw).table
    dense = interp.by_distance(model, seqs, block_size=None, **kw).table
    pd.testing.assert_frame_equal(dense, loop, rtol=1e-6, atol=1e-8)
    passes = []
    real = _detach.chunked_target_grads
    monkeypatch.setattr(_detach, "chunked_target_grads", lambda *a, **k: passes.append(
        (a[5], a[6], a[3].chunk)) or real(*a, **k))
    from interp.gradients import _distance
    monkeypatch.setattr(_distance, "chunked_target_grads", _detach.chunked_target_grads)
    # ("prefix", one target per pass, only on windows: with every distance it is the slowest)
    runs = [(4, 3, "prefix-batched"), (7, 16, "auto")] + [(13, 5, "prefix")] * (max_distance < 30)
    for block, chunk, method in runs:
        passes.clear()
        got = interp.by_distance(model, seqs, method=method, chunk_size=chunk, block_size=block,
                                 **kw).table
        pd.testing.assert_frame_equal(got, loop, rtol=1e-6, atol=1e-8)
        # the chunked passes ran, over several blocks, from the window's start
        chunks = {b for _, _, b in passes}  # forward_chunk: the block, or less past 8 blocks
        assert len(chunks) == 1 and 1 <= min(chunks) <= block
        assert max(ts[-1] - s for s, ts, _ in passes) >= min(2 * min(chunks), max_distance)
        starts = [s for s, _, _ in passes]
        assert (max(starts) > 0) == (max_distance < 30)


def test_future_share_by_length_draws_log_binned_means():
    """The thick line of each length is the mean share over log-spaced position bins: checked
    against a mean taken by hand over the positions of each bin."""
    import numpy as np

    from interp.figures.gradients import future_share_by_length

    rng = np.random.default_rng(0)
    rows = [dict(site="k", position=p, n_tokens=n, future_share=rng.uniform(),
                 later_fraction=1 - p / n) for n in (64, 300) for p in range(n)]
    t = pd.DataFrame(rows)
    fig = future_share_by_length(t, per_decade=3)
    binned = [tr for tr in fig.data if tr.name == "N = 300"][0]
    b = t[(t.n_tokens == 300) & (t.position > 0)]
    edges = np.unique(np.floor(np.geomspace(1, 300, int(np.log10(300) * 3) + 2)))
    assert len(binned.y) == len(edges) - 1
    for lo, hi, y, x in zip(edges[:-1], edges[1:], binned.y, binned.x, strict=True):
        inside = b[(b.position >= lo) & (b.position < hi)]
        assert y == pytest.approx(inside.future_share.mean())
        assert lo <= x < hi
    with pytest.raises(interp.InterpError, match="per_decade=0"):
        future_share_by_length(t, per_decade=0)
