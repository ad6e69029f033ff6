"""Positive controls: the pause K/V patch against activation patching and against the clean
forward, the lookahead intervention's arithmetic, and the named errors for bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from interp.controls import (
    lookahead_control,
    patch_inserted_kv,
    pause_control,
    pause_instruments,
)
from interp.controls._common import residuals
from interp.controls._lookahead import (
    _patch_slopes,
    encoding_direction,
    precache_probe,
)
from interp.errors import InterpError
from interp.patching import activation_patch
from interp.training.tasks import get_task
from interp.training.toy import TrainConfig, build_model, train_toy

TINY = dict(d_model=32, n_heads=2, batch_size=32, eval_size=64, eval_every=50, warmup=5)


def _model(task, n_ctx=None, dtype="float64"):
    cfg = TrainConfig(task=task.name, positional="standard", dtype=dtype, **TINY)
    n = n_ctx or int(task.batch(1, 0).tokens.shape[1])
    return build_model(cfg, task, n)


def test_self_donor_and_layer0_patch_leave_the_logits_unchanged():
    task = get_task("parity", n_bits=6, pauses=4)
    model, batch = _model(task), task.batch(8, seed=0)
    clean = model(batch.tokens)
    same = patch_inserted_kv(model, batch, [0, 1], donor=list(range(8)))
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    # at layer 0 a pause's K/V depend on its token and position only: nothing to carry
    torch.testing.assert_close(patch_inserted_kv(model, batch, [0]), clean)
    # at layer 1 they carry what layer 0 read from the prompt: the logits move
    assert (patch_inserted_kv(model, batch, [1]) - clean).abs().max() > 1e-6


def test_patch_matches_activation_patching_at_one_pause():
    task = get_task("parity", n_bits=5, pauses=1)
    model = _model(task)
    batch = task.batch(16, seed=1)
    a, b = next((i, j) for i in range(16) for j in range(16)
                if not torch.equal(batch.tokens[i], batch.tokens[j]))
    pair = dataclasses.replace(batch, tokens=batch.tokens[[a, b]],
                               roles=[batch.roles[a], batch.roles[b]],
                               loss_mask=batch.loss_mask[[a, b]], targets=batch.targets[[a, b]],
                               sequences=[batch.sequences[a], batch.sequences[b]])
    pause = batch.roles[0].index("pause")
    ours = patch_inserted_kv(model, pair, [1], donor=[1, 0], sites=("k",))[0, -2]
    with torch.no_grad():
        clean_logit = model(pair.tokens)[0, -2]
    target = int(pair.tokens[0, -1])

    def metric(logits):
        return logits[0, -2, target]

    ref = activation_patch(model, pair.tokens[0], pair.tokens[1], metric, sites=("k",),
                           layers=[1], per_head=False, verbose=False).table
    ref = float(ref[ref.position == pause]["activation_patch"].iloc[0])
    assert float(ours[target] - clean_logit[target]) == pytest.approx(ref, abs=1e-9)
    assert abs(ref) > 1e-6  # the patch did something, so the agreement means something


def test_feature_patch_moves_the_residual_by_delta_times_the_encoding():
    task = get_task("precache", length=16, k=3, freq=2.0)
    cfg = TrainConfig(task="precache", task_options=task.options(), **TINY)
    model = build_model(cfg, task, 16).eval()
    batch = task.batch(64, seed=0)
    s = torch.sin(task.freq * batch.inputs)
    h = residuals(model, task, batch)[1]
    r2, _, _ = precache_probe(h, s, slice(3, 15))
    assert r2 <= 1.0
    # the encoding direction is the least-squares slope of h on s, checked by lstsq
    a = encoding_direction(h, s, slice(3, 15))
    X = torch.stack([s[:, 3:15].reshape(-1), torch.ones(64 * 12)], 1).double()
    ref = torch.linalg.lstsq(X, h[:, 3:15].reshape(-1, h.shape[-1]).double()).solution[0]
    torch.testing.assert_close(a, ref)
    rows = _patch_slopes("m", model, task, batch, 1, 8, a, 4, seed=0)
    by = {(r["direction"], r["offset"]): r for r in rows}
    assert set(by) == {(d, i) for d in ("feature", "random") for i in range(5)}
    # moved only at t = 8: outputs before t cannot change, so offset 0 is the first row
    assert by[("feature", 0)]["move_norm_ratio"] == by[("random", 0)]["move_norm_ratio"] > 0


def test_bad_input_is_named():
    with pytest.raises(InterpError, match="raise n_ctx"):
        train_toy(TrainConfig(task="parity", task_options=dict(n_bits=8), pauses=8, n_ctx=12,
                              steps=1, **TINY), verbose=False)
    with pytest.raises(InterpError, match="no length for task"):
        pause_control(TrainConfig(task="addition", steps=1), verbose=False)
    runs = {}
    for pauses in (0, 4):
        cfg = TrainConfig(task="parity", task_options=dict(n_bits=4), pauses=pauses,
                          filler=bool(pauses), steps=1, n_ctx=12, **TINY)
        runs[pauses] = train_toy(cfg, verbose=False)
    with pytest.raises(InterpError, match="no-pause run second"):
        pause_instruments(runs[0], runs[4])
    with pytest.raises(InterpError, match="precache"):
        lookahead_control(runs[0], runs[4])
    with pytest.raises(InterpError, match="k', 'v"):
        patch_inserted_kv(runs[4].model, runs[4].task.batch(2), [0], sites=("q",))
    short = dataclasses.replace(runs[0].config, n_ctx=None)
    with pytest.raises(InterpError, match="context"):
        pause_instruments(runs[4], train_toy(short, verbose=False))


def test_parity_chain_is_the_count_in_unary_and_the_answer_is_linear_in_it():
    task = get_task("parity", n_bits=9, pauses=9, filler=True, cot_mixture=1.0)
    for seq in task.examples(50, seed=3):
        words = task.vocab.decode(seq.tokens)
        bits = words[1:10]
        chain = [int(w) for w in words[11:20]]
        c = sum(b == "1" for b in bits)
        assert chain == [int(c >= j) for j in range(1, 10)]  # brute force, from the bits
        alternating = sum((-1) ** j * t for j, t in enumerate(chain))  # Σ (−1)^(j+1) [c ≥ j]
        assert str(alternating % 2) == words[-1] == str(c % 2)
