"""Instruments at self-requested pauses: every instrument of the pause control
(:mod:`interp.controls._pauses`) on the pauses a learned-pause model
(:mod:`interp.training.learned_pauses`) chose to take, each beside a null of the same kind and
a positive control.

**Ragged layouts.** Each example takes its own number of pauses, so the generations differ in
length and pause positions. They are handled exactly, without padding: attention received and
the gradient decomposition run one sequence at a time (:func:`interp.registers`,
:func:`interp.future_gradients` take sequences of any length); probes and patching run the
teacher-forced layout ``<bos> bits = <pause> × K`` of :func:`~interp.training.learned_pauses.readout`
and read position ``= + k`` only for k up to the example's own stop, which under the causal
mask sees exactly the generation's positions (later pauses are never read). The generation of
an example is ``<bos> bits = <pause> × stop answer`` (:func:`self_pause_sequences`) with its
greedy stop (the tests check it equals :func:`~interp.training.learned_pauses.generate_with_pauses`)
and the correct answer as the last token, so the loss of the gradient decomposition is the
answer's loss.

The instruments, and what each is compared with:

Positions are grouped by kind: ``bos``, ``bits``, ``=``, ``filler`` (where the layout
right-aligns the bits), ``pause`` (a self-requested pause before the last), ``answer position`` (where the answer is read: the last pause, or ``=``
when the model took none) and the null ``random position``.

* **attention received** at the pauses (mean over heads and later queries) over uniform
  causal attention; the null: as many positions per example as it took pauses, drawn at
  random among its bits and ``=``; beside them the bits and ``<bos>``. And the attention mass
  the answer position puts on the pauses before it, beside their uniform share.
* **gradient of the answer's loss** at the pauses' keys and values (``total_norm``;
  everything a pause before the last receives is future gradient, its own output is a pause
  decision outside the loss) against the same random positions (null) and the bits
  (positive control: the answer is a function of every bit, so their K/V must carry
  gradient).
* **probes** by layer (ridge on ±1 labels, split by example): the answer and the partial
  result (the chain-of-thought token the same position emits in the chain layout) at the
  pauses; the null: the answer with the labels shuffled between examples; the positive
  control: the answer at the answer-predicting position (there whenever the model is right).
* **patching** (:func:`self_pause_patching`): the pauses' K/V from another example of the
  same length; the null: an equal-norm random change of the same K/V; the positive control:
  the bits' K/V from the donor (all layers: the answer becomes the donor's, as far as the
  model is right).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from .._types import Float, Tensor
from ..core import hooks
from ..core import model as core_model
from ..core.pauses import PausedSequence, make_sequence
from ..core.result import Figure, SavedResult
from ..errors import InterpError
from ..probes._fit import fit_ridge, ridge_outputs
from ..training.learned_pauses import (
    LearnedPauses,
    PauseBatch,
    PauseReadout,
    held_out_batch,
    readout,
    urgency_input,
)
from ..training.tasks import TaskBatch
from ..training.tasks._base import BOS, IGNORE, Vocab
from ..training.tasks.parity import Parity
from ._pauses import patch_inserted_kv

__all__ = ["SelfPauseInstruments", "load_self_pause_instruments", "self_pause_instruments",
           "self_pause_patching", "self_pause_sequences"]

_ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def self_pause_sequences(run: LearnedPauses, lam: float, *, n_examples: int = 512,
                         seed: int = 12345
                         ) -> tuple[list[PausedSequence], PauseReadout, PauseBatch]:
    """The held-out examples as generated with self-requested pauses at urgency ``lam``:
    ``<bos> bits = <pause> × stop answer`` (roles ``bos``, ``prompt``, ``pause``, ``answer``;
    the loss mask keeps only the answer), with the greedy stop of
    :func:`~interp.training.learned_pauses.readout` and the correct answer.

    Returns:
        The sequences, the readout and the held-out batch they come from.
    """
    r = readout(run, lam, n_examples=n_examples, seed=seed)
    pb = held_out_batch(run.config, n_examples, seed)
    pid = run.pause_id
    seqs = []
    for b in range(n_examples):
        eq, k = int(pb.eq[b]), int(r.stop[b])
        ids = pb.tokens[b, :eq + 1].tolist() + [pid] * k + [int(pb.answer[b])]
        roles = ["bos"] + ["prompt"] * eq + ["pause"] * k + ["answer"]
        seqs.append(make_sequence(ids, roles, loss_on="answer"))
    return seqs, r, pb


def _kinds(seq: PausedSequence, vocab: Vocab) -> list[str]:
    """Per position: ``bos``, ``bits``, ``=``, ``filler`` (the fillers that right-align the
    bits, when the layout has them), ``pause``, ``answer position`` (where the answer is read:
    the last pause, or ``=`` when the model took none) or ``answer`` (the answer token)."""
    names = {vocab["="]: "=", vocab.filler_id: "filler"}
    kinds = [names.get(tok, "bits") if r == "prompt" else r
             for tok, r in zip(seq.tokens.tolist(), seq.roles, strict=True)]
    kinds[-2] = "answer position"
    return kinds


def _random_positions(seqs: list[PausedSequence], vocab: Vocab, seed: int
                      ) -> set[tuple[int, int]]:
    """The null positions: per sequence, as many positions as it took pauses, drawn (seeded,
    without replacement) among its bits and ``=`` (unless the answer is read there)."""
    rng = np.random.default_rng(seed)
    out = set()
    for w, seq in enumerate(seqs):
        kinds = _kinds(seq, vocab)
        cand = [p for p, k in enumerate(kinds) if k in ("bits", "=")]
        size = min(seq.roles.count("pause"), len(cand))
        out |= {(w, int(p)) for p in rng.choice(cand, size=size, replace=False)}
    return out


def _by_kind(table: pd.DataFrame, seqs: list[PausedSequence], vocab: Vocab,
             null: set[tuple[int, int]], cols: list[str], keys: list[str],
             medians: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean of ``cols`` (and the median of ``medians``) per ``keys`` and position kind, with
    the null positions added as the kind ``random position``."""
    kinds = {(w, p): k for w, s in enumerate(seqs) for p, k in enumerate(_kinds(s, vocab))}
    # the gradient table names sequences by their index as a string
    idx = list(zip(table["sequence"].astype(int), table["position"], strict=True))
    t = table.assign(kind=[kinds[i] for i in idx])
    rand = t[[i in null for i in idx]].assign(kind="random position")
    t = pd.concat([t[t["kind"] != "answer"], rand], ignore_index=True)
    t["_at"] = list(zip(t["sequence"].astype(int), t["position"], strict=True))
    g = t.groupby(keys + ["kind"])
    out = g[cols].agg("mean").join(g["_at"].nunique().rename("n"))
    for col in medians:
        out[f"{col}_median"] = g[col].median()
    return out.reset_index()


def _attention(run: LearnedPauses, lam: float, seqs: list[PausedSequence], vocab: Vocab,
               null: set[tuple[int, int]]) -> pd.DataFrame:
    from ..sinks import registers

    with urgency_input(run.model, run.urgency, lam):
        reg = registers(run.model, seqs, verbose=False)
    t = reg.table.dropna(subset=["attn_received"])
    g = _by_kind(t, seqs, vocab, null, ["attn_received", "uniform"], ["layer"])
    g["attn_ratio"] = g["attn_received"] / g["uniform"]
    return g


def _answer_attention(run: LearnedPauses, lam: float, pb: PauseBatch, r: PauseReadout
                      ) -> pd.DataFrame:
    """Per layer: the attention mass the answer position (``=`` + stop, the last pause)
    puts on the pauses before it (mean over heads and the examples that took two or more),
    beside their uniform share (stop − 1) / (position + 1)."""
    took = (r.stop > 1).nonzero()[:, 0]
    if not len(took):
        return pd.DataFrame()
    model = run.model
    q = (pb.eq + r.stop)[took]
    keys = torch.arange(pb.tokens.shape[1])
    on_pause = (keys[None] > pb.eq[took, None]) & (keys[None] < q[:, None])
    seen: dict[int, Tensor] = {}

    def keeper(layer: int):
        def keep(t: Tensor, hook) -> Tensor:
            rows = t[torch.arange(len(took)), :, q.to(t.device)]  # [example, head, k_pos]
            seen[layer] = (rows * on_pause[:, None].to(rows)).sum(-1).mean(-1).double().cpu()
            return t
        return keep

    n_layers = int(model.cfg.n_layers)
    with torch.no_grad(), urgency_input(model, run.urgency, lam), model.hooks(
            fwd_hooks=[(hooks.pattern(layer), keeper(layer)) for layer in range(n_layers)]):
        model(pb.tokens[took].to(core_model.device(model)))
    uniform = float(((r.stop[took] - 1) / (q + 1)).double().mean())
    return pd.DataFrame([dict(layer=layer, kind="pauses, from the answer position",
                              attn_received=float(seen[layer].mean()), uniform=uniform,
                              n=len(took), attn_ratio=float(seen[layer].mean()) / uniform)
                         for layer in range(n_layers)])


def _gradients(run: LearnedPauses, lam: float, seqs: list[PausedSequence], vocab: Vocab,
               null: set[tuple[int, int]]) -> pd.DataFrame:
    from ..gradients import future_gradients

    with urgency_input(run.model, run.urgency, lam):
        fg = future_gradients(run.model, seqs, sites=("k", "v"), block_size=None,
                              verbose=False)
    # a few confidently wrong answers carry gradients 1000x the typical one: the median too
    return _by_kind(fg.table, seqs, vocab, null, ["future_share", "total_norm"],
                    ["site", "layer"], medians=("total_norm",))


def _residuals(run: LearnedPauses, lam: float, tokens: Tensor
               ) -> list[Float[Tensor, "batch pos d_model"]]:
    """The residual stream entering every layer, then the final one, at urgency ``lam``."""
    model = run.model
    n = int(model.cfg.n_layers)
    names = [hooks.resid(layer, "pre") for layer in range(n)] + [hooks.resid(n - 1, "post")]
    seen: dict[str, Tensor] = {}

    def keeper(name: str):
        def keep(t: Tensor, hook) -> Tensor:
            seen[name] = t.detach().double().cpu()
            return t
        return keep

    with torch.no_grad(), urgency_input(model, run.urgency, lam), model.hooks(
            fwd_hooks=[(name, keeper(name)) for name in names]):
        model(tokens.to(core_model.device(model)))
    return [seen[name] for name in names]


def _probe(X: Float[Tensor, "row feature"], y: Tensor, example: Tensor, n_examples: int
           ) -> tuple[float, float]:
    """Held-out accuracy of a ridge probe on ±1 labels, rows split by example (first half
    train, third quarter chooses the penalty, last quarter scores), and the majority baseline
    on the same held-out rows."""
    train = (example < n_examples // 2).nonzero()[:, 0]
    val = ((example >= n_examples // 2) & (example < 3 * n_examples // 4)).nonzero()[:, 0]
    test = (example >= 3 * n_examples // 4).nonzero()[:, 0]
    if min(len(train), len(val), len(test)) == 0:
        return float("nan"), float("nan")
    Y = (2.0 * y.double() - 1.0)[None, :, None, None]
    fit = fit_ridge(X[None], Y, train, val, _ALPHAS, torch.device("cpu"))
    pred = ridge_outputs(X[None, test], fit.W, fit.b, torch.device("cpu"))[0, :, 0, 0] > 0
    acc = (pred == y[test].bool()).float().mean()
    p1 = float(y[train].float().mean())
    base = (y[test].float() if p1 >= 0.5 else 1 - y[test].float()).mean()
    return float(acc), float(base)


def _pause_rows(run: LearnedPauses, pb: PauseBatch, r: PauseReadout
                ) -> tuple[Tensor, Tensor, Tensor]:
    """One row per self-requested pause: its example, its position in the teacher-forced
    layout (``=`` + j for pause j), and its partial result: the chain-of-thought token the
    same position emits in the chain layout (``[count of ones ≥ j + 1]``, the answer at
    j = n; -1 past n, where the chain has ended)."""
    task = Parity(run.config.n_max)
    ex, pos, partial = [], [], []
    for b in range(len(r.stop)):
        eq, n = int(pb.eq[b]), int(pb.n[b])
        words = [BOS, *task.vocab.decode(pb.tokens[b, 1:eq]), "="]
        chain = [*task.cot(words)[:n], *task.answer(words)]
        for j in range(1, int(r.stop[b]) + 1):
            ex.append(b)
            pos.append(eq + j)
            partial.append(int(chain[j]) if j <= n else -1)
    return (torch.tensor(ex, dtype=torch.long), torch.tensor(pos, dtype=torch.long),
            torch.tensor(partial, dtype=torch.long))


def _probes(run: LearnedPauses, lam: float, pb: PauseBatch, r: PauseReadout, seed: int
            ) -> pd.DataFrame:
    n_ex = len(r.stop)
    y_answer = (pb.answer == Parity(run.config.n_max).vocab["1"]).long()
    shuffled = y_answer[torch.from_numpy(np.random.default_rng(seed).permutation(n_ex))]
    ex_t, pos_t, partial_t = _pause_rows(run, pb, r)
    answer_pos = pb.eq + r.stop
    rows = []
    for layer, h in enumerate(_residuals(run, lam, pb.tokens)):
        acc, base = _probe(h[torch.arange(n_ex), answer_pos], y_answer, torch.arange(n_ex), n_ex)
        rows.append(dict(layer=layer, where="answer position", target="answer",
                         accuracy=acc, baseline=base, n=n_ex))
        if not len(ex_t):
            continue
        X = h[ex_t, pos_t]
        for target, y, keep in [("answer", y_answer[ex_t], slice(None)),
                                ("answer, labels shuffled", shuffled[ex_t], slice(None)),
                                ("partial", partial_t, partial_t >= 0)]:
            acc, base = _probe(X[keep], y[keep], ex_t[keep], n_ex)
            rows.append(dict(layer=layer, where="pause", target=target, accuracy=acc,
                             baseline=base, n=int(X[keep].shape[0])))
    return pd.DataFrame(rows)


def _answers(logits: torch.Tensor, at: torch.Tensor, pause_id: int) -> torch.Tensor:
    """The answer-now argmax (``<pause>`` excluded) at position ``at[b]`` of each example."""
    read = logits[torch.arange(len(at), device=at.device), at].clone()
    read[:, pause_id] = -torch.inf
    return read.argmax(-1)


#: what each patching row replaces
PATCHES = ("pauses from donor", "pauses, equal-norm random", "bits from donor")


@torch.no_grad()
def self_pause_patching(run: LearnedPauses, lam: float = 0.0, *, n_examples: int = 512,
                        seed: int = 12345) -> pd.DataFrame:
    """Does the answer read what the model computed at the pauses it asked for?

    For every string length n, the held-out examples of that length (same positions) are
    run with the pause positions' keys and values, at all layers and at each layer alone,
    taken from the next example of the same length (:func:`interp.controls.patch_inserted_kv`);
    beside it the null (the same K/V moved by an equal-norm random vector) and the positive
    control (the bits' K/V from the donor). The answer is read where the model itself stops
    (its greedy decision at urgency ``lam``, unpatched). Where the model answers before any
    pause the pause patches cannot matter (rows with ``mean_pauses`` 0 must not move).

    Returns:
        One row per n, patch (:data:`PATCHES`) and patched layers: ``n_bits``, ``patch``,
        ``layers``, ``mean_pauses``, ``clean_accuracy``, ``patched_accuracy``,
        ``follows_donor`` (among examples whose donor's answer differs, the fraction
        answering the donor's answer; for the random patch, the fraction whose answer flips
        to the donor's) and ``count``.

    Raises:
        InterpError: λ outside the trained range.
    """
    r = readout(run, lam, n_examples=n_examples, seed=seed)
    pb = held_out_batch(run.config, n_examples, seed)
    model, pid = run.model, run.pause_id
    device = core_model.device(model)
    n_layers = int(model.cfg.n_layers)
    rows = []
    for n in sorted(set(pb.n.tolist())):
        idx = (pb.n == n).nonzero()[:, 0]
        if len(idx) < 2:
            continue
        tokens, eq = pb.tokens[idx], int(pb.eq[idx[0]])  # one layout per length
        roles = tuple("bos" if t == 0 else "prompt" if t <= eq else
                      "pause" if int(tok) == pid else "pad"
                      for t, tok in enumerate(tokens[0]))
        batch = TaskBatch(tokens.to(device), [roles] * len(idx),
                          torch.zeros_like(tokens, dtype=torch.bool, device=device),
                          torch.full_like(tokens, IGNORE, device=device))
        at = (pb.eq[idx] + r.stop[idx]).to(device)
        answer = pb.answer[idx].to(device)
        donor = torch.roll(torch.arange(len(idx)), -1)
        differ = answer != answer[donor]
        patches = {"pauses from donor": dict(), "pauses, equal-norm random":
                   dict(random_seed=seed + n), "bits from donor": dict(positions=range(eq - n, eq))}
        with urgency_input(model, run.urgency, lam):
            clean = _answers(model(batch.tokens), at, pid)
            for patch, options in patches.items():
                for layers in [list(range(n_layers))] + [[layer] for layer in range(n_layers)]:
                    got = _answers(patch_inserted_kv(model, batch, layers,
                                                     donor=donor.tolist(), **options), at, pid)
                    follows = (got == answer[donor])[differ].float().mean() if differ.any() \
                        else torch.tensor(float("nan"))
                    rows.append(dict(n_bits=n, patch=patch,
                                     layers="all" if len(layers) > 1 else str(layers[0]),
                                     mean_pauses=float(r.stop[idx].float().mean()),
                                     clean_accuracy=float((clean == answer).float().mean()),
                                     patched_accuracy=float((got == answer).float().mean()),
                                     follows_donor=float(follows), count=len(idx)))
    if not rows:
        raise InterpError(f"no string length has two held-out examples among {n_examples}",
                          "give more examples (n_examples)")
    return pd.DataFrame(rows)


@dataclass
class SelfPauseInstruments(SavedResult):
    """Every instrument at the pauses a learned-pause model requested itself, at one urgency
    λ (see the module docstring).

    Attributes:
        attention: ``layer``, ``kind`` (``bos``, ``bits``, ``=``, ``pause``, ``answer
            position``, ``random position`` (the null), and ``pauses, from the answer
            position``: the mass that position puts on the pauses before it, over the
            examples that took two or more), ``attn_received``,
            ``uniform``, ``attn_ratio``, ``n`` (positions).
        gradients: ``site`` (k, v), ``layer``, ``kind`` (as above): ``future_share``,
            ``total_norm`` (mean over heads and positions), ``total_norm_median`` (the
            median over heads and positions), ``n`` (positions).
        probes: ``layer`` (the residual stream entering it; ``n_layers``: the final one),
            ``where`` (``pause``, ``answer position``), ``target`` (``answer``, ``answer,
            labels shuffled`` (the null), ``partial``), ``accuracy`` (held-out examples),
            ``baseline`` (majority), ``n`` (rows).
        patching: :func:`self_pause_patching`'s table.
        settings: λ, the example counts, the mean pauses and accuracy of the readout.
    """

    attention: pd.DataFrame
    gradients: pd.DataFrame
    probes: pd.DataFrame
    patching: pd.DataFrame
    settings: dict

    FILES: ClassVar[tuple[str, ...]] = ("self_pause_attention.csv", "self_pause_gradients.csv",
                                        "self_pause_probes.csv", "patching.csv",
                                        "self_pause_settings.json")
    MADE_BY: ClassVar[str] = "interp toy learned-pauses --out DIR"
    SAVED: ClassVar[dict] = {"attention": "self_pause_attention.csv",
                             "gradients": "self_pause_gradients.csv",
                             "probes": "self_pause_probes.csv", "patching": "patching.csv",
                             "settings": "self_pause_settings.json"}

    def figures(self) -> list[Figure]:
        from ..figures import learned_pauses as f

        return [Figure("self_pause_patching", f.self_pause_patching,
                       "Held-out accuracy with the K/V of the self-requested pauses from "
                       "another example, beside an equal-norm random change (null) and the "
                       "bits' K/V from the donor (positive control)."),
                Figure("self_pause_probes", f.self_pause_probes,
                       "Probes by layer at the self-requested pauses (answer, partial result, "
                       "shuffled labels) and at the answer position."),
                Figure("self_pause_attention", f.self_pause_attention,
                       "Attention received over uniform at the self-requested pauses, at "
                       "random positions, the bits and <bos>, by layer.")]


def self_pause_instruments(run: LearnedPauses, lam: float = 0.0, *, n_examples: int = 512,
                           n_attention: int = 64, n_gradient: int = 16,
                           seed: int = 12345) -> SelfPauseInstruments:
    """Every instrument at the pauses the model requests itself at urgency ``lam`` (see the
    module docstring).

    Args:
        run: a trained learned-pause model.
        lam: the urgency input.
        n_examples: held-out examples for probes and patching (probes fit on the first half
            of the examples, choose the penalty on a quarter and score on the last quarter).
        n_attention: of them, the first this many for attention received.
        n_gradient: of them, the first this many for the gradient decomposition.
        seed: seeds the held-out examples and the null positions.

    Raises:
        InterpError: λ outside the trained range, or fewer than 4 examples.
    """
    if n_examples < 4 or n_attention < 1 or n_gradient < 1:
        raise InterpError(f"n_examples={n_examples}, n_attention={n_attention}, n_gradient="
                          f"{n_gradient}: too few to split or measure",
                          "give n_examples >= 4 and n_attention, n_gradient >= 1")
    seqs, r, pb = self_pause_sequences(run, lam, n_examples=n_examples, seed=seed)
    vocab = Parity(run.config.n_max).vocab  # the ids of 0, 1, = and the filler
    null = _random_positions(seqs, vocab, seed)
    attention = pd.concat([_attention(run, lam, seqs[:n_attention], vocab, null),
                           _answer_attention(run, lam, pb, r)], ignore_index=True)
    return SelfPauseInstruments(
        attention=attention,
        gradients=_gradients(run, lam, seqs[:n_gradient], vocab, null),
        probes=_probes(run, lam, pb, r, seed),
        patching=self_pause_patching(run, lam, n_examples=n_examples, seed=seed),
        settings=dict(lam=lam, n_examples=n_examples, n_attention=n_attention,
                      n_gradient=n_gradient, seed=seed, mean_pauses=r.mean_pauses,
                      accuracy=r.accuracy, config=run.config.to_dict()))


def load_self_pause_instruments(out: str | os.PathLike) -> SelfPauseInstruments:
    """The :class:`SelfPauseInstruments` saved in ``out``."""
    return SelfPauseInstruments.load(Path(out))
