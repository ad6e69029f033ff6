"""Registers and sinks on the bundled SmolLM2-135M: the signatures the papers report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp import sinks
from interp.cli import main

pytestmark = pytest.mark.slow

TEXT = ("The study of language models has moved quickly. Researchers train them on large "
        "collections of text, and then ask what the networks have learned. One question is "
        "whether a model prepares, at one position, information that only later positions "
        "will use. Another is why so much attention goes to the very first token.")


@pytest.fixture(scope="module")
def windows(smollm):
    docs = interp.load_corpus(max_docs=12)
    return [w.seq for w in interp.windows(smollm, docs, 48, max_windows=2)]


def test_first_token_is_a_sink_with_massive_activations(smollm, smollm_hf, windows):
    reg = sinks.registers(smollm, windows, verbose=False)
    _check_against_hf(smollm_hf, windows[:1], reg)
    roles = reg.by_role().set_index("role")
    # Xiao et al.: the first token receives far more attention than uniform attention gives
    assert roles.loc["bos", "attn_ratio"] > 5 * roles.loc["regular", "attn_ratio"]
    # Sun et al.: a few huge dimensions at the first token, emerging abruptly and staying
    first = reg.massive.first_appearance()
    top = first.sort_values("max_abs", ascending=False).iloc[0]
    assert top["position"] == 0 and top["max_abs"] > 1000
    assert top["n_layers"] >= 10
    stats = reg.massive.layer_stats.groupby("layer")[["top1", "median"]].mean()
    assert (stats["top1"] / stats["median"]).max() > 1000
    # the sink's value vector is small although its residual norm is huge
    assert roles.loc["bos", "value_norm"] < roles.loc["regular", "value_norm"]
    assert roles.loc["bos", "resid_norm"] > 10 * roles.loc["regular", "resid_norm"]


def _check_against_hf(hf, windows, reg):
    """Every number of the register table, and the massive-activation statistics, from the
    plain Hugging Face model: attention received = mean over heads and later queries of
    ``output_attentions``; uniform = mean over later queries i of 1/(i + 1) (full causal
    attention); resid_norm = ‖output of decoder layer l‖ (HF's hidden_states, whose last is
    taken after the final norm); value_norm = mean over KV heads of ‖v_proj output‖; top-1 =
    max |h|. Float32 on both sides. The norms come from the same modules: equal to float32
    rounding, rtol 1e-6 (measured: 0). The bridge recomputes the attention pattern from HF's
    mask in its own order of operations: rtol 1e-5 (measured 3.1e-7 relative, with atol 1e-7
    for weights near 0); a key or query off by one moves it by O(1)."""
    seen = {}

    def keep(key):
        def hook(module, args, out):
            seen[key] = (out[0] if isinstance(out, tuple) else out)[0]
        return hook

    handles = [m.register_forward_hook(keep((kind, i))) for i, layer in enumerate(hf.model.layers)
               for kind, m in (("resid", layer), ("v", layer.self_attn.v_proj))]
    table = dict(list(reg.table.sort_values("position").groupby(["sequence", "layer"])))
    top1 = reg.massive.layer_stats.set_index(["sequence", "layer"]).top1
    try:
        for w, seq in enumerate(windows):
            with torch.no_grad():
                att = hf(seq.tokens[None], output_attentions=True).attentions
            n = len(seq)
            uniform = [np.mean([1 / (i + 1) for i in range(j + 1, n)]) for j in range(n - 1)]
            for layer, a in enumerate(att):
                rows, a = table[(w, layer)], a[0].numpy()  # [head, q, k]
                received = [a[:, j + 1:, j].mean() for j in range(n - 1)]
                np.testing.assert_allclose(rows.attn_received[:-1], received, rtol=1e-5, atol=1e-7)
                np.testing.assert_allclose(rows.uniform[:-1], uniform, rtol=1e-12)
                h = seen[("resid", layer)]
                np.testing.assert_allclose(rows.resid_norm, h.norm(dim=-1), rtol=1e-6)
                v = seen[("v", layer)].view(n, -1, 64)  # SmolLM2: 3 KV heads of 64
                np.testing.assert_allclose(rows.value_norm, v.norm(dim=-1).mean(-1), rtol=1e-6)
                np.testing.assert_allclose(top1[w, layer], float(h.abs().max()), rtol=1e-6)
    finally:
        for handle in handles:
            handle.remove()


def test_zero_ablation_hurts_far_more_than_mean_ablation(smollm, windows):
    m = sinks.massive_activations(smollm, windows, verbose=False)
    ab = sinks.ablate_massive(smollm, windows, m, verbose=False)
    zero, mean = ab.delta("massive", "zero"), ab.delta("massive", "mean")
    assert zero > 2.0  # nats per token
    assert zero > 10 * abs(mean)


def test_evicting_the_first_tokens_blows_up_perplexity(smollm):
    docs = interp.load_corpus()
    doc = max(docs, key=lambda d: len(d.text))
    ids = interp.tokenize(smollm, doc.text).tokens[:256]
    ev = sinks.cache_eviction(smollm, ids, eviction_window=32, sinks=(0, 4), verbose=False)
    full, evicted, kept = ev.perplexity(None), ev.perplexity(0), ev.perplexity(4)
    assert evicted > 1.5 * kept  # StreamingLLM: the window alone breaks down
    assert kept < 1.6 * full     # keeping 4 sink tokens recovers most of it


def test_registers_cli(tmp_path, capsys):
    assert main(["registers", "--text", TEXT, "--pause-every", "8", "--eviction-window", "16",
                 "--sinks", "0,1", "--no-ablate", "--out", str(tmp_path)]) == 0
    reg = pd.read_csv(tmp_path / "registers.csv")
    assert list(reg.columns[:4]) == ["sequence", "layer", "position", "role"]
    assert {"attn_received", "resid_norm", "value_norm"} <= set(reg.columns)
    assert set(reg["role"]) == {"bos", "regular", "pause"}
    massive = pd.read_csv(tmp_path / "massive.csv")
    assert (massive["position"] == 0).any()
    assert (tmp_path / "eviction.csv").is_file() and (tmp_path / "eviction_perplexity.html").is_file()
    assert "pause" in capsys.readouterr().out
    assert main(["registers", "--text", "Too short.", "--eviction-window", "16",
                 "--out", str(tmp_path / "x")]) == 2
    assert "eviction window" in capsys.readouterr().err
