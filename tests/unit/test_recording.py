"""Recording: values equal the bridge's own run_with_cache, roles select rows, the on-disk
format round-trips, resumes and reports corruption, and cached generation equals uncached
recomputation. Tiny native models (MHA and GQA) plus a tiny Hugging Face Llama (which has a
KV cache and fires hook_rot_k)."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.cli import main
from interp.recording import SITES
from interp.recording._store import SIDECAR

NATIVE_SITES = [s for s in SITES if not s.startswith("rot_")]


def _cache_rows(cache, name: str, site: str):
    """run_with_cache's activation, flattened to [batch * pos, ...] in recording row order."""
    act = cache[name]
    if site == "pattern":
        act = act.permute(0, 2, 1, 3)  # [batch, q_pos, head, k_pos]
    return act.reshape(-1, *act.shape[2:])


def _check_against_cache(model, rec, tokens, sites):
    _, cache = model.run_with_cache(tokens)
    for site in sites:
        for layer, name in zip(rec.layers, rec.meta["hook_names"][site], strict=True):
            assert torch.equal(rec.get(site, layer), _cache_rows(cache, name, site)), (site, layer)


def _tiny_llama(tokenizer, n_kv_heads: int):
    """A 2-layer Hugging Face Llama (float64, eager attention) wrapped by the bridge."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=n_kv_heads,
                      max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).to(torch.float64).eval()
    bridge = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tokenizer)
    bridge.eval()
    return bridge


@pytest.fixture(params=[4, 2], ids=["mha", "gqa"])
def tiny_llama(request, word_tokenizer):
    return _tiny_llama(word_tokenizer, request.param)


# --- values -----------------------------------------------------------------------------------


def test_every_site_equals_run_with_cache(tiny_model64):
    tokens = torch.randint(0, 61, (3, 11))
    rec = interp.record(tiny_model64, tokens, sites=NATIVE_SITES, roles=None, verbose=False)
    assert len(rec) == 33
    _check_against_cache(tiny_model64, rec, tokens, NATIVE_SITES)


def test_hf_model_sites_equal_run_with_cache_including_rope(tiny_llama):
    tokens = torch.randint(0, 61, (2, 9))
    rec = interp.record(tiny_llama, tokens, sites=SITES, roles=None, verbose=False)
    _check_against_cache(tiny_llama, rec, tokens, SITES)


def test_native_rot_sites_rebuild_the_attention_scores(tiny_model64):
    """On native models rot_q/rot_k are computed with the module's rotary: they must give back
    the attention the model used, softmax(q_rot · k_rot / sqrt(d_head)) under the causal mask,
    with each K shared across its query group. (Compared with hook_pattern: on native models
    hook_attn_scores carries the post-softmax pattern, not the scores.)"""
    tokens = torch.randint(0, 61, (2, 10))
    rec = interp.record(tiny_model64, tokens, sites=("rot_q", "rot_k", "k"), roles=None,
                        verbose=False)
    _, cache = tiny_model64.run_with_cache(tokens)
    group = torch.tensor(rec.kv_head_of_query_head)
    d_head = tiny_model64.cfg.d_head
    for layer in rec.layers:
        q = rec.get("rot_q", layer).reshape(2, 10, -1, d_head)
        k = rec.get("rot_k", layer).reshape(2, 10, -1, d_head)[:, :, group]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / d_head**0.5
        causal = torch.ones(10, 10, dtype=torch.bool).tril()
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        ref = cache[interp.hooks.pattern(layer)]
        torch.testing.assert_close(pattern, ref, rtol=0, atol=1e-12)
        assert not torch.equal(rec.get("rot_k", layer), rec.get("k", layer))  # RoPE did rotate


def test_forward_stops_after_the_deepest_recorded_layer(tiny_model):
    fired = []
    later = [(interp.hooks.resid(1, "pre"), lambda a, hook: fired.append(hook.name)),
             ("unembed.hook_out", lambda a, hook: fired.append(hook.name))]
    with tiny_model.hooks(fwd_hooks=later):
        rec = interp.record(tiny_model, torch.randint(0, 61, (2, 5)), sites=("resid_post",),
                            layers=[0], roles=None, verbose=False)
        assert fired == [] and rec["resid_post"].shape == (10, 1, 32)
        tiny_model(torch.randint(0, 61, (1, 5)))  # the model still runs normally afterwards
    assert len(fired) == 2


def test_a_hook_that_never_fires_is_an_error_not_garbage(tiny_model):
    """Native models expose hook_rot_k but never call it; reading it directly must fail."""
    from interp.recording._capture import BatchCapture
    from interp.recording._sites import SitePlan

    zero = torch.zeros(5, dtype=torch.long)
    cap = BatchCapture(tiny_model, [SitePlan("rot_k", interp.hooks.rot_k)], [0], zero,
                       torch.arange(5), 5, torch.float32)
    with pytest.raises(interp.InterpError, match="hook_rot_k.*did not fire"):
        cap.run(torch.randint(0, 61, (1, 5)))


def test_kv_stays_per_kv_head_with_an_explicit_map(tiny_model):
    rec = interp.record(tiny_model, torch.randint(0, 61, (1, 5)), sites=("k", "q"), roles=None,
                        verbose=False)
    n_kv = interp.models.n_kv_heads(tiny_model)
    assert rec["k"].shape == (5, 2, n_kv, tiny_model.cfg.d_head)
    assert rec["q"].shape == (5, 2, 4, tiny_model.cfg.d_head)
    assert rec.kv_head_of_query_head == tuple(h // (4 // n_kv) for h in range(4))


def test_padding_and_batching_do_not_change_values(tiny_model64):
    seqs = [interp.make_sequence(torch.randint(0, 61, (n,))) for n in (4, 9, 6)]
    kw = dict(sites=("resid_post", "v", "pattern"), roles=None, verbose=False)
    batched = interp.record(tiny_model64, seqs, batch_size=3, **kw)
    single = interp.record(tiny_model64, seqs, batch_size=1, **kw)
    for site in ("resid_post", "v"):
        torch.testing.assert_close(batched[site], single[site], rtol=0, atol=1e-12)
    pattern = batched["pattern"]  # [n, layer, head, k_pos], zero-padded to the longest (9)
    assert pattern.shape[-1] == 9
    pos = torch.tensor(batched.index.position.to_numpy())
    valid = torch.arange(9)[None, :] <= pos[:, None]  # [n, k_pos]
    torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
    assert (pattern.permute(1, 2, 0, 3)[..., ~valid] == 0).all()


# --- roles and the index -------------------------------------------------------------------


def test_only_selected_roles_are_recorded(tiny_model64):
    pid = interp.add_pause_token(tiny_model64)
    base = interp.make_sequence(torch.randint(0, 61, (9,)))
    policy = interp.PausePolicy(every=3, n=2)
    everything = interp.record(tiny_model64, base, policy=policy, roles=None, verbose=False)
    pauses = interp.record(tiny_model64, base, policy=policy, roles=("pause",), verbose=False)
    idx = pauses.to_pandas()
    assert len(idx) == 4 and set(idx.role) == {"pause"}
    assert (idx.token == pid).all() and (idx.original_position == -1).all()
    rows = everything.mask(role="pause")
    assert torch.equal(rows, torch.tensor(everything.index.role.eq("pause").to_numpy()))
    assert everything.mask(role=("pause", "regular")).all()
    assert torch.equal(pauses["resid_post"], everything["resid_post"][rows])
    regular = everything.index[everything.index.role == "regular"]
    assert regular.original_position.tolist() == list(range(9))


def test_corpus_documents_are_windowed_and_labelled(word_tokenizer):
    model = _tiny_llama(word_tokenizer, 2)
    docs = [interp.Document("a", " ".join(f"w{i % 50 + 3:02d}" for i in range(20))),
            interp.Document("b", " ".join(f"w{i % 40 + 5:02d}" for i in range(13)))]
    rec = interp.record(model, docs, n_tokens=7, roles=None, verbose=False)
    idx = rec.to_pandas()
    assert list(idx.groupby("document").window.nunique()) == [3, 2]  # 20 // 6 and 13 // 6
    assert idx.token_str.iloc[1] == "w03" and idx.role.iloc[0] == "bos"
    assert len(idx) == 5 * 7


# --- on disk ---------------------------------------------------------------------------------


def test_save_and_load_round_trip(tiny_model, tmp_path):
    rec = interp.record(tiny_model, torch.randint(0, 61, (2, 6)), sites=("resid_mid", "k"),
                        layers=[1], roles=None, verbose=False)
    rec.save(tmp_path / "r")
    back = interp.load_recording(tmp_path / "r")
    assert torch.equal(back["k"], rec["k"]) and torch.equal(back["resid_mid"], rec["resid_mid"])
    assert back.to_pandas().equals(rec.to_pandas())
    meta = json.loads((tmp_path / "r" / SIDECAR).read_text())
    assert meta["hook_names"]["k"] == ["blocks.1.attn.hook_k"]
    assert meta["interp_version"] == interp.__version__ and meta["dtype"] == "float32"
    assert meta["kv_head_of_query_head"] == list(rec.kv_head_of_query_head)
    with pytest.raises(interp.InterpError, match="overwrite=True"):
        rec.save(tmp_path / "r")


def _stream(model, tokens, out, **kw):
    """Stream with pauses (a policy in the configuration) and one shard per batch of 2."""
    interp.add_pause_token(model)
    return interp.record(model, tokens, sites=("resid_post", "v"), roles=None, batch_size=2,
                         policy=interp.PausePolicy(every=2), shard_bytes=1, out=out,
                         verbose=False, **kw)


def test_streaming_writes_shards_that_resume_skips(tiny_model, tmp_path):
    tokens = torch.randint(0, 61, (7, 5))
    out = tmp_path / "rec"
    rec = _stream(tiny_model, tokens, out)
    mem = interp.record(tiny_model, tokens, sites=("resid_post", "v"), roles=None, batch_size=2,
                        policy=interp.PausePolicy(every=2), verbose=False)
    assert len(rec.meta["shards"]) == 4  # one per batch of 2, with shard_bytes=1
    assert torch.equal(rec["v"], mem["v"]) and rec.to_pandas().equals(mem.to_pandas())
    # An interrupted run: the last two shards are lost and the sidecar is unfinished.
    meta = json.loads((out / SIDECAR).read_text())
    for e in meta["shards"][2:]:
        (out / f"{e['name']}.safetensors").unlink()
    (out / SIDECAR).write_text(json.dumps(dict(meta, complete=False)))
    with pytest.raises(interp.InterpError, match="unfinished"):
        interp.load_recording(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[01].*")}
    resumed = _stream(tiny_model, tokens, out, resume=True)
    assert torch.equal(resumed["v"], mem["v"])
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[01].*")} == before
    with pytest.raises(interp.InterpError, match="differ from those recorded in shard-00000"):
        _stream(tiny_model, tokens + 1, out, resume=True)


def test_corrupted_shard_is_reported_with_the_fix(tiny_model, tmp_path):
    out = tmp_path / "rec"
    _stream(tiny_model, torch.randint(0, 61, (4, 5)), out)
    path = out / "shard-00001.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(interp.InterpError, match="shard-00001.*sha256(.|\n)*resume=True"):
        interp.load_recording(out)


def test_output_dir_of_another_configuration_is_refused(tiny_model, tmp_path):
    tokens = torch.randint(0, 61, (2, 5))
    out = tmp_path / "rec"
    _stream(tiny_model, tokens, out)
    with pytest.raises(interp.InterpError, match="another configuration(.|\n)*fresh=True"
                       "(.|\n)*resume=True"):
        interp.record(tiny_model, tokens, sites=("k",), out=out, roles=None, verbose=False)
    with pytest.raises(interp.InterpError, match="already holds(.|\n)*resume=True"):
        _stream(tiny_model, tokens, out)
    with pytest.raises(interp.InterpError, match=r"record\(overwrite=...\) was renamed fresh"):
        interp.record(tiny_model, tokens, sites=("k",), out=out, roles=None, verbose=False,
                      overwrite=True)
    rec = interp.record(tiny_model, tokens, sites=("k",), out=out, roles=None, verbose=False,
                        fresh=True)
    assert rec.sites == ("k",) and not list(out.glob("shard-00001.*"))


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(sites=("keys",)), "unknown site 'keys'(.|\n)*resid_post"),
        (dict(layers=[5]), "layer\\(s\\) \\[5\\] out of range(.|\n)*0..1"),
        (dict(roles=("pauses",)), "unknown role 'pauses'(.|\n)*regular"),
        (dict(roles=("pause",)), "no position has a selected role"),
    ],
)
def test_bad_choices_name_the_valid_ones(tiny_model, kwargs, message):
    with pytest.raises(interp.InterpError, match=message):
        interp.record(tiny_model, torch.randint(0, 61, (1, 5)), verbose=False, **kwargs)


def test_too_long_and_empty_inputs(tiny_model):
    with pytest.raises(interp.InterpError, match="longer than the model's context of 64"):
        interp.record(tiny_model, torch.randint(0, 61, (1, 65)), verbose=False)
    with pytest.raises(interp.InterpError, match="inputs are empty"):
        interp.record(tiny_model, [], verbose=False)


def test_rot_sites_need_rope():
    model = interp.load_model(interp.TinyConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=11,
                                                positional="standard"), device="cpu")
    with pytest.raises(interp.InterpError, match="no rotary(.|\n)*'k'"):
        interp.record(model, torch.randint(0, 11, (1, 4)), sites=("rot_k",), verbose=False)


# --- generation and the KV cache --------------------------------------------------------------


# Hugging Face Llama computes RMSNorm and the eager softmax in float32 even in a float64 model, so
# forwards over different lengths (one cached step vs the whole sequence) round differently.
# Measured on this project's CI CPU (AMD EPYC, transformers 5.23): 2.3e-8 max abs logit difference
# between a 6-token prefill and the same positions of a 9-token forward, plain HF model, no cache.
# A cache that is ignored or misread moves logits by ~0.1, five orders of magnitude above this.
FP32_INTERNALS_ATOL = 1e-6


def test_cached_generation_equals_uncached_recomputation(tiny_llama):
    interp.add_pause_token(tiny_llama)
    kw = dict(pauses_before_answer=2, record=("k", "v", "rot_k", "pattern"), stop_at_eos=False)
    cached = interp.generate(tiny_llama, "w05 w06 w07", 6, read_cache=True, **kw)
    uncached = interp.generate(tiny_llama, "w05 w06 w07", 6, use_cache=False, **kw)
    assert cached.roles == ("bos",) + ("prompt",) * 3 + ("pause",) * 2 + ("generated",) * 6
    assert torch.equal(cached.tokens, uncached.tokens)
    greedy = tiny_llama.generate(cached.tokens[None, :6], max_new_tokens=6, do_sample=False,
                                 verbose=False)
    assert torch.equal(cached.tokens, greedy[0])  # the bridge's own greedy decoding agrees
    assert cached.steps.tolist() == [0] * 6 + list(range(1, 7))
    torch.testing.assert_close(cached.logits, uncached.logits, rtol=0, atol=FP32_INTERNALS_ATOL)
    for site in ("k", "v", "rot_k", "pattern"):
        torch.testing.assert_close(cached.recording[site], uncached.recording[site], rtol=0,
                                   atol=FP32_INTERNALS_ATOL)
    # The cache a step reads is what earlier steps wrote: RoPE'd keys and values.
    assert len(cached.cache_reads) == 6
    rot_k, v = cached.recording["rot_k"], cached.recording["v"]
    for read in cached.cache_reads:
        n = read["k"].shape[2]
        assert torch.equal(read["k"], rot_k[:n].permute(1, 2, 0, 3))
        assert torch.equal(read["v"], v[:n].permute(1, 2, 0, 3))
    # And it equals a plain forward over the final tokens.
    full = interp.record(tiny_llama, cached.tokens, sites=("k", "v"), roles=None, verbose=False)
    torch.testing.assert_close(cached.recording["k"], full["k"], rtol=0, atol=FP32_INTERNALS_ATOL)


def test_generation_on_a_native_model_recomputes(tiny_model64):
    gen = interp.generate(tiny_model64, torch.tensor([3, 4, 5]), 4, layers=[1])
    assert gen.roles == ("prompt",) * 3 + ("generated",) * 4
    assert gen.recording["k"].shape[:2] == (7, 1)
    full = interp.record(tiny_model64, gen.tokens, sites=("k", "v"), layers=[1], roles=None,
                         verbose=False)
    torch.testing.assert_close(gen.recording["v"], full["v"], rtol=0, atol=1e-12)
    logits = tiny_model64(gen.tokens[None])[0, 2:]
    torch.testing.assert_close(gen.logits, logits, rtol=0, atol=1e-12)
    with pytest.raises(interp.InterpError, match="no KV cache"):
        interp.generate(tiny_model64, torch.tensor([3, 4]), 2, use_cache=True)


# --- command line (model loading is covered in tests/slow) -----------------------------------


def test_cli_help_and_input_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["record", "--help"])
    assert e.value.code == 0 and "--pauses-before-answer" in capsys.readouterr().out
    assert main(["record", "--out", str(tmp_path)]) == 2
    assert "--text TEXT or --corpus" in capsys.readouterr().err
    assert main(["record", "--text", "hi", "--pauses-before-answer", "2",
                 "--out", str(tmp_path)]) == 2
    assert "--generate N" in capsys.readouterr().err
    for option, value, message in [("--sites", "kv", "unknown site 'kv'"),
                                    ("--roles", "pauses", "unknown role 'pauses'")]:
        assert main(["record", "--text", "hi", option, value, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "choose" in err  # checked before any model is loaded
