"""Bad input and faults a hostile first day finds (issue 24): each is a named InterpError with a
fix, raised before the expensive work where the input allows, or correct behaviour; and no
result folder is lost or left unloadable. CLI cases run ``main([...])`` on tiny models."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch
from conftest import PAUSE_TINY, random_windows

import interp
import interp.models
from interp.cli import main
from interp.errors import InterpError

TEXT = " ".join(f"w{3 + (7 * i) % 50:02d}" for i in range(40))


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir):
    return str(tiny_llama_dir)


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads its model: its bad input must be refused before."""
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")
    monkeypatch.setattr(interp.models, "load_model", refuse)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "error:" in err and "fix:" in err, err  # the problem and the fix, no traceback
    return err


# -- silently wrong ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,data", [("bin.txt", b"\x00\x01\x02binary" * 50),
                                       ("bad.jsonl", b'{"text": "\xff\xfe"}\n')])
def test_binary_corpus_file_is_refused(model_dir, tmp_path, capsys, name, data):
    (tmp_path / name).write_bytes(data)
    assert main(["record", "--model", model_dir, "--corpus", str(tmp_path / name),
                 "--out", str(tmp_path / "rec"), "--quiet"]) == 2
    assert "looks binary" in _err(capsys)


@pytest.mark.parametrize("n", ["0", "-1"])
def test_max_windows_below_one_is_refused(model_dir, tmp_path, capsys, no_model, n):
    assert main(["record", "--model", model_dir, "--corpus", "pydoc", "--max-windows", n,
                 "--out", str(tmp_path / "rec")]) == 2
    assert "asks for no windows" in _err(capsys)
    with pytest.raises(InterpError, match="asks for no windows"):
        next(interp.windows(None, [], 8, max_windows=int(n)))


def _toy(out, steps, *extra):
    return main(["toy", "train", "--task", "parity", "--option", "n_bits=4", "--steps", str(steps),
                 "--eval-every", "2", "--eval-size", "16", "--batch-size", "8", "--d-model", "16",
                 "--n-layers", "1", "--n-heads", "2", "--out", str(out), *extra])


def test_toy_resumed_with_fewer_steps_is_refused(tmp_path, capsys):
    assert _toy(tmp_path / "toy", 4) == 0
    assert _toy(tmp_path / "toy", 2) == 2
    assert "already trained 4 steps" in _err(capsys)
    assert interp.training.toy.load_toy(tmp_path / "toy").metrics["steps"] == 4


def _pause_config(**kw):
    base = dict(base=dataclasses.asdict(PAUSE_TINY), n_tokens=12, steps=4, batch_size=2, rank=2,
                eval_every=2, eval_windows=2, warmup=1, lr=1e-2, pause_rate=0.3)
    return interp.training.pause.PauseTrainConfig(**{**base, **kw})


def _pause_train(out, cfg, **kw):
    return interp.training.pause.pause_train(
        cfg, out, train_windows=random_windows(20, length=12),
        eval_windows=random_windows(2, length=12, seed=1), verbose=False, **kw)


def test_pause_train_resumed_with_fewer_steps_is_refused(tmp_path):
    _pause_train(tmp_path / "p", _pause_config())
    with pytest.raises(InterpError, match="already trained 4 steps"):
        _pause_train(tmp_path / "p", _pause_config(steps=2))


def test_pause_train_fresh_clears_the_old_run_before_writing(tmp_path):
    out = tmp_path / "p"
    _pause_train(out, _pause_config())
    # stopped before its first checkpoint, as a kill right after the new config would leave it
    _pause_train(out, _pause_config(rank=4), fresh=True, stop_after=1)
    assert not (out / "state.json").exists() and not (out / "checkpoint.safetensors").exists()
    assert not (out / interp.training.pause.ADAPTER_FILE).exists()  # no rank-2 weights left
    res = _pause_train(out, _pause_config(rank=4))  # the rerun starts the new run and finishes
    assert interp.load_model(out) is not None and len(res.history) == 2


def test_label_table_without_tokens_is_refused(tmp_path):
    from interp.probes._data import read_label_table

    csv = tmp_path / "labels.csv"
    pd.DataFrame(dict(sequence=[0, 0], position=[1, 2], label=["a", "b"])).to_csv(csv, index=False)
    spec = interp.probes.ProbeSpec.from_dict(
        dict(target=dict(kind="label", table=str(csv), column="label")))
    with pytest.raises(InterpError, match="no column.*token") as e:
        read_label_table(spec, 1)
    assert "made for these sequences" in e.value.fix


def test_empty_probe_spec_is_refused(tmp_path, capsys):
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    assert main(["probe", "train", str(tmp_path / "empty.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "is empty" in _err(capsys)


# -- raw tracebacks -> named errors, before the model loads -------------------------------------

def test_out_under_a_file_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    (tmp_path / "file").write_text("x")
    assert main(["gradients", "--text", TEXT, "--out", str(tmp_path / "file" / "o")]) == 2
    assert "which is a file" in _err(capsys)
    assert main(["gradients", "--text", TEXT, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in _err(capsys)


def test_read_only_out_is_refused(tmp_path, capsys, no_model, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access  # root may write anywhere, so the permission answer is simulated
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    assert main(["record", "--text", TEXT, "--out", str(ro / "rec")]) == 2
    assert "read-only" in _err(capsys)


def test_missing_device_is_refused(tmp_path, capsys, no_model):
    assert main(["gradients", "--text", TEXT, "--device", "cuda:99", "--out", str(tmp_path)]) == 2
    assert "--device cuda:99" in _err(capsys)
    assert main(["gradients", "--text", TEXT, "--device", "gpu", "--out", str(tmp_path)]) == 2
    assert "not a device name" in _err(capsys)


def test_negative_by_distance_and_two_token_windows_are_refused(tmp_path, capsys, no_model):
    assert main(["gradients", "--text", TEXT, "--by-distance", "-1", "--out", str(tmp_path)]) == 2
    assert "negative" in _err(capsys)
    assert main(["gradients", "--corpus", "pydoc", "--n-tokens", "2", "--out", str(tmp_path)]) == 2
    assert "future share is undefined" in _err(capsys)


def test_identical_patch_prompts_are_refused(tmp_path, capsys, no_model):
    assert main(["patch", "--clean", "w03 w04", "--corrupt", "w03 w04", "--answer", " w05",
                 "--wrong", " w06", "--verify", "--out", str(tmp_path)]) == 2
    assert "same prompt" in _err(capsys)


def test_token_ids_beyond_the_vocabulary(model_dir):
    model = interp.load_model(model_dir)
    with pytest.raises(InterpError, match="token id 61, outside the model's vocabulary of 61"):
        interp.record(model, torch.tensor([[1, 5, 61]]), verbose=False)


def test_no_position_with_the_role_reaches_the_role_error(model_dir, tmp_path, capsys):
    assert main(["record", "--model", model_dir, "--text", TEXT, "--roles", "pause",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "no position has a selected role (pause)" in _err(capsys)
    # nothing is left that would refuse the corrected rerun without --fresh
    # (the folder lock stays: removing a lock file on release races with a waiting process)
    assert [p.name for p in (tmp_path / "r").iterdir()] == [".interp-lock"]
    assert main(["record", "--model", model_dir, "--text", TEXT, "--roles", "regular",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0


def test_figure_that_cannot_be_drawn_is_named_after_the_tables_are_saved(tmp_path, capsys):
    from interp.gradients import FutureGradients

    model = interp.load_model(interp.TinyConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=20,
                                                n_ctx=16), device="cpu")
    fg = interp.future_gradients(model, torch.tensor([1, 2, 3, 4, 5]), sites=["k"])
    fg.save(tmp_path / "g")
    t = pd.read_csv(tmp_path / "g" / FutureGradients.FILE)
    t["future_share"] = "oops"  # hand-edited: text in a numeric column
    t.to_csv(tmp_path / "g" / FutureGradients.FILE, index=False)
    assert main(["figures", str(tmp_path / "g"), "--formats", "html",
                 "--out", str(tmp_path / "f")]) == 2
    assert "could not be drawn" in _err(capsys)


# -- data lost, folders left unloadable ----------------------------------------------------------

def test_damaged_sidecar_is_repaired_by_fresh(model_dir, tmp_path, capsys):
    out = str(tmp_path / "rec")
    args = ["record", "--model", model_dir, "--text", TEXT, "--layers", "0", "--out", out, "--quiet"]
    assert main(args) == 0
    (tmp_path / "rec" / "recording.json").write_text("{ damaged")
    assert main(args + ["--resume"]) == 2
    assert "--fresh" in _err(capsys)
    assert main(args + ["--fresh"]) == 0
    assert len(interp.load_recording(out)) == 40


def test_second_writer_to_a_folder_is_refused(model_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from interp.core.io import folder_lock
            with folder_lock({str(out)!r}):
                print("locked", flush=True)
                sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["record", "--model", model_dir, "--text", TEXT, "--out", str(out)]) == 2
        assert f"is being written by process {holder.pid}" in _err(capsys)
    finally:
        holder.communicate("")
    # the holder exited: the folder is free again
    assert main(["record", "--model", model_dir, "--text", TEXT, "--layers", "0",
                 "--out", str(out), "--quiet"]) == 0


def test_two_processes_writing_one_file_never_collide(tmp_path):
    """Unique temporary names: 2 × 300 atomic writes of the same path, no error, a whole file."""
    code = textwrap.dedent(f"""
        import sys
        from interp.core.io import atomic_write_text
        for i in range(300):
            atomic_write_text({str(tmp_path / "t.txt")!r}, sys.argv[1] * 1000)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, c], stderr=subprocess.PIPE, text=True)
             for c in "ab"]
    errs = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert (tmp_path / "t.txt").read_text() in ("a" * 1000, "b" * 1000)
    assert not list(tmp_path.glob("*.tmp"))
