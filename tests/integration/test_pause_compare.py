"""Base vs pause-trained on tiny native models: the loss on real tokens (checked against an
independent computation), adaptive vs random pauses, every instrument, the saved comparison,
its figures, the report section and the CLI's bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PAUSE_TINY as TINY
from conftest import random_windows

import interp
from interp.cli import main
from interp.core.pauses import PausePolicy, insert_pauses
from interp.reporting import ReportConfig, report
from interp.reporting._registry import KINDS, figures_for
from interp.reporting.pause_compare import (
    PauseComparison,
    adaptive_summary,
    adaptive_vs_random,
    compare_instruments,
    lens_by_role,
    loss_summary,
    pause_losses,
    target_losses,
)
from interp.training.pause import PauseTrainConfig, pause_train


def _windows(n: int, seed: int, length: int = 16) -> list:
    return random_windows(n, length=length, seed=seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("pause_ckpt")
    cfg = PauseTrainConfig(base=dataclasses.asdict(TINY), n_tokens=16, steps=4, batch_size=2,
                           rank=2, eval_every=2, eval_windows=2, warmup=1, lr=1e-2)
    pause_train(cfg, out, train_windows=_windows(8, 0), eval_windows=_windows(2, 1),
                verbose=False)
    base = interp.load_model(TINY)
    interp.add_pause_token(base)
    return {"base": base, "pause-trained": interp.load_model(out)}


def test_target_losses_match_an_independent_computation(models):
    model = models["pause-trained"]
    seq = _windows(1, 2)[0]
    paused = insert_pauses(seq, PausePolicy(positions=(3, 7), n=2), model.interp_pause_id)
    with torch.no_grad():
        logp = torch.log_softmax(model(paused.tokens[None])[0], -1)
    got = target_losses(model, paused)
    assert torch.isnan(got[0]) and not torch.isnan(got[1:]).any()
    # the token at original position p is predicted by the position just before it
    for i in range(1, len(paused)):
        p = int(paused.original_position[i])
        if p > 0:
            torch.testing.assert_close(got[p], -logp[i - 1, paused.tokens[i]])


def test_pause_losses_and_adaptive_tables(models):
    wins = _windows(3, 3)
    losses = pause_losses(models, wins, seeds=(0, 1))
    assert len(losses) == 2 * 3 * (1 + 2)
    assert (losses["n_targets"] == 15).all()  # every real token but the first, with or without
    assert (losses.loc[losses.condition == "no pauses", "n_pauses"] == 0).all()
    s = loss_summary(losses)
    assert set(s["condition"]) == {"no pauses", "random pauses"} and (s["n"] > 0).all()

    table = adaptive_vs_random(models, wins, entropy_top=0.2, seeds=(0, 1, 2))
    assert len(table) == 2 * 3 * (1 + 3)
    # the same number of runs in both placements, and the entropy placement picks the most
    # uncertain positions, so its mean entropy is at least that of any random placement
    for _, g in table.groupby(["model", "sequence"]):
        assert g["n_runs"].nunique() == 1 and g["n_runs"].iloc[0] == 3
        ent = g.loc[g.placement == "entropy", "entropy_following"].iloc[0]
        assert (ent >= g.loc[g.placement == "random", "entropy_following"] - 1e-6).all()
    # the entropy placement's numbers from the logits, by hand: pauses go before the tokens
    # that follow the top 20% next-token entropies; each such token's loss is read at the
    # position just before it, with and without the pauses
    for (label, seq_no), g in table[table.placement == "entropy"].groupby(["model", "sequence"]):
        model, seq = models[label], wins[seq_no]
        with torch.no_grad():
            logp = torch.log_softmax(model(seq.tokens[None])[0].double(), -1)
        ent = -(logp.exp() * logp).sum(-1)
        paused = insert_pauses(seq, PausePolicy(entropy_top=0.2, n=1), model.interp_pause_id,
                               entropy=ent)
        with torch.no_grad():
            logp_p = torch.log_softmax(model(paused.tokens[None])[0].double(), -1)
        after = [i for i in range(1, len(paused)) if paused.roles[i - 1] == "pause"
                 and paused.roles[i] != "pause"]
        follow = [int(paused.original_position[i]) for i in after]
        with_p = torch.stack([-logp_p[i - 1, paused.tokens[i]] for i in after])
        plain = torch.stack([-logp[f - 1, seq.tokens[f]] for f in follow])
        row = g.iloc[0]
        assert row.n_runs == len(after) == 3
        np.testing.assert_allclose(row.loss_following, float(with_p.mean()), rtol=1e-5)
        np.testing.assert_allclose(row.loss_following_plain, float(plain.mean()), rtol=1e-5)
        np.testing.assert_allclose(row.entropy_following, float(ent[torch.tensor(follow) - 1].mean()),
                                   rtol=1e-5)
    assert set(adaptive_summary(table)["placement"]) == {"entropy", "random"}


def test_instruments_save_load_figures_and_report(models, tmp_path):
    pid = models["base"].interp_pause_id
    paused = [insert_pauses(w, PausePolicy(rate=0.3, n=1, n_max=2, seed=i), pid)
              for i, w in enumerate(_windows(2, 4))]
    tables = compare_instruments(models, paused, prompt=torch.tensor([1, 2, 3]), generation_pauses=2,
                                 max_new_tokens=3, gradient_windows=1)
    share = tables["future_share"]
    masked = share[share.role == "pause (masked)"]
    np.testing.assert_allclose(masked["future_share"], 1.0)  # no loss of their own
    assert {"pause (last)", "regular"} <= set(share["role"])
    gen = tables["generation"]
    assert set(gen["role"]) == {"prompt", "pause", "generated"}
    assert (gen.loc[gen.role == "pause", "n"] == 2).all()
    assert set(tables["registers"]["role"]) >= {"pause", "regular"}

    # the Future Lens at pauses: runs of one pause predict the next text token themselves, so
    # the last layer read at offset 1 is (almost) the identity there, for both models
    from interp.probes._data import ProbeSequence

    lens_seqs = [ProbeSequence(f"doc{i // 2}", insert_pauses(w, PausePolicy(every=3, n=1), pid))
                 for i, w in enumerate(_windows(60, 6, length=24))]
    lens = lens_by_role(models, lens_seqs, layers=[0, 1], offsets=(1, 2), eval_positions=200)
    assert len(lens) == 2 * 2 * 2 * 2 and set(lens.role) == {"pause", "regular"}
    last = lens[(lens.layer == 1) & (lens.offset == 1)]
    assert (last.n > 50).all()
    assert (last[last.role == "pause"].agreement_top1 >= 0.95).all()
    # (a regular position followed by a pause is not: the next token is predicted at the pause)
    tables["future_lens"] = lens

    comp = PauseComparison(dict(losses=pause_losses(models, _windows(2, 5), seeds=(0,)),
                                **tables), dict(note="tiny"))
    comp.save(tmp_path / "cmp")
    back = PauseComparison.load(tmp_path / "cmp")
    assert back.settings == {"note": "tiny"}
    # (the text column is None here: tiny models have no tokenizer; CSV reads it back as NaN)
    pd.testing.assert_frame_equal(back.tables["generation"].drop(columns="text"),
                                  comp.tables["generation"].drop(columns="text"))
    # a losses table of an earlier release names the sequence `window`
    saved = tmp_path / "cmp" / "pause_losses.csv"
    pd.read_csv(saved).rename(columns={"sequence": "window"}).to_csv(saved, index=False)
    pd.testing.assert_frame_equal(PauseComparison.load(tmp_path / "cmp").tables["losses"],
                                  back.tables["losses"])
    kind = next(k for k in KINDS if k.table == "pause_losses.csv")
    drawn = figures_for(kind, tmp_path / "cmp")
    assert [f.name for f, _ in drawn] == ["pause_losses", "pause_registers",
                                          "pause_future_share", "pause_future_lens",
                                          "pause_generation"]

    tokens = torch.randint(1, 40, (2, 12), generator=torch.Generator().manual_seed(0))
    config = ReportConfig(model=TINY, tokens=tokens, n_tokens=12, max_windows=2, sections=(),
                          pause_dir=str(tmp_path / "cmp"), formats=())
    page = report(config, tmp_path / "report", strict=True, verbose=False).read_text("utf-8")
    assert "Pause training: base vs pause-trained" in page and "pause loss · base" in page
    # without a checkpoint the section is a gap that says how to make one
    empty = ReportConfig(model=TINY, tokens=tokens, n_tokens=12, max_windows=2, sections=(),
                         pause_dir=str(tmp_path / "nothing"), formats=())
    page = report(empty, tmp_path / "report2", verbose=False).read_text("utf-8")
    assert "class='gap'" in page and "interp pause-train --out DIR" in page


@pytest.mark.parametrize("argv, message", [
    (["pause-train", "--out", "X", "--pause-rate", "1.0"], "pause_rate=1.0 is outside [0, 1)"),
    (["pause-train", "--out", "X", "--targets", "q,qkv"], "unknown LoRA target"),
    (["pause-train", "--out", "X", "--learned", "--lam", "-0.5"], "pause cost lam=-0.5 is negative"),
    (["pause-train", "--out", "X", "--learned", "--max-pauses", "0"], "a cap of 0 pauses"),
    (["pause-train", "--out", "X", "--lams", "0,0.1"], "--lams sweeps the pause cost of learned"),
    (["pause-train", "--out", "X", "--learned", "--lams", "0,x"], "--lams '0,x' is not a list"),
    (["pause-compare", "NOWHERE", "--out", "Y"], "holds no pause adapter"),
])
def test_cli_bad_input(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("X", "Y", "NOWHERE") else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
