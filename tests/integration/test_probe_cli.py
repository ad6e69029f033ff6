"""``interp probe train / eval / show`` in-process, on a tiny model's recording (token ids)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import interp
from interp.cli import main

SPEC = """
name = "cli"

[model.tiny]
n_layers = 2
d_model = 32
n_heads = 4
n_kv_heads = 2
d_vocab = 61
n_ctx = 64

[data]
recording = "{rec}"

[inputs]
layers = "all"
sites = ["resid_post", "v"]
roles = ["regular"]

[target]
offsets = [1, 2, 3]

[train]
max_epochs = 10
lr = 0.05
min_per_class = 1
"""


@pytest.fixture
def spec_file(tmp_path):
    tiny_model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2,
                                                     d_vocab=61, n_ctx=64), device="cpu")
    g = torch.Generator().manual_seed(0)
    cols = [torch.randint(0, 61, (30, 1), generator=g)]
    for _ in range(15):
        cols.append((cols[-1] * 3 + 1) % 61)
    interp.record(tiny_model, torch.cat(cols, 1), sites=("resid_post", "v"), roles=None,
                  out=tmp_path / "rec", verbose=False)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(rec=tmp_path / "rec"))
    return path


def test_train_show_eval(spec_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["probe", "train", str(spec_file), "--out", str(out), "--quiet",
                 "--set", "target.offsets=[1,2]", "--set", "train.seed=3"]) == 0
    printed = capsys.readouterr().out
    assert "best layer per offset" in printed and "baseline_bigram" in printed
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.offset) == {1, 2}
    assert {"layer", "site", "offset", "role", "split", "accuracy", "top5", "xent", "baseline_majority",
            "baseline_unigram", "baseline_bigram", "control_accuracy", "selectivity"} <= set(metrics.columns)
    assert set(metrics.site) == {"resid_post", "v"}
    copied = interp.probes.ProbeSpec.from_toml(out / "spec.toml")
    assert copied.train.seed == 3 and copied.target.offsets == [1, 2]

    assert main(["probe", "show", str(out), "--all-layers"]) == 0
    shown = capsys.readouterr().out
    assert "all layers (test split, role all)" in shown and "figure:" in shown

    assert main(["probe", "eval", str(out), "--quiet"]) == 0
    again = pd.read_csv(out / "eval.csv")
    cols = ["accuracy", "top5", "xent", "baseline_bigram", "control_accuracy"]
    pd.testing.assert_frame_equal(again[cols], metrics[cols], atol=1e-6, check_dtype=False)

    # a second train resumes: nothing is refitted and the table is unchanged
    assert main(["probe", "train", str(spec_file), "--out", str(out), "--quiet",
                 "--set", "target.offsets=[1,2]", "--set", "train.seed=3"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), metrics)


@pytest.mark.parametrize("args, message", [
    (["--set", "train.speed=2"], "unknown probe spec field train.speed"),
    (["--set", "inputs.layers=[0, 9]"], "inputs.layers: layer(s) [9] are not in the recording"),
    (["--set", "data.max_windows=abc"], "data.max_windows: 'abc' is not of type int"),
    (["--set", "offsets"], "is not key=value"),
])
def test_bad_input_exits_2_with_the_fix(spec_file, tmp_path, capsys, args, message):
    code = main(["probe", "train", str(spec_file), "--out", str(tmp_path / "bad"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "fix:" in err


def test_missing_spec_and_unfinished_dir(tmp_path, capsys):
    assert main(["probe", "train", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["probe", "show", str(tmp_path)]) == 2
    assert "not a finished probe run" in capsys.readouterr().err


def test_edited_or_damaged_probe_files_are_named(spec_file, tmp_path, capsys):
    """Probe outputs carry checksums (probes.json): an edited metrics.csv or a damaged probe
    file is named; so is a probes.json that is no longer JSON."""
    out = tmp_path / "out"
    assert main(["probe", "train", str(spec_file), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    saved = {p: p.read_bytes() for p in (out / "metrics.csv", out / "probes" / "v.safetensors",
                                        out / "probes.json")}
    for path, edit in [(out / "metrics.csv", b"layer,site\n0,v\n"),
                       (out / "probes" / "v.safetensors", b"\x00" * 16),
                       (out / "probes.json", b"{ hand-edited")]:
        path.write_bytes(edit)
        assert main(["probe", "show", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "fix:" in err and "--fresh" in err
        path.write_bytes(saved[path])
    assert main(["probe", "show", str(out)]) == 0


def test_future_lens_spec_into_a_classifier_run_is_refused(spec_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["probe", "train", str(spec_file), "--out", str(out), "--quiet"]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    fl = tmp_path / "fl.toml"
    fl.write_text('name = "fl"\nmethod = "future_lens"\n')  # refused before its model loads
    assert main(["probe", "train", str(fl), "--out", str(out), "--quiet"]) == 2
    assert "different spec" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing deleted
