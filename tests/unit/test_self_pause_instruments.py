"""The instruments at self-requested pauses (interp.controls.self_pause_instruments), each
against an independent computation on a float64 model whose examples take 0 to 5 pauses
(ragged layouts): the sequences against token-by-token generation, attention received
against the model's own pattern read per sequence, the gradient of the answer's loss
against plain autograd, the probes' rows against per-sequence residuals and the partial
result against its formula, and patching against the identities it must satisfy."""

from __future__ import annotations

import pytest
import torch

from interp.controls import patch_inserted_kv, self_pause_instruments, self_pause_sequences
from interp.controls._learned import _kinds, _pause_rows, _residuals
from interp.core import hooks
from interp.training.learned_pauses import (
    LearnedPauseConfig,
    LearnedPauses,
    _build,
    generate_with_pauses,
    held_out_batch,
    readout,
    urgency_input,
)
from interp.training.tasks import TaskBatch
from interp.training.tasks.parity import Parity

LAM = 0.1
VOCAB = Parity(5).vocab  # the ids of 0, 1, = and the filler


@pytest.fixture(scope="module")
def run() -> LearnedPauses:
    """An untrained float64 model whose greedy decision takes between 0 and 5 pauses on the
    held-out examples: the first seed and bias of the ``<pause>`` logit (searched, so the
    fixture does not depend on one initialisation) where the stops take at least 4 values and
    one of the first 12 examples takes two or more."""
    for seed in range(4):
        cfg = LearnedPauseConfig(n_min=2, n_max=5, d_model=16, n_heads=2, steps=1, seed=seed,
                                 dtype="float64")
        model, urgency = _build(cfg)
        found = LearnedPauses(cfg, model, urgency, history=None)
        for bias in torch.linspace(-1.0, 3.0, 41).tolist():
            with torch.no_grad():
                model.unembed.b_U[found.pause_id] = bias
            stop = readout(found, LAM, n_examples=64).stop
            if len(set(stop.tolist())) >= 4 and bool((stop[:12] >= 2).any()):
                return found
    raise AssertionError("no seed and bias give ragged pause counts")


@pytest.fixture(scope="module")
def inst(run):
    return self_pause_instruments(run, LAM, n_examples=64, n_attention=24, n_gradient=12)


def test_the_layouts_are_ragged_and_the_sequences_are_the_generations(run):
    seqs, r, pb = self_pause_sequences(run, LAM, n_examples=64)
    assert len(set(r.stop.tolist())) >= 4  # the test below covers ragged layouts
    for b in range(16):
        bits = "".join(w for w in VOCAB.decode(pb.tokens[b, 1:int(pb.eq[b])]) if w in "01")
        gen = generate_with_pauses(run, bits, LAM, record=False)
        assert gen.n_pauses == seqs[b].roles.count("pause")
        # the same tokens up to the answer, which the sequence takes as the correct one
        assert torch.equal(gen.tokens[:-1], seqs[b].tokens[:-1])
        assert int(seqs[b].tokens[-1]) == int(pb.answer[b])
        assert seqs[b].loss_mask.nonzero()[:, 0].tolist() == [len(seqs[b]) - 2]


def _patterns(run, seq) -> list[torch.Tensor]:
    """The model's own attention pattern ``[head, q, k]`` per layer, one plain forward."""
    seen = {}
    n = int(run.model.cfg.n_layers)

    def keep(layer):
        def fn(t, hook):
            seen[layer] = t[0].detach()
            return t
        return fn

    with torch.no_grad(), urgency_input(run.model, run.urgency, LAM), run.model.hooks(
            fwd_hooks=[(hooks.pattern(layer), keep(layer)) for layer in range(n)]):
        run.model(seq.tokens[None])
    return [seen[layer] for layer in range(n)]


def test_attention_at_the_pauses_is_the_models_own_pattern(run, inst):
    seqs, r, _ = self_pause_sequences(run, LAM, n_examples=64)
    want: dict[tuple[int, str], list[float]] = {}
    mass: dict[int, list[float]] = {}
    for seq in seqs[:24]:
        kinds = _kinds(seq, VOCAB)
        for layer, pat in enumerate(_patterns(run, seq)):
            for p, kind in enumerate(kinds[:-1]):
                # mean over heads and the later queries
                want.setdefault((layer, kind), []).append(float(pat[:, p + 1:, p].mean()))
            k = seq.roles.count("pause")
            if k > 1:
                q = len(seq) - 2  # the last pause: its mass on the k - 1 pauses before it
                mass.setdefault(layer, []).append(float(pat[:, q, q - k + 1:q].sum(-1).mean()))
    t = inst.attention.set_index(["layer", "kind"])
    for (layer, kind), values in want.items():
        assert t.loc[(layer, kind), "attn_received"] == pytest.approx(
            sum(values) / len(values), rel=1e-10), (layer, kind)
        assert t.loc[(layer, kind), "n"] == len(values)
    # the answer position's mass on the pauses, over all 64 examples (24 above)
    assert {(layer, "pause") for layer in range(2)} <= set(want)
    for layer in range(2):
        got = t.loc[(layer, "pauses, from the answer position")]
        assert got["n"] == int((r.stop > 1).sum())
    small = self_pause_instruments(run, LAM, n_examples=24, n_attention=4, n_gradient=1)
    for layer in range(2):
        row = small.attention.set_index(["layer", "kind"]).loc[
            (layer, "pauses, from the answer position")]
        assert row["attn_received"] == pytest.approx(sum(mass[layer]) / len(mass[layer]),
                                                     rel=1e-10)
    rand = inst.attention[inst.attention["kind"] == "random position"]
    pauses = sum(s.roles.count("pause") for s in seqs[:24])
    assert 0 < rand["n"].iloc[0] <= pauses


def test_the_gradient_at_the_pauses_is_plain_autograd_of_the_answers_loss(run, inst):
    seqs, _, _ = self_pause_sequences(run, LAM, n_examples=64)
    n_layers = int(run.model.cfg.n_layers)
    want: dict[tuple[str, int, str], list[float]] = {}
    seen: dict[tuple[str, int], torch.Tensor] = {}

    def keep(key):
        def fn(x, hook):
            seen[key] = x
            return x
        return fn

    fwd = [(site(layer), keep((name, layer))) for layer in range(n_layers)
           for name, site in (("k", hooks.k), ("v", hooks.v))]
    for seq in seqs[:12]:
        with urgency_input(run.model, run.urgency, LAM), run.model.hooks(fwd_hooks=fwd):
            logits = run.model(seq.tokens[None])
        t = len(seq) - 2
        loss = torch.nn.functional.cross_entropy(logits[0, t][None], seq.tokens[t + 1][None])
        keys = list(seen)
        grads = torch.autograd.grad(loss, [seen[k] for k in keys])
        for (name, layer), g in zip(keys, grads, strict=True):
            for p, kind in enumerate(_kinds(seq, VOCAB)[:-1]):
                # mean over heads of the gradient norm at position p
                want.setdefault((name, layer, kind), []).append(float(g[0, p].norm(dim=-1).mean()))
    g = inst.gradients.set_index(["site", "layer", "kind"])
    assert ("k", 1, "pause") in want
    for key, values in want.items():
        assert g.loc[key, "total_norm"] == pytest.approx(sum(values) / len(values), rel=1e-6), key
    assert (g["total_norm_median"] > 0).all()
    # everything a position before the answer position receives is future gradient
    before = g.drop(index="answer position", level="kind")["future_share"]
    assert before.to_numpy() == pytest.approx(1.0, abs=1e-12)


def test_probe_rows_are_the_pauses_residuals_and_partial_results(run):
    r = readout(run, LAM, n_examples=64)
    pb = held_out_batch(run.config, 64)
    seqs, _, _ = self_pause_sequences(run, LAM, n_examples=64)
    ex, pos, partial = _pause_rows(run, pb, r)
    assert len(ex) == int(r.stop.sum())
    batched = _residuals(run, LAM, pb.tokens)
    for i in range(len(ex)):
        b, p = int(ex[i]), int(pos[i])
        own = _residuals(run, LAM, seqs[b].tokens[None])  # the generation alone
        for layer in range(len(batched)):
            torch.testing.assert_close(batched[layer][b, p], own[layer][0, p], rtol=0, atol=1e-12)
        j, n = p - int(pb.eq[b]), int(pb.n[b])
        c = int(pb.tokens[b, 1:int(pb.eq[b])].eq(VOCAB["1"]).sum())
        assert int(partial[i]) == (int(c >= j + 1) if j < n else c % 2 if j == n else -1)


def test_patching_identities_and_the_table(run, inst):
    pb = held_out_batch(run.config, 64)
    n = 3
    idx = (pb.n == n).nonzero()[:, 0]
    tokens, eq = pb.tokens[idx], int(pb.eq[idx[0]])
    roles = ("bos",) + ("prompt",) * eq + ("pause",) * (tokens.shape[1] - eq - 1)
    batch = TaskBatch(tokens, [roles] * len(idx), torch.zeros_like(tokens, dtype=torch.bool),
                      torch.zeros_like(tokens))
    donor = torch.roll(torch.arange(len(idx)), -1).tolist()
    layers = list(range(int(run.model.cfg.n_layers)))
    with torch.no_grad(), urgency_input(run.model, run.urgency, LAM):
        clean = run.model(tokens)
        # positive control: every bit's K/V at every layer from the donor makes the rest of the
        # sequence the donor's computation exactly
        bits = patch_inserted_kv(run.model, batch, layers, donor=donor, positions=range(eq - n, eq))
        torch.testing.assert_close(bits[:, eq:], clean[donor, eq:], rtol=0, atol=1e-10)
        # the equal-norm null with the example as its own donor moves nothing
        same = patch_inserted_kv(run.model, batch, layers, donor=list(range(len(idx))),
                                 random_seed=0)
        torch.testing.assert_close(same, clean, rtol=0, atol=0)
        moved = patch_inserted_kv(run.model, batch, layers, donor=donor, random_seed=0)
        assert not torch.allclose(moved[:, eq + 1:], clean[:, eq + 1:])
        # the prompt is never touched
        torch.testing.assert_close(moved[:, :eq + 1], clean[:, :eq + 1], rtol=0, atol=0)
    t = inst.patching
    assert set(t["patch"]) == {"pauses from donor", "pauses, equal-norm random",
                               "bits from donor"}
    assert t.groupby(["n_bits", "patch"]).size().eq(3).all()  # all layers, layer 0, layer 1


def test_the_probe_table_has_its_null_and_positive_control(inst):
    p = inst.probes
    assert {"answer", "answer, labels shuffled", "partial"} <= set(p[p["where"] == "pause"]["target"])
    assert set(p[p["where"] == "answer position"]["target"]) == {"answer"}
    assert p["accuracy"].between(0, 1).all() and p["layer"].nunique() == 3


def test_the_instruments_save_and_load(inst, tmp_path):
    from interp.controls import load_self_pause_instruments
    from interp.figures._export import export_figures

    inst.save(tmp_path)
    back = load_self_pause_instruments(tmp_path)
    assert back.settings["lam"] == LAM
    assert len(back.probes) == len(inst.probes)
    export_figures([back], tmp_path, formats=["html"])
    for name in ("self_pause_patching", "self_pause_probes", "self_pause_attention"):
        assert (tmp_path / f"{name}.html").is_file()


def test_the_probe_reads_a_linear_label_and_not_a_random_one():
    """The ridge probe (split by example, three rows each): a label that is the sign of one
    feature is read (positive control), an independent one is not (null)."""
    from interp.controls._learned import _probe

    g = torch.Generator().manual_seed(0)
    example = torch.arange(200).repeat_interleave(3)  # three rows per example
    X = torch.randn(600, 8, generator=g, dtype=torch.float64)
    acc, base = _probe(X, (X[:, 0] > 0).long(), example, 200)
    assert acc > 0.95 and base < 0.7
    acc, base = _probe(X, torch.randint(0, 2, (600,), generator=g), example, 200)
    assert abs(acc - 0.5) < 0.15
