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


#: the tiny model of the pause-training and pause-comparison tests (vocabulary 40, GQA)
PAUSE_TINY = interp.TinyConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=40,
                               n_ctx=64, seed=0)


def random_windows(n: int, *, length: int, seed: int = 0, vocab: int = 40) -> list:
    """``n`` seeded windows of random token ids in ``1..vocab-1`` (no BOS, no pauses)."""
    g = torch.Generator().manual_seed(seed)
    return [interp.make_sequence(torch.randint(1, vocab, (length,), generator=g))
            for _ in range(n)]


def word_tokenizer_at(path):
    """A 61-word tokenizer ('w00'..'w60', BOS w01, EOS w02) saved in ``path`` and reloaded, as
    the bridge wants (it rebuilds tokenizers from their name_or_path)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({f"w{i:02d}": i for i in range(61)}, unk_token="w00"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="w01", eos_token="w02",
                                  unk_token="w00")
    tok.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    return word_tokenizer_at(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A 2-layer Hugging Face Llama (GQA, float32) with the word tokenizer, saved as a local
    model folder: ``--model DIR`` runs every command on it in a second, no SmolLM2 needed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny_llama")
    cfg = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    word_tokenizer_at(path)
    return path


@pytest.fixture(scope="session")
def smollm():
    """The bundled SmolLM2-135M-Instruct (float32, CPU). Shared: do not modify it in a test;
    use ``smollm_fresh`` for a copy you may change (e.g. adding a <pause> token)."""
    return interp.load_model("smollm2-135m", device="cpu")


@pytest.fixture
def smollm_fresh():
    """A fresh bundled model a test may modify (loads from the weight cache, ~1 s)."""
    return interp.load_model("smollm2-135m", device="cpu")
