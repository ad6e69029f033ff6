"""Future Lens: streamed sufficient statistics, the ridge fit against an independent solve, the
decoder, the sanity checks (identity at offset 1, a copy-two-back model read at offset 2), the
learned prompt, the n-gram baselines against brute-force counts, and the named errors."""

from __future__ import annotations

import collections

import pytest
import torch

import interp
from interp.core import hooks
from interp.probes import (
    FutureLensSpec,
    LensStats,
    ProbeSpec,
    fit_lens,
    future_lens,
    load_future_lens,
)
from interp.probes._future_lens import _sse, decoder, ngram_predictions

TINY = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64)


def _stats_of(X, Y) -> LensStats:
    s = LensStats.zeros(X.shape[0], Y.shape[0], X.shape[2])
    s.update(X, Y)
    return s


def _data(n=300, d=6, L=2, K=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(L, n, d, generator=g, dtype=torch.float64) * 3 + 5  # far from centred on purpose
    A = torch.randn(L, K, d, d, generator=g, dtype=torch.float64)
    Y = torch.einsum("lnd,kde->kne", X, A[0]) + torch.randn(K, n, d, generator=g, dtype=torch.float64) + 2
    return X, Y


def test_stats_add_equals_stats_of_the_concatenation():
    X, Y = _data()
    whole = _stats_of(X, Y)
    parts = _stats_of(X[:, :117], Y[:, :117]).add(_stats_of(X[:, 117:], Y[:, 117:]))
    for name, t in whole.tensors().items():
        torch.testing.assert_close(parts.tensors()[name], t, rtol=1e-12, atol=1e-9)
    assert whole.sxx.dtype == torch.float64 and float(whole.n) == 300
    # round trip through plain tensors (what an all-reduce or a checkpoint sees)
    assert LensStats.from_tensors(whole.tensors("p."), "p.").n == whole.n


def test_ridge_from_sums_equals_lstsq_on_the_materialised_data():
    X, Y = _data()
    X[:, :, 2] *= 1000  # one dimension far larger than the rest: the penalty follows each one's scale
    alpha = 0.05
    fit = fit_lens(_stats_of(X, Y), None, [alpha])
    for layer in range(2):
        x = X[layer]
        xc = x - x.mean(0)
        scale = (xc * xc).sum(0).sqrt()  # per-dimension: ridge on standardised features
        for k in range(2):
            y = Y[k]
            yc = y - y.mean(0)
            # independent: least squares on the augmented system [xc; √α diag(‖xc_j‖)] W = [yc; 0]
            A = torch.cat([xc, alpha ** 0.5 * torch.diag(scale)])
            B = torch.cat([yc, torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)])
            W = torch.linalg.lstsq(A, B).solution
            b = y.mean(0) - x.mean(0) @ W
            torch.testing.assert_close(fit.W[layer, k].double(), W, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(fit.b[layer, k].double(), b, rtol=1e-4, atol=1e-4)


def test_massive_dimensions_do_not_set_the_penalty():
    """Sun et al.'s massive activations: one dimension 10⁴ times the others. The identity map
    (y = h) must still be found from the default grid; a penalty α · tr(Σ)/d would shrink
    every other dimension by about a third here."""
    g = torch.Generator().manual_seed(0)
    d, n = 16, 1000
    X = torch.randn(1, n, d, generator=g, dtype=torch.float64)
    X[..., 0] = X[..., 0] * 1e4 + 3e4
    Xv = torch.randn(1, 300, d, generator=g, dtype=torch.float64)
    Xv[..., 0] = Xv[..., 0] * 1e4 + 3e4
    noise = 1e-3
    Y = X + noise * torch.randn(1, n, d, generator=g, dtype=torch.float64)
    Yv = Xv + noise * torch.randn(1, 300, d, generator=g, dtype=torch.float64)
    fit = fit_lens(_stats_of(X, Y), _stats_of(Xv, Yv), FutureLensSpec().alphas)
    torch.testing.assert_close(fit.W[0, 0].double(), torch.eye(d, dtype=torch.float64), atol=1e-3, rtol=0)
    assert float(fit.val_r2[0, 0]) > 0.999999


def test_grid_extends_itself_and_flags_an_end_that_still_wins():
    X, _ = _data(n=400)
    A = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    Y = torch.einsum("nd,kde->kne", X[0], A)  # exact from layer 0: less penalty is always better
    Xv, _ = _data(n=150, seed=1)
    Yv = torch.einsum("nd,kde->kne", Xv[0], A)
    fit = fit_lens(_stats_of(X, Y), _stats_of(Xv, Yv), [1e-3, 1e-2, 1e-1])
    # the grid went down past 1e-3 (near α = 0 the validation errors differ by rounding only)
    assert (fit.alpha[0] <= 1e-6).all()
    # targets that are noise independent of h: validation prefers ever more penalty
    g = torch.Generator().manual_seed(0)
    Yn = torch.randn(2, 400, 6, generator=g, dtype=torch.float64)
    Xv, _ = _data(n=150, seed=10)
    Yvn = torch.randn(2, 150, 6, generator=g, dtype=torch.float64)
    fit = fit_lens(_stats_of(X, Yn), _stats_of(Xv, Yvn), [1e-2, 1e-1, 1.0, 10.0])
    # offset 0: six decades above the grid and still the largest wins: flagged
    torch.testing.assert_close(fit.alpha[:, 0], torch.full((2,), 1e7), rtol=1e-6, atol=0)
    assert fit.at_edge[:, 0].all()
    # offset 1 of layer 0: 10 (inside the grid once 100 was tried and lost): not flagged
    assert float(fit.alpha[0, 1]) == 10.0 and not fit.at_edge[0, 1]


def test_validation_error_from_sums_and_alpha_choice():
    X, Y = _data(n=400)
    Xv, Yv = _data(n=150, seed=1)
    val = _stats_of(Xv, Yv)
    fit = fit_lens(_stats_of(X, Y), val, [1e-6, 1e-2, 10.0])
    W, b = fit.W[1].double(), fit.b[1].double()
    direct = ((Yv - (torch.einsum("nd,kde->kne", Xv[1], W) + b[:, None])) ** 2).sum((1, 2))
    torch.testing.assert_close(_sse(val, 1, W, b), direct, rtol=1e-6, atol=1e-3)
    # the chosen α has the smallest validation error of the grid, per cell
    for a in (1e-6, 1e-2, 10.0):
        other = fit_lens(_stats_of(X, Y), None, [a])
        assert (_sse(val, 1, W, b) <= _sse(val, 1, other.W[1].double(), other.b[1].double()) + 1e-3).all()


def test_identity_at_offset_one_from_the_last_layer_is_the_model(tiny_model):
    model = tiny_model
    toks = torch.randint(0, 61, (6, 24))
    logits, cache = model.run_with_cache(toks, names_filter=[hooks.resid(1, "post")])
    h = cache[hooks.resid(1, "post")]
    # the identity map decoded through the model's own head is the model's prediction
    torch.testing.assert_close(decoder(model)(h), logits)
    assert torch.equal(decoder(model)(h).argmax(-1), logits.argmax(-1))
    # the fitted map at (last layer, offset 1) with a vanishing penalty is that identity
    res = future_lens(model, torch.randint(0, 61, (40, 24)), layers=[1], offsets=[1],
                      config=FutureLensSpec(alphas=[1e-9], eval_positions=300))
    row = res.table.iloc[0]
    assert row.agreement_top1 == 1.0 and row.agreement_top5 == 1.0 and row.accuracy == row.model_accuracy
    torch.testing.assert_close(res.tensors["W"][0, 0], torch.eye(32), atol=1e-3, rtol=0)
    assert res.meta["alpha_at_edge"] == []  # a one-α grid is used as given, never flagged


def _copy_two_back_model():
    """A 2-layer model trained on sequences where every token repeats the token two back
    (x_t = x_{t-2}); it predicts x_{t+1} = x_{t-1} once two tokens are seen."""
    # d_model 64 and 600 steps: at d_model 32 (150 or 600 steps) the final state is too
    # nonlinear in the two tokens for a linear map (measured agreement 0.81-0.87 after block 0)
    model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=16, n_ctx=32),
                              device="cpu")
    gen = torch.Generator().manual_seed(0)

    def batch(n):
        pair = torch.randint(0, 16, (n, 2), generator=gen)
        return pair.repeat(1, 8)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(600):
        toks = batch(32)
        logits = model(toks)
        loss = torch.nn.functional.cross_entropy(logits[:, 1:-1].reshape(-1, 16), toks[:, 2:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, batch


@pytest.fixture(scope="module")
def copy_model():
    return _copy_two_back_model()


def test_a_copy_two_back_model_is_read_at_offset_two(copy_model):
    model, batch = copy_model
    toks = batch(120)
    with torch.no_grad():
        acc = (model(toks)[:, 1:-1].argmax(-1) == toks[:, 2:]).float().mean()
    assert acc > 0.99  # the model has learned the task
    res = future_lens(model, toks, offsets=[1, 2], config=FutureLensSpec(eval_positions=400))
    t = res.table.set_index(["layer", "offset"])
    # h_t holds x_t, which is what the model will predict at t + 1 (offset 2): read perfectly
    # after block 0 (measured 1.0 on 400 held-out positions), nearly so after block 1 (0.955;
    # chance is 1/16). Bounds from n = 400: no error in 400 puts the true rate above
    # 1 − 3/400 = 0.9925 (the rule of three, 95%), hence >= 0.99 (and 0.98); at 0.955 the
    # standard error is √(0.955·0.045/400) = 0.010, so 0.9 is over 5 standard errors below
    assert t.loc[(0, 2), "agreement_top1"] >= 0.99 and t.loc[(0, 2), "accuracy"] >= 0.99
    assert t.loc[(1, 2), "agreement_top1"] >= 0.9
    assert t.loc[(0, 1), "agreement_top1"] >= 0.98 and t.loc[(1, 1), "agreement_top1"] == 1.0
    # on this data token t + 2 is token t: the bigram baseline at distance 2 is perfect too
    assert t.loc[(1, 2), "bigram_accuracy"] == 1.0


def test_learned_prompt_learns_to_read_the_transplanted_state():
    """A prompt trained at layer 0 of a random tiny model: the KL to the model's own
    distribution falls and the prompt's top-5 agreement passes the linear map's (measured:
    KL 0.165 -> 0.079, top-5 0.82 vs 0.73, top-1 0.42 vs 0.40)."""
    model = interp.load_model(interp.TinyConfig(**TINY), device="cpu")
    toks = torch.randint(0, 61, (60, 16))
    cfg = FutureLensSpec(eval_positions=200, prompt_layers=[0], prompt_offsets=[1], prompt_steps=60,
                         prompt_lr=0.05, prompt_batch=32, prompt_length=3)
    res = future_lens(model, toks, layers=[0], offsets=[1], config=cfg)
    t = res.table.set_index("method")
    loss = res.tensors["prompt_loss_L0_k1"]
    assert loss[-10:].mean() < 0.7 * loss[:5].mean()  # measured 0.48
    assert t.loc["prompt", "agreement_top5"] > t.loc["linear", "agreement_top5"]  # the baseline
    # measured 0.42 on n = 200 held-out positions: standard error √(0.42·0.58/200) = 0.035,
    # so 0.3 is 3.4 standard errors below, and 18 times chance (1/61)
    assert t.loc["prompt", "agreement_top1"] > 0.3
    assert res.tensors["prompt_L0_k1"].shape == (3, 32)


def test_ngram_predictions_match_brute_force_counts():
    g = torch.Generator().manual_seed(3)
    ctx = torch.randint(0, 4, (500, 2), generator=g)
    y = (ctx[:, 0] * 2 + ctx[:, 1] + torch.randint(0, 3, (500,), generator=g)) % 7
    query = torch.cat([torch.randint(0, 4, (40, 2), generator=g), torch.tensor([[9, 0], [0, 9]])])
    tri = ngram_predictions(ctx, y, query)
    bi = ngram_predictions(ctx[:, 1:], y, query[:, 1:])
    uni = collections.Counter(y.tolist())
    order = [t for t, _ in sorted(uni.items(), key=lambda kv: (-kv[1], kv[0]))]
    for i, (a, b) in enumerate(query.tolist()):
        for pred, keep in ((tri, lambda r, a=a, b=b: tuple(r) == (a, b)), (bi, lambda r, b=b: r[1] == b)):
            c = collections.Counter(t for r, t in zip(ctx.tolist(), y.tolist(), strict=True) if keep(r))
            ranked = [t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
            assert pred[i, :len(ranked[:5])].tolist() == ranked[:5]
    # an unseen pair backs off to the bigram, an unseen token to the unigram ranking
    assert torch.equal(tri[-2], bi[-2]) and tri[-1].tolist() == bi[-1].tolist() == order[:5]


def _paused(model, n_rows, length, policy, seed=0):
    from interp.probes._data import ProbeSequence

    pid = interp.add_pause_token(model)
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, 61, (n_rows, length), generator=g)
    return [ProbeSequence(f"row{i}", interp.insert_pauses(interp.make_sequence(r), policy, pid))
            for i, r in enumerate(rows)], pid


def test_offsets_count_text_tokens_at_pause_positions():
    from interp.probes._future_lens import _context, _targets

    model = interp.load_model(interp.TinyConfig(**TINY), device="cpu")
    seqs, pid = _paused(model, 3, 20, interp.PausePolicy(rate=0.3, n=2, seed=1))
    for s in seqs:
        seq = s.seq
        real = [t for t in range(len(seq)) if int(seq.original_position[t]) >= 0]
        tg = _targets(seq, [1, 2, 3])
        ctx = _context(seq, torch.arange(len(seq)).numpy())
        for t in range(len(seq)):  # brute force: the k-th real position after t
            after = [r for r in real if r > t]
            for ki, k in enumerate([1, 2, 3]):
                assert tg[t, ki] == (after[k - 1] if len(after) >= k else -1)
            before = [r for r in real if r <= t]
            assert list(ctx[t]) == [before[-2] if len(before) > 1 else before[0], before[-1]]
        assert (seq.tokens[tg[tg >= 0]] != pid).all()
    # without inserted positions it is t + k
    plain = interp.make_sequence(torch.arange(10))
    assert (_targets(plain, [1, 2]) == [[t + 1 if t + 1 < 10 else -1, t + 2 if t + 2 < 10 else -1]
                                        for t in range(10)]).all()


def test_single_pauses_read_at_offset_one_from_the_last_layer_are_the_model():
    # a run of one pause predicts the next text token itself: the map is the identity
    model = interp.load_model(interp.TinyConfig(**TINY), device="cpu")
    seqs, _ = _paused(model, 60, 24, interp.PausePolicy(every=3, n=1))
    res = future_lens(model, seqs, layers=[1], offsets=[1, 2], roles=("pause",),
                      config=FutureLensSpec(alphas=[1e-9], eval_positions=200))
    row = res.table[res.table.offset == 1].iloc[0]
    assert row.agreement_top1 == 1.0 and row.accuracy == row.model_accuracy and row.n > 50
    torch.testing.assert_close(res.tensors["W"][0, 0], torch.eye(32), atol=1e-3, rtol=0)


def test_results_round_trip_and_figure(tmp_path, copy_model):
    model, batch = copy_model
    res = future_lens(model, batch(40), offsets=[1, 2], config=FutureLensSpec(eval_positions=100))
    res.save(tmp_path)
    back = load_future_lens(tmp_path)
    assert back.table.equals(res.table) and torch.equal(back.tensors["W"], res.tensors["W"])
    assert "offset 2" in back.headline() and back.summary().shape[0] == 2
    fig = back.figure()
    assert {t.name for t in fig.data} >= {"linear, offset 2", "bigram, offset 2", "trigram, offset 1"}
    # the files carry checksums: one edited since is named
    (tmp_path / "lens.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(interp.InterpError, match="lens.safetensors was changed or damaged"):
        load_future_lens(tmp_path)


# --- bad input -------------------------------------------------------------------------------


def test_offset_beyond_the_window_layer_out_of_range_and_no_unembedding():
    model = interp.load_model(interp.TinyConfig(**TINY), device="cpu")
    toks = torch.randint(0, 61, (30, 12))
    with pytest.raises(interp.InterpError, match=r"target\.offsets.*at most 12 tokens"):
        future_lens(model, toks, offsets=[11])
    with pytest.raises(interp.InterpError, match=r"(?s)inputs\.layers.*\[2\].*0\.\.1"):
        future_lens(model, toks, layers=[0, 2])
    with pytest.raises(interp.InterpError, match=r"future_lens\.prompt_layers"):
        future_lens(model, toks, layers=[1], config=FutureLensSpec(prompt_layers=[0]))
    with pytest.raises(interp.InterpError, match=r"future_lens\.prompt_layers.*last layer"):
        future_lens(model, toks, config=FutureLensSpec(prompt_layers=[1]))
    del model.unembed
    with pytest.raises(interp.InterpError, match="has none") as e:
        future_lens(model, toks)
    assert "lm_head" in e.value.fix


def test_spec_method_and_future_lens_fields_are_validated():
    with pytest.raises(interp.InterpError, match=r"field method: unknown method 'lens'") as e:
        ProbeSpec.from_dict({"method": "lens"})
    assert "future_lens" in e.value.fix
    with pytest.raises(interp.InterpError, match=r"target\.kind"):
        ProbeSpec.from_dict({"method": "future_lens", "target": {"kind": "label", "table": "x.csv"}})
    with pytest.raises(interp.InterpError, match=r"inputs\.sites"):
        ProbeSpec.from_dict({"method": "future_lens", "inputs": {"sites": ["k"]}})
    # pauses are read (offsets then count text tokens): the spec accepts them
    assert ProbeSpec.from_dict({"method": "future_lens", "data": {"pauses": {"every": 4}}}).data.pauses.every == 4
    with pytest.raises(interp.InterpError, match=r"future_lens\.prompt_layers.*\[7\]"):
        ProbeSpec.from_dict({"method": "future_lens", "inputs": {"layers": [0, 3]},
                             "future_lens": {"prompt_layers": [7]}})
    with pytest.raises(interp.InterpError, match=r"future_lens\.alphas"):
        ProbeSpec.from_dict({"method": "future_lens", "future_lens": {"alphas": [0.0]}})
    with pytest.raises(interp.InterpError, match=r"unknown probe spec field future_lens\.steps"):
        ProbeSpec.from_dict({"future_lens": {"steps": 3}})
    spec = ProbeSpec.from_toml("probes/lookahead.toml")
    assert spec.method == "future_lens" and spec.future_lens.prompt_layers == [12]
    assert ProbeSpec.from_dict(__import__("tomllib").loads(spec.to_toml())) == spec
