"""Toy training: the schedule, loss going down, myopic gradients against a brute-force self
term, exact resume, the command line and the figures."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import interp
import interp.training.toy as train_mod
from interp.cli import main
from interp.core import hooks
from interp.errors import InterpError
from interp.training.toy import (
    TrainConfig,
    _loop,  # the training loop itself: the tests reach its checkpointing
    build_model,
    default_config,
    lr_at,
    real_inputs,
    train_toy,
    training_loss,
)

FAST = dict(d_model=16, n_heads=2, batch_size=16, eval_size=64, warmup=2)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(lr=1e-2, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-3)
    assert lr_at(9, cfg) == pytest.approx(1e-2)
    assert lr_at(60, cfg) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))  # halfway down the cosine
    assert lr_at(110, cfg) == pytest.approx(1e-3)
    lrs = [lr_at(s, cfg) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


@pytest.mark.parametrize("task,options", [("addition", dict(n_digits=2)),
                                          ("precache", dict(length=16, k=2, freq=1.0))])
def test_a_few_steps_reduce_the_loss(task, options):
    cfg = TrainConfig(task=task, task_options=options, steps=30, eval_every=15, lr=1e-2, **FAST)
    model0 = build_model(cfg, cfg.make_task(), 32)
    res = train_toy(cfg, verbose=False)
    eval_batch = res.task.batch(cfg.eval_size, (_loop._EVAL_SEED, cfg.seed))
    before = train_mod.evaluate(model0, res.task, eval_batch)["loss"]
    assert res.history["eval_loss"].iloc[-1] < 0.8 * before
    assert res.history["step"].tolist() == [15, 30]


def _self_term_brute_force(model, task, batch) -> dict[str, torch.Tensor]:
    """Σ_t ∂ℓ_t/∂θ with every layer's keys and values detached at all positions but t:
    one backward pass per loss position t, detaching by hand at the k and v hooks."""
    params = dict(model.named_parameters())
    proj = getattr(model, "interp_real_input", None)
    if proj is not None:
        params.update({f"real_input.{k}": p for k, p in proj.named_parameters()})
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    n = batch.loss_mask.sum()
    for t in batch.loss_mask.any(0).nonzero().ravel().tolist():
        live = torch.zeros(batch.tokens.shape[1], dtype=torch.bool)
        live[t] = True

        def detach_others(x, hook, live=live):
            return torch.where(live[None, :, None, None], x, x.detach())

        fwd = [(name(layer), detach_others) for layer in range(model.cfg.n_layers)
               for name in (hooks.k, hooks.v)]
        with model.hooks(fwd_hooks=fwd):
            out = train_mod.forward(model, task, batch)
        if task.kind == "regression":
            loss_t = (out[:, t] - batch.values[:, t])[batch.loss_mask[:, t]].pow(2).sum() / n
        else:
            loss_t = torch.nn.functional.cross_entropy(out[:, t], batch.targets[:, t],
                                                       reduction="sum") / n
        grads = torch.autograd.grad(loss_t, list(params.values()), allow_unused=True)
        for k, g in zip(params, grads, strict=True):
            if g is not None:
                total[k] += g
    return total


@pytest.mark.parametrize("task,options", [("parity", dict(n_bits=5, pauses=2)),
                                          ("precache", dict(length=8, k=3))])
def test_myopic_gradient_is_exactly_the_self_term(task, options):
    cfg = TrainConfig(task=task, task_options=options, dtype="float64", d_model=16, n_heads=2,
                      positional="rotary")
    t = cfg.make_task()
    batch = t.batch(4, seed=0).to("cpu", torch.float64)
    model = build_model(cfg, t, batch.tokens.shape[1])
    params = dict(_loop._named_parameters(model))

    vanilla = training_loss(model, t, batch)
    g_vanilla = torch.autograd.grad(vanilla, list(params.values()), allow_unused=True)
    myopic = training_loss(model, t, batch, myopic=True)
    g_myopic = torch.autograd.grad(myopic, list(params.values()), allow_unused=True)
    torch.testing.assert_close(myopic, vanilla, rtol=0, atol=1e-12)  # forward values unchanged

    expected = _self_term_brute_force(model, t, batch)
    moved = 0.0
    for (name, _), gm, gv in zip(params.items(), g_myopic, g_vanilla, strict=True):
        gm = torch.zeros_like(expected[name]) if gm is None else gm
        torch.testing.assert_close(gm, expected[name], rtol=1e-9, atol=1e-11, msg=name)
        if gv is not None:
            moved = max(moved, float((gv - gm).norm() / gv.norm().clamp_min(1e-30)))
    assert moved > 1e-2  # the future term is really removed, not zero to begin with


def test_real_inputs_feed_the_embedding():
    cfg = TrainConfig(task="precache", task_options=dict(length=8), **FAST)
    task = cfg.make_task()
    model = build_model(cfg, task, 8)
    b = task.batch(2, seed=0)
    out1 = train_mod.forward(model, task, b)
    with real_inputs(model, b.inputs.float() * 2):
        out2 = model(b.tokens)[..., 0]
    assert out1.shape == (2, 8) and not torch.allclose(out1, out2)
    with pytest.raises(InterpError, match="one value per token"), \
            real_inputs(model, b.inputs[:, :4].float()):
        model(b.tokens)


def test_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = TrainConfig(task="parity", task_options=dict(n_bits=4), steps=6, eval_every=3,
                      myopic=True, **FAST)
    save = _loop._save

    def crash_after_first_checkpoint(out, model, opt, config, task, step, *rest):
        save(out, model, opt, config, task, step, *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(_loop, "_save", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg, tmp_path / "a", verbose=False)
    monkeypatch.setattr(_loop, "_save", save)
    assert json.loads((tmp_path / "a" / "state.json").read_text())["step"] == 3
    resumed = train_toy(cfg, tmp_path / "a", verbose=False)
    straight = train_toy(cfg, tmp_path / "b", verbose=False)
    for (k, p), q in zip(resumed.model.named_parameters(), straight.model.parameters(),
                         strict=True):
        torch.testing.assert_close(p, q, msg=k)
    assert resumed.history["eval_loss"].tolist() == pytest.approx(
        straight.history["eval_loss"].tolist())
    model, task, loaded = train_mod.load_toy(tmp_path / "b")  # still unpacks as a tuple
    run = train_mod.ToyResult.load(tmp_path / "b")
    assert run.config == cfg and run.history["eval_loss"].tolist() == pytest.approx(
        straight.history["eval_loss"].tolist()) and run.metrics["loss"] == pytest.approx(
        straight.metrics["loss"])
    assert loaded == cfg and torch.equal(
        model(task.batch(2, 0).tokens), straight.model(task.batch(2, 0).tokens))
    with pytest.raises(InterpError, match="different configuration"):
        train_toy(TrainConfig(**{**cfg.to_dict(), "lr": 1.0}), tmp_path / "b", verbose=False)


def test_config_validation_names_the_problem():
    with pytest.raises(InterpError, match="parity"):
        TrainConfig(task="parit")
    with pytest.raises(InterpError, match="steps"):
        TrainConfig(steps=0)
    assert default_config("parity", steps=5, task_options=dict(n_bits=3)).task_options == {
        "n_bits": 3}


def test_cli_train_and_compare(tmp_path, capsys):
    common = ["--steps", "4", "--eval-every", "2", "--eval-size", "32", "--batch-size", "8",
              "--d-model", "16", "--n-heads", "2", "--quiet"]
    assert main(["toy", "train", "--task", "parity", "--option", "n_bits=4", "--pauses", "2",
                 "--myopic", "--out", str(tmp_path / "t"), *common]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["mode"] == "myopic" and metrics["pauses"] == 2
    assert list(pd.read_csv(tmp_path / "t" / "history.csv")["step"]) == [2, 4]
    assert (tmp_path / "t" / "checkpoint.safetensors").is_file()

    assert main(["toy", "compare", "--task", "parity", "--option", "n_bits=4", "--pauses", "0,2",
                 "--inserts", "pause,filler", "--modes", "vanilla", "--seeds", "0",
                 "--formats", "html", "--out", str(tmp_path / "c"), *common]) == 0
    runs = pd.read_csv(tmp_path / "c" / "compare.csv")
    assert len(runs) == 1 + 2  # no pauses, pauses, fillers
    assert set(runs["insert"]) == {"none", "pause", "filler"}
    summary = pd.read_csv(tmp_path / "c" / "summary.csv")
    assert (summary["seeds"] == 1).all() and len(summary) == 3
    assert (tmp_path / "c" / "toy_compare.html").is_file() and (tmp_path / "c" / "toy_curves.html").is_file()
    assert main(["toy", "train", "--task", "parity", "--option", "bits=4",
                 "--out", str(tmp_path / "x"), *common]) == 2
    assert "valid options" in capsys.readouterr().err


def test_figures_show_every_seed():
    from interp.figures.toy import compare_bars, training_curves

    runs = pd.DataFrame(dict(task="parity", mode="vanilla", pauses=[0, 0, 4, 4],
                             insert=["none", "none", "pause", "pause"], seed=[0, 1, 0, 1],
                             metric="accuracy", value=[0.5, 0.6, 0.9, 1.0], baseline=0.5))
    hist = pd.concat([runs.drop(columns="value").assign(step=s, metric=v)
                      for s, v in ((10, 0.5), (20, 0.7))], ignore_index=True)
    comp = train_mod.ToyComparison(runs=runs, histories=hist)
    bars = compare_bars(comp)
    assert list(bars.data[0].x) == ["vanilla", "vanilla · 4 pauses"]
    assert list(bars.data[0].y) == pytest.approx([0.55, 0.95])
    assert len(bars.data[1].y) == 4
    curves = training_curves(comp)
    lines = [tr for tr in curves.data if tr.name != "baseline"]
    assert len(lines) == 4 and sum(tr.showlegend for tr in lines) == 2  # 2 conditions × 2 seeds
    assert [tr.name for tr in bars.data].count("baseline") == 1
    assert interp.figures.compare_bars is compare_bars
