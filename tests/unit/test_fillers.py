"""Fillers and the parallel chain-of-thought mixture (Pfau et al. 2024) on 3SUM and
2SUM-Transform: chain tokens against brute force, the mixture's sequences and loss mask, the
comparison grid and its errors, and a deterministic tiny training run."""

from __future__ import annotations

import json
import re
from itertools import combinations

import pandas as pd
import pytest
import torch

import interp.training.toy as train_mod
from interp.cli import main
from interp.errors import InterpError
from interp.figures.toy import compare_bars, training_curves
from interp.training.tasks import get_task
from interp.training.toy import TrainConfig, condition_grid, load_comparison, train_toy

SMALL = dict(length=4, dim=2, mod=5)


def _words(task, seq) -> list[str]:
    return task.vocab.decode(seq.tokens)


def brute_force_cot(name: str, prompt: list[str], length: int, dim: int, mod: int) -> list[str]:
    """Every subset's digit-wise sum, written out with loops from the prompt words alone."""
    digits = [int(w) for w in prompt[1:] if w.isdigit()]
    x = [digits[i * dim:(i + 1) * dim] for i in range(length)]
    if name == "2sum_transform":
        shift = digits[length * dim:]
        x = [[(a - s) % mod for a, s in zip(row, shift, strict=True)] for row in x]
    k = 3 if name == "3sum" else 2
    out = []
    for subset in combinations(range(length), k):
        for d in range(dim):
            out.append(str(sum(x[i][d] for i in subset) % mod))
    return out


@pytest.mark.parametrize("name", ["3sum", "2sum_transform"])
def test_chain_of_thought_is_the_subset_sums(name):
    n_cot = get_task(name, **SMALL).n_cot
    k = 3 if name == "3sum" else 2
    assert n_cot == SMALL["dim"] * len(list(combinations(range(SMALL["length"]), k)))
    task = get_task(name, **SMALL, pauses=n_cot, filler=True, cot_mixture=1.0)
    answers = set()
    for seq in task.examples(100, seed=3):
        words = _words(task, seq)
        colon = words.index(":")
        prompt, cot, answer = words[:colon], words[colon + 1:-1], words[-1]
        assert cot == brute_force_cot(name, prompt, **SMALL)
        # the answer is Y exactly when some subset's dim digits are all 0
        chunks = [cot[i:i + SMALL["dim"]] for i in range(0, n_cot, SMALL["dim"])]
        assert answer == ("Y" if any(set(c) == {"0"} for c in chunks) else "N")
        answers.add(answer)
    assert answers == {"Y", "N"}


def test_mixture_swaps_fillers_for_the_chain_and_trains_it():
    n = get_task("3sum", **SMALL).n_cot
    plain = get_task("3sum", **SMALL, pauses=n, filler=True)
    mixed = get_task("3sum", **SMALL, pauses=n, filler=True, cot_mixture=0.5)
    a, b = plain.batch(160, seed=(7, 1)), mixed.batch(160, seed=(7, 1))
    assert a.tokens.shape == b.tokens.shape  # the chain stands exactly where the fillers stood
    filler_id = plain.vocab.filler_id
    has_cot = (b.tokens != filler_id).all(-1)
    assert 0.35 < has_cot.float().mean() < 0.65
    colon = SMALL["length"] * SMALL["dim"] + 1
    prompt = slice(0, colon + 1)
    assert torch.equal(a.tokens[:, prompt], b.tokens[:, prompt])  # same prompts as without
    assert torch.equal(a.tokens[~has_cot], b.tokens[~has_cot])
    last = b.tokens.shape[1] - 1
    # filler examples: only the last filler (predicting the answer) is trained
    expect_filler = torch.zeros(last + 1, dtype=torch.bool)
    expect_filler[last - 1] = True
    assert (a.loss_mask == expect_filler).all()
    assert (b.loss_mask[~has_cot] == expect_filler).all()
    # chain examples: ':' and every chain token predict the next chain token or the answer
    expect_cot = torch.zeros(last + 1, dtype=torch.bool)
    expect_cot[colon:last] = True
    assert (b.loss_mask[has_cot] == expect_cot).all()
    assert torch.equal(b.targets[:, :-1][b.loss_mask[:, :-1]], b.tokens[:, 1:][b.loss_mask[:, :-1]])
    roles = {r for row, c in zip(b.roles, has_cot.tolist(), strict=True) if c for r in row}
    assert roles == {"bos", "prompt", "answer"}
    assert get_task("3sum", **SMALL, pauses=n, filler=True, cot_mixture=1.0).batch(
        20, 0).tokens.ne(filler_id).all()
    assert mixed.config()["cot_mixture"] == 0.5
    assert get_task(**mixed.config()).batch(8, 1).tokens.equal(mixed.batch(8, 1).tokens)


def test_bad_mixtures_and_counts_are_named():
    n = get_task("3sum", **SMALL).n_cot
    with pytest.raises(InterpError, match=r"cot_mixture must be in \[0, 1\]"):
        get_task("3sum", **SMALL, pauses=n, filler=True, cot_mixture=1.5)
    with pytest.raises(InterpError, match=r"cot_mixture must be in \[0, 1\]"):
        TrainConfig(task="3sum", cot_mixture=-0.1)
    with pytest.raises(InterpError, match=f"needs {n} filler tokens"):
        get_task("3sum", **SMALL, pauses=n - 1, filler=True, cot_mixture=0.5)
    with pytest.raises(InterpError, match=f"needs {n} filler tokens"):
        get_task("3sum", **SMALL, pauses=n, cot_mixture=0.5)  # <pause>, not fillers
    with pytest.raises(InterpError, match="(?s)no parallel chain of thought.*parity, 3sum"):
        get_task("addition", pauses=2, filler=True, cot_mixture=0.5)  # parity has one now
    with pytest.raises(InterpError, match="pauses must be >= 0"):
        get_task("3sum", **SMALL, pauses=-1, filler=True)

    base = TrainConfig(task="3sum", task_options=SMALL)
    with pytest.raises(InterpError, match="unknown condition 'dots'"):
        condition_grid(base, ["none", "dots"], seeds=[0])
    with pytest.raises(InterpError, match="filler count must be >= 1"):
        condition_grid(base, ["filler"], seeds=[0], fillers=-2)
    with pytest.raises(InterpError, match=r"mixture must be in \[0, 1\]"):
        condition_grid(base, ["filler_cot"], seeds=[0], cot_mixture=2.0)
    with pytest.raises(InterpError, match="no chain-of-thought length"):
        condition_grid(TrainConfig(task="addition"), ["filler"], seeds=[0])


def test_condition_grid_defaults_to_the_chain_length():
    base = TrainConfig(task="3sum", task_options=SMALL)
    configs = condition_grid(base, ["none", "filler", "filler_cot"], seeds=[0, 1])
    got = [(c.pauses, c.filler, c.cot_mixture, c.seed) for c in configs]
    n = get_task("3sum", **SMALL).n_cot
    assert got == [(0, False, 0.0, 0), (0, False, 0.0, 1), (n, True, 0.0, 0), (n, True, 0.0, 1),
                   (n, True, 0.5, 0), (n, True, 0.5, 1)]
    assert [train_mod.run_labels(c)["insert"] for c in configs[::2]] == [
        "none", "filler", "filler_cot"]
    assert [c.pauses for c in condition_grid(base, ["pause"], seeds=[0], fillers=3)] == [3]


def test_tiny_mixture_run_is_deterministic_and_evaluates_on_fillers():
    n = get_task("3sum", **SMALL).n_cot
    cfg = TrainConfig(task="3sum", task_options=SMALL, pauses=n, filler=True, cot_mixture=0.5,
                      d_model=16, n_heads=2, batch_size=8, eval_size=16, steps=2, eval_every=1,
                      warmup=1)
    a, b = train_toy(cfg, verbose=False), train_toy(cfg, verbose=False)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert a.history.drop(columns="elapsed_s").equals(b.history.drop(columns="elapsed_s"))
    assert a.metrics["insert"] == "filler_cot"
    ev = cfg.make_task(evaluation=True)
    assert ev.cot_mixture == 0.0 and cfg.make_task().cot_mixture == 0.5
    assert (ev.batch(16, 0).loss_mask.sum(-1) == 1).all()  # only the answer is scored


def test_cli_compares_the_three_conditions(tmp_path, capsys):
    common = ["--task", "3sum", "--option", "length=4", "--option", "dim=2", "--option", "mod=5",
              "--steps", "2", "--eval-every", "2", "--eval-size", "16", "--batch-size", "4",
              "--d-model", "16", "--n-heads", "2", "--seeds", "0", "--modes", "vanilla",
              "--formats", "html", "--quiet"]
    out = tmp_path / "c"
    assert main(["toy", "compare", "--conditions", "none,filler,filler_cot", "--out", str(out),
                 *common]) == 0
    comp = load_comparison(out)
    assert list(comp.runs["insert"]) == ["none", "filler", "filler_cot"]
    assert list(comp.runs["pauses"]) == [0, 8, 8]  # 2 digits × C(4, 3) triples
    assert (out / "toy_curves.html").is_file() and (out / "toy_compare.html").is_file()
    assert list(compare_bars(comp).data[0].x) == [
        "vanilla", "vanilla · 8 fillers", "vanilla · 8 fillers + CoT mix"]
    assert len([t for t in training_curves(comp).data if t.name != "baseline"]) == 3
    metrics = json.loads((out / "runs" / "3sum_vanilla_pauses8_filler_cot_seed0" /
                          "metrics.json").read_text())
    assert metrics["config"]["cot_mixture"] == 0.5
    capsys.readouterr()
    for bad, message in ((["--conditions", "none,dots"], "unknown condition 'dots'"),
                         (["--conditions", "filler", "--fillers", "-1"], "filler count"),
                         (["--conditions", "filler_cot", "--cot-mixture", "1.5"], r"\[0, 1\]"),
                         (["--conditions", "filler", "--pauses", "0,4"], "either --conditions")):
        assert main(["toy", "compare", *bad, "--out", str(tmp_path / "x"), *common]) == 2
        assert re.search(message, capsys.readouterr().err)
    with pytest.raises(InterpError, match="has no compare.csv"):
        load_comparison(tmp_path / "nothing")
    assert isinstance(comp.summary(), pd.DataFrame)
