"""Synthetic tasks: deterministic generators, labels checked by brute force, roles, pauses and
the answer-only loss mask."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

import interp
from interp.errors import InterpError
from interp.training.tasks import TASKS, get_task

TOKEN_TASKS = [n for n in TASKS if n != "precache"]
SMALL = {"3sum": dict(length=5, dim=2), "2sum_transform": dict(length=5, dim=2),
         "parity": dict(n_bits=7), "addition": dict(n_digits=3), "primes": dict(n_digits=3),
         "rhyme": dict(classes=3, words=3, line=3, lead=2)}


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, n))  # slow on purpose: independent of the task


def _split(task, seq):
    """(prompt words without pauses, answer words) of an example."""
    words = task.vocab.decode(seq.tokens)
    prompt = [w for w, r in zip(words, seq.roles, strict=True) if r in ("bos", "prompt")]
    answer = [w for w, r in zip(words, seq.roles, strict=True) if r == "answer"]
    return prompt, answer


def brute_force(name: str, task, prompt: list[str]) -> list[str]:
    """The answer computed from the prompt words alone, by the definition in each docstring."""
    body = prompt[1:]
    if name == "parity":
        return [str(body[:-1].count("1") % 2)]
    if name == "addition":
        n = task.n_digits
        total = int("".join(body[:n])) + int("".join(body[n + 1:2 * n + 1]))
        out = list(str(total).zfill(n + 1))
        return out[::-1] if task.reverse else out
    if name == "primes":
        start = int("".join(body[:-1]))
        primes, p = [], start
        while len(primes) < task.n_primes:
            p += 1
            if _is_prime(p):
                primes.append(p)
        return [str(sum(int(c) for p in primes for c in str(p)) % task.mod)]
    digits = [int(w) for w in body if w.isdigit()]
    n, d, m = task.length, task.dim, task.mod
    x = [digits[i * d:(i + 1) * d] for i in range(n)]
    if name == "2sum_transform":
        t = digits[n * d:]
        x = [[(a - s) % m for a, s in zip(row, t, strict=True)] for row in x]
    k = 3 if name == "3sum" else 2
    found = any(all(sum(x[i][j] for i in c) % m == 0 for j in range(d))
                for c in combinations(range(n), k))
    return ["Y" if found else "N"]


def rhyme_lines(task, prompt: list[str]) -> list[list[str]]:
    """Every right line 2 of the rhyme task, by its docstring: a final word of the class of
    line 1's last word (its letter), not that word, after the lead words ``w{π_j(f)}``."""
    rhymes = [f"{c}{i + 1}" for c in "abcdefghijklmnopqrstuvwxyz"[:task.classes]
              for i in range(task.words)]
    r = prompt[-2]
    perms = [np.random.default_rng(j).permutation(len(rhymes)) for j in range(task.lead)]
    return [[f"w{perms[j][rhymes.index(f)]}" for j in range(task.lead)] + [f]
            for f in rhymes if f[0] == r[0] and f != r]


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_labels_match_brute_force(name):
    task = get_task(name, **SMALL[name])
    for seq in task.examples(60, seed=3):
        prompt, answer = _split(task, seq)
        # the rhyme task's final word is a free choice: any right line counts
        right = rhyme_lines(task, prompt) if name == "rhyme" else [brute_force(name, task, prompt)]
        assert answer in right


@pytest.mark.parametrize("name", list(TASKS))
def test_generators_are_deterministic(name):
    task = get_task(name, **SMALL.get(name, {}))
    a, b, c = task.batch(8, seed=(1, 2)), task.batch(8, seed=(1, 2)), task.batch(8, seed=(1, 3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)
    if task.kind == "regression":
        assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    else:
        assert not torch.equal(a.tokens, c.tokens)


def test_precache_targets_by_definition():
    task = get_task("precache", length=16, k=3, freq=10.0)
    b = task.batch(4, seed=0)
    x, y = b.inputs.numpy(), b.values.numpy()
    for n in range(16):
        want = sum(np.sin(10 * x[:, n - i]) for i in range(1, 4) if n - i >= 0)
        np.testing.assert_allclose(y[:, n], want if n else 0.0, atol=1e-12)
    assert not b.loss_mask[:, 0].any() and b.loss_mask[:, 1:].all()
    with pytest.raises(InterpError, match="no pauses"):
        get_task("precache", pauses=2)


@pytest.mark.parametrize("name", ["3sum", "2sum_transform"])
def test_sums_are_balanced(name):
    answers = [_split(t, s)[1][0] for t in [get_task(name, length=6, dim=2)]
               for s in t.examples(200, seed=0)]
    assert 0.4 < answers.count("Y") / len(answers) < 0.6


@pytest.mark.parametrize("filler", [False, True])
def test_pauses_before_answer(filler):
    plain = get_task("parity", n_bits=6)
    paused = get_task("parity", n_bits=6, pauses=3, filler=filler)
    for a, b in zip(plain.examples(5, seed=7), paused.examples(5, seed=7), strict=True):
        kind = "filler" if filler else "pause"
        assert b.roles == a.roles[:-1] + (kind,) * 3 + ("answer",)
        assert torch.equal(b.remove_pauses().tokens, a.tokens)  # same draws with or without
        wanted = paused.vocab.filler_id if filler else paused.vocab.pause_id
        assert (b.tokens[b.role_mask(kind)] == wanted).all()
        # answer-only loss: exactly the position before the answer (the last pause) counts
        assert b.loss_mask.nonzero().ravel().tolist() == [len(b) - 2]


def test_interleaved_pauses_and_explicit_policy():
    task = get_task("addition", n_digits=2, pauses=3, placement="interleaved")
    seq = task.examples(1, seed=0)[0]
    roles = seq.roles
    assert roles.count("pause") == 3
    first, last = roles.index("pause"), len(roles) - 1 - roles[::-1].index("pause")
    assert roles[first - 1] == "prompt" and "answer" not in roles[:last]
    policy = interp.PausePolicy(before_answer=2, loss_on="all")  # loss_on forced to "answer"
    seq = get_task("parity", n_bits=4, policy=policy).examples(1, seed=0)[0]
    assert seq.roles.count("pause") == 2 and seq.loss_on == "answer"


def test_batch_targets_are_next_answer_tokens():
    task = get_task("addition", n_digits=3, pauses=2)
    b = task.batch(6, seed=1)
    pos = b.loss_mask.nonzero()
    assert len(pos) == 6 * 4  # four answer digits each
    assert torch.equal(b.targets[b.loss_mask], b.tokens[pos[:, 0], pos[:, 1] + 1])
    assert (b.targets[~b.loss_mask] == -100).all()
    roles_next = [b.roles[i][j + 1] for i, j in pos.tolist()]
    assert set(roles_next) == {"answer"}


def test_registry_errors_list_choices():
    with pytest.raises(InterpError, match="parity") as e:
        get_task("nope")
    assert "unknown task" in str(e.value)
    with pytest.raises(InterpError, match="n_bits"):
        get_task("parity", bits=3)
    with pytest.raises(InterpError, match="placement"):
        get_task("parity", pauses=1, placement="middle")
    with pytest.raises(InterpError, match="vocabulary"):
        get_task("parity").vocab.encode(["7"])
