"""Registers and sinks on tiny models, checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import interp
from interp import sinks
from interp.core import hooks
from interp.errors import InterpError


def _paused(model, n=12, seed=0):
    pid = interp.add_pause_token(model)
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(1, 60, (n,), generator=g)
    seq = interp.make_sequence(toks, ["bos"] + ["regular"] * (n - 1))
    return interp.insert_pauses(seq, interp.PausePolicy(every=3), pid)


def test_registers_match_run_with_cache(tiny_model64):
    seqs = [_paused(tiny_model64, seed=s) for s in range(2)]
    res = sinks.registers(tiny_model64, seqs, verbose=False)
    t = res.to_pandas()
    assert set(t["role"]) == {"bos", "regular", "pause"}
    for w, seq in enumerate(seqs):
        _, cache = tiny_model64.run_with_cache(seq.tokens[None])
        n = len(seq)
        for layer in range(2):
            rows = t[(t["sequence"] == w) & (t["layer"] == layer)].sort_values("position")
            pat = cache[hooks.pattern(layer)][0]  # [head, q, k]
            expect = [pat[:, j + 1:, j].mean().item() for j in range(n - 1)]
            np.testing.assert_allclose(rows["attn_received"].to_numpy()[:-1], expect, rtol=1e-10)
            assert np.isnan(rows["attn_received"].to_numpy()[-1])
            resid = cache[hooks.resid(layer, "post")][0].norm(dim=-1)
            np.testing.assert_allclose(rows["resid_norm"], resid.numpy(), rtol=1e-10)
            v = cache[hooks.v(layer)][0]  # [pos, kv_head, d_head]
            np.testing.assert_allclose(rows["value_norm"], v.norm(dim=-1).mean(-1).numpy(),
                                       rtol=1e-10)
            assert list(rows["role"]) == list(seq.roles)
    # per head: mean over heads of the per-head table equals the mean table, role by role
    heads = res.heads.groupby(["layer", "role"])["attn_received"].mean()
    both = t.dropna(subset=["attn_received"]).groupby(["sequence", "layer", "role"])[
        "attn_received"].mean().groupby(["layer", "role"]).mean()
    np.testing.assert_allclose(heads.sort_index().to_numpy(), both.sort_index().to_numpy(),
                               rtol=1e-10)


def test_uniform_attention_brute_force():
    n = 7
    brute = [np.mean([1 / (i + 1) for i in range(j + 1, n)]) for j in range(n - 1)]
    got = sinks.uniform_attention(n)
    np.testing.assert_allclose(got[:-1], brute)
    assert np.isnan(got[-1])


@pytest.fixture
def spiked():
    """A float64 tiny model whose token 7 carries a huge embedding in dimension 5."""
    model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2,
                                                d_vocab=61, seed=0), device="cpu",
                              dtype=torch.float64)
    with torch.no_grad():
        model.embed.original_component.weight[7, 5] = 5000.0
    return model


def test_massive_found_where_planted(spiked):
    toks = torch.tensor([[7, 3, 4, 9, 11, 2, 8, 5, 6, 10]])
    m = sinks.massive_activations(spiked, toks, verbose=False)
    first = m.first_appearance()
    assert set(zip(first["position"], first["dim"], strict=True)) == {(0, 5)}
    assert m.first_layer == 0 and m.emergence_layer() == 0
    # ratio is against the layer median, computed independently
    _, cache = spiked.run_with_cache(toks)
    h = cache[hooks.resid(0, "post")][0]
    row = m.table[m.table["layer"] == 0].iloc[0]
    assert row["value"] == pytest.approx(float(h[0, 5]))
    assert row["ratio_to_median"] == pytest.approx(float(h[0, 5].abs() / h.abs().median()))
    stats = m.layer_stats[m.layer_stats["layer"] == 0].iloc[0]
    assert stats["top1"] == pytest.approx(float(h.abs().max()))


def _manual_loss(model, toks, fwd_hooks):
    logits = model.run_with_hooks(toks[None], fwd_hooks=fwd_hooks)[0]
    return F.cross_entropy(logits[:-1], toks[1:]).item()


def test_ablations_match_manual_hooks(spiked):
    seqs = [torch.tensor([7, 3, 4, 9, 11, 2, 8, 5, 6, 10]), torch.tensor([7, 1, 7, 2, 3, 4, 5])]
    m = sinks.massive_activations(spiked, seqs, verbose=False)
    res = sinks.ablate_massive(spiked, seqs, m, verbose=False)
    # massive entries: token 7 everywhere it occurs, dim 5, at layer 0; mean = their mean value
    mean5 = m.mean_values(0)[5]

    def set_dim(value):
        def hook(x, hook):
            x = x.clone()
            for b_pos in (x[0, :, 5].abs() > 1000).nonzero().flatten():
                x[0, b_pos, 5] = value
            return x
        return hook

    def set_kv(fn):
        def hook(x, hook):
            x = x.clone()
            x[0, 0] = fn(x[0, 1:])
            return x
        return hook

    def expect(fwd):
        losses = [_manual_loss(spiked, s, fwd) * (len(s) - 1) for s in seqs]
        return sum(losses) / sum(len(s) - 1 for s in seqs)

    kv = [hooks.k(layer) for layer in range(2)] + [hooks.v(layer) for layer in range(2)]
    manual = {
        ("none", "none"): expect([]),
        ("massive", "zero"): expect([(hooks.resid(0, "post"), set_dim(0.0))]),
        ("massive", "mean"): expect([(hooks.resid(0, "post"), set_dim(mean5))]),
        ("sink_kv", "zero"): expect([(n, set_kv(lambda r: 0 * r[0])) for n in kv]),
        ("sink_kv", "mean"): expect([(n, set_kv(lambda r: r.mean(0))) for n in kv]),
    }
    for (target, method), loss in manual.items():
        row = res.table[(res.table["component"] == target) & (res.table["method"] == method)]
        assert row["loss"].item() == pytest.approx(loss, rel=1e-10), (target, method)
    assert res.delta("massive", "zero") > 10 * abs(res.delta("massive", "mean"))


@pytest.mark.parametrize("n_layers", [1, 2])
def test_eviction_window_equals_a_real_truncated_cache(n_layers):
    """With one layer, a query that sees only its window computes exactly what the model
    computes on the window alone (RoPE is relative), so the masked forward is checked against
    independent truncated runs; full attention equals the plain forward at any depth."""
    model = interp.load_model(interp.TinyConfig(n_layers=n_layers, d_model=32, n_heads=4,
                                                n_kv_heads=2, d_vocab=61, d_mlp=0, seed=1),
                              device="cpu", dtype=torch.float64)
    toks = torch.randint(0, 61, (30,), generator=torch.Generator().manual_seed(0))
    window = 6
    res = sinks.cache_eviction(model, toks, eviction_window=window, sinks=(0, 2), verbose=False)
    per = res.per_position
    logits = model(toks[None])[0]
    full = per[per["condition"] == "full"]
    pos = torch.tensor(full["position"].tolist())
    expect_full = F.cross_entropy(logits[pos], toks[pos + 1], reduction="none")
    np.testing.assert_allclose(full["nll"], expect_full.detach().numpy(), rtol=1e-10)
    assert full["position"].min() == 2 + window
    if n_layers == 1:
        win = per[per["condition"] == "window"]
        for i, nll in zip(win["position"], win["nll"], strict=True):
            out = model(toks[None, i - window + 1: i + 1])[0, -1]
            # rotary angles at different absolute positions with the same offset are not
            # bit-identical, so relative position invariance holds to ~1e-8, not 1e-15
            assert nll == pytest.approx(F.cross_entropy(out, toks[i + 1]).item(), rel=1e-7)
    # the masks themselves: window + sinks, causal
    mask = sinks.eviction_mask(10, 3, 2)
    assert mask[9].nonzero().flatten().tolist() == [0, 1, 7, 8, 9]
    assert not mask.triu(1).any()


def test_bad_input_names_the_fix(tiny_model):
    with pytest.raises(InterpError, match=r"eviction window plus sinks \(16 \+ 4\).*\n  fix: give a text longer than 21 tokens"):
        sinks.cache_eviction(tiny_model, torch.arange(20), eviction_window=16, sinks=(0, 4), verbose=False)
    with pytest.raises(InterpError, match=r"ratio=1.0 would flag ordinary activations\n  fix: use ratio > 1"):
        sinks.registers(tiny_model, torch.arange(8), ratio=1.0, verbose=False)
    with pytest.raises(InterpError, match="length 1 has no later queries.*\n  fix: give sequences of at least 2 tokens"):
        sinks.registers(tiny_model, torch.arange(1), verbose=False)
    with pytest.raises(InterpError, match=r"out of range for a model with 2 layers\n  fix: choose layers in 0\.\.1"):
        sinks.registers(tiny_model, torch.arange(8), layers=[5], verbose=False)


def test_save_load_roundtrip(tiny_model, tmp_path):
    res = sinks.registers(tiny_model, torch.randint(0, 60, (2, 10)), verbose=False)
    res.save(tmp_path)
    back = sinks.RegisterResult.load(tmp_path)
    np.testing.assert_allclose(back.table["resid_norm"], res.table["resid_norm"], rtol=1e-6)
    assert back.by_role()["role"].tolist() == ["regular"]
    assert list(back.massive.layer_stats.columns) == list(res.massive.layer_stats.columns)


def test_figures_show_roles_tokens_and_log_scales(tiny_model):
    from interp.figures import sinks as figs

    seqs = [_paused(tiny_model, seed=s) for s in range(2)]
    res = sinks.registers(tiny_model, seqs, verbose=False)
    fig = figs.attention_received(res)
    names = [t.name for t in fig.data]
    assert names == ["regular", "pause", "bos", "uniform attention"]  # bos drawn on top
    assert fig.layout.yaxis.type == "log"
    assert all("token" in h for h in fig.data[0].hovertext)
    norms = figs.norms_by_position(res, layer=1)
    assert norms.layout.yaxis.type == norms.layout.yaxis2.type == "log"
    heads = figs.sink_heads(res)
    assert heads.data[0].z.shape == (2, 4)  # layers x query heads
    with pytest.raises(InterpError, match="roles present"):
        figs.sink_heads(res, role="answer")


def test_every_sink_result_round_trips_and_reads_earlier_releases(tiny_model, tmp_path):
    toks = torch.randint(0, 60, (2, 10), generator=torch.Generator().manual_seed(0))
    reg = sinks.registers(tiny_model, toks, verbose=False)
    ab = sinks.ablate_massive(tiny_model, toks, reg.massive, verbose=False)
    ev = sinks.cache_eviction(tiny_model, torch.arange(20), eviction_window=4, sinks=(0, 1), verbose=False)
    for res in (reg, ab, ev):
        res.save(tmp_path / "now")
    files = {p.name for p in (tmp_path / "now").iterdir()}
    assert files == {"registers.csv", "registers_heads.csv", "registers.json", "massive.csv",
                     "massive_layers.csv", "massive.json", "ablations.csv", "eviction.csv",
                     "eviction_positions.csv", "eviction.json"}
    for res in (reg, ab, ev):
        back = type(res).load(tmp_path / "now")
        for name in ("table", "heads", "layer_stats", "per_position"):
            if hasattr(res, name):  # (token_str holds ids without a tokenizer: read as ints)
                pd.testing.assert_frame_equal(
                    getattr(back, name).drop(columns="token_str", errors="ignore"),
                    getattr(res, name).drop(columns="token_str", errors="ignore"),
                    check_dtype=False)
    back = sinks.RegisterResult.load(tmp_path / "now")
    assert back.settings == json.loads(json.dumps(reg.settings)) and back.massive.ratio == 100.0
    assert sinks.EvictionResult.load(tmp_path / "now").settings["eviction_window"] == 4

    # An earlier release: `window` for the sequence (and for the eviction window), `target`
    # for the ablated component, no `uniform` column (it assumed full causal attention, as
    # this model has), and neither the per-head table nor the settings files.
    old = tmp_path / "old"
    old.mkdir()
    for name in files - {"registers_heads.csv", "registers.json", "eviction.json"}:
        (old / name).write_bytes((tmp_path / "now" / name).read_bytes())
    for name, renamed in (("registers.csv", {"sequence": "window"}),
                          ("massive.csv", {"sequence": "window"}),
                          ("massive_layers.csv", {"sequence": "window"}),
                          ("ablations.csv", {"component": "target"}),
                          ("eviction.csv", {"eviction_window": "window"})):
        pd.read_csv(old / name).rename(columns=renamed).drop(
            columns="uniform", errors="ignore").to_csv(old / name, index=False)
    back = sinks.RegisterResult.load(old)
    assert "sequence" in back.table and "sequence" in back.massive.layer_stats
    np.testing.assert_allclose(back.table.uniform, reg.table.uniform, rtol=1e-12)
    assert back.heads.empty and back.settings == {}
    assert sinks.AblationResult.load(old).delta("sink_kv", "zero") == ab.delta("sink_kv", "zero")
    back_ev = sinks.EvictionResult.load(old)
    assert back_ev.table["eviction_window"].tolist() == [4] * 3 and back_ev.settings == {}
    (old / "massive.json").unlink()
    with pytest.raises(InterpError, match="no massive.json(.|\n)*interp registers"):
        sinks.RegisterResult.load(old)
