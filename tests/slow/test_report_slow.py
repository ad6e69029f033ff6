"""The report end to end on the bundled SmolLM2-135M, in a small setting."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import check_key_numbers

from interp.reporting import ReportConfig, report

pytestmark = pytest.mark.slow


def test_report_on_the_bundled_model(smollm_fresh, tmp_path):
    config = ReportConfig(n_tokens=48, max_windows=2, eviction_tokens=200, eviction_window=32,
                          sinks=(0, 4), gradient_windows=1, gradient_tokens=24, max_distance=4,
                          probe_windows=24, probe_tokens=16, probe_layer_stride=15, offsets=(1, 2), probe_eval_positions=100,
                          patch_layers=10, long_context_tokens=(1024,),
                          sections=("registers", "gradients", "probes", "patching", "tokens"),
                          formats=("png",))
    page = report(config, tmp_path, model=smollm_fresh, strict=True,
                  verbose=False).read_text(encoding="utf-8")
    assert "class='gap'" not in page
    for section in ("registers", "gradients", "probes", "patching", "tokens"):
        assert f"id='{section}'" in page
    keys = pd.read_csv(tmp_path / "key_numbers.csv").set_index("key")["value"]
    assert float(keys["Registers and attention sinks: first-position attention / uniform"]) > 5
    # every key number rederived from the section tables (the registers' uniform column
    # included) but the patching metrics (read from the two runs) and the token section's
    # (its views keep no table)
    checked = check_key_numbers(tmp_path)
    assert set(keys.index) - set(checked) == {
        "Attribution patching example: metric, clean",
        "Attribution patching example: metric, corrupt",
        "One prompt, token by token: example prompt: mean future share of the key"}
    atp = pd.read_csv(tmp_path / "patching" / "attribution.csv")
    assert {"atp", "activation_patch"} <= set(atp.columns)
    assert (tmp_path / "probes" / "future_lens.csv").is_file()
    assert keys["Lookahead: Future Lens: headline"].startswith("Future Lens (linear) at layer")
    assert len(list((tmp_path / "figures").rglob("*.png"))) == page.count("<figure>")
    # the example prompt, token by token: four views embedded, each also a page of its own
    assert page.count('<div class="itv"') == 4
    assert len(list((tmp_path / "tokens").glob("*.html"))) == 4
