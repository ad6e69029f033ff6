"""The positive controls end to end on tiny settings: a pause model trained with the
unary-count chain collapses to chance when its pauses' keys and values are corrupted (and a
model that never trained its pauses does not move), and ``interp controls`` writes every table
and figure."""

from __future__ import annotations

from interp.cli import main
from interp.controls import (
    control_run,
    load_lookahead,
    load_pause_instruments,
    load_planning,
    pause_control,
    pause_control_config,
    pause_instruments,
)
from interp.training.toy import load_toy

TINY = dict(d_model=32, n_heads=2, batch_size=32, eval_size=64, eval_every=50, warmup=5)


def test_trained_pause_model_collapses_when_its_pauses_are_corrupted(tmp_path):
    base = pause_control_config(n_bits=8, steps=300, **TINY)
    pause_control(base, conditions=("none", "filler_cot"), seeds=(0,), out=tmp_path,
                  verbose=False)
    p = load_toy(control_run(tmp_path, 8, "filler_cot", 0))
    n = load_toy(control_run(tmp_path, 8, "none", 0))
    res = pause_instruments(p, n, n_examples=128, n_attention=8, n_gradient=2)
    patch = res.patching.set_index(["model", "layers"])
    clean = patch.loc[("pause-trained", "all"), "clean_accuracy"]
    assert clean > 0.9
    assert patch.loc[("pause-trained", "all"), "accuracy"] < clean - 0.25
    assert patch.loc[("pause-trained", "0"), "accuracy"] == clean  # layer-0 K/V carry nothing
    untrained = patch.xs("pauses untrained", level="model")
    assert (untrained["accuracy"] - untrained["clean_accuracy"]).abs().max() < 0.1
    assert set(res.probes["model"]) == {"pause-trained", "no pauses", "pauses untrained"}
    assert res.probes.query("where == 'inserted'")["model"].nunique() == 2


def test_controls_command_writes_every_table_and_figure(tmp_path):
    rc = main(["controls", "all", "--out", str(tmp_path), "--lengths", "4", "--seeds", "0",
               "--steps", "4", "--lookahead-steps", "4", "--planning-steps", "4", "--formats",
               "html", "--quiet"])
    assert rc == 0
    pauses = load_pause_instruments(tmp_path / "pauses")
    assert set(pauses.accuracy["model"]) == {"pause-trained", "no pauses", "pauses untrained"}
    assert (tmp_path / "pauses" / "control_lengths.html").is_file()
    assert (tmp_path / "pauses" / "pause_patching.html").is_file()
    look = load_lookahead(tmp_path / "lookahead")
    assert set(look.patching["direction"]) == {"feature", "random"}
    assert (tmp_path / "lookahead" / "lookahead_patching.html").is_file()
    plan = load_planning(tmp_path / "planning")
    assert set(plan.patching["place"]) == {"separator", "rhyme word", "distractor"}
    assert (tmp_path / "planning" / "planning.html").is_file()
    assert main(["controls", "pauses", "--out", str(tmp_path), "--conditions", "filler"]) == 2
