"""Pause training on the bundled SmolLM2-135M: a few real steps through the CLI, the
checkpoint loaded by interp.load_model, equal to the hooked training model, and generation
with forced pauses on it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp.cli import main
from interp.training.pause import PauseAdapter

pytestmark = pytest.mark.slow


def test_pause_train_cli_checkpoint_loads_and_generates(tmp_path, capsys):
    out = tmp_path / "ckpt"
    argv = ["pause-train", "--out", str(out), "--steps", "2", "--batch-size", "1",
            "--n-tokens", "16", "--eval-every", "2", "--eval-windows", "1", "--rank", "2",
            "--quiet"]
    assert main(argv) == 0
    assert "held-out loss" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2 and len(state["history"]) == 1
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base"] == "smollm2-135m" and config["pause_id"] == 49152

    model = interp.load_model(out)
    assert model.tokenizer.convert_tokens_to_ids("<pause>") == model.interp_pause_id == 49152
    # the merged model equals the base with the adapter hooked in, as trained
    hooked = interp.load_model()
    adapter = PauseAdapter(hooked, rank=2, alpha=config["alpha"], targets=config["targets"])
    adapter.load_tensors(load_file(str(out / "adapter.safetensors")))
    adapter.attach()
    seq = interp.insert_pauses(interp.tokenize(model, "The capital of France is Paris."),
                               interp.PausePolicy(positions=(3,), n=2), 49152)
    with torch.no_grad():
        torch.testing.assert_close(model(seq.tokens[None]), hooked(seq.tokens[None]),
                                   atol=2e-4, rtol=1e-4)
    gen = interp.generate(model, "The capital of France is", 2, pauses_before_answer=2)
    assert gen.roles.count("pause") == 2 and gen.recording is not None
    # another base model is refused
    with pytest.raises(interp.InterpError, match="trained on another base model"):
        interp.load_model(interp.TinyConfig(n_layers=2, d_model=32, d_vocab=61, n_ctx=64),
                          adapter=out)
