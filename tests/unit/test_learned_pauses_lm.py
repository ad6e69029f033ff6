"""Learned pause requests on an LM (interp.training.learned_pauses_lm) on tiny native models:
the site loss against brute-force enumeration of stop points, self-requested pauses in
generation against the teacher-forced readout, resume, and the named errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import PAUSE_TINY as TINY
from conftest import random_windows
from safetensors.torch import load_file

import interp
from interp.errors import InterpError
from interp.training.learned_pauses_lm import (
    base_entropy,
    learned_pause_lm_study,
    lm_pause_frontier,
    lm_readout,
    site_batch,
    site_loss,
)
from interp.training.pause import PauseAdapter, PauseTrainConfig, pause_train

K = 3


def _config(**kw) -> PauseTrainConfig:
    base = dict(base=dataclasses.asdict(TINY), n_tokens=12, steps=20, batch_size=4, rank=4,
                eval_every=10, eval_windows=2, warmup=1, lr=2e-2, learned=True, lam=0.02,
                max_pauses=K, sites=3, explore=1.0)
    base.update(kw)
    return PauseTrainConfig(**base)


def _train(out, cfg, **kw):
    return pause_train(cfg, out, train_windows=random_windows(200, length=12),
                       eval_windows=random_windows(2, length=12, seed=1), verbose=False, **kw)


def test_site_loss_equals_brute_force_over_stop_points():
    """The batched loss (padded rows of different lengths, all K + 1 readings from one pass)
    against one separate forward pass per (site, pause count): π_k and CE_k read at the last
    position of ``x_0 .. x_t <pause>×k``, the stop distribution enumerated by hand."""
    model = interp.load_model(TINY, dtype=torch.float64)
    adapter = PauseAdapter(model, rank=2, alpha=4.0, targets=("q", "v", "out"), seed=0,
                           pause_logit=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in adapter.lora.items():
            if name.endswith("_B"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        # a pause logit that varies between sites and is large enough (the base's frozen
        # unembedding bias raised) that every stop point carries weight
        adapter.pause_out.copy_(0.5 * torch.randn(adapter.pause_out.shape, generator=g,
                                                  dtype=adapter.pause_out.dtype))
        interp.core.model.unembedding(model).bias[adapter.pause_id] = 6.0
    adapter.sync_pause_row()
    adapter.attach()
    pid, lam = adapter.pause_id, 0.07
    windows = random_windows(3, length=9, seed=4)
    sites = [[0, 4], [7], [2, 3, 5]]
    batch = site_batch(windows, sites, pid, K)
    loss, parts = site_loss(model, batch, pid, lam)

    halts, ces, lm = [], [], []
    with torch.no_grad():
        for seq, ts in zip(windows, sites, strict=True):
            ids = seq.tokens
            for t in ts:
                pi, ce = [], []
                for k in range(K + 1):
                    x = torch.cat([ids[:t + 1], torch.full((k,), pid)])
                    logits = model(x[None])[0, -1]
                    pi.append(float(logits.softmax(-1)[pid]))
                    rest = torch.cat([logits[:pid], logits[pid + 1:]])
                    ce.append(float(-rest.log_softmax(-1)[int(ids[t + 1])]))
                reach, halt = 1.0, 0.0
                for k in range(K + 1):
                    p_stop = reach * (1 - pi[k]) if k < K else reach
                    halt += p_stop * (ce[k] + lam * k)
                    reach *= pi[k]
                halts.append(halt)
                ces.append(sum(ce) / len(ce))
                # the prefix's own next-token loss, <pause> excluded
                logits = model(ids[:t + 1][None])[0]
                rest = torch.cat([logits[:, :pid], logits[:, pid + 1:]], -1).log_softmax(-1)
                lm += [-float(rest[i, int(ids[i + 1])]) for i in range(t)]
    expect = sum(halts) / len(halts) + sum(ces) / len(ces) + sum(lm) / len(lm)
    assert abs(float(loss.detach()) - expect) < 1e-9
    assert abs(parts["halt_loss"] - sum(halts) / len(halts)) < 1e-9
    # not trivial: the model neither always stops at once nor always pauses to the cap
    assert 0.3 < parts["mean_pauses"] < K - 0.3


def test_self_requested_pauses_in_generation_agree_with_the_readout(tmp_path):
    """A trained adapter loaded back by interp.load_model: at every held-out site,
    interp.generate with max_pauses takes exactly the readout's number of pauses and then
    the readout's next token."""
    _train(tmp_path / "run", _config())
    model = interp.load_model(tmp_path / "run")
    windows = random_windows(3, length=12, seed=2)
    r = lm_readout(model, windows, K)
    counts = torch.bincount(r.stop, minlength=K + 1)
    assert (counts > 0).sum() >= 2, counts  # the decision varies between sites
    for i, (w, t) in enumerate(zip(r.window.tolist(), r.position.tolist(), strict=True)):
        prompt = interp.make_sequence(windows[w].tokens[:t + 1])
        gen = interp.generate(model, prompt, max_new_tokens=1, max_pauses=K, record=False)
        assert gen.n_pauses == int(r.stop[i]), (w, t)
        assert int(gen.tokens[-1]) == int(r.prediction[i, r.stop[i]]), (w, t)
    # the table's loss is the readout's at the chosen counts
    frontier, _ = lm_pause_frontier([r], budgets=[1.0])
    learned = frontier[frontier.policy == "learned"].iloc[0]
    assert learned.mean_pauses == pytest.approx(float(r.stop.float().mean()))
    chosen = r.loss[torch.arange(len(r.stop)), r.stop]
    assert learned.loss == pytest.approx(float(chosen.mean()))
    one = frontier[(frontier.policy == "fixed") & ~frontier.matched].iloc[0]
    assert one.mean_pauses == 1.0 and one.loss == pytest.approx(float(r.loss[:, 1].mean()))


def test_learned_pause_training_resumes_exactly(tmp_path):
    cfg = _config(steps=6, eval_every=3)
    _train(tmp_path / "straight", cfg)
    _train(tmp_path / "resumed", cfg, stop_after=3)
    _train(tmp_path / "resumed", cfg)
    a = load_file(str(tmp_path / "straight" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter.safetensors"))
    assert a.keys() == b.keys() and "pause_out" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_base_entropy_is_the_plain_models():
    model = interp.load_model(TINY, dtype=torch.float64)
    windows = random_windows(2, length=7, seed=3)
    ent = base_entropy(model, windows)
    with torch.no_grad():
        logp = model(windows[1].tokens[None])[0, 2].log_softmax(-1)
    assert len(ent) == 12
    assert float(ent[6 + 2]) == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-10)
    interp.add_pause_token(model)
    with pytest.raises(InterpError, match="needs the base model"):
        base_entropy(model, windows)


@pytest.mark.parametrize(("kw", "match"), [
    (dict(lam=-0.1), "pause cost lam=-0.1 is negative"),
    (dict(max_pauses=0), "a cap of 0 pauses leaves the model nothing to decide"),
    (dict(sites=0), "sites must be >= 1"),
    (dict(ramp_start=0.8, ramp_end=0.5), "ramp_start <= ramp_end"),
])
def test_bad_learned_config_is_refused(kw, match):
    with pytest.raises(InterpError, match=match):
        _config(**kw)


def test_bad_readout_inputs_are_refused(tmp_path):
    plain = interp.load_model(TINY)
    windows = random_windows(2, length=8)
    with pytest.raises(InterpError, match="no <pause> token"):
        lm_readout(plain, windows, K)
    pid = interp.add_pause_token(plain)
    with pytest.raises(InterpError, match="a cap of 0 pauses"):
        lm_readout(plain, windows, 0)
    with pytest.raises(InterpError, match="site 7 is outside window 0"):
        lm_readout(plain, windows, K, sites=[[7], [1]])
    paused = interp.make_sequence(torch.tensor([3, pid, 4, 5]))
    with pytest.raises(InterpError, match="already holds <pause> tokens"):
        lm_readout(plain, [paused], K)
    with pytest.raises(InterpError, match=r"needs PauseTrainConfig\(learned=True\)"):
        learned_pause_lm_study(_config(learned=False), [0.0], tmp_path)
    with pytest.raises(InterpError, match="pause cost lam=-1.0 is negative"):
        learned_pause_lm_study(_config(), [0.0, -1.0], tmp_path)


def test_pause_logit_is_trained_through_a_tied_unembedding(tmp_path):
    """On a model that ties its embeddings (SmolLM2 does), the <pause> logit's row is the
    pause row: the adapter's hook changes no logit but gives that row the gradient of a loss
    on the pause probability at a position whose input holds no pause."""
    from conftest import word_tokenizer_at
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
                      attn_implementation="eager")
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).eval().save_pretrained(tmp_path)
    word_tokenizer_at(tmp_path)
    model = interp.load_model(tmp_path)
    x = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        plain = model(x)
    adapter = PauseAdapter(model, rank=2, alpha=4.0, targets=("q",), pause_logit=True).attach()
    assert adapter.tied and "pause_out" not in adapter.tensors()
    logits = model(x)
    torch.testing.assert_close(logits[..., :61], plain)
    logits.log_softmax(-1)[0, -1, adapter.pause_id].backward()
    assert adapter.pause_row.grad is not None and float(adapter.pause_row.grad.norm()) > 1e-3
