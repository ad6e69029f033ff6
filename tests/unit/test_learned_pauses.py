"""Learned pause requests: the halting loss against a brute-force enumeration of stop points,
the cost moving the stop distribution, generation with self-requested pauses (cap, recorded
positions, agreement with the one-forward readout), and the named errors for bad input."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from interp.errors import InterpError
from interp.recording import generate
from interp.training.learned_pauses import (
    VOCAB,
    LearnedPauseConfig,
    LearnedPauses,
    _build,
    generate_with_pauses,
    halting_loss,
    held_out_batch,
    matched_stops,
    pause_batch,
    readout,
    threshold_loss,
    train_learned_pauses,
    training_step_loss,
)
from interp.training.tasks.parity import Parity

TINY = dict(n_min=2, n_max=5, d_model=16, n_heads=2, batch_size=32, eval_size=64, warmup=5,
            dtype="float64")


def test_halting_loss_equals_brute_force_over_stop_points():
    torch.manual_seed(0)
    n_b, n_k = 3, 5
    log_pause = torch.rand(n_b, n_k, dtype=torch.float64).clamp(0.05, 0.95).log()
    ce = torch.rand(n_b, n_k, dtype=torch.float64) * 2
    lam = torch.tensor([0.0, 0.3, 1.5], dtype=torch.float64)
    loss, p_stop = halting_loss(log_pause, ce, lam)
    pi = log_pause.exp().tolist()
    for b in range(n_b):
        # every sequence of K independent decisions (pause with probability π_j at step j);
        # the model stops at the first "answer", or at the cap K when it paused every time
        want, probs = 0.0, [0.0] * n_k
        for decisions in itertools.product([True, False], repeat=n_k - 1):
            p = math.prod(pi[b][j] if d else 1 - pi[b][j] for j, d in enumerate(decisions))
            k = decisions.index(False) if False in decisions else n_k - 1
            probs[k] += p
            want += p * (float(ce[b, k]) + float(lam[b]) * k)
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        assert p_stop[b].tolist() == pytest.approx(probs, abs=1e-12)
        assert float(loss[b]) == pytest.approx(want, abs=1e-12)


def test_aligned_layout_puts_equals_and_every_pause_at_one_position():
    cfg = LearnedPauseConfig(**TINY, steps=1)
    pb = pause_batch(cfg, 64, seed=3)
    assert (pb.eq == cfg.n_max + 1).all()  # "=" after <bos> and n_max bit slots
    for b in range(64):
        words = VOCAB.decode(pb.tokens[b, 1:int(pb.eq[b])])
        n = int(pb.n[b])
        assert words[:cfg.n_max - n] == ["."] * (cfg.n_max - n)
        bits = words[cfg.n_max - n:]
        assert set(bits) <= {"0", "1"} and len(bits) == n
        assert int(pb.ones[b]) == bits.count("1")
        assert VOCAB.decode([int(pb.answer[b])]) == [str(bits.count("1") % 2)]
    unaligned = pause_batch(LearnedPauseConfig(**TINY, steps=1, align=False), 64, seed=3)
    assert (unaligned.eq == unaligned.n + 1).all()


def test_threshold_loss_equals_the_two_way_cross_entropy_written_out():
    torch.manual_seed(1)
    read = torch.randn(3, 4, len(VOCAB), dtype=torch.float64)
    ones = torch.tensor([0, 2, 5])
    f, t = VOCAB["F"], VOCAB["T"]
    want = 0.0
    for b in range(3):
        for k in range(4):
            lf, lt = float(read[b, k, f]), float(read[b, k, t])
            mine = lt if int(ones[b]) >= k + 1 else lf  # T when c >= k + 1
            want -= mine - math.log(math.exp(lf) + math.exp(lt))
    assert float(threshold_loss(read, ones)) == pytest.approx(want / 12, abs=1e-12)


def _expected_pauses(cfg: LearnedPauseConfig, steps: int) -> float:
    """Train ``steps`` steps and return the expected pause count on training batch 1000."""
    run = train_learned_pauses(LearnedPauseConfig(**{**TINY, **cfg.to_dict(), "steps": steps}),
                               verbose=False)
    with torch.no_grad():
        _, parts = training_step_loss(run.model, run.urgency, run.config, 1000)
    return parts["mean_pauses"]


@pytest.mark.parametrize("answer_after_n", [False, True])
def test_a_large_pause_cost_moves_the_stop_distribution_towards_answering_at_once(
        answer_after_n):
    base = LearnedPauseConfig(**{**TINY, "batch_size": 16}, cot_mixture=0.0, ramp_start=0.0,
                              ramp_end=0.0, lr=1e-2, answer_after_n=answer_after_n)
    free = _expected_pauses(LearnedPauseConfig(**{**base.to_dict(), "lam_min": 0.0,
                                                  "lam_max": 0.0}), 25)
    costly = _expected_pauses(LearnedPauseConfig(**{**base.to_dict(), "lam_min": 2.0,
                                                    "lam_max": 2.0}), 25)
    # untrained, the expected count is about π/(1−π) with π ≈ 1/7 (0.16)
    assert costly < 0.02
    assert free > 5 * costly


def _always_pausing_run(cfg: LearnedPauseConfig) -> LearnedPauses:
    """An untrained model whose ``<pause>`` logit always wins (bias of the unembedding)."""
    model, urgency = _build(cfg)
    with torch.no_grad():
        model.unembed.b_U[Parity(cfg.n_max).vocab.pause_id] += 100.0
    return LearnedPauses(cfg, model, urgency, history=None)


def test_generation_respects_the_cap_and_records_the_pause_positions():
    cfg = LearnedPauseConfig(**TINY, steps=1)
    run = _always_pausing_run(cfg)
    assert run.pause_id == 2
    gen = generate_with_pauses(run, "1011", lam=0.1, max_pauses=3, record=True)
    prompt = 7  # <bos> . 1 0 1 1 = (right-aligned in n_max = 5)
    assert gen.n_pauses == 3
    assert list(gen.roles[prompt:]) == ["pause"] * 3 + ["generated"]
    assert gen.tokens[prompt:prompt + 3].tolist() == [2, 2, 2]
    assert int(gen.tokens[-1]) != 2  # the cap forced an answer
    rec = gen.recording.index
    assert sorted(rec.loc[rec["role"] == "pause", "position"].tolist()) == [7, 8, 9]
    # the readout of the same model stops at the cap too
    r = readout(run, 0.1, n_examples=8)
    assert r.stop.tolist() == [cfg.max_pauses] * 8


def test_greedy_generation_agrees_with_the_one_forward_readout():
    run = train_learned_pauses(LearnedPauseConfig(**TINY, steps=30, lam_max=0.0), verbose=False)
    r = readout(run, 0.0, n_examples=16)
    pb = held_out_batch(run.config, 16)
    for b in range(16):
        bits = "".join(Parity(5).vocab.decode(pb.tokens[b, 1:int(pb.eq[b])])).strip(".")
        gen = generate_with_pauses(run, bits, 0.0, record=False)
        assert gen.n_pauses == int(r.stop[b])
        right = int(gen.tokens[-1]) == int(pb.answer[b])
        assert right == bool(r.correct[b, r.stop[b]])


def test_matched_budgets_have_the_learned_mean():
    run = train_learned_pauses(LearnedPauseConfig(**TINY, steps=20), verbose=False)
    r = readout(run, 0.1, n_examples=64)
    for policy, budget in [("fixed", 1.25), ("random", 1.25), ("fixed", 0.0)]:
        stop = matched_stops(r, policy, budget)
        assert 0 <= int(stop.min()) and int(stop.max()) <= run.config.max_pauses
        if policy == "fixed":
            assert float(stop.float().mean()) == pytest.approx(budget, abs=1 / 64)


@pytest.mark.parametrize("options, match", [
    (dict(lam_max=-0.1), "give a cost per pause >= 0"),
    (dict(max_pauses=0), "give max_pauses >= 1"),
    (dict(lam_min=0.2, lam_max=0.1), "lam_min <= lam_max"),
])
def test_bad_configs_are_named(options, match):
    with pytest.raises(InterpError, match=match):
        LearnedPauseConfig(**{**TINY, **options})


def test_urgency_outside_the_trained_range_and_a_zero_cap_are_refused():
    cfg = LearnedPauseConfig(**TINY, steps=1, lam_max=0.2)
    run = _always_pausing_run(cfg)
    with pytest.raises(InterpError, match=r"give λ in \[0.0, 0.2\]"):
        readout(run, 0.5)
    with pytest.raises(InterpError, match="give λ >= 0"):
        generate_with_pauses(run, "101", lam=-0.1)
    with pytest.raises(InterpError, match="give max_pauses >= 1"):
        generate_with_pauses(run, "101", lam=0.1, max_pauses=0)


def test_generation_with_pauses_needs_a_pause_token():
    from interp.models import TinyConfig, load_model

    model = load_model(TinyConfig(d_vocab=8, n_ctx=16))
    with pytest.raises(InterpError, match="add_pause_token"):
        generate(model, [1, 2, 3], max_new_tokens=1, max_pauses=2)


def test_cli_trains_measures_and_reuses_the_run(tmp_path, capsys):
    from interp.cli import main

    argv = ["toy", "learned-pauses", "--n-min", "2", "--n-max", "4", "--steps", "3",
            "--d-model", "16", "--eval-size", "32", "--lams", "0,0.1", "--formats", "html",
            "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 0
    for name in ("frontier.csv", "difficulty.csv", "patching.csv", "self_pause_attention.csv",
                 "self_pause_gradients.csv", "self_pause_probes.csv", "pause_frontier.html",
                 "pause_difficulty.html", "self_pause_patching.html", "self_pause_probes.html",
                 "self_pause_attention.html", "checkpoint.safetensors"):
        assert (tmp_path / name).is_file(), name
    stamp = (tmp_path / "checkpoint.safetensors").stat().st_mtime_ns
    assert main(argv) == 0  # a finished run in --out is loaded, not retrained
    assert (tmp_path / "checkpoint.safetensors").stat().st_mtime_ns == stamp
    assert main(argv[:-2] + ["--lams", "0,0.9", "--out", str(tmp_path)]) == 2
    assert "outside the trained range" in capsys.readouterr().err


def test_patching_self_requested_pauses_at_layer_0_or_before_any_pause_changes_nothing():
    from interp.controls import self_pause_patching

    run = _always_pausing_run(LearnedPauseConfig(**TINY, steps=1))
    t = self_pause_patching(run, 0.1, n_examples=48)
    assert set(t["layers"]) == {"all", "0", "1"} and (t["mean_pauses"] == 5).all()
    assert set(t["patch"]) == {"pauses from donor", "pauses, equal-norm random",
                               "bits from donor"}
    # at layer 0 a pause's K/V depend only on its token, position and the urgency input
    layer0 = t[(t["layers"] == "0") & (t["patch"] == "pauses from donor")]
    assert (layer0["patched_accuracy"] == layer0["clean_accuracy"]).all()
    # a model that answers at once reads no pause: no patch of the pauses can move it
    with torch.no_grad():
        run.model.unembed.b_U[Parity(5).vocab.pause_id] -= 200.0
    t = self_pause_patching(run, 0.1, n_examples=48)
    assert (t["mean_pauses"] == 0).all()
    paused = t[t["patch"] != "bits from donor"]
    assert (paused["patched_accuracy"] == paused["clean_accuracy"]).all()


def test_a_run_stopped_part_way_resumes_to_the_uninterrupted_run(tmp_path):
    """Stopped after step 7 with a checkpoint every 3 steps (the last at step 6, as a kill
    leaves it), then continued: the parameters, AdamW's moments and the history equal those
    of one uninterrupted run bit for bit (float64)."""
    from safetensors.torch import load_file

    from interp.training.learned_pauses import load_learned_pauses

    cfg = LearnedPauseConfig(**TINY, steps=12, ramp_start=0.2, ramp_end=0.6)
    whole = train_learned_pauses(cfg, tmp_path / "whole", checkpoint_every=3, verbose=False)
    part = train_learned_pauses(cfg, tmp_path / "part", checkpoint_every=3, stop_after=7,
                                verbose=False)
    assert not part.metrics and not (tmp_path / "part" / "metrics.json").exists()
    assert json.loads((tmp_path / "part" / "state.json").read_text())["step"] == 6
    assert load_learned_pauses(tmp_path / "part").history.empty  # a stopped run loads too
    resumed = train_learned_pauses(cfg, tmp_path / "part", checkpoint_every=3, verbose=False)
    a = load_file(str(tmp_path / "whole" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint.safetensors"))
    assert sorted(a) == sorted(b) and any(k.startswith("exp_avg_sq.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    cols = [c for c in whole.history.columns if c != "elapsed_s"]
    assert whole.history[cols].equals(resumed.history[cols])
    assert resumed.metrics["lam=0.0"] == whole.metrics["lam=0.0"]
    loaded = load_learned_pauses(tmp_path / "part")
    for (k, p), q in zip(loaded.model.named_parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(p, q), k
    assert torch.equal(loaded.urgency.u, whole.urgency.u)
    # another configuration in the same folder is refused by name
    with pytest.raises(InterpError, match="different configuration .*lr"):
        train_learned_pauses(LearnedPauseConfig(**{**cfg.to_dict(), "lr": 1e-3}),
                             tmp_path / "part", verbose=False)
    with pytest.raises(InterpError, match="checkpoint_every >= 1"):
        train_learned_pauses(cfg, None, checkpoint_every=0)


def test_cost_ramp_rises_from_ramp_start_to_ramp_end_and_steps_when_they_meet():
    from interp.training.learned_pauses import LearnedPauseConfig, cost_ramp

    cfg = LearnedPauseConfig(steps=100, ramp_start=0.2, ramp_end=0.6)
    got = [cost_ramp(cfg, s) for s in range(100)]
    assert got[:20] == [0.0] * 20 and got[59:] == [1.0] * 41
    assert got[39] == pytest.approx(0.5) and all(a <= b for a, b in zip(got[:-1], got[1:], strict=True))
    step = LearnedPauseConfig(steps=100, ramp_start=0.5, ramp_end=0.5)
    assert [cost_ramp(step, s) for s in (0, 48, 49, 99)] == [0.0, 0.0, 1.0, 1.0]
