"""Pause insertion, roles and the loss mask."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import interp
from interp.core.model import pause_id
from interp.core.pauses import pad_batch


def _seq(n=12, bos=True):
    roles = (["bos"] if bos else []) + ["regular"] * (n - int(bos))
    return interp.make_sequence(torch.arange(100, 100 + n), roles)


POLICIES = [
    interp.PausePolicy(every=3, n=2),
    interp.PausePolicy(rate=0.4, n=1, seed=3),
    interp.PausePolicy(positions=(1, 5, 5, 12), n=1),
    interp.PausePolicy(every=1, n=1),
    interp.PausePolicy(every=4, filler=7),
]


@pytest.mark.parametrize("policy", POLICIES)
def test_remove_pauses_gives_back_the_original(policy):
    seq = _seq()
    paused = interp.insert_pauses(seq, policy, pause_id=999)
    assert len(paused) > len(seq)
    back = paused.remove_pauses()
    assert torch.equal(back.tokens, seq.tokens)
    assert back.roles == seq.roles
    assert torch.equal(back.loss_mask, seq.loss_mask)
    # the map points every kept position at its original index
    kept = paused.original_position >= 0
    assert torch.equal(seq.tokens[paused.original_position[kept]], paused.tokens[kept])
    inserted = "filler" if policy.filler is not None else "pause"
    assert all(r == inserted for r, k in zip(paused.roles, kept.tolist(), strict=True) if not k)


def test_every_k_places_pauses_after_every_k_content_tokens():
    paused = interp.insert_pauses(_seq(8), interp.PausePolicy(every=3, n=2), pause_id=999)
    # bos + 7 content tokens: pauses after content tokens 3 and 6, none after the last
    assert paused.roles == (
        "bos", "regular", "regular", "regular", "pause", "pause",
        "regular", "regular", "regular", "pause", "pause", "regular",
    )
    assert (paused.tokens[paused.role_mask("pause")] == 999).all()


def test_loss_mask_never_predicts_an_inserted_token():
    paused = interp.insert_pauses(_seq(8), interp.PausePolicy(every=3, n=2), pause_id=999)
    roles, mask = paused.roles, paused.loss_mask.tolist()
    for t in range(len(roles) - 1):
        assert mask[t] == (roles[t + 1] not in ("pause", "filler"))
    assert mask[-1] is False
    # the last pause of a run predicts the next real token (Goyal et al.); the others do not
    assert mask[roles.index("pause") + 1] is True and mask[roles.index("pause")] is False


def test_random_rate_is_seeded():
    a = interp.insert_pauses(_seq(40), interp.PausePolicy(rate=0.3, seed=1), pause_id=999)
    b = interp.insert_pauses(_seq(40), interp.PausePolicy(rate=0.3, seed=1), pause_id=999)
    c = interp.insert_pauses(_seq(40), interp.PausePolicy(rate=0.3, seed=2), pause_id=999)
    assert a.roles == b.roles and a.roles != c.roles


def test_before_answer_and_answer_only_loss():
    roles = ["bos", "prompt", "prompt", "prompt", "answer", "answer"]
    seq = interp.make_sequence([1, 5, 6, 7, 8, 9], roles)
    paused = interp.insert_pauses(seq, interp.PausePolicy(before_answer=3, loss_on="answer"), 999)
    assert paused.roles == ("bos", "prompt", "prompt", "prompt", "pause", "pause", "pause",
                            "answer", "answer")
    # only the two answer targets count: from the last pause and from the first answer token
    assert paused.loss_mask.nonzero().flatten().tolist() == [6, 7]
    after = interp.insert_pauses(seq, interp.PausePolicy(after_prompt=2), 999)
    assert after.roles[4:6] == ("pause", "pause")


def test_bad_policies_and_inputs_name_the_fix():
    with pytest.raises(interp.InterpError, match=r"rate must be in \[0, 1\), got 1.5\n  fix: use a rate in \[0, 1\)"):
        interp.PausePolicy(rate=1.5)
    with pytest.raises(interp.InterpError, match="every must be >= 1, got 0\n  fix: use every >= 1, or None"):
        interp.PausePolicy(every=0)
    with pytest.raises(interp.InterpError, match="no pause token id given\n  fix: call interp.add_pause_token"):
        interp.insert_pauses(_seq(), interp.PausePolicy(every=2))
    with pytest.raises(interp.InterpError, match=r"unknown role\(s\) \['nonsense'\]\n  fix: valid roles: bos, "):
        interp.make_sequence([1, 2], ["bos", "nonsense"])
    with pytest.raises(interp.InterpError, match="role"):
        _seq().role_mask("pauses")
    paused = interp.insert_pauses(_seq(), interp.PausePolicy(every=2), 999)
    with pytest.raises(interp.InterpError, match="already has inserted pauses\n  fix: insert into the original"):
        interp.insert_pauses(paused, interp.PausePolicy(every=2), 999)


def test_pad_batch_masks_padding():
    a = _seq(5)
    b = interp.insert_pauses(_seq(5), interp.PausePolicy(every=1), 999)
    toks, roles, orig, mask = pad_batch([a, b], pad_id=0)
    assert toks.shape == (2, len(b))
    assert roles[0][len(a):] == ("pad",) * (len(b) - len(a))
    assert not mask[0, len(a) - 1:].any()
    assert (orig[0, len(a):] == -1).all()


def test_add_pause_token_extends_embedding_and_unembedding(tiny_model):
    model = tiny_model
    v = model.cfg.d_vocab
    W_E = model.W_E.detach().clone()
    pid = interp.add_pause_token(model, init="mean")
    assert pid == v and model.cfg.d_vocab == v + 1
    assert model.W_E.shape[0] == v + 1 and model.W_U.shape[-1] == v + 1
    torch.testing.assert_close(model.W_E[pid], W_E.mean(0))
    assert interp.add_pause_token(model) == pid  # idempotent
    tokens = torch.tensor([[1, 2, pid, 3]])
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (1, 4, v + 1)
    # adding a token leaves the other tokens' logits unchanged
    with torch.no_grad():
        before = model(torch.tensor([[1, 2, 3]]))[..., :v]
    fresh = interp.load_model(model.interp_config, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(before, fresh(torch.tensor([[1, 2, 3]])))


@pytest.mark.parametrize("init", ["copy", "random"])
def test_pause_init_rules(tiny_model, init):
    W_E = tiny_model.W_E.detach().clone()
    pid = interp.add_pause_token(tiny_model, init=init, copy_from=5, seed=1)
    if init == "copy":
        torch.testing.assert_close(tiny_model.W_E[pid], W_E[5])
    else:
        assert not torch.allclose(tiny_model.W_E[pid], W_E.mean(0))


def test_one_pause_id_returns_none_or_raises_when_required():
    model = tiny("mha")
    assert pause_id(model) is None
    with pytest.raises(interp.InterpError, match="no <pause> token yet"):
        pause_id(model, required=True)
    pid = interp.add_pause_token(model)
    assert pause_id(model) == pause_id(model, required=True) == pid
