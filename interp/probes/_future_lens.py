"""Future Lens (Pal et al. 2023): read the token at t + k from one hidden state h_t^l, decoded
through the model's own final norm and unembedding over the full vocabulary.

**Linear approximation.** For layer l and offset k, fit an affine map from ``h_t^l`` (the
residual stream after block l at position t) to ``y_{t+k-1}``, the last block's output at
position t + k − 1 — the state from which the model itself predicts token t + k::

    ŷ = (h − μ_x) W + μ_y,   W = (Σ_xx + α · diag(Σ_xx))⁻¹ Σ_xy

with centred training sums ``Σ_xx = Σ (h − μ_x)(h − μ_x)ᵀ`` and ``Σ_xy`` alike. Each
dimension's penalty is relative to its own variance (ridge on standardised features), so
neither depth (residual norms grow with it) nor a few massive dimensions set the scale; α is
chosen per (layer, offset) by the mean squared error on the validation documents, computed from
their sums alone, on a grid that extends itself when an end of it wins (:func:`fit_lens`). The
prediction is read as ``logits = unembed(ln_final(ŷ))``.

Everything the fit needs is a **sufficient statistic**: the count, Σh, Σy, Σhhᵀ, Σhyᵀ and
Σy² (:class:`LensStats`), accumulated in float64 in one pass over the corpus for every layer
and offset at once. Memory is flat in the number of tokens (about 0.3 GB for 30 layers × 3
offsets of SmolLM2), and sums from different processes or shards add (:meth:`LensStats.add`).

**Learned prompt** (the paper's best method). A soft prompt ``c`` of a few input embeddings is
trained so that the model, run on ``c`` with ``h_t^l`` transplanted into the residual stream at
the prompt's last position after block l, emits at that position the model's own
distribution at t + k − 1: the loss is ``KL(p_model(· | x_{≤t+k−1}) ‖ p(· | c, h_t^l))``. The
model is frozen; only ``c`` moves (Adam).

**Metrics** on held-out documents, per (method, layer, offset): top-1 **agreement** with the
model's own prediction at t + k − 1 (the paper's precision@1), top-5 agreement (the model's
top token among the lens's five), accuracy and top-5 accuracy on the true token t + k,
cross-entropy of the true token, and beside them the model's own accuracy (the ceiling) and
the **bigram** (token t + k from token t) and **trigram** (from tokens t − 1, t) baselines at
the same distance, fitted by counting on the training documents (trigram backs off to bigram,
bigram to the most frequent training target), scored on the same positions.

Positions: every position t ≥ 1 whose role is selected and with t + max(k) inside the
sequence, so all offsets are scored on the same positions; train/val/test split by document.
In sequences with inserted pause/filler positions, offsets count text tokens (a pause's
offset 1 is the next real token) and the n-gram context is the last text tokens at or
before t. Under ``torchrun`` the pass is split by sequence and the sums all-reduced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..core import hooks
from ..core import model as core_model
from ..core.distributed import all_reduce_sum, shard
from ..core.inputs import iter_sequences
from ..core.io import (
    atomic_save_tensors,
    atomic_write_json,
    read_json,
    read_tensors,
    sha256_file,
    verify_checksums,
)
from ..core.model import Bridge
from ..core.model import dtype as core_dtype
from ..core.pauses import pad_batch
from ..core.result import Figure, TableResult
from ..core.sites import resolve_layers
from ..errors import InterpError
from ._data import ProbeSequence, _grab, _StopForward, split_groups
from ._spec import FutureLensSpec

__all__ = [
    "FutureLensResults",
    "LENS_COLUMNS",
    "LensStats",
    "accumulate_stats",
    "decoder",
    "fit_lens",
    "future_lens",
    "load_future_lens",
    "ngram_predictions",
    "train_prompt",
]

_CHUNK = 512  # positions decoded at once: [512, d_vocab] float32 logits


# --- sufficient statistics ------------------------------------------------------------------


@dataclass
class LensStats:
    """Sums from which every (layer, offset) ridge map is solved: a plain bag of float64
    tensors, so sums from shards or processes add (:meth:`add`; an all-reduce of each tensor).

    Attributes:
        n: number of positions summed (0-d).
        sx: Σ h per layer.
        sy: Σ y per offset (y = last block's output at t + k − 1).
        sxx: Σ h hᵀ per layer.
        sxy: Σ h yᵀ per layer and offset.
        syy: Σ y² per offset and dimension (for validation errors and R²).
    """

    n: Float[Tensor, ""]
    sx: Float[Tensor, "layer d_model"]
    sy: Float[Tensor, "offset d_model"]
    sxx: Float[Tensor, "layer d_model d_model"]
    sxy: Float[Tensor, "layer d_model offset d_model"]
    syy: Float[Tensor, "offset d_model"]

    @classmethod
    def zeros(cls, n_layers: int, n_offsets: int, d_model: int) -> LensStats:
        z = partial(torch.zeros, dtype=torch.float64)
        return cls(z(()), z(n_layers, d_model), z(n_offsets, d_model), z(n_layers, d_model, d_model),
                   z(n_layers, d_model, n_offsets, d_model), z(n_offsets, d_model))

    def update(self, X: Float[Tensor, "layer m d_model"], Y: Float[Tensor, "offset m d_model"]) -> None:
        """Add a batch of m positions (cast to float64 before any product)."""
        X, Y = X.double().cpu(), Y.double().cpu()
        K, m, d = Y.shape
        Yf = Y.permute(1, 0, 2).reshape(m, K * d)
        self.n += m
        self.sx += X.sum(1)
        self.sy += Y.sum(1)
        self.syy += (Y * Y).sum(1)
        for layer in range(X.shape[0]):
            both = X[layer].T @ torch.cat([X[layer], Yf], 1)  # one product: [d, d + K·d]
            self.sxx[layer] += both[:, :d]
            self.sxy[layer] += both[:, d:].view(d, K, d)

    def add(self, other: LensStats) -> LensStats:
        """The sums of both (e.g. two shards of a corpus)."""
        return LensStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        return {prefix + f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_tensors(cls, d: dict[str, Tensor], prefix: str = "") -> LensStats:
        return cls(**{f.name: d[prefix + f.name] for f in dataclasses.fields(cls)})


# --- decoding -----------------------------------------------------------------------------------


def decoder(model: Bridge):
    """``h -> unembed(ln_final(h))``: the model's own final norm and unembedding.

    Raises:
        InterpError: the model has no unembedding (or no final norm module).
    """
    unembed = getattr(model, "unembed", None)
    if unembed is None:
        raise InterpError("Future Lens decodes through the model's unembedding, and this model has none",
                          "use a causal language model with an unembedding (lm_head)")
    ln = getattr(model, "ln_final", None)
    dtype = core_dtype(model)  # the lens' states are kept in float32, the model may not be

    def decode(h: Tensor) -> Tensor:
        h = h.to(dtype)
        return unembed(ln(h)) if ln is not None else unembed(h)

    return decode


# --- the one pass -------------------------------------------------------------------------------


@dataclass
class _Positions:
    """The scored positions of every sequence, and the samples kept as raw examples."""

    split: np.ndarray  # per sequence
    cand: list[np.ndarray]  # candidate positions per sequence
    keep_test: list[np.ndarray]  # decoded test positions per sequence
    keep_prompt: list[np.ndarray]  # prompt-training positions per sequence
    targets: list[np.ndarray]  # per sequence, :func:`_targets` (computed once)


def _targets(seq, offsets: Sequence[int]) -> np.ndarray:
    """``[pos, offset]``: the position of the k-th *real* token after each position t (-1 when
    the sequence ends first). Inserted pause/filler positions are skipped, so offset k names
    the same text token from a pause as from the regular position before it; without
    inserted positions this is simply t + k. The model predicts that token from the position
    just before it (a pause, when a run of pauses precedes it)."""
    real = np.flatnonzero(seq.original_position.numpy() >= 0)
    t = np.arange(len(seq))
    nxt = np.searchsorted(real, t, side="right")  # index into ``real`` of the first real token > t
    out = np.full((len(seq), len(offsets)), -1, dtype=np.int64)
    for ki, k in enumerate(offsets):
        j = nxt + k - 1
        ok = j < len(real)
        out[ok, ki] = real[j[ok]]
    return out


def _context(seq, t: np.ndarray) -> np.ndarray:
    """``[m, 2]``: the last two real positions at or before each t (the n-gram context; at a
    pause, the text tokens before it). Clipped at the first real position."""
    real = np.flatnonzero(seq.original_position.numpy() >= 0)
    last = np.maximum(np.searchsorted(real, t, side="right") - 1, 0)
    return np.stack([real[np.maximum(last - 1, 0)], real[last]], 1)


def _positions(seqs: list[ProbeSequence], offsets: list[int], roles: list[str], split: np.ndarray,
               cfg: FutureLensSpec, seed: int) -> _Positions:
    cand = []
    targets = [_targets(s.seq, offsets) for s in seqs]
    for s, tg in zip(seqs, targets, strict=True):
        r = np.array(s.seq.roles, dtype=object)
        t = np.arange(len(s.seq))
        cand.append(np.flatnonzero(np.isin(r, roles) & (t >= 1) & (tg >= 0).all(1)))
    rng = np.random.default_rng(seed + 104729)

    def sample(which: str, n: int) -> list[np.ndarray]:
        pairs = [(i, p) for i, c in enumerate(cand) if split[i] == which for p in c]
        pick = sorted(rng.choice(len(pairs), min(n, len(pairs)), replace=False).tolist()) if pairs else []
        out: list[list[int]] = [[] for _ in seqs]
        for j in pick:
            out[pairs[j][0]].append(pairs[j][1])
        return [np.array(x, dtype=np.int64) for x in out]

    return _Positions(split, cand, sample("test", cfg.eval_positions), sample("train", cfg.prompt_examples),
                      targets)


@torch.no_grad()
def accumulate_stats(model: Bridge, seqs: list[ProbeSequence], layers: list[int], offsets: list[int],
                     positions: list[np.ndarray], *, batch_size: int = 16,
                     verbose: bool = False) -> LensStats:
    """Sums over ``positions`` (per sequence) of every layer in ``layers`` and offset: the
    accumulation step on its own, whose output adds across shards or processes.

    Under ``torchrun`` each process sums every world-size-th sequence and the sums are
    all-reduced (:func:`interp.core.distributed.all_reduce_sum`), so every process returns the
    statistics of all sequences, as one process would (up to float64 rounding)."""
    mine = list(shard(range(len(seqs))))
    stats = LensStats.zeros(len(layers), len(offsets), int(model.cfg.d_model))
    _pass(model, [seqs[i] for i in mine], layers, offsets, batch_size, verbose,
          [([positions[i] for i in mine], lambda X, Y, _b, _p: stats.update(X, Y))])
    all_reduce_sum(list(stats.tensors().values()))
    return stats


@torch.no_grad()
def _pass(model: Bridge, seqs, layers, offsets, batch_size, verbose, consumers,
          targets: list[np.ndarray] | None = None) -> None:
    """One forward pass over ``seqs`` (stopped after the last block); for each consumer
    ``(positions per sequence, fn)`` call ``fn(X [layer, m, d], Y [offset, m, d], batch row, pos)``.
    ``targets``: :func:`_targets` of every sequence when the caller has them (else computed here).

    Without ``no_grad`` every kept state would hold its batch's autograd graph alive (measured:
    7.3 GB for 24 windows of 128 tokens on SmolLM2, growing with the corpus)."""
    last = int(model.cfg.n_layers) - 1
    names = {hooks.resid(layer, "post") for layer in layers} | {hooks.resid(last, "post")}
    device = next(model.parameters()).device
    bar = tqdm(range(0, len(seqs), batch_size), desc="future lens: collecting", disable=not verbose)
    for b0 in bar:
        batch = seqs[b0:b0 + batch_size]
        wanted = [(pos[b0:b0 + batch_size], fn) for pos, fn in consumers]
        if not any(len(p) for pos, _ in wanted for p in pos):
            continue
        toks, _, _, _ = pad_batch([s.seq for s in batch])
        cache: dict[str, Tensor] = {}
        fwd = [(n, partial(_grab, cache=cache, name=n, stop=n == hooks.resid(last, "post"))) for n in names]
        try:
            model.run_with_hooks(toks.to(device), fwd_hooks=fwd)
        except _StopForward:
            pass
        final = cache[hooks.resid(last, "post")]
        tg = (targets[b0:b0 + batch_size] if targets is not None
              else [_targets(s.seq, offsets) for s in batch])
        for pos, fn in wanted:
            b = np.concatenate([np.full(len(p), i) for i, p in enumerate(pos)]).astype(np.int64)
            p = np.concatenate(pos).astype(np.int64)
            if not len(p):
                continue
            bt, pt = torch.from_numpy(b).to(final.device), torch.from_numpy(p).to(final.device)
            state = torch.from_numpy(np.concatenate([tg[i][q] for i, q in enumerate(pos)]) - 1).to(final.device)
            X = torch.stack([cache[hooks.resid(layer, "post")][bt, pt] for layer in layers])
            Y = torch.stack([final[bt, state[:, ki]] for ki in range(len(offsets))])
            fn(X, Y, b + b0, p)


# --- the ridge fit ------------------------------------------------------------------------------


@dataclass
class LensFit:
    """Affine maps ``ŷ = h W + b`` per (layer, offset), acting on raw residual states.

    Attributes:
        W: the maps.
        b: the intercepts.
        alpha: the chosen relative penalty.
        val_r2: R² of ŷ on the validation documents (all dimensions pooled).
        at_edge: the chosen α is the smallest or largest one tried, even after the grid
            extended itself (:func:`fit_lens`): the validation error might fall further out.
    """

    W: Float[Tensor, "layer offset d_model d_model"]
    b: Float[Tensor, "layer offset d_model"]
    alpha: Float[Tensor, "layer offset"]
    val_r2: Float[Tensor, "layer offset"]
    at_edge: Bool[Tensor, "layer offset"]


#: decades the α grid extends itself by, beyond each end, while validation prefers that end
GRID_EXTENSION = 6


@torch.no_grad()
def fit_lens(train: LensStats, val: LensStats | None, alphas: list[float]) -> LensFit:
    """Solve every (layer, offset) ridge map from training sums; choose α on validation sums.

    **Scale-free penalty.** Each input dimension j is penalised in proportion to its own
    variance, ``W = (Σ_xx + α · diag(Σ_xx))⁻¹ Σ_xy``: ridge on standardised features. A penalty
    proportional to the mean variance, α · tr(Σ_xx)/d, is set by the few massive dimensions
    (Sun et al. 2024) whose variance is orders of magnitude above the rest, so it crushes every
    other dimension (on Gemma 3 270M it capped the last-layer offset-1 identity at 0.91).

    One eigendecomposition of the correlation-like ``C = D^-½ Σ_xx D^-½`` (``D = diag(Σ_xx)``)
    per layer, ``C = Q diag(s) Qᵀ``, makes each α one product:
    ``W_α = D^-½ Q diag(1 / (s + α)) Qᵀ D^-½ Σ_xy``. The validation error of ``ŷ = h W + b``
    needs only the validation sums: ``Σ‖y − ŷ‖² = Σy² − 2 tr(Wᵀ Σhyᵀ) − 2 bᵀΣy + tr(Wᵀ Σhhᵀ W)
    + 2 bᵀWᵀΣh + n‖b‖²``. When validation prefers the smallest (or largest) α of the grid, the
    grid extends itself a decade at a time, up to :data:`GRID_EXTENSION` decades; a choice
    still at the end is flagged in ``at_edge``. Without ``val`` (no validation positions)
    the first α is used; a one-α grid is used as given.
    """
    if float(train.n) < 2:
        raise InterpError("Future Lens has fewer than 2 training positions",
                          "use more windows (data.max_windows) or longer ones (data.n_tokens)")
    n = train.n
    mx, my = train.sx / n, train.sy / n
    L, d, K, _ = train.sxy.shape
    W_out = torch.zeros(L, K, d, d)
    b_out = torch.zeros(L, K, d)
    a_out = torch.zeros(L, K)
    r2 = torch.full((L, K), math.nan)
    edge = torch.zeros(L, K, dtype=torch.bool)
    sst = (val.syy - val.sy ** 2 / val.n).sum(1) if val is not None else None  # [K]
    grid = sorted(alphas) if val is not None else alphas[:1]
    for li in range(L):  # one layer at a time: peak memory of a few d × K·d matrices
        cxx = train.sxx[li] - n * torch.outer(mx[li], mx[li])
        cxy = (train.sxy[li] - n * torch.einsum("d,ke->dke", mx[li], my)).reshape(d, K * d)
        var = cxx.diagonal()
        # a constant dimension (variance 0) gets weight 0 whatever its floor; the floor only
        # keeps the division finite
        r = var.clamp_min(float(var.mean()) * 1e-12).rsqrt()
        s, Q = torch.linalg.eigh(cxx * r[:, None] * r[None, :])
        proj = Q.T @ (r[:, None] * cxy)
        best = torch.full((K,), math.inf, dtype=torch.float64)
        chosen = torch.zeros(K, dtype=torch.float64)
        queue, lo, hi, extended = list(grid), grid[0], grid[-1], [0, 0]
        while queue:
            a = queue.pop(0)
            W = (r[:, None] * (Q @ (proj / (s + a)[:, None]))).view(d, K, d).permute(1, 0, 2)  # [K, d_in, d_out]
            b = my - torch.einsum("d,kde->ke", mx[li], W)
            sse = _sse(val, li, W, b) if val is not None else torch.zeros(K, dtype=torch.float64)
            better = sse < best
            best = torch.where(better, sse, best)
            chosen = torch.where(better, a, chosen)
            W_out[li, better] = W[better].float()
            b_out[li, better] = b[better].float()
            if queue or len(grid) == 1:
                continue
            # an end of the grid wins for some offset: one more decade beyond it
            if (chosen == lo).any() and extended[0] < GRID_EXTENSION:
                lo, extended[0] = lo / 10, extended[0] + 1
                queue.append(lo)
            elif (chosen == hi).any() and extended[1] < GRID_EXTENSION:
                hi, extended[1] = hi * 10, extended[1] + 1
                queue.append(hi)
        if len(grid) > 1:
            edge[li] = (chosen == lo) | (chosen == hi)
        a_out[li] = chosen.float()
        if sst is not None:
            r2[li] = (1 - best / sst).float()
    return LensFit(W_out, b_out, a_out, r2, edge)


def _sse(v: LensStats, li: int, W: Float[Tensor, "offset d_model d_model"],
         b: Float[Tensor, "offset d_model"]) -> Float[Tensor, " offset"]:
    """Σ‖y − (hW + b)‖² over the positions summed in ``v``, layer ``li`` (see :func:`fit_lens`)."""
    cross = (W * v.sxy[li].permute(1, 0, 2)).sum((1, 2)) + (b * v.sy).sum(1)
    quad = (W * torch.einsum("de,keo->kdo", v.sxx[li], W)).sum((1, 2))
    lin = torch.einsum("ke,d,kde->k", b, v.sx[li], W)
    return v.syy.sum(1) - 2 * cross + quad + 2 * lin + v.n * (b * b).sum(1)


# --- n-gram baselines ---------------------------------------------------------------------------


def ngram_predictions(context: Int[Tensor, "n_train ctx"], target: Int[Tensor, " n_train"],
                      query: Int[Tensor, "n_query ctx"], k: int = 5) -> Int[Tensor, "n_query k"]:
    """The ``k`` most frequent training targets following each query's context, ranked by
    count (ties: smaller token id), topped up from the shorter context (the last ``ctx − 1``
    tokens), down to the most frequent targets overall. ``ctx = 1`` is a bigram at the
    given distance, ``ctx = 2`` a trigram."""
    if context.shape[1] == 0:
        ids, counts = torch.unique(target, return_counts=True)
        order = sorted(range(len(ids)), key=lambda i: (-int(counts[i]), int(ids[i])))[:k]
        top = ids[order]
        top = torch.cat([top, top[-1:].expand(k - len(top))]) if len(top) < k else top
        return top.expand(len(query), k).clone()
    back = ngram_predictions(context[:, 1:], target, query[:, 1:], k)
    table: dict[tuple, list[int]] = {}
    keys = [tuple(r) for r in context.tolist()]
    pairs = pd.DataFrame({"ctx": keys, "y": target.tolist()}).value_counts().reset_index(name="c")
    pairs = pairs.sort_values(["ctx", "c", "y"], ascending=[True, False, True], kind="stable")
    for ctx, g in pairs.groupby("ctx", sort=False):
        table[ctx] = g["y"].tolist()[:k]
    out = back.clone()
    for i, q in enumerate(query.tolist()):
        seen = table.get(tuple(q))
        if seen:
            rest = [t for t in back[i].tolist() if t not in seen]
            out[i] = torch.tensor((seen + rest)[:k])
    return out


# --- the learned prompt -------------------------------------------------------------------------


def _patched_logits(model: Bridge, prompt: Tensor, layer: int, h: Tensor, dummy: Tensor) -> Tensor:
    """Logits at the prompt's last position with ``h`` written into the residual stream after
    block ``layer`` there; the prompt replaces the token embeddings."""
    B, P = h.shape[0], prompt.shape[0]

    def embed(x, hook):
        return prompt.to(x.dtype)[None].expand(B, P, -1)

    def transplant(x, hook):
        x = x.clone()
        x[:, -1] = h.to(x.dtype)
        return x

    logits = model.run_with_hooks(dummy[None].expand(B, P), fwd_hooks=[
        (hooks.EMBED, embed), (hooks.resid(layer, "post"), transplant)])
    return logits[:, -1]


def train_prompt(model: Bridge, layer: int, X: Float[Tensor, "n d_model"], Y: Float[Tensor, "n d_model"],
                 init: Int[Tensor, " prompt"], cfg: FutureLensSpec, *, seed: int = 0,
                 verbose: bool = False) -> tuple[Float[Tensor, "prompt d_model"], list[float]]:
    """Train a soft prompt for one (layer, offset): ``X`` are states h_t^l, ``Y`` the model's
    last-block outputs at t + k − 1 (its own distribution is the target; module docstring).

    Args:
        init: token ids whose embeddings start the prompt (``cfg.prompt_length`` of them).

    Returns:
        The prompt embeddings and the KL loss of every step.
    """
    dec = decoder(model)
    device = next(model.parameters()).device
    with torch.no_grad():
        prompt = model.embed(init.to(device)[None])[0].detach().float().clone()
    prompt.requires_grad_(True)
    opt = torch.optim.Adam([prompt], lr=cfg.prompt_lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    dummy = init.to(device)
    for _ in tqdm(range(cfg.prompt_steps), desc=f"learned prompt, layer {layer}", disable=not verbose):
        rows = torch.randint(0, X.shape[0], (min(cfg.prompt_batch, X.shape[0]),), generator=gen)
        with torch.no_grad():
            teacher = torch.log_softmax(dec(Y[rows].to(device)).float(), -1)
        student = torch.log_softmax(_patched_logits(model, prompt, layer, X[rows].to(device), dummy).float(), -1)
        loss = (teacher.exp() * (teacher - student)).sum(-1).mean()
        (grad,) = torch.autograd.grad(loss, [prompt])
        prompt.grad = grad
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return prompt.detach(), losses


# --- results ------------------------------------------------------------------------------------


LENS_COLUMNS = [
    "method", "layer", "offset", "n", "agreement_top1", "agreement_top5", "accuracy", "accuracy_top5",
    "xent", "model_accuracy", "bigram_agreement", "bigram_accuracy", "bigram_top5_accuracy",
    "trigram_agreement", "trigram_accuracy", "trigram_top5_accuracy", "alpha", "val_r2",
]


@dataclass
class FutureLensResults(TableResult):
    """Future Lens metrics (one row per method, layer and offset; columns :data:`LENS_COLUMNS`),
    with the fitted maps and prompts.

    ``method`` is ``"linear"`` (the ridge map) or ``"prompt"`` (the learned prompt). Every
    metric is a mean over the held-out positions (``n``): ``agreement_*`` against the model's
    own top-1 prediction at t + k − 1, ``accuracy*`` and ``xent`` against the true token
    t + k; ``model_accuracy`` is the model's own accuracy there; ``bigram_*``/``trigram_*``
    the count baselines on the same positions.

    Attributes:
        tensors: ``W``, ``b``, ``alpha``, ``val_r2`` of the linear maps and
            ``prompt_L<layer>_k<offset>`` embeddings (what :meth:`save` writes).
    """

    tensors: dict[str, Tensor] = field(default_factory=dict)

    FILE: ClassVar[str] = "future_lens.csv"
    FILES: ClassVar[tuple[str, ...]] = ("future_lens.csv", "future_lens.json")
    REQUIRED: ClassVar[frozenset[str]] = frozenset(LENS_COLUMNS)
    MADE_BY: ClassVar[str] = "interp probe train probes/lookahead.toml --out DIR"

    def read_tokens(self, model: Bridge, seq, *, layers: Sequence[int], k: int = 5) -> dict:
        """Read one sequence token by token with the fitted linear maps.

        The maps are applied to the residual stream after each of ``layers`` and decoded by
        the model's own final norm and unembedding, exactly as :func:`future_lens` scores them.
        The model predicts token t + k at position t + k − 1, so the lens read at t for offset
        k is compared with the model's own top-1 there.

        Args:
            model: the model the lens was fitted on.
            seq: a :class:`~interp.core.pauses.PausedSequence` (the prompt).
            layers: fitted layers to read.
            k: guesses kept per position.

        Returns:
            ``tokens`` (the decoded prompt), ``lens`` (per layer, per offset, per position the
            top-``k`` decoded guesses), ``model`` (per offset, per position the model's own
            top-``k`` for that token, ``None`` past the end) and ``agree`` (per (layer,
            offset), 1.0 where the lens's top-1 equals the model's, 0.0 where not, NaN past
            the end).
        """
        fitted = [int(x) for x in self.meta["layers"]]
        offsets = [int(x) for x in self.meta["offsets"]]
        n = len(seq.tokens)
        tokens_t = seq.tokens.reshape(1, -1).to(core_model.device(model))
        W, b = self.tensors["W"], self.tensors["b"]
        dec = decoder(model)
        states: dict[int, Tensor] = {}

        def grab(t, hook):
            states[int(hook.name.split(".")[1])] = t.detach()

        tok = model.tokenizer
        decode = (lambda i: tok.decode([int(i)])) if tok is not None else str
        lens_top, agree = [], {}
        with torch.no_grad():
            with model.hooks(fwd_hooks=[(hooks.resid(layer, "post"), grab) for layer in layers]):
                logits = model(tokens_t)
            own = logits[0].topk(k, -1).indices.cpu()  # [pos, k]: the model's guess of pos + 1
            for layer in layers:
                li = fitted.index(layer)
                h = states[layer][0]
                per_offset = []
                for ki, off in enumerate(offsets):
                    y = h @ W[li, ki].to(h) + b[li, ki].to(h)
                    top = dec(y).topk(k, -1).indices.cpu()  # [pos, k]
                    per_offset.append([[decode(i) for i in row] for row in top.tolist()])
                    m = torch.full((n,), -1, dtype=torch.long)
                    if n - off + 1 > 0:
                        m[: n - off + 1] = own[off - 1:, 0]
                    match = (top[:, 0] == m).double()
                    match[m < 0] = float("nan")
                    agree[(layer, off)] = match.numpy()
                lens_top.append(per_offset)
        own_str = [[decode(i) for i in row] for row in own.tolist()]
        model_top = [[own_str[t + off - 1] if t + off - 1 < n else None for t in range(n)]
                     for off in offsets]
        return dict(tokens=[decode(t) for t in seq.tokens.tolist()], lens=lens_top,
                    model=model_top, agree=agree)

    def figures(self) -> list[Figure]:
        from ..figures import probes as f

        return [Figure("future_lens_agreement", f.future_lens_agreement,
                       "Future Lens: how often a linear map from layer l at position t, decoded "
                       "by the model's own head, names the token the model will predict for "
                       "t + k, against bigram (dashed) and trigram (dotted) baselines; "
                       "diamonds: learned prompt."),
                Figure("future_lens_accuracy",
                       lambda r: f.future_lens_agreement(r, metric="accuracy"),
                       "The same maps scored on the true token t + k.")]

    def summary(self, metric: str = "agreement_top1") -> pd.DataFrame:
        """Per method and offset, the row of the best layer by ``metric``."""
        t = self.table
        if metric not in t.columns:
            raise InterpError(f"unknown Future Lens metric {metric!r}", f"use one of: {', '.join(LENS_COLUMNS[4:9])}")
        best = t.loc[t.groupby(["method", "offset"])[metric].idxmax()]
        return best.sort_values(["method", "offset"]).reset_index(drop=True)

    def headline(self) -> str:
        """One sentence: top-1 agreement against the bigram baseline at the best layer and
        offset ≥ 2 of the linear lens (offset 1 when it is the only one)."""
        t = self.table[self.table.method == "linear"]
        far = t[t.offset >= 2] if (t.offset >= 2).any() else t
        r = far.loc[(far.agreement_top1 - far.bigram_agreement).idxmax()]
        return (f"Future Lens (linear) at layer {int(r.layer)}, offset {int(r.offset)}: top-1 agreement with "
                f"the model {r.agreement_top1:.3f} vs bigram {r.bigram_agreement:.3f} "
                f"(true token {r.accuracy:.3f} vs bigram {r.bigram_accuracy:.3f}; n = {int(r.n)})")

    def figure(self, **kwargs):
        """:func:`interp.figures.probes.future_lens_agreement` of these results."""
        from ..figures.probes import future_lens_agreement

        return future_lens_agreement(self, **kwargs)

    def save(self, out_dir: str | Path, *, weights: bool = True) -> Path:
        """Write ``future_lens.csv`` (+ ``.json``), ``lens.safetensors`` (with ``weights``) and,
        last, ``checksums.json`` with the SHA-256 of each, so :meth:`load` names a file edited
        or damaged since."""
        out = Path(out_dir)
        written = [csv := self.to_csv(out / "future_lens.csv"), csv.with_suffix(".json")]
        if weights and self.tensors:
            written.append(atomic_save_tensors(out / "lens.safetensors", self.tensors))
        atomic_write_json(out / "checksums.json", {p.name: sha256_file(p) for p in written})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> FutureLensResults:
        """Read what :meth:`save` wrote (the tensors when present), each file checked against
        its checksum (runs of earlier releases have none)."""
        out = Path(out_dir)
        fix = f"train again with `interp probe train SPEC --out {out} --fresh`"
        if (out / "checksums.json").is_file():
            verify_checksums(out, read_json(out / "checksums.json", fix), fix)
        res = cls.from_csv(out / "future_lens.csv")
        if (out / "lens.safetensors").is_file():
            res.tensors = read_tensors(out / "lens.safetensors", fix)
        return res


def load_future_lens(out_dir: str | Path) -> FutureLensResults:
    """Read a finished Future Lens run (``future_lens.csv`` and, when saved, the maps)."""
    return FutureLensResults.load(out_dir)


@torch.no_grad()
def _score(logits_fn, n: int, model_top: Tensor, true: Tensor) -> dict[str, float]:
    """Agreement, accuracy and cross-entropy of ``logits_fn(rows)`` over ``n`` positions."""
    hits = {"agreement_top1": 0.0, "agreement_top5": 0.0, "accuracy": 0.0, "accuracy_top5": 0.0, "xent": 0.0}
    for c in range(0, n, _CHUNK):
        rows = torch.arange(c, min(c + _CHUNK, n))
        lp = torch.log_softmax(logits_fn(rows).float(), -1).cpu()
        top = lp.topk(5, -1).indices
        m, y = model_top[rows], true[rows]
        hits["agreement_top1"] += int((top[:, 0] == m).sum())
        hits["agreement_top5"] += int((top == m[:, None]).any(1).sum())
        hits["accuracy"] += int((top[:, 0] == y).sum())
        hits["accuracy_top5"] += int((top == y[:, None]).any(1).sum())
        hits["xent"] -= float(lp.gather(1, y[:, None]).double().sum())
    return {k: v / n for k, v in hits.items()}


def _as_sequences(model: Bridge, sequences) -> list[ProbeSequence]:
    """Probe sequences as given, or any input :func:`interp.core.inputs.iter_sequences` reads,
    grouped by document (a corpus document's windows share a group; any other sequence is
    its own)."""
    items = None if isinstance(sequences, Tensor) else list(sequences)
    if items and all(isinstance(s, ProbeSequence) for s in items):
        return items
    return [ProbeSequence(x.document, x.seq)
            for x in iter_sequences(model, sequences if items is None else items)]


def future_lens(
    model: Bridge,
    sequences: Iterable | Int[Tensor, "batch pos"],
    *,
    layers: Sequence[int] | str = "all",
    offsets: Sequence[int] = (1, 2, 3),
    config: FutureLensSpec | None = None,
    roles: Sequence[str] = ("regular",),
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    batch_size: int = 16,
    verbose: bool = False,
) -> FutureLensResults:
    """Fit and score the Future Lens (module docstring) on ``sequences``, split by group.

    Args:
        model: a ``TransformerBridge`` with an unembedding.
        sequences: :class:`interp.probes.ProbeSequence` items (group = document), e.g. from
            :func:`interp.probes.load_sequences`, or anything
            :func:`interp.core.inputs.as_sequences` reads: token rows or texts (each its own
            group), corpus documents or windows (grouped by document).
        layers: layers read (``"all"`` or block indices); the map reads their ``resid_post``.
        offsets: k ≥ 1; the target is the model's state at t + k − 1 and token t + k. In
            sequences with inserted pauses or fillers, k counts text tokens: the target is the
            k-th real token after t and the state the position just before it (see
            :func:`_targets`), so the lens can be read at pause positions.
        config: penalties, evaluation size and learned-prompt settings.
        roles: roles of the positions t read (e.g. ``("pause",)`` to read pause positions).
        seed: seeds the split and the samples of positions.
        val_fraction, test_fraction: fractions of groups for α selection and the metrics.
        batch_size: sequences per forward pass.
        verbose: progress bars.

    Returns:
        :class:`FutureLensResults`.

    Raises:
        InterpError: a layer out of range, an offset that leaves no position inside the
            sequences, a model without an unembedding, too few groups for three splits.
    """
    cfg = config or FutureLensSpec()
    dec = decoder(model)
    seqs = _as_sequences(model, sequences)
    n_layers = int(model.cfg.n_layers)
    layers = list(resolve_layers(model, layers, what="probe spec field inputs.layers"))
    if any(x >= n_layers - 1 for x in cfg.prompt_layers):
        raise InterpError(f"probe spec field future_lens.prompt_layers: {cfg.prompt_layers} includes the last "
                          f"layer, after which no block can turn a transplanted state into a later token",
                          f"use layers below {n_layers - 1}")
    bad = [x for x in cfg.prompt_layers if x not in layers]
    if bad:
        raise InterpError(f"probe spec field future_lens.prompt_layers: layer(s) {bad} are not read",
                          f"choose among inputs.layers: {layers}")
    offsets = sorted(set(offsets))
    longest = max(len(s.seq) for s in seqs)
    if min(offsets) < 1 or max(offsets) >= longest - 1:
        raise InterpError(f"probe spec field target.offsets: offsets {offsets} leave no position with a target "
                          f"in sequences of at most {longest} tokens",
                          f"use offsets from 1 to {max(longest - 2, 1)} or longer windows (data.n_tokens)")
    groups = np.array([s.group for s in seqs], dtype=object)
    split = split_groups(groups, val_fraction, test_fraction, seed)
    pos = _positions(seqs, offsets, list(roles), split, cfg, seed)
    if not any(len(p) for p in pos.keep_test):
        raise InterpError("Future Lens found no held-out position with a target",
                          "use more documents or longer windows, or smaller target.offsets")
    d, K = int(model.cfg.d_model), len(offsets)
    stats = {s: LensStats.zeros(len(layers), K, d) for s in ("train", "val")}
    p_slots = [layers.index(x) for x in cfg.prompt_layers]
    # Under torchrun each process runs every world-size-th sequence: the sums are all-reduced,
    # and the kept test/prompt states fill their global rows of zero buffers, so the all-reduce
    # (adding zeros elsewhere) hands every process the whole set, in one process's order.
    mine = set(shard(range(len(seqs))))

    def only_mine(per_seq):
        return [c if i in mine else c[:0] for i, c in enumerate(per_seq)]

    def rows_of(kept):
        return {(i, int(p)): r for r, (i, p) in enumerate((i, p) for i, ps in enumerate(kept) for p in ps)}

    def keep(xs, ys, index, slots):
        def fn(X, Y, b, p):
            r = torch.tensor([index[(int(i), int(q))] for i, q in zip(b, p, strict=True)], dtype=torch.long)
            xs[:, r] = (X if slots is None else X[slots]).float().cpu()
            ys[:, r] = Y.float().cpu()
        return fn

    def by_split(which):
        return [c if pos.split[i] == which else c[:0] for i, c in enumerate(pos.cand)]

    t_index, p_index = rows_of(pos.keep_test), rows_of(pos.keep_prompt) if p_slots else {}
    Xt, Yt = torch.zeros(len(layers), len(t_index), d), torch.zeros(K, len(t_index), d)
    Xp, Yp = torch.zeros(len(p_slots), len(p_index), d), torch.zeros(K, len(p_index), d)
    consumers = [(only_mine(by_split(s)), lambda X, Y, _b, _p, s=s: stats[s].update(X, Y)) for s in ("train", "val")]
    consumers.append((only_mine(pos.keep_test), keep(Xt, Yt, t_index, None)))
    if p_slots:
        consumers.append((only_mine(pos.keep_prompt), keep(Xp, Yp, p_index, p_slots)))
    _pass(model, seqs, layers, offsets, batch_size, verbose, consumers, pos.targets)
    all_reduce_sum([*stats["train"].tensors().values(), *stats["val"].tensors().values(), Xt, Yt, Xp, Yp])
    fit = fit_lens(stats["train"], stats["val"] if float(stats["val"].n) > 0 else None, cfg.alphas)

    n = Xt.shape[1]
    device = next(model.parameters()).device
    tok = [s.seq.tokens for s in seqs]
    ti = list(t_index)  # (sequence, position) of every held-out row, in row order
    tgt = pos.targets
    true = torch.tensor([[int(tok[i][tgt[i][p, ki]]) for ki in range(K)] for i, p in ti]).view(-1, K)
    with torch.no_grad():
        model_top = torch.stack([torch.cat([dec(Yt[k, c:c + _CHUNK].to(device)).argmax(-1).cpu()
                                            for c in range(0, n, _CHUNK)]) for k in range(K)], 1)
    base = _baselines(seqs, pos, offsets, ti)
    rows = []
    bar = tqdm(total=len(layers) * K, desc="future lens: scoring", disable=not verbose)
    for li, layer in enumerate(layers):
        for ki, k in enumerate(offsets):
            W, b = fit.W[li, ki].to(device), fit.b[li, ki].to(device)
            sc = _score(lambda r, li=li, W=W, b=b: dec(Xt[li, r].to(device) @ W + b), n, model_top[:, ki], true[:, ki])
            rows.append(dict(method="linear", layer=layer, offset=k, n=n, **sc,
                             **_base_cols(base, ki, model_top[:, ki], true[:, ki]),
                             alpha=float(fit.alpha[li, ki]), val_r2=float(fit.val_r2[li, ki])))
            bar.update(1)
    bar.close()
    tensors = {"W": fit.W, "b": fit.b, "alpha": fit.alpha, "val_r2": fit.val_r2} if cfg.save_weights else {}
    if p_slots:
        first_train = next(i for i in range(len(seqs)) if split[i] == "train")
        init = seqs[first_train].seq.tokens[:cfg.prompt_length]
        if len(init) < cfg.prompt_length:
            raise InterpError(f"probe spec field future_lens.prompt_length: {cfg.prompt_length} is longer than "
                              f"the windows ({len(init)} tokens)", "use a shorter prompt")
        p_offsets = [k for k in (cfg.prompt_offsets or [k for k in offsets if k >= 2] or offsets) if k in offsets]
        for pi, layer in enumerate(cfg.prompt_layers):
            for k in p_offsets:
                ki = offsets.index(k)
                prompt, losses = train_prompt(model, layer, Xp[pi], Yp[ki], init, cfg,
                                              seed=seed + 31 * layer + k, verbose=verbose)
                with torch.no_grad():
                    sc = _score(lambda r, pi=pi, prompt=prompt, layer=layer: _patched_logits(
                        model, prompt, layer, Xt[layers.index(layer), r].to(device), init.to(device)),
                        n, model_top[:, ki], true[:, ki])
                rows.append(dict(method="prompt", layer=layer, offset=k, n=n, **sc,
                                 **_base_cols(base, ki, model_top[:, ki], true[:, ki]),
                                 alpha=math.nan, val_r2=math.nan))
                tensors[f"prompt_L{layer}_k{k}"] = prompt.cpu()
                tensors[f"prompt_loss_L{layer}_k{k}"] = torch.tensor(losses)
    meta = dict(layers=layers, offsets=offsets, n_train=int(stats["train"].n), n_val=int(stats["val"].n),
                n_test=n, n_groups={s: int(len(set(groups[split == s]))) for s in ("train", "val", "test")},
                prompt_layers=list(cfg.prompt_layers), prompt_length=cfg.prompt_length,
                prompt_steps=cfg.prompt_steps, d_vocab=int(model.cfg.d_vocab),
                # (layer, offset) cells whose α is the end of the (self-extended) grid
                alpha_at_edge=[[layer, k] for li, layer in enumerate(layers) for ki, k in enumerate(offsets)
                               if bool(fit.at_edge[li, ki])])
    return FutureLensResults(pd.DataFrame(rows, columns=LENS_COLUMNS), meta, tensors=tensors)


def _baselines(seqs, pos: _Positions, offsets: list[int], test: list[tuple[int, int]]) -> dict[str, Tensor]:
    """Bigram and trigram top-5 predictions ``[n_test, offset, 5]`` fitted on training positions."""
    tok = [s.seq.tokens for s in seqs]
    tgt = pos.targets
    tr = [(i, int(p)) for i, c in enumerate(pos.cand) if pos.split[i] == "train" for p in c]
    # the last two text tokens at or before t (a pause reads the text before it), per sequence
    near = [s.seq.tokens.numpy()[_context(s.seq, np.arange(len(s.seq)))] for s in seqs]

    def ctx(pairs):
        return torch.from_numpy(np.array([near[i][p] for i, p in pairs], dtype=np.int64).reshape(-1, 2))

    c_tr, c_te = ctx(tr), ctx(test)
    out = {}
    for name, width in (("bigram", 1), ("trigram", 2)):
        out[name] = torch.stack([ngram_predictions(
            c_tr[:, 2 - width:], torch.tensor([int(tok[i][tgt[i][p, ki]]) for i, p in tr], dtype=torch.long),
            c_te[:, 2 - width:]) for ki in range(len(offsets))], 1)
    return out


def _base_cols(base: dict[str, Tensor], ki: int, model_top: Tensor, true: Tensor) -> dict[str, float]:
    """The model's own accuracy and the n-gram baselines' scores at offset ``ki``."""
    n = len(true)  # counts / n, exactly as _score computes its rates
    out = {"model_accuracy": int((model_top == true).sum()) / n}
    for name, pred in base.items():
        p = pred[:, ki]
        out[f"{name}_agreement"] = int((p[:, 0] == model_top).sum()) / n
        out[f"{name}_accuracy"] = int((p[:, 0] == true).sum()) / n
        out[f"{name}_top5_accuracy"] = int((p == true[:, None]).any(1).sum()) / n
    return out
