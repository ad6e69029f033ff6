"""The report end to end on a tiny model (token-id input), its cache, its gaps, and
``interp figures`` redrawing every figure from the saved tables."""

from __future__ import annotations

import json

import pandas as pd
import plotly.offline
import pytest
import torch

import interp
from interp.cli import main
from interp.reporting import ReportConfig, report

TINY = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64)


def _config(**overrides) -> ReportConfig:
    tokens = torch.randint(0, 61, (3, 20), generator=torch.Generator().manual_seed(0))
    settings = dict(model=interp.TinyConfig(**TINY), tokens=tokens, n_tokens=20, n_windows=3,
                    pause_rate=0.2, eviction_tokens=60, eviction_window=8, sinks=(0, 2),
                    gradient_windows=2, gradient_tokens=12, max_distance=4,
                    sections=("registers", "gradients", "patching"), formats=("png",))
    settings.update(overrides)
    return ReportConfig(**settings)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = report(_config(), out, strict=True, verbose=False)
    return out, path


def test_report_is_one_self_contained_page(tiny_report):
    out, path = tiny_report
    page = path.read_text(encoding="utf-8")
    js = plotly.offline.get_plotlyjs()
    assert page.count(js[:200]) == 1  # plotly.js embedded exactly once, no CDN
    assert "<script src=" not in page  # nothing loaded from the network
    for caption in ("Attention each position receives", "Loss increase when the massive",
                    "Perplexity with a sliding KV window", "Share of the gradient",
                    "Attribution patching (a gradient estimate)"):
        assert caption in page
    assert "class='gap'" not in page
    assert "Key numbers" in page and "eviction_window" in page  # numbers and settings
    # tables in the documented shape, and a PNG per figure
    reg = pd.read_csv(out / "registers" / "registers.csv")
    assert {"layer", "position", "role", "attn_received", "resid_norm", "value_norm"} <= set(reg)
    assert {"bos", "regular", "pause"} - {"bos"} <= set(reg["role"])  # pauses were inserted
    assert (out / "gradients" / "future_gradients.csv").is_file()
    assert (out / "patching" / "attribution.csv").is_file()
    pngs = sorted((out / "figures").rglob("*.png"))
    assert len(pngs) == page.count("<figure>") >= 8
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_rerun_reuses_sections_and_fresh_recomputes(tmp_path):
    reused = "reused from an earlier run"
    report(_config(formats=()), tmp_path, verbose=False)
    record = json.loads((tmp_path / "registers" / "section.json").read_text())
    page = report(_config(formats=()), tmp_path, verbose=False).read_text(encoding="utf-8")
    assert page.count(reused) == 3
    assert json.loads((tmp_path / "registers" / "section.json").read_text()) == record
    # changing a setting a section depends on recomputes that section only
    config = _config(max_distance=3, formats=())
    assert report(config, tmp_path, verbose=False).read_text("utf-8").count(reused) == 2
    assert report(config, tmp_path, fresh=True, verbose=False).read_text("utf-8").count(reused) == 0


def test_failing_sections_leave_labelled_gaps(tmp_path):
    page = report(_config(sections=("probes", "toy"), formats=()), tmp_path,
                  verbose=False).read_text(encoding="utf-8")
    assert page.count("class='gap'") == 2
    assert "this model has none" in page and "interp probe train" in page
    assert "interp toy compare --out DIR" in page


def test_figures_cli_redraws_everything_without_a_model(tiny_report, tmp_path, capsys):
    out, _ = tiny_report
    assert main(["figures", str(out), "--format", "svg", "--out", str(tmp_path)]) == 0
    svgs = {p.stem for p in tmp_path.rglob("*.svg")}
    assert {"attention_received", "norms_by_position", "attention_heatmap", "sink_heads",
            "massive_by_layer",
            "ablation_bars", "eviction_perplexity", "future_share_heatmap",
            "gradient_by_distance", "atp_scatter"} <= svgs


def test_figures_cli_bad_input(tiny_report, tmp_path, capsys, monkeypatch):
    out, _ = tiny_report
    assert main(["figures", str(out), "--format", "bmp"]) == 2
    assert "use one of: html, png, svg, pdf" in capsys.readouterr().err
    assert main(["figures", str(tmp_path)]) == 2
    assert "interp registers --out DIR" in capsys.readouterr().err
    # a table without the companion its figure needs names the command that writes it
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "registers.csv").write_text((out / "registers" / "registers.csv").read_text())
    assert main(["figures", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "lacks registers_heads.csv" in err and "interp registers --out DIR" in err
    # no Chrome: static formats say how to install it; HTML still works
    monkeypatch.setattr("interp.reporting._export.find_chrome", lambda: None)
    assert main(["figures", str(out / "patching"), "--format", "png"]) == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err
    assert main(["figures", str(out / "patching"), "--format", "html",
                 "--out", str(tmp_path / "h")]) == 0


def test_report_config_validates():
    with pytest.raises(interp.InterpError, match="report section"):
        ReportConfig(sections=("nonsense",))
    with pytest.raises(interp.InterpError, match="pause_rate"):
        ReportConfig(pause_rate=1.5)
