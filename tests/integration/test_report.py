"""The report end to end on a tiny model (token-id input), its cache, its gaps, and
``interp figures`` redrawing every figure from the saved tables."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import plotly.offline
import pytest
import torch
from conftest import check_key_numbers

import interp
from interp.cli import main
from interp.reporting import ReportConfig, report

TINY = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64)


def _config(**overrides) -> ReportConfig:
    tokens = torch.randint(0, 61, (3, 20), generator=torch.Generator().manual_seed(0))
    settings = dict(model=interp.TinyConfig(**TINY), tokens=tokens, n_tokens=20, max_windows=3,
                    pause_rate=0.2, eviction_tokens=60, eviction_window=8, sinks=(0, 2),
                    gradient_windows=2, gradient_tokens=12, max_distance=4,
                    long_context_tokens=(40, 500),  # 500 > the context: skipped
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
    lengths = pd.read_csv(out / "gradients" / "long_context.csv")
    assert sorted(set(lengths.n_tokens)) == [12, 40]
    assert "Future share of the key gradient against position for windows" in page
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
    # a section cached by an earlier release, under a setting's earlier name, is reused too
    old = {("n_windows" if k == "max_windows" else k): v for k, v in record["settings"].items()}
    (tmp_path / "registers" / "section.json").write_text(json.dumps(dict(record, settings=old)))
    page = report(_config(formats=()), tmp_path, verbose=False).read_text(encoding="utf-8")
    assert page.count(reused) == 3
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
    assert main(["figures", str(out), "--formats", "svg", "--out", str(tmp_path)]) == 0
    svgs = {p.stem for p in tmp_path.rglob("*.svg")}
    assert {"attention_received", "norms_by_position", "attention_heatmap", "sink_heads",
            "massive_by_layer",
            "ablation_bars", "eviction_perplexity", "future_share_heatmap",
            "gradient_by_distance", "atp_scatter"} <= svgs


def test_figures_cli_bad_input(tiny_report, tmp_path, capsys, monkeypatch):
    out, _ = tiny_report
    assert main(["figures", str(out), "--formats", "bmp"]) == 2
    assert "use one of: html, png, svg, pdf" in capsys.readouterr().err
    assert main(["figures", str(tmp_path)]) == 2
    assert "interp registers --out DIR" in capsys.readouterr().err
    # a table without the companion its figure needs names the command that writes it
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "registers.csv").write_text((out / "registers" / "registers.csv").read_text())
    assert main(["figures", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "lacks massive.csv, massive_layers.csv, massive.json" in err and "interp registers --out DIR" in err
    # a registers folder from before the per-head table draws every figure but that one
    old = tmp_path / "old"
    shutil.copytree(out / "registers", old)
    (old / "registers_heads.csv").unlink()
    assert main(["figures", str(old), "--formats", "html"]) == 0
    assert (old / "attention_received.html").is_file() and not (old / "sink_heads.html").exists()
    # no Chrome: static formats say how to install it; HTML still works
    monkeypatch.setattr("interp.figures._export.find_chrome", lambda: None)
    assert main(["figures", str(out / "patching"), "--formats", "png"]) == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err
    assert main(["figures", str(out / "patching"), "--formats", "html",
                 "--out", str(tmp_path / "h")]) == 0


def test_report_config_validates():
    with pytest.raises(interp.InterpError, match="report section"):
        ReportConfig(sections=("nonsense",))
    with pytest.raises(interp.InterpError, match="pause_rate"):
        ReportConfig(pause_rate=1.5)


CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh installs it); never downloaded

# Loads the report in an iframe (file:// pages may read each other with
# --allow-file-access-from-files), waits for plotly, clicks every section link and writes what
# it saw into <pre id="result">, which --dump-dom prints.
HARNESS = """<!DOCTYPE html><html><body>
<iframe id="r" src="report.html" style="width:1200px;height:800px"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById("r").addEventListener("load", () => setTimeout(() => {
  const w = document.getElementById("r").contentWindow, d = w.document;
  const plots = [...d.querySelectorAll("div.plotly-graph-div")];
  const links = [...d.querySelectorAll("nav a")].map(a => {
    a.click();
    const target = d.getElementById(a.getAttribute("href").slice(1));
    const top = target ? target.getBoundingClientRect().top : null;
    const atEnd = w.scrollY + w.innerHeight >= d.documentElement.scrollHeight - 2;
    return {href: a.getAttribute("href"), hash: w.location.hash, found: !!target,
            top: top, at_end: atEnd};
  });
  document.getElementById("result").textContent = JSON.stringify({
    plots: plots.length, figures: d.querySelectorAll("figure").length,
    rendered: plots.filter(p => p.querySelector("svg.main-svg") &&
                                p.querySelectorAll("g.trace, g.hm image").length > 0).length,
    links: links});
}, 2000));
</script></body></html>"""


def _chromium(url: str, profile) -> tuple[str, list[str]]:
    """Headless Chromium, offline (every host resolves to nothing); the DOM after the page's
    scripts ran, and the console messages Chromium logged."""
    import subprocess

    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--allow-file-access-from-files",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=20000", "--dump-dom", url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_in_a_real_browser(tiny_report, tmp_path):
    import html
    import re

    # the check itself can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, console = _chromium(bad.as_uri(), tmp_path / "profile0")
    assert any("undefinedFunction is not defined" in line for line in console)

    out, path = tiny_report
    harness = out / "harness.html"
    harness.write_text(HARNESS)
    try:
        dom, console = _chromium(harness.as_uri(), tmp_path / "profile1")
    finally:
        harness.unlink()
    assert console == []  # no errors, warnings or logs: offline, nothing failed to load
    seen = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)[1]))
    page = path.read_text(encoding="utf-8")
    assert seen["plots"] == page.count("<figure>") == seen["figures"] >= 8
    assert seen["rendered"] == seen["plots"]  # each plotly div drew an svg with traces/heatmap
    names = re.findall(r"<h2 id='([^']+)'>", page)
    assert [link["href"] for link in seen["links"]] == [f"#{n}" for n in names]
    for link in seen["links"]:  # each link moved the page to its section
        assert link["found"] and link["hash"] == link["href"], link
        assert abs(link["top"]) < 2 or (link["at_end"] and link["top"] > 0), link


def test_key_numbers_follow_from_the_section_tables(tiny_report):
    """The report's key numbers, recomputed with pandas from the tables its sections saved
    (not from the result objects that made them): conftest.check_key_numbers."""
    out, _ = tiny_report
    checked = check_key_numbers(out)
    shown = pd.read_csv(out / "key_numbers.csv").key
    # every key number but the patching metrics (read from the clean and corrupt runs) is
    # rederived from a table; the attention ratio on the tables' own uniform column, which is
    # itself rederived from the sequence lengths
    assert set(shown) - set(checked) == {"Attribution patching example: metric, clean",
                                         "Attribution patching example: metric, corrupt"}
