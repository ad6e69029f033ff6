"""The bundled SmolLM2-135M: the bridge matches Hugging Face, it knows Paris, the cache is exact."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.models import BUNDLED, _weights_dir
from interp.models._gguf import file_sha256

pytestmark = pytest.mark.slow


def test_bridge_logits_equal_hugging_face_eager(smollm):
    seq = interp.tokenize(smollm, "The capital of France is Paris, and the capital of Italy is")
    tokens = seq.tokens[None]
    with torch.no_grad():
        bridge_logits = smollm(tokens)
        hf_logits = smollm.original_model(input_ids=tokens).logits
    assert smollm.original_model.config._attn_implementation == "eager"
    torch.testing.assert_close(bridge_logits, hf_logits, atol=1e-4, rtol=0)


def test_greedy_completion_knows_paris(smollm):
    out = smollm.generate("The capital of France is", max_new_tokens=4, do_sample=False, verbose=False)
    assert "Paris" in out


def test_bos_is_explicit_and_matches_to_tokens(smollm):
    seq = interp.tokenize(smollm, "Hello world")
    assert seq.roles[0] == "bos"
    assert torch.equal(seq.tokens, smollm.to_tokens("Hello world")[0])
    no_bos = interp.tokenize(smollm, "Hello world", bos=False)
    assert len(no_bos) == len(seq) - 1
    with pytest.raises(interp.InterpError, match="second"):
        interp.tokenize(smollm, smollm.tokenizer.bos_token + "Hello")


def test_cached_weights_equal_a_fresh_gguf_dequantization(smollm):
    assert (_weights_dir(BUNDLED["smollm2-135m"].sha256) / "model.safetensors").is_file()
    fresh = interp.load_model("smollm2-135m", device="cpu", use_cache=False)
    tokens = interp.tokenize(smollm, "Weights must survive the cache.").tokens[None]
    with torch.no_grad():
        torch.testing.assert_close(smollm(tokens), fresh(tokens), atol=0, rtol=0)
    # tied embeddings stay tied after the cache round trip
    hf = smollm.original_model
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()


def test_gguf_path_loads_like_the_bundled_name(smollm):
    model = interp.load_model(str(BUNDLED["smollm2-135m"].path()), device="cpu")
    assert model.cfg.n_layers == 30 and interp.models.n_kv_heads(model) == 3


def test_a_gguf_named_like_the_bundled_model_is_read_for_itself(smollm, tmp_path, monkeypatch):
    """The cache is keyed by content: a different file called ``smollm2-135m.gguf`` is
    dequantized and loaded for itself, never answered from the bundled model's entry; and a
    load that fails after the dequantization (here: the bridge check) caches nothing."""
    from gguf import GGUFReader

    import interp.models

    src = BUNDLED["smollm2-135m"].path()
    copy = tmp_path / "smollm2-135m.gguf"
    data = bytearray(src.read_bytes())
    emb = next(t for t in GGUFReader(src).tensors if t.name == "token_embd.weight")
    # Q4_1 blocks of 32 weights: 2-byte scale, 2-byte minimum, 16 bytes of nibbles. Flip the
    # nibbles of the first block: the first 32 embedding entries of token 0 change.
    start = int(emb.data_offset) + 4
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    copy.write_bytes(bytes(data))
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(config, what):
        raise interp.InterpError(f"{what}: refused for the test")

    monkeypatch.setattr(interp.models, "check_bridgeable", refuse)
    with pytest.raises(interp.InterpError, match="refused for the test"):
        interp.load_model(str(copy), device="cpu")
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    own = interp.load_model(str(copy), device="cpu")
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [_weights_dir(file_sha256(copy)).name]
    w, w0 = own.W_E.detach(), smollm.W_E.detach()
    assert not torch.equal(w[0, :32], w0[0, :32])
    torch.testing.assert_close(w[0, 32:], w0[0, 32:], atol=0, rtol=0)
    torch.testing.assert_close(w[1:], w0[1:], atol=0, rtol=0)


def test_pause_token_on_the_real_model(smollm_fresh):
    model = smollm_fresh
    pid = interp.add_pause_token(model)
    assert model.tokenizer.convert_tokens_to_ids("<pause>") == pid == 49152
    seq = interp.tokenize(model, "one two three four five")
    paused = interp.insert_pauses(seq, interp.PausePolicy(every=2, n=2), pid)
    text = model.tokenizer.decode(paused.tokens[1:])
    assert text.count("<pause>") == 4
    with torch.no_grad():
        logits = model(paused.tokens[None])
    assert torch.isfinite(logits).all() and logits.shape[-1] == 49153
    with pytest.raises(interp.InterpError, match="already in the vocabulary"):
        other = interp.load_model("smollm2-135m", device="cpu")
        interp.add_pause_token(other, token="<|im_start|>")


def test_unreachable_hub_fails_fast_with_the_fix():
    import time

    t = time.perf_counter()
    with pytest.raises(interp.InterpError, match="local directory"):
        interp.load_model("HuggingFaceTB/no-such-model-interp-test")
    assert time.perf_counter() - t < 30
