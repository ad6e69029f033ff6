"""Token views (:mod:`interp.figures.tokens`): the numbers each page is given, checked against
independent computations (brute-force per-target gradients, the model's own attention
pattern and logits), and the errors raised before any HTML is written. The pages themselves
run in a real browser in tests/integration/test_token_views_browser.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.core import hooks
from interp.core.loss import token_losses
from interp.errors import InterpError
from interp.figures import tokens as tv
from interp.probes import FutureLensResults
from interp.probes._future_lens import LENS_COLUMNS


def _tiny64(**kw):
    cfg = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64, seed=0)
    cfg.update(kw)
    return interp.load_model(interp.TinyConfig(**cfg), device="cpu", dtype=torch.float64)


def _per_target_grads(model, tokens, layer: int, site: str = "k"):
    """Brute force: ∂ℓ_t/∂x_i for every target t, one backward pass per t through the whole
    graph, with x (``[pos, head, d]``) made a leaf by a forward hook. Returns ``[t, i, head, d]``."""
    leaf = {}

    def hook(x, hook):
        leaf["x"] = x.detach().requires_grad_(True)
        return leaf["x"]

    ids = tokens.reshape(1, -1)
    with model.hooks(fwd_hooks=[(hooks.k(layer) if site == "k" else hooks.v(layer), hook)]):
        losses = token_losses(model(ids), ids, torch.ones_like(ids, dtype=torch.bool))[0]
    n = ids.shape[1]
    out = []
    for t in range(n - 1):
        (g,) = torch.autograd.grad(losses[t], leaf["x"], retain_graph=True)
        out.append(g[0])
    return torch.stack(out)  # [t, i, head, d]


def test_by_distance_pairs_equal_brute_force():
    model = _tiny64()
    tokens = torch.randint(0, 61, (12,))
    bd = interp.by_distance(model, tokens, max_distance=5, pairs=True, sites=("k",),
                            verbose=False)
    g = _per_target_grads(model, tokens, 1)
    p = bd.pairs[bd.pairs.layer == 1]
    assert set(p.sequence) == {"0"}
    d = p.loss_position - p.position
    assert d.min() == 0 and d.max() == 5 and p.position.min() == 1  # first position left out
    want = g[p.loss_position.tolist(), p.position.tolist()].flatten(1).norm(dim=-1)
    torch.testing.assert_close(torch.tensor(p.grad_norm.tolist(), dtype=torch.float64), want, rtol=1e-10, atol=1e-14)
    # every kept (i, t) is there: i = 1..10, t = i..min(i + 5, 10)
    assert len(p) == sum(min(i + 5, 10) - i + 1 for i in range(1, 11))
    assert bd.meta["tokens"]["0"]["roles"] == ["regular"] * 12


def test_by_distance_pairs_round_trip(tmp_path):
    model = _tiny64()
    bd = interp.by_distance(model, torch.randint(0, 61, (2, 8)), max_distance=3, pairs=True,
                            verbose=False)
    back = interp.gradients.ByDistance.load(bd.save(tmp_path))
    pd.testing.assert_frame_equal(back.pairs, bd.pairs, check_dtype=False)
    assert back.meta["tokens"] == bd.meta["tokens"]
    assert interp.by_distance(model, torch.randint(0, 61, (8,)), max_distance=3,
                              verbose=False).pairs is None


def test_future_share_view_pools_heads_like_brute_force():
    """The view's future share of the whole key vector (KV heads together) against
    brute force: self = ∂ℓ_i/∂k_i, total = Σ_t ∂ℓ_t/∂k_i, share = ⟨total − self, total⟩/‖total‖²."""
    model = _tiny64(normalization=None)
    tokens = torch.randint(0, 61, (10,))
    fg = interp.future_gradients(model, tokens, sites=("k", "resid_post"), verbose=False)
    view = tv.future_share_view(fg, layers=[0])
    series = {s["label"]: s for s in view.data["series"]}
    g = _per_target_grads(model, tokens, 0)  # [t, i, head, d]
    n = len(tokens)
    total = g.sum(0).flatten(1)  # [i, head·d]
    self_ = torch.stack([g[i, i] for i in range(n - 1)] + [torch.zeros_like(g[0, 0])]).flatten(1)
    share = ((total - self_) * total).sum(-1) / (total * total).sum(-1)
    got = series["key · layer 0"]
    torch.testing.assert_close(torch.tensor(got["share"][:-1], dtype=torch.float64), share[:-1],
                               rtol=1e-3, atol=1e-4)  # the page gets 4 significant digits
    assert got["share"][-1] is None  # the last position has no gradient
    torch.testing.assert_close(torch.tensor(got["total"][:-1], dtype=torch.float64),
                               total.norm(dim=-1)[:-1], rtol=1e-3, atol=0)
    # the residual stream has one "head": the view repeats the table's own numbers
    rows = fg.table[(fg.table.site == "resid_post") & (fg.table.layer == 0)]
    np.testing.assert_allclose(np.array(series["resid post · layer 0"]["share"][:-1], float),
                               rows.future_share.to_numpy()[:-1], rtol=1e-3)
    assert view.data["tokens"] == [str(t) for t in rows.token_str] if "token_str" in rows else True


def test_attention_view_matches_the_models_pattern():
    model = _tiny64()
    tokens = torch.randint(0, 61, (14,))
    rec = interp.record(model, tokens, sites=("pattern",),
                        roles=interp.recording.RECORDABLE_ROLES, verbose=False)
    view = tv.attention_view(rec, floor=0.0)
    _, cache = model.run_with_cache(tokens.reshape(1, -1))
    pattern = cache[hooks.pattern(1)][0]  # [head, q, k]
    s = next(s for s in view.data["series"] if s["label"] == "layer 1 · head 2")
    for q in (0, 5, 13):
        assert s["keys"][q] == list(range(q + 1))
        np.testing.assert_allclose(s["attn"][q], pattern[2, q, :q + 1].numpy(), rtol=5e-3)
    received = pattern[2].tril(-1).sum(0)[:-1] / torch.arange(13, 0, -1)
    np.testing.assert_allclose(np.array(s["received"][:-1], float), received.numpy(), rtol=1e-3)
    assert s["received"][-1] is None


def _identity_lens(model, layer: int, offsets=(1, 2)) -> FutureLensResults:
    d = model.cfg.d_model
    K = len(offsets)
    W = torch.eye(d, dtype=torch.float64).expand(1, K, d, d).clone()
    return FutureLensResults(pd.DataFrame(columns=LENS_COLUMNS),
                             dict(layers=[layer], offsets=list(offsets)),
                             tensors=dict(W=W, b=torch.zeros(1, K, d, dtype=torch.float64)))


def test_lens_view_reads_the_maps_through_the_models_head():
    """An identity map at the last layer reproduces the model's own logits: at offset 1 the
    lens always agrees with the model; at offset 2 it agrees exactly where the model's top-1
    at t equals its top-1 at t + 1."""
    model = _tiny64()
    tokens = torch.randint(0, 61, (12,))
    view = tv.lens_view(model, _identity_lens(model, 1), tokens, k=3)
    top = model(tokens.reshape(1, -1))[0].argmax(-1)
    agree = {s["label"]: s["agree"] for s in view.data["series"]}
    assert agree["layer 1 · t+1"] == [1.0] * 12
    want = [float(top[t] == top[t + 1]) for t in range(11)] + [None]
    assert agree["layer 1 · t+2"] == want
    assert view.data["lens"][0][0][4] == view.data["model"][0][4]  # same top-3 at offset 1
    assert len(view.data["lens"][0][0][4]) == 3


def test_views_save_standalone_offline_pages(tmp_path):
    model = _tiny64()
    fg = interp.future_gradients(model, torch.randint(0, 61, (8,)), verbose=False)
    view = tv.future_share_view(fg)
    page = view.save(tmp_path / "v").read_text()
    assert (tmp_path / "v.html").is_file()
    assert "http://" not in page and "https://" not in page  # nothing fetched
    assert "interpTokenViews" in page and page.startswith("<!DOCTYPE html>")
    assert view._repr_html_().count('<div class="itv"') == 1
    data = json.loads(page.split('-data">')[1].split("</script>")[0])
    assert data["kind"] == "future_share" and len(data["tokens"]) == 8


def test_a_token_cannot_end_the_data_block():
    view = tv.TokenView("future_share", dict(kind="future_share", tokens=["</script><b>"],
                                             roles=["regular"], series=[]))
    frag = view.html()
    assert "</script><b>" not in frag and "<\\/script><b>" in frag


# ----------------------------------------------------------------------------- bad input


def test_errors_name_the_problem_and_the_fix(tmp_path):
    model = _tiny64()
    tokens = torch.randint(0, 61, (10,))
    fg = interp.future_gradients(model, tokens, sites=("k",), layers=[0], verbose=False)
    with pytest.raises(InterpError, match="(?s)does not hold layer 1.*rerun interp.future_gradients"):
        tv.future_share_view(fg, layers=[1])
    with pytest.raises(InterpError, match="(?s)does not hold site v"):
        tv.future_share_view(fg, sites=["v"])
    with pytest.raises(InterpError, match="(?s)no per-token data.*not an aggregate"):
        tv.future_share_view(interp.FutureGradients(fg.by_position()))
    bd = interp.by_distance(model, tokens, max_distance=3, verbose=False)
    with pytest.raises(InterpError, match="(?s)no per-token data.*pairs=True"):
        tv.who_reads_me_view(bd)
    atp = interp.attribution_patch(model, tokens, torch.randint(0, 61, (10,)),
                                   interp.patching.answer_loss([int(tokens[-1])]), layers=[0],
                                   verbose=False)
    with pytest.raises(InterpError, match="(?s)not target-resolved.*target_resolved=True"):
        tv.who_reads_me_view(atp)
    with pytest.raises(InterpError, match="takes a ByDistance or an Attribution"):
        tv.who_reads_me_view(fg)
    rec = interp.record(model, tokens, sites=("k",), verbose=False)
    with pytest.raises(InterpError, match="(?s)no attention pattern.*sites=\\('pattern',\\)"):
        tv.attention_view(rec)
    rec = interp.record(model, tokens, sites=("pattern",), roles=("regular",), verbose=False)
    assert rec.index.role.nunique() == 1
    lens = _identity_lens(model, 1)
    with pytest.raises(InterpError, match="(?s)does not hold layer 0"):
        tv.lens_view(model, lens, tokens, layers=[0])
    lens.tensors = {}
    with pytest.raises(InterpError, match="(?s)maps were not kept.*weights=True"):
        tv.lens_view(model, lens, tokens)
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_prompt_longer_than_the_limit_is_refused(monkeypatch):
    model = _tiny64()
    fg = interp.future_gradients(model, torch.randint(0, 61, (12,)), sites=("k",),
                                 verbose=False)
    monkeypatch.setitem(tv.MAX_TOKENS, "future_share", 10)
    with pytest.raises(InterpError, match="(?s)12 tokens, more than the future_share view's limit "
                                          "of 10.*shorter prompt"):
        tv.future_share_view(fg)


def test_who_reads_me_from_target_resolved_atp_sums_heads():
    """From target-resolved AtP the page gets, per (position, loss position), the effect summed
    over heads: the linear estimate of patching the whole key at once."""
    model = _tiny64()
    clean, corrupt = torch.randint(0, 61, (9,)), torch.randint(0, 61, (9,))
    atp = interp.attribution_patch(model, clean, corrupt, target_resolved=True, sites=("k",),
                                   layers=[1], verbose=False)
    view = tv.who_reads_me_view(atp)
    (s,) = view.data["series"]
    assert view.data["signed"] and s["label"] == "key · layer 1"
    want = atp.table.groupby(["position", "loss_position"]).atp.sum()
    got = pd.Series(s["val"], index=pd.MultiIndex.from_arrays([s["src"], s["tgt"]],
                                                              names=want.index.names))
    np.testing.assert_allclose(got.sort_index().to_numpy(), want.sort_index().to_numpy(),
                               rtol=1e-3, atol=1e-12)
    assert all(i <= t for i, t in zip(s["src"], s["tgt"], strict=True))
