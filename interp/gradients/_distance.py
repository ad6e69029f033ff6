"""How far ahead: the gradient of each later loss ℓ_t at position i, by distance d = t − i."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._types import Bool, Float, Tensor
from ..core import hooks
from ..core import model as core_model
from ..core.distributed import all_reduce_sum, check_same, gather_tables
from ..core.io import atomic_write_csv, read_table
from ..core.loss import next_token_nll, token_losses
from ..core.model import Bridge
from ..core.pauses import PausePolicy
from ..core.result import Figure, TableResult
from ..core.sites import hook_name, resolve_layers, resolve_sites
from ..errors import InterpError
from ._batches import (
    SITES,
    Batch,
    Inputs,
    activation_gradients_only,
    iter_batches,
)
from ._decompose import _backward, _headline_site, _Reader
from ._detach import (
    DEFAULT_BLOCK,
    check_block_size,
    chunked_target_grads,
    forward_chunk,
    prefill,
    recomputed_attention,
)
from ._memory import check_fits


@dataclass
class ByDistance(TableResult):
    """Gradient of later losses by distance, one row per (layer, site, distance).

    Columns:
        ``grad_norm``: mean of ‖∂ℓ_{i+d}/∂x_i‖ over sequences, source positions i ≥ 1 (the
        first position, a sink, is left out unless asked), heads, and targets i + d in the
        loss; ``share``: Σ ⟨∂ℓ_{i+d}/∂x_i, g_i⟩ / Σ ‖g_i‖² with g_i = ∂L/∂x_i the total
        gradient, so the shares over d = 0..max_distance add up to 1 when max_distance
        reaches the end of the sequences (d = 0 is the self share, the rest the future
        share of :func:`future_gradients`); ``n``: how many (i, head, target) terms.

    With ``pairs=True``, :attr:`pairs` keeps every term before it is summed: one row per
    (sequence, layer, site, source ``position`` i, ``loss_position`` t) with ``grad_norm`` =
    ‖∂ℓ_t/∂x_i‖ over all heads together (√Σ_h ‖·‖²), for the kept distances; ``meta["tokens"]``
    then holds each sequence's token strings and roles. The token view
    :func:`interp.figures.tokens.who_reads_me_view` reads them.

    Attributes:
        table: the rows.
        meta: model, sites, layers, max_distance.
        pairs: the per-(position, loss position) rows, or ``None``.
    """

    pairs: pd.DataFrame | None = None

    FILE = "by_distance.csv"
    PAIRS_FILE = "by_distance_pairs.csv"
    REQUIRED = frozenset({"layer", "site", "distance", "grad_norm"})
    MADE_BY = "interp gradients --by-distance D ... --out DIR"

    def save(self, out) -> Path:
        """Write the table (and, when kept, the pairs as ``by_distance_pairs.csv``)."""
        super().save(out)
        if self.pairs is not None:
            atomic_write_csv(Path(out) / self.PAIRS_FILE, self.pairs)
        return Path(out)

    @classmethod
    def load(cls, out) -> ByDistance:
        """Read what :meth:`save` wrote (the pairs when present)."""
        out = Path(out)
        folder = out.parent if out.suffix == ".csv" else out
        res = cls.from_csv(out if out.suffix == ".csv" else out / cls.FILE)
        if (folder / cls.PAIRS_FILE).is_file():
            pairs = read_table(folder / cls.PAIRS_FILE)
            res.pairs = pairs.astype({"sequence": str})  # names such as "0" stay names
        return res

    def figures(self) -> list[Figure]:
        from ..figures import gradients as f

        site = _headline_site(self.table)
        return [Figure("gradient_by_distance", lambda r: f.gradient_by_distance(r, site),
                       "Gradient norm from the loss d tokens ahead: how far ahead a position's "
                       "key is used.")]


class _Accumulator:
    """Running sums per (site, layer) over distance, from per-target gradients."""

    def __init__(self, keys, max_distance: int, include_first: bool, pairs: bool = False):
        self.d = max_distance
        self.keep_pairs = pairs
        self.pairs: list[pd.DataFrame] = []
        self.start = 0 if include_first else 1
        self.norm = {k: torch.zeros(max_distance + 1, dtype=torch.float64) for k in keys}
        self.dot = {k: torch.zeros(max_distance + 1, dtype=torch.float64) for k in keys}
        self.count = {k: torch.zeros(max_distance + 1, dtype=torch.float64) for k in keys}
        self.total_sq = {k: torch.zeros((), dtype=torch.float64) for k in keys}

    def add_total(self, key, g_tot: Float[Tensor, "batch pos head d"], valid: Tensor) -> None:
        sq = (g_tot.double() ** 2).sum(-1)  # [batch, pos, head]
        self.total_sq[key] += sq[:, self.start:][valid[:, self.start:]].sum().cpu()

    def add(
        self,
        key,
        targets: list[int],
        grads: Float[Tensor, "chunk batch pos head d"],
        g_tot: Float[Tensor, "batch pos head d"],
        valid: Bool[Tensor, "batch pos"],
        in_loss: Bool[Tensor, "batch seq"],
        start: int = 0,
        batch: Batch | None = None,
    ) -> None:
        """Add the terms of ``targets``, whose gradients cover positions ``start`` to
        ``start + pos - 1`` (``g_tot`` and ``valid`` those positions; ``in_loss`` covers the
        whole sequence); with pairs kept, ``batch`` names the sequences."""
        n_pos = grads.shape[2]
        t = torch.tensor(targets, device=grads.device)[:, None]  # [chunk, 1]
        i = start + torch.arange(n_pos, device=grads.device)[None, :]
        dist = t - i  # [chunk, pos]
        ok = (dist >= 0) & (dist <= self.d) & (i >= self.start)
        # [chunk, batch, pos]: source valid, target in the loss for that sequence
        ok = ok[:, None, :] & valid[None] & in_loss[:, t[:, 0]].T[:, :, None]
        norms = grads.double().norm(dim=-1)  # [chunk, batch, pos, head]
        dots = (grads.double() * g_tot.double()[None]).sum(-1)
        sel = ok[..., None].expand_as(norms)
        d_idx = dist[:, None, :, None].expand_as(norms)[sel].cpu()
        self.norm[key].index_add_(0, d_idx, norms[sel].cpu())
        self.dot[key].index_add_(0, d_idx, dots[sel].cpu())
        self.count[key].index_add_(0, d_idx, torch.ones_like(d_idx, dtype=torch.float64))
        if self.keep_pairs:
            # every head kept for a (target, sequence, source) or none: ok has no head axis
            sq = (norms ** 2).sum(-1)  # [chunk, batch, pos]
            c, bi, p = torch.nonzero(ok, as_tuple=True)
            self.pairs.append(pd.DataFrame(dict(
                _b=np.asarray(batch.numbers)[bi.cpu().numpy()],
                sequence=np.asarray(batch.names)[bi.cpu().numpy()], layer=key[1], site=key[0],
                position=(start + p).cpu().numpy(), loss_position=t[c, 0].cpu().numpy(),
                grad_norm=sq[c, bi, p].sqrt().cpu().numpy())))

    def all_reduce(self) -> None:
        """Add up the sums of every process (under ``torchrun``; else nothing happens)."""
        all_reduce_sum([t for d in (self.norm, self.dot, self.count, self.total_sq)
                        for _, t in sorted(d.items())])

    def pairs_table(self) -> pd.DataFrame | None:
        """The kept pairs of every process, in sequence order (``None`` unless kept)."""
        if not self.keep_pairs:
            return None
        cols = ["_b", "sequence", "layer", "site", "position", "loss_position", "grad_norm"]
        df = pd.concat(self.pairs, ignore_index=True) if self.pairs else pd.DataFrame(
            columns=cols)
        df = gather_tables(df, sort_by=["_b"])  # under torchrun: every process's pairs
        return df.sort_values(["_b", "site", "layer", "position", "loss_position"],
                              kind="stable", ignore_index=True).drop(columns="_b")

    def table(self) -> pd.DataFrame:
        rows = []
        for (site, layer), norm in self.norm.items():
            count = self.count[(site, layer)]
            for d in range(self.d + 1):
                n = float(count[d])
                rows.append(dict(layer=layer, site=site, distance=d,
                                 grad_norm=float(norm[d]) / n if n else float("nan"),
                                 share=float(self.dot[(site, layer)][d] / self.total_sq[(site, layer)]),
                                 n=int(n)))
        table = pd.DataFrame(rows)
        table = table[table.n > 0]  # distances no sequence reaches
        return table.sort_values(["site", "layer", "distance"], ignore_index=True)


def _keep(acts: dict, key):
    """A forward hook that stores the activation it sees under ``key`` in ``acts`` and returns
    it, so the stored view is the one on the live path (its gradient is the model's)."""

    def hook(t: Tensor, hook) -> Tensor:
        acts[key] = t
        return t

    return hook

def by_distance(
    model: Bridge,
    inputs: Inputs,
    max_distance: int,
    *,
    sites: str | Sequence[str] = ("k", "v", "resid_post"),
    layers: Sequence[int] | None = None,
    policy: PausePolicy | None = None,
    loss_mask: Bool[Tensor, "batch pos"] | Bool[Tensor, " pos"] | None = None,
    n_tokens: int = 128,
    batch_size: int = 1,
    max_windows: int | None = None,
    chunk_size: int = 16,
    include_first: bool = False,
    method: str = "auto",
    pairs: bool = False,
    block_size: int | None = DEFAULT_BLOCK,
    verbose: bool = True,
) -> ByDistance:
    """‖∂ℓ_t/∂x_i‖ for every target t ≥ i, aggregated by distance d = t − i per layer and site.

    The per-target gradients are vector-Jacobian products of the per-position losses ℓ with
    one-hot cotangents, reduced on the fly to sums by distance. Each backward covers only the
    positions the kept terms need, which makes it exact and cheaper than one backward through
    the whole graph per target (the ``"loop"`` reference):

    - under the causal mask ℓ_t depends only on positions ≤ t, so the targets are taken
      ``chunk_size`` at a time and the forward runs on the prefix that ends at the chunk's
      last target, with the unembedding read only at the chunk's targets (its input is
      narrowed in a hook);
    - no kept term needs a gradient before position t − ``max_distance``, and a gradient at a
      position only flows to earlier ones, so for a model with a KV cache (any Hugging Face
      model) a chunk whose first target t₀ lies further in runs on the window from
      t₀ − ``max_distance`` on, over a cache of the positions before it (as constants; they
      are the full forward's keys and values). The cost per target is then about
      ``max_distance + chunk_size`` positions instead of t. Native models run the prefix.

    **At memory linear in the length** (longer than ``block_size``, with a KV cache): a
    no-gradient prefill keeps every position's keys and values; the total gradient is the
    chunked backward of :func:`future_gradients`; each chunk of targets then recomputes the
    model's forward ``block_size`` positions at a time, last first, over a cache of the
    prefill's keys and values, from the window's start (position 0 when every distance is
    kept) to its last target, and backpropagates the targets' batched cotangents through
    interp's blocked attention (:func:`~interp.gradients._detach.chunked_target_grads`),
    filing each chunk's terms before the next. Only one chunk's activations exist at a time;
    what grows with the length is every position's keys and values, their gradients for the
    chunk's targets (``chunk_size`` copies: lower it at long context) and the total gradient
    at the sites.

    The prefix's and the window's activations are those of the full forward, so the result
    is the loop's up to float rounding. One ordinary backward gives the total g_i = ∂L/∂x_i,
    against which each term is projected (the ``share`` column). Losses are summed over
    positions, as in :func:`future_gradients`. Under ``torchrun`` each process takes every
    world-size-th sequence and the sums are all-reduced.

    Args:
        model: a ``TransformerBridge``.
        inputs: as for :func:`future_gradients`.
        max_distance: the largest d = t − i kept (use ``n_tokens`` or more to keep all, so
            shares add up to 1). A small one makes the run cheaper on models with a KV cache.
        sites, layers, policy, loss_mask, n_tokens, batch_size, max_windows: as for
            :func:`future_gradients`.
        chunk_size: targets per forward pass on a prefix or window (and per batched VJP call).
        include_first: also average over source position 0 (the BOS / sink).
        method: ``"prefix"`` (one backward per target over its chunk's prefix or window),
            ``"prefix-batched"`` (the chunk's VJPs in one ``torch.autograd.grad(...,
            is_grads_batched=True)`` call; memory grows with ``chunk_size``), ``"loop"`` (the
            reference: one forward, one backward per target through the whole graph), or
            ``"auto"``: ``prefix-batched`` (the fastest measured on the CPU; batched VJPs suit a GPU too).
        block_size: sequences longer than this, on a model with a KV cache, run the forward
            and backward in chunks of this many positions with interp's blocked attention,
            so memory grows linearly with the length; shorter ones, and ``None``, run the
            prefix or window forward in one piece (faster; its pattern is kept, quadratic
            with every distance). TransformerLens-native models (no cache) run the prefix,
            their total pass blocked.
        pairs: also keep every term ‖∂ℓ_t/∂x_i‖ before it is summed (:attr:`ByDistance.pairs`,
            for the token view :func:`interp.figures.tokens.who_reads_me_view`); the table
            grows with the number of positions times ``max_distance``.
        verbose: show a progress bar.

    Returns:
        A :class:`ByDistance` table.

    Raises:
        InterpError: ``max_distance < 0``, ``chunk_size < 1``, ``block_size < 1``, a sequence
            longer than the model's context, or a batch whose estimated memory
            (:mod:`interp.gradients._memory`, with ``chunk_size`` copies of every key and
            value gradient) exceeds what is available, before any forward pass.
    """
    if max_distance < 0:
        raise InterpError(f"max_distance={max_distance}", "use max_distance >= 0")
    if chunk_size < 1:
        raise InterpError(f"chunk_size={chunk_size}", "use chunk_size >= 1")
    check_block_size(block_size)
    sites = resolve_sites(sites, SITES)
    layers = resolve_layers(model, layers)
    keys = [(s, layer) for layer in layers for s in sites]
    acc = _Accumulator(keys, max_distance, include_first, pairs)
    tokens: list[pd.DataFrame] = []
    batches, total = iter_batches(model, inputs, policy=policy, loss_mask=loss_mask,
                                  n_tokens=n_tokens, batch_size=batch_size,
                                  max_windows=max_windows, split_ranks=True)
    device = core_model.device(model)
    method = choose_method(method, device)
    with activation_gradients_only(model), tqdm(total=total, disable=not verbose,
                                                desc="gradients by distance", unit="seq") as bar:
        for batch in batches:
            # longer than a block, on a model with a KV cache: run in chunks (memory linear
            # in the length); shorter, the prefix / window forward is as small and faster
            chunked = (block_size is not None and batch.tokens.shape[1] > block_size
                       and method != "loop" and core_model.supports_cache(model))
            # the loop keeps the whole graph: estimated as the dense path
            check_fits(model, *batch.tokens.shape, None if method == "loop" else block_size,
                       device, targets=1 if method == "prefix" else chunk_size,
                       what="by_distance")
            if chunked:
                _chunked_batch(model, batch, sites, layers, acc, device, chunk_size, method,
                               block_size)
            else:
                _one_batch(model, batch, keys, acc, device, chunk_size, method, block_size)
            if pairs:
                tokens.append(_token_strings(model, batch))
            bar.update(len(batch.names))
    meta = dict(model=str(getattr(model.cfg, "model_name", "")), sites=list(sites),
                layers=list(layers), max_distance=max_distance, include_first=include_first)
    check_same("gradient configuration", dict(meta, n_tokens=n_tokens, batch_size=batch_size,
                                              max_windows=max_windows))
    acc.all_reduce()  # under torchrun: add up every process's sums
    if pairs:  # each sequence's token strings and roles, for the token views
        toks = gather_tables(pd.concat(tokens, ignore_index=True), sort_by=["_b"])
        meta["tokens"] = {name: dict(token_str=g.token_str.tolist(), roles=g.role.tolist())
                          for name, g in toks.groupby("sequence", sort=False)}
    return ByDistance(acc.table(), meta, acc.pairs_table())


def _token_strings(model: Bridge, batch: Batch) -> pd.DataFrame:
    """One row per (sequence, position): its token string and role (pads left out)."""
    tok = model.tokenizer
    rows = []
    for number, name, ids, roles in zip(batch.numbers, batch.names, batch.tokens.tolist(),
                                        batch.roles, strict=True):
        rows += [dict(_b=number, sequence=name, position=i, role=r,
                      token_str=tok.decode([t]) if tok is not None else str(t))
                 for i, (t, r) in enumerate(zip(ids, roles, strict=True)) if r != "pad"]
    return pd.DataFrame(rows)


METHODS = ("auto", "prefix", "prefix-batched", "loop")


def choose_method(method: str, device: torch.device) -> str:
    """``auto``: ``prefix-batched``, on a GPU (batched VJPs fill it) and on the CPU too
    (SmolLM2, 2 threads, chunks of 16, against the loop: 2.53× at N = 128 and 2.89× at
    N = 512 with every distance, 4.81× and 13.55× with max_distance 16, against 1.54× and
    2.28× for ``prefix`` at N = 128; ``python benchmarks/bench_gradients.py --parts distance``)."""
    if method not in METHODS:
        raise InterpError(f"unknown method {method!r}", f"choose one of: {', '.join(METHODS)}")
    if method == "auto":
        return "prefix-batched"
    return method


def _forward(model: Bridge, tokens: Tensor, keys, in_loss: Tensor, targets: list[int] | None,
             *, start: int = 0, past=None, want_cache: bool = False,
             block_size: int | None = DEFAULT_BLOCK):
    """Forward with the sites captured; return ({key: activation}, losses, cache or None).

    ``targets=None``: ℓ at every position, ``[batch, pos]`` (and, with ``want_cache``, the
    KV cache of the whole sequence). Otherwise the forward runs on positions ``start`` to the
    last target, over ``past`` (a cache of the first ``start`` positions) when ``start > 0``,
    and the unembedding reads only the target positions (its input is narrowed in a hook), so
    the losses are ``[batch, len(targets)]``, the activations cover positions ``start`` to the
    last target, and a backward pass never touches the vocabulary at the other positions.
    """
    acts: dict = {}
    fwd = [(hook_name(s, layer), _keep(acts, (s, layer))) for s, layer in keys]
    if targets is None:
        # blocked, the total gradient's backward runs over blocks of queries (no pattern
        # kept); entered after the site hooks, so it reads the views they return
        blocked = (recomputed_attention(model, detach=False, block_size=block_size)
                   if block_size is not None else nullcontext())
        with model.hooks(fwd_hooks=fwd), blocked:
            if want_cache:
                logits, cache = model(tokens, return_type="logits_and_cache")
            else:
                logits, cache = model(tokens), None
        return acts, token_losses(logits, tokens, in_loss), cache
    idx = torch.tensor(targets, device=tokens.device)
    fwd.append((hooks.UNEMBED_IN, lambda t, hook: t[:, idx - start]))
    end = targets[-1] + 1
    with model.hooks(fwd_hooks=fwd):
        if start:
            logits = model(tokens[:, start:end], past_key_values=past)
            core_model.check_cache_grew(past, end, "or call by_distance(..., method=\"loop\")")
        else:
            logits = model(tokens[:, :end])  # [batch, len(targets), d_vocab]
    nll = next_token_nll(logits, tokens[:, idx + 1])
    return acts, torch.where(in_loss[:, idx], nll, torch.zeros_like(nll)), None


def _chunked_batch(model: Bridge, batch: Batch, sites, layers, acc: _Accumulator, device,
                   chunk_size: int, method: str, block: int) -> None:
    """One batch at memory linear in its length (a model with a KV cache): the prefill, the
    total gradient by the chunked backward, then each chunk of targets by
    :func:`~interp.gradients._detach.chunked_target_grads` from the window's start."""
    tokens = batch.tokens.to(device)
    in_loss = batch.loss_mask.to(device)
    n = tokens.shape[1]
    valid = torch.tensor([[r != "pad" for r in roles] for roles in batch.roles], device=device)
    targets = [t for t in range(n) if bool(in_loss[:, t].any())]
    step = 1 if method == "prefix" else chunk_size
    pre = prefill(model, tokens, in_loss, forward_chunk(block, n), upto=n)
    total = _backward(model, Batch(tokens, batch.roles, batch.original_position, in_loss,
                                   batch.names, batch.numbers), _Reader(sites, layers), False,
                      block, pre)
    g_tot = {key: g if g.ndim == 4 else g[:, :, None] for key, g in total.items()}
    for key in sorted(g_tot, key=lambda k: -k[1]):
        acc.add_total(key, g_tot[key], valid)
    del total
    acts: dict = {}
    fwd = [(hook_name(s, layer), _keep(acts, (s, layer))) for s, layer in g_tot]
    # under a batched VJP every tile of the blocked backward holds chunk_size copies of its
    # scores: smaller tiles keep them at one block's worth
    tile = max(1, int(block / min(step, len(targets)) ** 0.5))
    with model.hooks(fwd_hooks=fwd), recomputed_attention(model, detach=False,
                                                          block_size=tile) as states:
        for c in range(0, len(targets), step):
            chunk = targets[c:c + step]

            def file(s: int, grads: dict, chunk=chunk) -> None:
                for key, g in grads.items():
                    g = g if g.ndim == 5 else g[:, :, :, None]
                    m = g.shape[2]
                    acc.add(key, chunk, g, g_tot[key][:, s:s + m], valid[:, s:s + m], in_loss,
                            s, batch)

            chunked_target_grads(model, tokens, in_loss, pre, states, max(0, chunk[0] - acc.d),
                                 chunk, acts, file)


def _one_batch(model: Bridge, batch: Batch, keys, acc: _Accumulator, device, chunk_size: int,
               method: str, block_size: int | None) -> None:
    tokens = batch.tokens.to(device)
    in_loss = batch.loss_mask.to(device)
    n = tokens.shape[1]
    valid = torch.tensor([[r != "pad" for r in roles] for roles in batch.roles], device=device)
    targets = [t for t in range(n) if bool(in_loss[:, t].any())]
    step = 1 if method == "loop" else chunk_size
    chunks = [targets[c:c + step] for c in range(0, len(targets), step)]
    # a chunk whose first target lies more than max_distance after the start needs no
    # gradient before position chunk[0] − max_distance: run it over a cache of that prefix
    windowed = (method != "loop" and core_model.supports_cache(model)
                and any(ch[0] > acc.d for ch in chunks))
    acts, losses, past = _forward(model, tokens, keys, in_loss, None, want_cache=windowed,
                                  block_size=block_size)
    inputs = [acts[k] for k in keys]
    g_tot = torch.autograd.grad(losses.sum(), inputs, retain_graph=method == "loop")
    g_tot = [g if g.ndim == 4 else g[:, :, None] for g in g_tot]
    for key, g in sorted(zip(keys, g_tot, strict=True), key=lambda kg: -kg[0][1]):
        _check_finite(g, key)  # last layer first: the first non-finite in backward order
        acc.add_total(key, g, valid)
    for chunk in chunks:
        start = 0
        if method == "loop":  # the reference: one backward per target through the full graph
            onehot = torch.zeros_like(losses)
            onehot[:, chunk[0]] = 1.0
            grads = [g[None] for g in torch.autograd.grad(losses, inputs, grad_outputs=onehot,
                                                          retain_graph=True)]
        else:
            # ℓ_t depends on positions ≤ t only (causal mask): run the forward on the prefix
            # that ends at the chunk's last target, or on the window that starts max_distance
            # before its first target (the positions before it come from the KV cache, as
            # constants: no term that is kept needs their gradient); the backward covers that
            start = max(0, chunk[0] - acc.d) if past is not None else 0
            prefix = core_model.cache_prefix(past, start, n) if start else None
            if prefix is None:  # not windowed, or a cache that cannot be cut
                start = 0
            acts, part, _ = _forward(model, tokens, keys, in_loss, chunk, start=start,
                                     past=prefix)
            inputs_c = [acts[k] for k in keys]
            if method == "prefix-batched":
                onehot = torch.eye(len(chunk), dtype=part.dtype, device=device)[:, None, :]
                grads = torch.autograd.grad(part, inputs_c, grad_outputs=onehot.expand(
                    len(chunk), *part.shape), is_grads_batched=True)
            else:
                per = [torch.autograd.grad(part[:, j].sum(), inputs_c,
                                           retain_graph=j < len(chunk) - 1)
                       for j in range(len(chunk))]
                grads = [torch.stack(gs) for gs in zip(*per, strict=True)]
        for key, g, tot in zip(keys, grads, g_tot, strict=True):
            g = g if g.ndim == 5 else g[:, :, :, None]
            m = g.shape[2]
            acc.add(key, chunk, g, tot[:, start:start + m], valid[:, start:start + m], in_loss,
                    start, batch)


def _check_finite(g: Tensor, key) -> None:
    if not torch.isfinite(g).all():
        raise InterpError(f"non-finite gradient at layer {key[1]}, site {key[0]!r}",
                          "check the inputs and the model's dtype (try float32)")
