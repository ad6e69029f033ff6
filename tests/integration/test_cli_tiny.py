"""The commands that read a real language model (gradients, registers, patch, record with
generation), run in seconds on a tiny Hugging Face Llama saved as a local model folder
(``--model DIR``), and checked against the library calls they wrap. Their SmolLM2 versions are
in tests/slow."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import interp
from interp.cli import main

# the word tokenizer's words (w03..w60 are ordinary tokens; w01 is BOS)
TEXT = " ".join(f"w{3 + (7 * i) % 50:02d}" for i in range(40))


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return str(tiny_llama_dir)


def test_gradients_cli_writes_the_library_numbers(model_dir, tmp_path, capsys):
    out = tmp_path / "grad"
    assert main(["gradients", "--model", model_dir, "--text", TEXT, "--layers", "0,-1",
                 "--by-distance", "4", "--out", str(out)]) == 0
    table = pd.read_csv(out / "future_gradients.csv")
    assert set(table["layer"]) == {0, 1}  # -1 is the last layer here as everywhere
    model = interp.load_model(model_dir)
    fg = interp.future_gradients(model, TEXT, layers=[0, 1])
    cols = ["layer", "site", "head", "position", "self_norm", "future_norm", "future_share"]
    pd.testing.assert_frame_equal(table[cols], fg.table[cols], check_dtype=False)
    bd = interp.by_distance(model, TEXT, 4, layers=[0, 1])
    written = pd.read_csv(out / "by_distance.csv")
    cols = ["layer", "site", "distance", "grad_norm", "share", "n"]
    pd.testing.assert_frame_equal(written[cols], bd.table[cols], check_dtype=False)
    for name in ("future_share_heatmap", "future_share_by_position", "gradient_by_distance"):
        assert (out / f"{name}.html").is_file()
    assert "future_share" in capsys.readouterr().out


def test_registers_cli_with_pauses_ablation_and_eviction(model_dir, tmp_path, capsys):
    out = tmp_path / "reg"
    assert main(["sinks", "--model", model_dir, "--text", TEXT, "--pause-every", "8",
                 "--eviction-window", "8", "--sinks", "0,1", "--out", str(out)]) == 0
    reg = pd.read_csv(out / "registers.csv")
    assert list(reg.columns[:4]) == ["sequence", "layer", "position", "role"]
    assert set(reg["role"]) == {"bos", "regular", "pause"}
    abl = pd.read_csv(out / "ablations.csv")
    assert {"component", "method", "delta_loss"} <= set(abl.columns)
    # the numbers the command wrote are the library's on the same input
    model = interp.load_model(model_dir)
    ids = interp.tokenize(model, TEXT).tokens[:1024]
    ev = interp.sinks.cache_eviction(model, ids, eviction_window=8, sinks=[0, 1])
    written = pd.read_csv(out / "eviction.csv")
    pd.testing.assert_frame_equal(written[["condition", "n_sinks", "nll", "perplexity"]],
                                  ev.table[["condition", "n_sinks", "nll", "perplexity"]],
                                  check_dtype=False)
    pid = interp.add_pause_token(model)
    seq = interp.insert_pauses(interp.tokenize(model, TEXT), interp.PausePolicy(every=8), pid)
    regs = interp.sinks.registers(model, [seq])
    numbers = reg.select_dtypes("number").columns
    pd.testing.assert_frame_equal(reg[numbers], regs.table[numbers], check_dtype=False)
    ab = interp.sinks.ablate_massive(model, [seq], regs.massive)
    cols = ["component", "method", "loss", "delta_loss", "n_targets"]
    pd.testing.assert_frame_equal(abl[cols], ab.table[cols], check_dtype=False)
    drawn = {f.name for r in (interp.sinks.RegisterResult.load(out),
                              interp.sinks.AblationResult.load(out),
                              interp.sinks.EvictionResult.load(out)) for f in r.figures()}
    assert all((out / f"{name}.html").is_file() for name in drawn)
    assert "pause" in capsys.readouterr().out
    assert main(["figures", str(out), "--formats", "html", "--out", str(tmp_path / "again")]) == 0
    assert {p.stem for p in (tmp_path / "again").glob("*.html")} >= drawn


def test_patch_cli_matches_attribution_patch(model_dir, tmp_path, capsys):
    out = tmp_path / "patch"
    clean, corrupt = "w03 w10 w11 w12", "w03 w20 w11 w12"
    assert main(["patch", "--model", model_dir, "--clean", clean, "--corrupt", corrupt,
                 "--answer", " w13", "--wrong", " w14", "--sites", "v,resid", "--verify",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / "attribution.csv")
    model = interp.load_model(model_dir)
    from interp.patching import logit_diff

    ref = interp.attribution_patch(model, clean, corrupt, logit_diff(model, " w13", " w14"),
                                   sites=["v", "resid_post"])
    cols = ["layer", "site", "head", "position", "atp"]
    pd.testing.assert_frame_equal(table[cols], ref.table[cols], check_dtype=False)
    assert (out / "atp_heatmap.html").is_file() and (out / "atp_scatter.html").is_file()
    written = pd.read_csv(out / "comparison.csv")
    from interp.patching import activation_patch

    truth = activation_patch(model, clean, corrupt, logit_diff(model, " w13", " w14"),
                             sites=["v", "resid_post"]).table
    pd.testing.assert_series_equal(table.activation_patch, truth.activation_patch,
                                   check_dtype=False)
    ref.table = ref.table.merge(truth[cols[:4] + ["activation_patch"]], on=cols[:4])
    expected = interp.compare_patching(ref)
    pd.testing.assert_frame_equal(written[expected.columns], expected, check_dtype=False)


def test_record_cli_generates_with_forced_pauses(model_dir, tmp_path):
    out = str(tmp_path / "gen")
    assert main(["record", "--model", model_dir, "--text", "w03 w04 w05", "--generate", "2",
                 "--pauses-before-answer", "2", "--layers", "-1", "--out", out, "--quiet"]) == 0
    rec = interp.load_recording(out)
    assert rec.index.role.tolist().count("pause") == 2
    # the tokens and K/V the command wrote are the library's on the same prompt (the library
    # against Hugging Face's generate and cache: test_ground_truth.py)
    model = interp.load_model(model_dir)
    interp.add_pause_token(model)
    gen = interp.generate(model, "w03 w04 w05", 2, pauses_before_answer=2, layers=[-1])
    assert rec.index.token.tolist() == gen.tokens.tolist()
    assert rec.index.role.tolist() == list(gen.roles)
    for site in ("k", "v"):
        assert rec[site].shape[1] == 1
        torch.testing.assert_close(rec[site], gen.recording[site], rtol=0, atol=0)
