"""Recording on the bundled SmolLM2-135M: exact agreement with run_with_cache (GQA, RoPE through
the bridge's hooks), cached generation equal to uncached recomputation, and the command line."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.cli import main
from interp.recording import SITES

pytestmark = pytest.mark.slow

TEXT = "The cat sat on the mat because it was warm, and the dog slept by the door."


@pytest.mark.parametrize("layers", [(0, 13), (29,)], ids=["stops-early", "last-layer"])
def test_every_site_equals_run_with_cache(smollm, layers):
    seq = interp.tokenize(smollm, TEXT)
    rec = interp.record(smollm, seq, sites=SITES, layers=layers, roles=None, verbose=False)
    names = {n for site in SITES for n in rec.meta["hook_names"][site]}
    _, cache = smollm.run_with_cache(seq.tokens[None], names_filter=lambda n: n in names)
    n = len(seq)
    assert rec["k"].shape == (n, len(layers), 3, 64) and rec["q"].shape == (n, len(layers), 9, 64)
    for site in SITES:
        for layer, name in zip(rec.layers, rec.meta["hook_names"][site], strict=True):
            ref = cache[name][0]
            if site == "pattern":
                ref = ref.transpose(0, 1)  # [q_pos, head, k_pos]
            assert torch.equal(rec.get(site, layer), ref), (site, layer)


def test_cached_generation_equals_uncached_with_forced_pauses(smollm_fresh):
    interp.add_pause_token(smollm_fresh)
    kw = dict(pauses_before_answer=2, record=("k", "v", "rot_k"), layers=[0, 15, 29],
              stop_at_eos=False)
    cached = interp.generate(smollm_fresh, "The capital of France is", 5, read_cache=True, **kw)
    uncached = interp.generate(smollm_fresh, "The capital of France is", 5, use_cache=False, **kw)
    assert cached.roles.count("pause") == 2 and cached.roles[-5:] == ("generated",) * 5
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.logits, uncached.logits, rtol=1e-4, atol=1e-4)
    for site in ("k", "v", "rot_k"):
        torch.testing.assert_close(cached.recording[site], uncached.recording[site],
                                   rtol=1e-4, atol=1e-4)
    last = cached.cache_reads[-1]  # [layer, kv_head, pos, d_head], RoPE'd keys as cached
    n = last["k"].shape[2]
    assert torch.equal(last["k"], cached.recording["rot_k"][:n].permute(1, 2, 0, 3))


def test_greedy_answer_without_pauses(smollm):
    gen = interp.generate(smollm, "The capital of France is", 3, layers=[29])
    assert "Paris" in gen.text
    assert gen.recording["k"].shape[:2] == (len(gen.tokens), 1)


def test_cli_records_with_pauses_and_refuses_a_second_run(tmp_path, capsys):
    out = str(tmp_path / "rec")
    argv = ["record", "--text", TEXT, "--pause-every", "4", "--layers", "0,29", "--out", out,
            "--quiet"]
    assert main(argv) == 0
    rec = interp.load_recording(out)
    assert set(rec.index.role) == {"regular", "pause"} and rec.layers == (0, 29)
    assert rec["resid_post"].shape[1:] == (2, 576)
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    gen_out = str(tmp_path / "gen")
    assert main(["record", "--text", "The capital of France is", "--generate", "2",
                 "--pauses-before-answer", "2", "--layers", "29", "--out", gen_out]) == 0
    assert interp.load_recording(gen_out).index.role.tolist().count("pause") == 2
