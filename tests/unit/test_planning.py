"""The planning toy: the rhyme task's lines against brute force, the residual patch against a
hand-written PyTorch hook and against activation patching, and the named errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from interp.controls import (
    greedy_line,
    planning_control,
    planning_positions,
    residual_patch_hook,
)
from interp.controls._common import residuals
from interp.controls._planning import prefix_batch
from interp.errors import InterpError
from interp.patching import activation_patch
from interp.training.tasks import get_task
from interp.training.toy import TrainConfig, build_model, train_toy

TINY = dict(d_model=32, n_heads=2, batch_size=32, eval_size=64, eval_every=50, warmup=5)


def _model(task, dtype="float64"):
    cfg = TrainConfig(task="rhyme", task_options=task.options(), positional="standard",
                      dtype=dtype, **TINY)
    return build_model(cfg, task, int(task.batch(1, 0).tokens.shape[1]))


def test_rhyme_lines_against_brute_force():
    task = get_task("rhyme", classes=3, words=3, line=4, lead=2)
    rhymes = [f"{c}{i}" for c in "abc" for i in (1, 2, 3)]
    # every lead word names one final word: the map final -> lead word is injective per step
    for j in range(task.lead):
        leads = [task.lead_words(f)[j] for f in rhymes]
        assert len(set(leads)) == len(rhymes)
        assert [task.lead_final(w, j) for w in leads] == rhymes
    finals = set()
    for seq in task.examples(300, seed=5):
        words = task.vocab.decode(seq.tokens)
        assert words[0] == "<bos>" and words[5] == "/" and len(words) == 9
        assert all(w in rhymes for w in words[1:5])
        r, final = words[4], words[-1]
        # brute force: a right final word shares line 1's last word's class letter, is not it
        valid = tuple(w for w in rhymes if w[0] == r[0] and w != r)
        assert task.valid_finals(words[:6]) == valid
        assert final in valid
        assert tuple(words[6:8]) == task.lead_words(final)
        assert seq.roles == ("bos",) + ("prompt",) * 5 + ("answer",) * 3
        finals.add((r, final))
    # the final word is a free choice: both right words occur after the same rhyme word
    assert any((r, f) in finals and (r, g) in finals for r, f, g in
               [(r, *task.valid_finals(["<bos>", r, r, r, r])) for r in rhymes])
    batch = task.batch(4, seed=0)
    assert batch.loss_mask[:, 5:8].all() and not batch.loss_mask[:, :5].any()  # from `/` on


def _hand_patch(model, tokens, position, layer, value):
    """The same replacement with a plain PyTorch hook on the block (no TransformerLens hook
    names): a pre-hook on block ``layer``'s input, or a hook on the last block's output."""
    n = model.cfg.n_layers

    def pre(mod, args, kwargs):
        x = args[0].clone()
        x[:, position] = value
        return (x, *args[1:]), kwargs

    def post(mod, args, out):
        x = out[0].clone()
        x[:, position] = value
        return (x, *out[1:])

    handle = (model.blocks[layer].register_forward_pre_hook(pre, with_kwargs=True)
              if layer < n else model.blocks[n - 1].register_forward_hook(post))
    try:
        with torch.no_grad():
            return model(tokens)
    finally:
        handle.remove()


def test_residual_patch_equals_a_hand_written_hook_and_activation_patching():
    task = get_task("rhyme", classes=3, words=2, line=3, lead=2)
    model = _model(task)
    batch = task.batch(8, seed=2)
    sep, n = task.separator, model.cfg.n_layers
    torch.manual_seed(0)
    value = torch.randn(8, model.cfg.d_model, dtype=torch.float64)
    with torch.no_grad():
        clean = model(batch.tokens)
    for layer in range(n + 1):
        hook = residual_patch_hook(sep, layer, n, value)
        with torch.no_grad(), model.hooks(fwd_hooks=[hook]):
            ours = model(batch.tokens)
        torch.testing.assert_close(ours, _hand_patch(model, batch.tokens, sep, layer, value),
                                   rtol=0, atol=0)
        assert (ours[:, sep:] - clean[:, sep:]).abs().max() > 1e-6  # the patch did something
        torch.testing.assert_close(ours[:, :sep], clean[:, :sep])  # and nothing before it
        # greedy continuation with the patch in place writes what the patched logits say
        line = greedy_line(model, batch.tokens[:, :sep + 1], 1, [hook])
        assert torch.equal(line[:, 0], ours[:, sep].argmax(-1))
    # against interp.activation_patch: resid_post of layer l is the stream entering l + 1
    clean_t, donor_t = batch.tokens[0], batch.tokens[1]
    target = int(batch.tokens[0, sep + 1])
    ref = activation_patch(model, clean_t, donor_t, lambda lg: lg[0, sep, target],
                           sites=("resid_post",), layers=[0], verbose=False).table
    ref = float(ref[ref.position == sep]["activation_patch"].iloc[0])
    h = residuals(model, task, batch)[1]  # the stream entering layer 1, every example
    hook = residual_patch_hook(sep, 1, n, h[1:2, sep])
    with torch.no_grad(), model.hooks(fwd_hooks=[hook]):
        ours = model(clean_t[None])[0, sep, target] - clean[0, sep, target]
    assert float(ours) == pytest.approx(ref, abs=1e-9)
    assert abs(ref) > 1e-6


def test_layer0_separator_patch_is_a_no_op():
    # at layer 0 the separator's residual is its embedding: the same in every example
    task = get_task("rhyme", classes=3, words=2, line=3, lead=2)
    model = _model(task)
    batch = task.batch(16, seed=1)
    sep = planning_positions(task)["separator"]
    prefix = batch.tokens[:, :sep + 1]
    donor = torch.roll(torch.arange(16), 1)
    h = residuals(model, task, prefix_batch(batch, sep + 1))[0]
    hook = residual_patch_hook(sep, 0, model.cfg.n_layers, h[donor, sep])
    assert torch.equal(greedy_line(model, prefix, 3, [hook]), greedy_line(model, prefix, 3))


def test_bad_input_is_named():
    with pytest.raises(InterpError, match="a rhyme other"):
        get_task("rhyme", words=1)
    with pytest.raises(InterpError, match="at least one lead word"):
        get_task("rhyme", lead=0)
    with pytest.raises(InterpError, match="several right answers"):
        get_task("rhyme").answer(["<bos>", "a1", "/"])
    # a line the context cannot hold: the trainer names n_ctx
    with pytest.raises(InterpError, match="raise n_ctx"):
        train_toy(TrainConfig(task="rhyme", task_options=dict(line=12), n_ctx=10, steps=1,
                              **TINY), verbose=False)
    run = train_toy(TrainConfig(task="rhyme", task_options=dict(line=1, lead=1), steps=1,
                                **TINY), verbose=False)
    with pytest.raises(InterpError, match="unknown place 'distractor'"):
        planning_control([run], places=("separator", "distractor"), n_examples=16)
    with pytest.raises(InterpError, match="unknown place 'pause'"):
        planning_control([run], places=("pause",), n_examples=16)
    longer = dataclasses.replace(run, task=get_task("rhyme", line=6, lead=1))
    with pytest.raises(InterpError, match="cannot hold"):
        planning_control([longer], n_examples=16)
    parity = train_toy(TrainConfig(task="parity", task_options=dict(n_bits=3), steps=1, **TINY),
                       verbose=False)
    with pytest.raises(InterpError, match="reads the rhyme task"):
        planning_control([parity])
