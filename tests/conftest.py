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


@pytest.fixture(scope="session")
def smollm_hf(smollm):
    """The bundled model as a plain Hugging Face ``LlamaForCausalLM`` (eager attention,
    float32), with no bridge module in it: the slow tier's independent reference. Loaded by
    transformers from the float32 weights that loading ``smollm`` dequantized from the GGUF
    file into interp's weight cache (the same weights the bridge wraps; dequantizing the file
    again would take ~45 s on 2 cores)."""
    from transformers import LlamaForCausalLM

    from interp.models import BUNDLED, cache_dir

    path = cache_dir() / "models" / BUNDLED["smollm2-135m"].sha256[:32]
    return LlamaForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


@pytest.fixture
def smollm_fresh():
    """A fresh bundled model a test may modify (loads from the weight cache, ~1 s)."""
    return interp.load_model("smollm2-135m", device="cpu")


def check_key_numbers(out) -> list[str]:
    """Recompute the report's key numbers in ``out`` from the tables its sections saved, with
    pandas, numpy and scipy only (not the result objects that made them, nor interp), assert
    that ``key_numbers.csv`` shows each, and return the keys checked. The registers table's
    ``uniform`` column is itself rederived: on full causal attention (the models the report
    tests run) query i gives 1/(i + 1) to each of its keys. The report shows only some of
    each section's numbers; the caller checks which keys were covered."""
    import json
    from pathlib import Path

    import pandas as pd
    from scipy import stats

    out = Path(out)
    key = pd.read_csv(out / "key_numbers.csv").set_index("key")["value"].astype(str)
    checked = []

    def check(name, x, digits):  # as the section rounds and key_numbers.csv prints
        if name not in key:  # (the report shows some of each section's numbers)
            return
        x = round(float(x), digits)
        assert key[name] == (f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"), (name, key[name], x)
        checked.append(name)

    if (out / "registers").is_dir():
        title = "Registers and attention sinks: "
        reg = pd.read_csv(out / "registers" / "registers.csv")
        for _, rows in reg.groupby(["sequence", "layer"]):
            n = len(rows)
            assert rows.position.tolist() == list(range(n))
            brute = [np.mean([1 / (i + 1) for i in range(j + 1, n)]) for j in range(n - 1)]
            np.testing.assert_allclose(rows.uniform.to_numpy()[:-1], brute, rtol=1e-12)
        seen = reg.dropna(subset=["attn_received"])
        first = seen[seen.position == 0]
        check(title + "first-position attention / uniform",
              first.attn_received.mean() / first.uniform.mean(), 3)
        for role in ("regular", "pause"):
            rows = seen[seen.role == role]
            check(title + f"{role} attention / uniform",
                  rows.attn_received.mean() / rows.uniform.mean(), 3)
        abl = pd.read_csv(out / "registers" / "ablations" / "ablations.csv")
        base = abl[abl.component == "none"].loss.iloc[0]
        for (component, method), label in [(("massive", "zero"), "massive zeroed"),
                                           (("massive", "mean"), "massive set to mean"),
                                           (("sink_kv", "zero"), "sink K/V zeroed"),
                                           (("sink_kv", "mean"), "sink K/V set to mean")]:
            row = abl[(abl.component == component) & (abl.method == method)]
            if len(row):
                check(title + f"Δloss, {label}", row.loss.iloc[0] - base, 3)
            elif title + f"Δloss, {label}" in key:  # not run (no massive activation): a dash
                assert key[title + f"Δloss, {label}"] == "–"
                checked.append(title + f"Δloss, {label}")
        # eviction: perplexity = exp(mean next-token loss over the scored positions)
        pos = pd.read_csv(out / "registers" / "eviction" / "eviction_positions.csv")
        settings = json.loads((out / "registers" / "eviction" / "eviction.json").read_text())
        window = settings["eviction_window"]
        for s, nll in pos.groupby("n_sinks").nll:
            assert len(nll) == settings["n_tokens"] - 1 - settings["first_scored"]
            label = ("full attention" if s == -1 else f"window only ({window})" if s == 0
                     else f"{s} sink{'s' if s > 1 else ''} + window ({window})")
            check(title + f"perplexity, {label}", np.exp(nll.mean()), 2)
    if (out / "gradients").is_dir():
        # the mean future share over layers, heads and positions but the first; the first's
        fg = pd.read_csv(out / "gradients" / "future_gradients.csv")
        title = "Future-loss gradient decomposition: "
        for site, rows in fg.groupby("site"):
            check(title + f"mean future share, {site}",
                  rows[rows.position > 0].future_share.dropna().mean(), 3)
            check(title + f"first-position future share, {site}",
                  rows[rows.position == 0].future_share.dropna().mean(), 3)
    if (out / "probes" / "future_lens.csv").is_file():
        # per method and offset the best layer by top-1 agreement; the headline: the linear
        # lens at the offset ≥ 2 and layer where it beats the bigram baseline most
        lens = pd.read_csv(out / "probes" / "future_lens.csv")
        title = "Lookahead: Future Lens: "
        best = lens.loc[lens.groupby(["method", "offset"]).agreement_top1.idxmax()]
        shown = {}  # the section writes one method after the other: the last one's stay
        for _, r in best.sort_values(["method", "offset"]).iterrows():
            k = int(r.offset)
            shown[f"offset {k}: best layer"] = (r.layer, None)
            for label, col in [("top-1 agreement with the model", "agreement_top1"),
                               ("bigram agreement", "bigram_agreement"),
                               ("true-token accuracy", "accuracy"),
                               ("bigram accuracy", "bigram_accuracy")]:
                shown[f"offset {k}: {label}"] = (r[col], 3)
        for name, (x, digits) in shown.items():
            if digits is None and title + name in key:
                assert key[title + name] == str(int(x)), (name, key[title + name], x)
                checked.append(title + name)
            elif digits is not None:
                check(title + name, x, digits)
        far = lens[(lens.method == "linear") & (lens.offset >= 2)]
        r = far.loc[(far.agreement_top1 - far.bigram_agreement).idxmax()]
        assert key[title + "headline"] == (
            f"Future Lens (linear) at layer {int(r.layer)}, offset {int(r.offset)}: top-1 "
            f"agreement with the model {r.agreement_top1:.3f} vs bigram "
            f"{r.bigram_agreement:.3f} (true token {r.accuracy:.3f} vs bigram "
            f"{r.bigram_accuracy:.3f}; n = {int(r.n)})")
        checked.append(title + "headline")
    if (out / "patching").is_dir():
        # Spearman over the nodes that either method finds affected
        att = pd.read_csv(out / "patching" / "attribution.csv")
        affected = att[(att.atp != 0) | (att.activation_patch != 0)]
        rho = stats.spearmanr(affected.atp, affected.activation_patch).statistic
        check("Attribution patching example: Spearman(AtP, activation patching), all", rho, 3)
    return checked
