"""Shared fixtures: deterministic seeds, tiny native models (MHA and GQA), the bundled model.

Tiers: ``tests/unit`` and ``tests/integration`` run on tiny native models; tests marked
``slow`` run on the bundled SmolLM2-135M (CI runs them too).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import interp

ATTENTION_VARIANTS = {
    "mha": dict(n_heads=4, n_kv_heads=None),
    "gqa": dict(n_heads=4, n_kv_heads=2),
}


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def tiny(variant: str = "gqa", dtype: torch.dtype = torch.float32, **overrides):
    """A 2-layer tiny native model; ``variant`` is ``"mha"`` or ``"gqa"``."""
    cfg = dict(n_layers=2, d_model=32, d_vocab=61, n_ctx=64, seed=0, **ATTENTION_VARIANTS[variant])
    cfg.update(overrides)
    return interp.load_model(interp.TinyConfig(**cfg), device="cpu", dtype=dtype)


@pytest.fixture(params=list(ATTENTION_VARIANTS))
def tiny_model(request):
    """A tiny float32 model, once with full multi-head and once with grouped-query attention."""
    return tiny(request.param)


@pytest.fixture(params=list(ATTENTION_VARIANTS))
def tiny_model64(request):
    """A tiny float64 model (MHA and GQA) for exact numerical checks."""
    return tiny(request.param, dtype=torch.float64)


@pytest.fixture(scope="session")
def smollm():
    """The bundled SmolLM2-135M-Instruct (float32, CPU). Shared: do not modify it in a test;
    use ``smollm_fresh`` for a copy you may change (e.g. adding a <pause> token)."""
    return interp.load_model("smollm2-135m", device="cpu")


@pytest.fixture
def smollm_fresh():
    """A fresh bundled model a test may modify (loads from the weight cache, ~1 s)."""
    return interp.load_model("smollm2-135m", device="cpu")
