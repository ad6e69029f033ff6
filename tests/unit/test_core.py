"""The shared core: one site registry and one rule for layer indices, used by every analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pytest
import torch

import interp
from interp import sinks
from interp.cli import main
from interp.cli._common import RENAMED
from interp.core import REGISTRY, hook_name, hooks, resolve_layers, resolve_sites, site
from interp.gradients._batches import SITES as GRADIENT_SITES
from interp.patching import SITES as PATCHING_SITES
from interp.probes._spec import SITES as PROBE_SITES
from interp.recording import SITES as RECORDING_SITES


def test_every_analysis_draws_its_sites_from_the_registry():
    for subset in (GRADIENT_SITES, PATCHING_SITES, PROBE_SITES, RECORDING_SITES):
        assert set(subset) <= set(REGISTRY)
    assert hook_name("k", 3) == hooks.k(3)
    assert hook_name("resid", 1) == hooks.resid(1, "post")
    assert site("v").head_axis == "kv_head" and site("z").head_axis == "head_index"
    assert site("resid_mid").head_axis is None and site("pattern").shape == "head_index k_pos"


def test_resolve_sites_canonicalises_aliases_and_names_the_choices():
    assert resolve_sites(["resid", "k", "resid_post"], GRADIENT_SITES) == ("resid_post", "k")
    with pytest.raises(interp.InterpError, match="unknown site 'z'") as e:
        resolve_sites("z", GRADIENT_SITES)
    assert "resid_post" in e.value.fix
    with pytest.raises(interp.InterpError, match="no sites given"):
        resolve_sites([], PATCHING_SITES)


def test_resolve_layers_one_rule_for_negative_and_out_of_range_layers():
    assert resolve_layers(4, None) == (0, 1, 2, 3) == resolve_layers(4, "all")
    assert resolve_layers(4, [-1, 0, 3]) == (0, 3)
    assert resolve_layers(4, -2) == (2,)
    with pytest.raises(interp.InterpError, match=r"(?s)inputs\.layers: layer\(s\) \[4\] out of range.*0\.\.3"):
        resolve_layers(4, [4], what="inputs.layers")
    with pytest.raises(interp.InterpError, match=r"\[-5\] out of range"):
        resolve_layers(4, [-5])
    with pytest.raises(interp.InterpError, match="no layers"):
        resolve_layers(4, [])


def test_negative_layers_are_accepted_by_every_analysis(tiny_model):
    toks = torch.randint(0, 61, (1, 8))
    fg = interp.future_gradients(tiny_model, toks, layers=[-1], sites="k")
    assert set(fg.table["layer"]) == {1}
    reg = sinks.registers(tiny_model, toks, layers=[-1], verbose=False)
    assert set(reg.table["layer"]) == {1}
    rec = interp.record(tiny_model, toks, layers=[-1], sites=["resid_post"], roles=None)
    assert tuple(rec.layers) == (1,)
    effects = interp.attribution_patch(tiny_model, toks, toks.flip(-1), lambda logits: logits[0, -1, 0],
                                       sites="resid", layers=[-1])
    assert set(effects.table["layer"]) == {1}


def test_as_sequences_reads_every_kind_of_input_the_same_way(tiny_model):
    from interp.core.inputs import as_sequences, iter_sequences

    pause = interp.make_sequence([1, 2, 3])
    for inputs, n in [(torch.arange(5), 1), (torch.arange(10).reshape(2, 5), 2), ([1, 2, 3], 1),
                      ([torch.arange(4), [5, 6]], 2), (pause, 1), ([pause, pause], 2)]:
        seqs = as_sequences(tiny_model, inputs)
        assert len(seqs) == n and all(isinstance(s, interp.PausedSequence) for s in seqs)
    labels = [(x.name, x.document) for x in iter_sequences(tiny_model, [pause, pause])]
    window = interp.corpora.Window(doc_id="d", index=3, start=0, seq=pause)
    assert [(x.name, x.document, x.window) for x in iter_sequences(tiny_model, window)] == [
        ("d#3", "d", 3)]
    assert labels == [("0", "seq0"), ("1", "seq1")]
    with pytest.raises(interp.InterpError, match="cannot use inputs of type float") as e:
        as_sequences(tiny_model, 3.0)
    assert "load_corpus" in e.value.fix
    with pytest.raises(interp.InterpError, match="cannot use inputs of type dict"):
        as_sequences(tiny_model, [{"text": "x"}])
    with pytest.raises(interp.InterpError, match="integer tensor"):
        as_sequences(tiny_model, torch.zeros(4))
    with pytest.raises(interp.InterpError, match="empty"):
        as_sequences(tiny_model, [])



def test_only_the_adapter_reaches_inside_the_bridge():
    """Bridge internals and the pause state stored on the bridge are spelled in
    interp/core/model.py alone."""
    import pathlib
    import re

    root = pathlib.Path(interp.__file__).parent
    pattern = re.compile(r"original_component|interp_pause_id|interp_real_input|interp_config"
                         r"|\.blocks\[|model\.blocks\b")
    offenders = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
                 if p.name != "model.py" or p.parent.name != "core"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []


def test_adapter_keeps_the_pause_state_where_earlier_releases_put_it(tiny_model):
    from interp.core import model as core_model

    assert core_model.pause_id(tiny_model) is None
    pid = interp.add_pause_token(tiny_model)
    assert core_model.pause_id(tiny_model) == pid == tiny_model.interp_pause_id
    assert core_model.native_config(tiny_model) is not None and core_model.is_native(tiny_model)


def test_every_drawn_result_follows_the_result_protocol():
    from interp.core.result import Result
    from interp.reporting._registry import KINDS, RESULT_TYPES

    for cls in RESULT_TYPES:
        assert cls.FILES and cls.MADE_BY.startswith("interp ")
        for method in ("save", "load", "figures"):
            assert callable(getattr(cls, method)), (cls, method)
    assert [k.table for k in KINDS] == [cls.FILES[0] for cls in RESULT_TYPES]
    assert len({k.table for k in KINDS}) == len(KINDS)
    assert isinstance(interp.gradients.FutureGradients(pd.DataFrame()), Result)


def test_saved_results_load_and_draw_the_same_figures_as_in_memory(tiny_model, tmp_path):
    from interp.reporting._registry import figures_for, find_tables

    toks = torch.randint(0, 61, (2, 12))
    reg = sinks.registers(tiny_model, toks, verbose=False)
    fg = interp.future_gradients(tiny_model, toks, sites=("k", "v"))
    reg.save(tmp_path / "reg")
    fg.save(tmp_path / "grad")
    again = interp.gradients.FutureGradients.load(tmp_path / "grad")
    cols = ["layer", "site", "head", "position", "self_norm", "future_norm", "future_share"]
    pd.testing.assert_frame_equal(again.table[cols], fg.table[cols], check_dtype=False)
    drawn = {(folder.name, spec.name) for kind, folder in find_tables(tmp_path)
             for spec, _ in figures_for(kind, folder)}
    expected = {("reg", f.name) for f in reg.figures() + reg.massive.figures()}
    expected |= {("grad", f.name) for f in fg.figures()}
    assert drawn == expected
    with pytest.raises(interp.InterpError, match="interp registers"):
        sinks.EvictionResult.load(tmp_path / "reg")


@pytest.mark.parametrize("argv, new", [
    (["report", "--n-windows", "4"], "--max-windows"),
    (["report", "--pauses", "DIR"], "--pause-dir"),
    (["report", "--format", "png"], "--formats"),
    (["figures", "out", "--format", "pdf"], "--formats"),
    (["toy", "train", "--task", "parity", "--out", "X", "--no-resume"], "--fresh"),
    (["toy", "compare", "--task", "parity", "--out", "X", "--format", "png"], "--formats"),
    (["pause-train", "--out", "X", "--no-resume"], "--fresh"),
    (["pause-compare", "CKPT", "--out", "X", "--windows", "4"], "--max-windows"),
    (["pause-compare", "CKPT", "--out", "X", "--pauses", "3"], "--generation-pauses"),
    (["record", "--text", "hi", "--out", "X", "--overwrite"], "--fresh"),
    (["gradients", "--text", "hi", "--pause-every", "2", "--pauses", "2"], "--pauses-per-insert"),
    (["registers", "--text", "hi", "--pauses", "2"], "--pauses-per-insert"),
])
def test_old_option_spellings_fail_naming_the_new_one(argv, new, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    old = next(a for a in argv if a in RENAMED or a == "--pauses")
    assert f"{old} was renamed: use {new}" in capsys.readouterr().err


def test_report_config_old_keywords_fail_naming_the_new_one():
    from interp.reporting import ReportConfig

    assert ReportConfig(probe_layer_stride=5).probe_layer_stride == 5
    with pytest.raises(interp.InterpError, match="renamed probe_layer_stride") as e:
        ReportConfig(probe_layers=5)
    assert "probe_layer_stride=5" in e.value.fix
    assert ReportConfig(max_windows=3).max_windows == 3
    with pytest.raises(interp.InterpError, match="renamed max_windows") as e:
        ReportConfig(n_windows=3)
    assert "max_windows=3" in e.value.fix


@pytest.mark.parametrize("call, old, fix", [
    (lambda: interp.train_toy(interp.train.TrainConfig(), resume=False), "train_toy(resume=...)",
     "fresh=True"),
    (lambda: interp.pause_training.pause_train(interp.pause_training.PauseTrainConfig(),
                                               resume=True),
     "pause_train(resume=...)", "fresh=False"),
    (lambda: interp.train_probes({}, resume=False), "train_probes(resume=...)", "fresh=True"),
    (lambda: interp.record(None, [], overwrite=True), "record(overwrite=...)", "fresh=True"),
    (lambda: interp.pause_compare.compare_checkpoint("CKPT", n_windows=4),
     "compare_checkpoint(n_windows=...)", "max_windows=4"),
    (lambda: interp.cache_eviction(None, "text", window=8), "cache_eviction(window=...)",
     "eviction_window=8"),
    (lambda: interp.pause_compare.compare_instruments({}, [], pauses=2),
     "compare_instruments(pauses=...)", "generation_pauses=2"),
])
def test_old_keywords_fail_naming_the_new_one(call, old, fix):
    """Keywords renamed to match their command-line flags (--fresh, --max-windows) fail
    before any work, with the new keyword and its value (resume=False is fresh=True)."""
    with pytest.raises(interp.InterpError) as e:
        call()
    assert e.value.problem.startswith(old) and e.value.fix == f"pass {fix}"


def test_unknown_keywords_stay_type_errors():
    with pytest.raises(TypeError, match="unexpected keyword argument 'resum'"):
        interp.train_toy(interp.train.TrainConfig(), resum=False)


def test_future_lens_reads_the_same_inputs_grouped_by_document():
    from interp.probes._data import ProbeSequence
    from interp.probes._future_lens import _as_sequences

    model = interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, d_vocab=61), device="cpu")
    toks = torch.randint(0, 61, (3, 8))
    seqs = _as_sequences(model, toks)
    assert [s.group for s in seqs] == ["seq0", "seq1", "seq2"]
    assert all(torch.equal(s.seq.tokens, t) for s, t in zip(seqs, toks, strict=True))
    given = [ProbeSequence("doc", interp.make_sequence(toks[0]))]
    assert _as_sequences(model, given) == given


def test_the_one_next_token_loss_is_cross_entropy_upcast_from_half_precision():
    """core.loss against torch's cross-entropy: exact in float64, float32 for bfloat16 logits,
    masked and zero at the last position."""
    from interp.core.loss import next_token_nll, token_losses

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 11, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:],
                                            reduction="none")
    got = token_losses(logits, tokens, mask)
    torch.testing.assert_close(got[:, :-1], torch.where(mask[:, :-1], ref, 0.0), rtol=0, atol=1e-12)
    assert (got[:, -1] == 0).all() and got.dtype == torch.float64
    half = next_token_nll(logits.to(torch.bfloat16), tokens)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, next_token_nll(logits.to(torch.bfloat16).float(), tokens))


def test_every_results_folder_is_checked_by_check_files(tmp_path):
    """One missing-files check: each loader names the missing file and the command that
    writes it, before reading anything."""
    from interp.errors import InterpError
    from interp.patching import Attribution
    from interp.probes import load_probes
    from interp.reporting.pause_compare import PauseComparison
    from interp.training.toy import ToyComparison, load_toy

    cases = [(lambda: Attribution.load(tmp_path), "has no attribution.csv", "interp patch"),
             (lambda: PauseComparison.load(tmp_path), "has no pause_losses.csv", "pause-compare"),
             (lambda: ToyComparison.load(tmp_path), "has no compare.csv, histories.csv",
              "toy compare"),
             (lambda: load_toy(tmp_path), "holds no toy checkpoint (missing checkpoint",
              "toy train"),
             (lambda: load_probes(tmp_path), "is not a finished probe run (missing spec.toml",
              "probe train")]
    for load, problem, command in cases:
        with pytest.raises(InterpError) as e:
            load()
        assert e.value.problem.startswith(f"{tmp_path} {problem}") and command in e.value.fix


def test_pause_comparison_is_a_saved_result_with_a_table_per_file(tmp_path):
    """The dict of tables saves as pause_<name>.csv, one file each (the layout of earlier
    releases, whose ``window`` column reads back as ``sequence``)."""
    from interp.core.result import SavedResult
    from interp.reporting.pause_compare import PauseComparison

    losses = pd.DataFrame({"model": ["base"], "condition": ["plain"], "loss": [2.5]})
    comp = PauseComparison({"losses": losses}, {"checkpoint": "ckpt"})
    assert isinstance(comp, SavedResult)
    comp.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pause_compare.json", "pause_losses.csv"]
    pd.DataFrame({"window": [0], "layer": [1]}).to_csv(tmp_path / "pause_registers.csv", index=False)
    (tmp_path / "pause_compare.json").unlink()
    again = PauseComparison.load(tmp_path)
    pd.testing.assert_frame_equal(again.tables["losses"], losses)
    assert list(again.tables["registers"].columns) == ["sequence", "layer"]
    assert again.settings == {}


def test_the_report_command_is_generated_from_report_config():
    """Every ReportConfig field (but token ids) has a flag; no flag gives the config's defaults;
    a flag sets its field with the field's type."""
    import dataclasses

    from interp.cli import build_parser
    from interp.cli._report import config_from_args
    from interp.reporting import ReportConfig

    parser = build_parser()
    report = parser._subparsers._group_actions[0].choices["report"]
    dests = {a.dest for a in report._actions}
    assert {f.name for f in dataclasses.fields(ReportConfig)} - dests == {"tokens"}
    assert config_from_args(parser.parse_args(["report"])) == ReportConfig()
    cfg = config_from_args(parser.parse_args(
        ["report", "--sinks", "0,2", "--long-context", "none", "--toy", "runs/toy",
         "--pause-rate", "0.25", "--max-windows", "3", "--formats", "none",
         "--sections", "registers,patching", "--clean", "A B"]))
    assert cfg == ReportConfig(sinks=(0, 2), long_context_tokens=(), toy_dir="runs/toy",
                               pause_rate=0.25, max_windows=3, formats=(),
                               sections=("registers", "patching"), clean="A B")


def test_saved_result_files_follow_from_saved(tmp_path):
    from interp.core.result import SavedResult

    @dataclass
    class Inner(SavedResult):
        table: pd.DataFrame
        MADE_BY: ClassVar[str] = "interp inner"
        SAVED: ClassVar[dict] = {"table": "inner.csv"}

    @dataclass
    class Outer(SavedResult):
        main: pd.DataFrame
        ratio: float
        inner: Inner
        extra: dict
        MADE_BY: ClassVar[str] = "interp outer"
        SAVED: ClassVar[dict] = {"main": "outer.csv", "ratio": "outer.json:ratio", "inner": Inner,
                                 "extra": "outer_extra.json"}
        EMPTY: ClassVar[dict] = {"extra": dict}

    # SAVED's order (the first file identifies the result), optional files left out
    assert Outer.FILES == ("outer.csv", "outer.json", "inner.csv")
    table = pd.DataFrame({"a": [1, 2]})
    Outer(table, 0.5, Inner(table), {}).save(tmp_path)
    (tmp_path / "outer_extra.json").unlink()
    back = Outer.load(tmp_path)
    assert back.ratio == 0.5 and back.extra == {} and back.inner.table.equals(table)
    (tmp_path / "inner.csv").unlink()
    with pytest.raises(interp.InterpError, match="(?s)no inner.csv.*interp outer"):
        Outer.load(tmp_path)
    with pytest.raises(TypeError, match="declare FILES"):
        class Tables(SavedResult):
            SAVED: ClassVar[dict] = {"tables": "t_*.csv"}
