"""Learned pauses on the bundled SmolLM2-135M (a tied embedding): a two-step run through
the CLI writes the frontier and difficulty tables, the adapter loads with interp.load_model,
and generation with self-requested pauses agrees with the readout on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors.torch import load_file

import interp
from interp.cli import main
from interp.training.learned_pauses_lm import lm_readout

pytestmark = pytest.mark.slow


def test_learned_pause_sweep_on_smollm2(tmp_path, capsys):
    out = tmp_path / "lp"
    argv = ["pause-train", "--learned", "--lams", "0.1", "--out", str(out), "--steps", "2",
            "--n-tokens", "10", "--batch-size", "1", "--sites", "2", "--eval-windows", "1",
            "--eval-every", "2", "--rank", "2", "--max-pauses", "2", "--formats", "none",
            "--quiet"]
    assert main(argv) == 0
    frontier = pd.read_csv(out / "frontier.csv")
    assert frontier["lam"].unique().tolist() == [0.1]
    assert set(frontier["policy"]) == {"learned", "fixed", "random", "entropy"}
    assert (frontier["n"] == 9).all()  # one held-out window of 10 tokens: 9 next tokens
    difficulty = pd.read_csv(out / "difficulty.csv")
    assert difficulty["count"].sum() == 9
    assert "policy" in capsys.readouterr().out
    # the tied model trains the pause row only, no separate output row
    config = json.loads((out / "lam_0.1" / "adapter_config.json").read_text())
    assert config["pause_logit"] is True
    assert "pause_out" not in load_file(str(out / "lam_0.1" / "adapter.safetensors"))

    model = interp.load_model(out / "lam_0.1")
    seq = interp.tokenize(model, "The capital of France is Paris, and")
    r = lm_readout(model, [seq], 2, sites=[[3, 6]])
    for i, t in enumerate([3, 6]):
        gen = interp.generate(model, interp.make_sequence(seq.tokens[:t + 1]),
                              max_new_tokens=1, max_pauses=2, record=False)
        assert gen.n_pauses == int(r.stop[i])
        assert int(gen.tokens[-1]) == int(r.prediction[i, r.stop[i]])
