"""Attribution patching against activation patching and TransformerLens, on tiny models."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tl_atp

import interp
from interp.core.loss import token_losses
from interp.patching import (
    Attribution,
    activation_patch,
    answer_loss,
    attribution_patch,
    compare_patching,
)


def _model(n_kv_heads, **kw):
    cfg = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=n_kv_heads, d_vocab=61)
    cfg.update(kw)
    return interp.load_model(interp.TinyConfig(**cfg), device="cpu", dtype=torch.float64)


def _pair(n=8):
    clean = torch.randint(0, 61, (n,))
    corrupt = clean.clone()
    corrupt[3] = (corrupt[3] + 7) % 61
    corrupt[5] = (corrupt[5] + 11) % 61
    return clean, corrupt


def _logit_diff(logits):
    return (logits[:, -1, 3] - logits[:, -1, 4]).sum()


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_atp_is_exact_where_the_metric_is_linear(n_kv_heads):
    """Attention-only, no normalisation: the logits are linear in the last layer's head
    outputs and residual stream, and, for one layer, linear in the attention pattern, so AtP
    (z, resid) and AtP* (k) equal activation patching."""
    model = _model(n_kv_heads, n_layers=1, d_mlp=0, normalization=None)
    with torch.no_grad():  # sharpen the attention so that it saturates, where AtP fails
        for name, p in model.named_parameters():
            if ".q." in name or ".k." in name:
                p.mul_(6.0)
    clean, corrupt = _pair()
    result = attribution_patch(model, clean, corrupt, _logit_diff, sites=("k", "z", "resid_post"),
                               qk_fix=True, verify=True, verbose=False)
    t = result.table
    linear = t[t.site.isin(["z", "resid_post"])]
    torch.testing.assert_close(torch.tensor(linear.atp.to_numpy()),
                               torch.tensor(linear.activation_patch.to_numpy()))
    k = t[t.site == "k"]
    torch.testing.assert_close(torch.tensor(k.atp_star.to_numpy()),
                               torch.tensor(k.activation_patch.to_numpy()))
    err = (k.atp - k.activation_patch).abs().max() / k.activation_patch.abs().max()
    assert err > 0.1  # plain AtP is only first order in the saturated pattern
    # four keys change (two positions, two KV heads or more): AtP* ranks them right
    scores = compare_patching(result, estimate="atp_star", k=4).set_index("group")
    assert scores.loc["k", "top_k_overlap"] == 1.0 and scores.loc["k", "pearson"] > 0.999


def test_atp_tracks_activation_patching_on_a_deeper_model(tiny_model64):
    clean, corrupt = _pair(10)
    result = attribution_patch(tiny_model64, clean, corrupt, answer_loss(clean[-2:].tolist()),
                               sites=("v", "z"), verify=True, verbose=False)
    scores = compare_patching(result).set_index("group")
    # measured: Pearson 0.91 (MHA) and 0.86 (GQA), top-10 overlap 0.8 for both. Baselines:
    # no agreement has Pearson standard error 1/√(n − 1) over the n affected nodes, and a
    # random ranking overlaps the true top 10 in 10/n of its picks on average
    # (n = 64 for MHA, 48 for GQA: 0.8 is over 5 standard errors above none, 0.7 over 3
    # times chance)
    n = scores.loc["all", "n"]
    assert n > 40 and scores.loc["all", "pearson"] > 0.8 > 5 / (n - 1) ** 0.5
    assert scores.loc["all", "top_k_overlap"] >= 0.7 > 3 * 10 / n
    assert set(result.table.columns) >= {"layer", "site", "head", "position", "atp",
                                         "activation_patch"}


def test_target_resolved_sums_to_the_summed_loss(tiny_model64):
    """Σ_t of the per-target estimates is the estimate for the metric Σ_t ℓ_t; the
    activation-patching ground truth is resolved the same way."""
    clean, corrupt = _pair(7)
    per_target = attribution_patch(tiny_model64, clean, corrupt, sites=("k", "v"),
                                   target_resolved=True, verify=True, verbose=False)
    t = per_target.table
    assert (t.loss_position >= t.position).all()

    def summed(logits):
        return token_losses(logits, clean[None], torch.ones(1, 7, dtype=torch.bool)).sum()

    whole = attribution_patch(tiny_model64, clean, corrupt, summed, sites=("k", "v"),
                              verify=True, verbose=False).table
    keys = ["layer", "site", "head", "position"]
    sums = t.groupby(keys)[["atp", "activation_patch"]].sum().reset_index()
    merged = whole.merge(sums, on=keys, suffixes=("", "_sum"))
    torch.testing.assert_close(torch.tensor(merged.atp_sum.to_numpy()),
                               torch.tensor(merged.atp.to_numpy()))
    torch.testing.assert_close(torch.tensor(merged.activation_patch_sum.to_numpy()),
                               torch.tensor(merged.activation_patch.to_numpy()))


def test_head_outputs_agree_with_transformer_lens(tiny_model64):
    """TL 4's node AtP is (a_clean − a_corrupt)·∂M/∂a at the corrupt run: ours with the
    roles of the two inputs swapped."""
    clean, corrupt = _pair()
    theirs = tl_atp.attribution_patch(tiny_model64, corrupt[None], clean[None], _logit_diff)
    ours = attribution_patch(tiny_model64, clean, corrupt, _logit_diff, sites="z",
                             verbose=False).table
    compared = 0
    for node, score in theirs.node_scores.items():
        if node.kind != "attn_head_out":
            continue
        row = ours[(ours.layer == node.layer) & (ours["head"] == node.head)
                   & (ours.position == node.position)]
        assert abs(float(row.atp.iloc[0]) - score) <= 1e-9 * (1 + abs(score))
        compared += 1
    assert compared == 2 * 4 * 8


def test_per_head_false_sums_heads(tiny_model64):
    clean, corrupt = _pair()
    heads = attribution_patch(tiny_model64, clean, corrupt, _logit_diff, sites="v",
                              verbose=False).table
    together = activation_patch(tiny_model64, clean, corrupt, _logit_diff, sites="v",
                                per_head=False, verbose=False).table
    assert (together["head"] == -1).all() and len(together) == 2 * 8
    est = attribution_patch(tiny_model64, clean, corrupt, _logit_diff, sites="v",
                            per_head=False, verbose=False).table
    summed = heads.groupby(["layer", "position"]).atp.sum().to_numpy()
    torch.testing.assert_close(torch.tensor(est.atp.to_numpy()), torch.tensor(summed))


def test_bad_inputs(tiny_model, tmp_path):
    clean, corrupt = _pair()
    with pytest.raises(interp.InterpError, match="different lengths.*\n.*fix: align"):
        attribution_patch(tiny_model, clean, corrupt[:-1], _logit_diff, verbose=False)
    with pytest.raises(interp.InterpError, match="no metric"):
        attribution_patch(tiny_model, clean, corrupt, verbose=False)
    with pytest.raises(interp.InterpError, match="no 'activation_patch' column"):
        compare_patching(attribution_patch(tiny_model, clean, corrupt, _logit_diff,
                                           sites="v", verbose=False))
    res = attribution_patch(tiny_model, clean, corrupt, _logit_diff, sites="v", verbose=False)
    back = Attribution.from_csv(res.to_csv(tmp_path / "a.csv"))
    assert len(back.table) == len(res.table) and back.meta["sites"] == ["v"]


def test_figures(tiny_model64):
    from interp.figures import patching as figs

    clean, corrupt = _pair()
    res = attribution_patch(tiny_model64, clean, corrupt, _logit_diff, sites=("k", "v"),
                            verify=True, verbose=False)
    scatter = figs.atp_scatter(res)
    assert [t.name.split(" ")[0] for t in scatter.data] == ["y", "k", "v"]
    heat = figs.atp_heatmap(res, "v")
    assert heat.data[0].z.shape == (2, 8)
    with pytest.raises(interp.InterpError, match="verify=True"):
        figs.atp_scatter(attribution_patch(tiny_model64, clean, corrupt, _logit_diff,
                                           sites="v", verbose=False))


def test_one_kv_head_rows_are_labelled_head_0_and_a_mislabelled_merge_is_refused():
    """With one KV head, AtP, AtP* and activation patching all label k/v rows head 0, so the
    verified table has no missing ground truth; a merge that mislabels them (head -1, as AtP
    did before) raises instead of leaving the rows out of the comparison."""
    model = _model(1)
    clean, corrupt = _pair()
    result = attribution_patch(model, clean, corrupt, _logit_diff, sites=("k", "v", "resid_post"),
                               qk_fix=True, verify=True, verbose=False)
    t = result.table
    kv = t[t.site.isin(["k", "v"])]
    assert set(kv["head"]) == {0} and kv.activation_patch.notna().all()
    assert kv[kv.site == "k"].atp_star.notna().all()
    assert {"k", "v", "resid_post"} <= set(compare_patching(result).group)
    on = ["layer", "site", "head", "position"]
    bad = t.drop(columns="activation_patch")
    bad.loc[bad.site == "v", "head"] = -1
    merged = bad.merge(t[on + ["activation_patch"]], on=on, how="left")
    with pytest.raises(interp.InterpError, match=r"\(v head -1\).*labelled differently"):
        compare_patching(merged)


@pytest.mark.parametrize(("per_head", "target_resolved"), [(True, False), (False, True)])
def test_batched_activation_patching_is_one_forward_per_node(per_head, target_resolved):
    """Nodes patched side by side (batches of 5, which divide neither the 8 positions nor the
    heads) give each node's single forward, float64 rounding apart."""
    model = _model(2)
    clean, corrupt = _pair()
    kw = dict(sites=("k", "z", "resid_post"), per_head=per_head, target_resolved=target_resolved,
              verbose=False)
    metric = None if target_resolved else _logit_diff
    one = activation_patch(model, clean, corrupt, metric, batch_size=1, **kw).table
    batched = activation_patch(model, clean, corrupt, metric, batch_size=5, **kw).table
    assert len(one) == len(batched) and one.activation_patch.abs().max() > 1e-3
    on = ["layer", "site", "head", "position"] + (["loss_position"] if target_resolved else [])
    m = one.merge(batched, on=on, suffixes=("_one", "_batched"))
    assert len(m) == len(one)
    torch.testing.assert_close(torch.tensor(m.activation_patch_batched.to_numpy()),
                               torch.tensor(m.activation_patch_one.to_numpy()),
                               rtol=1e-10, atol=1e-12)


def test_activation_patching_batch_size_below_one_is_named():
    model = _model(None, n_layers=1)
    clean, corrupt = _pair()
    with pytest.raises(interp.InterpError, match="batch_size 0 < 1(.|\n)*batch_size >= 1"):
        activation_patch(model, clean, corrupt, _logit_diff, batch_size=0, verbose=False)
