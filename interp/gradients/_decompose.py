"""Self / future decomposition of the gradient at keys, values and the residual stream."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._types import Bool, Float, Tensor
from ..core import model as core_model
from ..core.distributed import check_same, gather_tables
from ..core.loss import token_losses
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
from ._detach import (
    DEFAULT_BLOCK,
    Prefill,
    check_block_size,
    chunked_backward,
    forward_chunk,
    prefill,
    recomputed_attention,
)
from ._memory import check_fits

CONVENTIONS = (
    "L = sum_t l_t over positions t in the loss mask (summed, not averaged); "
    "l_t is the next-token loss at position t (predicting token t+1). "
    "self = dl_i/dx_i (one backward through the detached-attention forward); "
    "total = dL/dx_i (one ordinary backward); future = total - self = sum_{t>i} dl_t/dx_i. "
    "future_share = <future, total> / |total|^2 (self share = 1 - future_share). "
    "position = index in the token sequence the model saw (a prepended BOS is position 0, "
    "role bos); original_position = index before pause insertion (-1 for inserted tokens). "
    "k and v are per KV head, before RoPE; resid sites have head -1. "
    "n_later = number of later positions t > i whose loss counts."
)

STAT_COLUMNS = ("self_norm", "future_norm", "total_norm", "future_share", "cos_self_future")


def _headline_site(table: pd.DataFrame) -> str:
    """The site a figure shows when a table holds several: k, else v, else the first."""
    sites = list(dict.fromkeys(table["site"]))
    return next((s for s in ("k", "v") if s in sites), sites[0])


@dataclass
class LengthSweep(TableResult):
    """:meth:`FutureGradients.by_position` rows for windows of several lengths (column
    ``n_tokens``): does the future share at a position grow with the window length N, as
    counting later losses predicts? Written by the report as ``long_context.csv``."""

    FILE = "long_context.csv"
    REQUIRED = frozenset({"n_tokens", "site", "position", "future_share", "later_fraction"})
    MADE_BY = "interp report (ReportConfig.long_context_tokens)"

    def figures(self) -> list[Figure]:
        from ..figures import gradients as f

        return [Figure("future_share_by_length", lambda r: f.future_share_by_length(r.table),
                       "Future share of the key gradient against position for windows of "
                       "several lengths N (dashed: the fraction of later positions, the naive "
                       "prediction). Counting later losses predicts the share grows with N.")]


@dataclass
class FutureGradients(TableResult):
    """The self / future decomposition, one row per (sequence, layer, site, head, position).

    Columns: ``sequence``, ``layer``, ``site`` (``k``, ``v``, ``resid_pre``/``mid``/``post``),
    ``head`` (KV head for k/v, ``-1`` for the residual stream), ``position``,
    ``original_position``, ``role``, ``token``, ``token_str``, ``in_loss``, ``n_later``,
    ``self_norm``, ``future_norm``, ``total_norm``, ``future_share``, ``cos_self_future``
    (NaN where a norm is zero, e.g. ``future_share`` at the last position, whose gradient is
    zero). See :data:`CONVENTIONS`, also written beside the CSV.

    Aggregates (:meth:`summary`, :meth:`by_layer`, :meth:`by_position`, :meth:`by_role`)
    leave out the first position (BOS / attention sink), which collects future gradient
    mostly because every later query reads it; :meth:`first_position` reports it apart.

    Attributes:
        table: the rows.
        meta: model name, sites, layers, conventions.
    """

    FILE = "future_gradients.csv"
    REQUIRED = frozenset({"layer", "site", "head", "position", "role", *STAT_COLUMNS})
    MADE_BY = "interp gradients ... --out DIR"

    def figures(self) -> list[Figure]:
        from ..figures import gradients as f

        site = _headline_site(self.table)
        return [
            Figure("future_share_heatmap", lambda r: f.future_share_heatmap(r, site),
                   f"Share of the gradient at each {site} that comes from later tokens' losses, "
                   "by layer and position: how much each position computes for the future."),
            Figure("future_share_by_position", f.future_share_by_position,
                   "Future share against position, beside the fraction of later positions "
                   "that naive counting predicts (the first, sink position is reported apart)."),
        ]

    def _rest(self) -> pd.DataFrame:
        t = self.table
        return t[(t.position > 0) & (t.total_norm > 0)]

    @staticmethod
    def _agg(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        g = df.assign(_dot=df.future_share * df.total_norm**2, _sq=df.total_norm**2)
        out = g.groupby(keys, sort=True).agg(
            future_share=("future_share", "mean"),
            future_share_sem=("future_share", "sem"),
            self_norm=("self_norm", "mean"),
            future_norm=("future_norm", "mean"),
            total_norm=("total_norm", "mean"),
            cos_self_future=("cos_self_future", "mean"),
            _dot=("_dot", "sum"),
            _sq=("_sq", "sum"),
            n=("future_share", "size"),
        )
        # the share of the summed squared gradient: large gradients weigh more
        out.insert(2, "pooled_future_share", out.pop("_dot") / out.pop("_sq"))
        return out.reset_index()

    def summary(self) -> pd.DataFrame:
        """Per site: mean future share over every layer, head and position except the first
        and those with zero gradient (the last), the pooled share, and the first position's."""
        out = self._agg(self._rest(), ["site"])
        first = self._agg(self.table[self.table.position == 0], ["site"])
        return out.merge(first[["site", "future_share"]].rename(
            columns={"future_share": "first_position_share"}), on="site", how="left")

    def by_layer(self) -> pd.DataFrame:
        return self._agg(self._rest(), ["site", "layer"])

    def by_position(self) -> pd.DataFrame:
        """Per site and position, with ``later_fraction`` = n_later / max(n_later), the naive
        prediction of the share from counting later losses."""
        t = self.table[self.table.total_norm > 0]
        out = self._agg(t, ["site", "position"])
        later = t.groupby(["site", "position"]).n_later.mean().reset_index(drop=True)
        out["later_fraction"] = later / max(float(later.max()), 1.0)
        return out

    def by_role(self) -> pd.DataFrame:
        return self._agg(self._rest(), ["site", "role"])

    def first_position(self) -> pd.DataFrame:
        """The first position (BOS / sink), per site and layer."""
        return self._agg(self.table[self.table.position == 0], ["site", "layer"])


class _Reader:
    """Reads the gradient at every site through tensor hooks registered in forward hooks.

    A backward hook on a hook point misses gradient that reaches the tensor a forward hook
    captured, and TransformerLens hands each forward hook its own reshaped view of the output:
    so each hook registers a tensor hook on its view and *returns* it, which puts that view on
    the live path. These hooks must be entered before :func:`detached_attention`, whose hooks
    then read (a function of) the returned view. A forward run in chunks calls each hook once
    per chunk (``part``: the chunk's number); the chunks' gradients are put back together
    along the positions.
    """

    def __init__(self, sites: tuple[str, ...], layers: tuple[int, ...]):
        self.keys = [(s, layer) for layer in layers for s in sites]
        self.grads: dict[tuple[str, int], dict[int, Tensor]] = {}
        self.calls: dict[tuple[str, int], set[int]] = {}
        self.part = 0

    def fwd_hooks(self) -> list:
        def make(key: tuple[str, int]):
            def hook(t: Tensor, hook) -> Tensor:
                part = self.part
                self.calls.setdefault(key, set()).add(part)
                t.register_hook(lambda g: self.grads.setdefault(key, {}).__setitem__(part, g))
                return t

            return hook

        return [(hook_name(s, layer), make((s, layer))) for s, layer in self.keys]

    def take(self) -> dict[tuple[str, int], Tensor]:
        parts, calls, self.grads, self.calls, self.part = self.grads, self.calls, {}, {}, 0
        missing = [k for k in self.keys if k not in calls or parts.get(k, {}).keys() != calls[k]]
        if missing:
            raise InterpError(f"no gradient reached {missing[:3]}",
                              "check the layers and sites exist in this model")
        out = {k: torch.cat([p[c] for c in sorted(p)], 1) for k, p in parts.items()}
        for key in sorted(out, key=lambda k: -k[1]):  # backward order: last layer first
            if not torch.isfinite(out[key]).all():
                raise InterpError(
                    f"non-finite gradient at layer {key[1]}, site {key[0]!r} (the first in "
                    "backward order)", "check the inputs and the model's dtype (try float32)")
        return out

    def begin(self, part: int) -> None:
        """The next forward is chunk ``part`` of the sequence."""
        self.part = part


def _backward(model: Bridge, batch: Batch, reader: _Reader, detached: bool,
              block_size: int | None, pre: Prefill | None) -> dict[tuple[str, int], Tensor]:
    # the dense total pass is the model's own backward; every other one runs through interp's
    # attention (the blocked one keeps no pattern); with a prefill (a sequence longer than a
    # block, on a model with a KV cache) the forward and backward run chunk by chunk
    attention = (recomputed_attention(model, detach=detached, block_size=block_size)
                 if detached or block_size is not None else nullcontext())
    tokens, mask = batch.tokens, batch.loss_mask
    with model.hooks(fwd_hooks=reader.fwd_hooks()), attention as states:
        if pre is not None:
            chunked_backward(model, tokens, mask, pre, states, reader.begin)
        else:
            loss = token_losses(model(tokens), tokens, mask).sum()
            if not torch.isfinite(loss):
                raise InterpError("the loss is not finite",
                                  "check the inputs and the model's dtype")
            loss.backward()
    return reader.take()


def _as_heads(g: Tensor) -> Float[Tensor, "batch pos head d"]:
    return g if g.ndim == 4 else g[:, :, None, :]


def _rows(model: Bridge, batch: Batch, total: dict, self_: dict) -> pd.DataFrame:
    """Statistics for one batch as a table (vectorised per site and layer)."""
    n_batch, n_pos = batch.tokens.shape
    mask = batch.loss_mask.cpu()
    n_later = (mask.flip(1).cumsum(1).flip(1) - mask.long()).numpy()  # Σ_{t>i} mask[t]
    tok = model.tokenizer
    token_str = None
    if tok is not None:
        token_str = np.array([[tok.decode([t]) for t in row] for row in batch.tokens.tolist()])
    frames = []
    for (site, layer), g_tot in total.items():
        g_tot = _as_heads(g_tot).double()
        g_self = _as_heads(self_[(site, layer)]).double()
        # exactly zero where no later loss can depend on x_i: no later target in the loss, or
        # a site after the last attention (position-wise up to the logits); total − self
        # would leave float rounding there, and a cosine of that residue means nothing
        no_future = torch.from_numpy(n_later == 0).to(g_tot.device)
        if layer == model.cfg.n_layers - 1 and site in ("resid_mid", "resid_post"):
            no_future = torch.ones_like(no_future)
        g_fut = torch.where(no_future[:, :, None, None], 0.0, g_tot - g_self)
        tot, sf, fu = g_tot.norm(dim=-1), g_self.norm(dim=-1), g_fut.norm(dim=-1)
        dot_ft = (g_fut * g_tot).sum(-1)
        dot_sf = (g_self * g_fut).sum(-1)
        share = torch.where(tot > 0, dot_ft / tot.clamp_min(1e-300) ** 2, torch.nan)
        cos = torch.where((sf > 0) & (fu > 0), dot_sf / (sf * fu).clamp_min(1e-300), torch.nan)
        n_head = g_tot.shape[2]
        # arrays in [batch, pos, head] order
        b_idx, p_idx, h_idx = np.meshgrid(np.arange(n_batch), np.arange(n_pos),
                                          np.arange(n_head), indexing="ij")
        df = pd.DataFrame(dict(
            _b=np.asarray(batch.numbers)[b_idx.ravel()],  # running number: the row order
            sequence=np.array(batch.names)[b_idx.ravel()],
            layer=layer,
            site=site,
            head=(h_idx.ravel() if site in ("k", "v") else -1),
            position=p_idx.ravel(),
            original_position=batch.original_position.cpu().numpy()[b_idx, p_idx].ravel(),
            role=np.array(batch.roles)[b_idx, p_idx].ravel(),
            token=batch.tokens.cpu().numpy()[b_idx, p_idx].ravel(),
            in_loss=mask.numpy()[b_idx, p_idx].ravel(),
            n_later=n_later[b_idx, p_idx].ravel(),
            self_norm=sf.cpu().numpy().ravel(),
            future_norm=fu.cpu().numpy().ravel(),
            total_norm=tot.cpu().numpy().ravel(),
            future_share=share.cpu().numpy().ravel(),
            cos_self_future=cos.cpu().numpy().ravel(),
        ))
        if token_str is not None:
            df.insert(9, "token_str", token_str[b_idx, p_idx].ravel())
        frames.append(df[df.role != "pad"])
    out = pd.concat(frames, ignore_index=True)
    order = ["_b", "site", "layer", "head", "position"]
    return out.sort_values(order, kind="stable", ignore_index=True)


def future_gradients(
    model: Bridge,
    inputs: Inputs,
    *,
    sites: str | Sequence[str] = ("k", "v", "resid_post"),
    layers: Sequence[int] | None = None,
    policy: PausePolicy | None = None,
    loss_mask: Bool[Tensor, "batch pos"] | Bool[Tensor, " pos"] | None = None,
    n_tokens: int = 128,
    batch_size: int = 4,
    max_windows: int | None = None,
    block_size: int | None = DEFAULT_BLOCK,
    verbose: bool = True,
) -> FutureGradients:
    """Split the gradient at keys, values and the residual stream into self and future terms.

    With L = Σ_t ℓ_t (next-token losses **summed** over the positions in the loss mask, so a
    norm means the same at any length), the gradient at an activation x_i of position i is

        ∂L/∂x_i = ∂ℓ_i/∂x_i + Σ_{t>i} ∂ℓ_t/∂x_i
                  "self"       "future"

    The self term for every position, layer and head comes from one backward pass through
    the :func:`detached_attention` forward (other positions' keys and values detached); the
    total from one ordinary backward pass; future = total − self. Parameters are frozen and
    the embedding output is made a leaf, so no parameter gradient is computed. The future
    share ⟨g_future, g_total⟩ / ‖g_total‖² and the self share add up to 1.

    Args:
        model: a ``TransformerBridge``.
        inputs: token ids ``[pos]`` or ``[batch, pos]`` (used as given: no BOS added), a text
            (tokenized with a BOS at position 0), a :class:`~interp.PausedSequence` or a list
            of them, or corpus documents (:func:`interp.load_corpus`), cut into windows of
            ``n_tokens`` tokens.
        sites: among ``k``, ``v`` (per KV head, before RoPE), ``resid_pre``, ``resid_mid``,
            ``resid_post`` (``resid`` means ``resid_post``).
        layers: layers to read (default: all).
        policy: insert pauses into every sequence (needs :func:`interp.add_pause_token`
            unless ``policy.filler`` is set); pause outputs are masked from the loss, so the
            self term at a masked position is zero and its share is 1.
        loss_mask: replaces the sequences' own loss masks (``[pos]`` or ``[batch, pos]``,
            shaped like the tokens after pause insertion; a single batch only).
        n_tokens: window length for corpus inputs.
        batch_size: sequences per forward/backward pass.
        max_windows: stop after this many corpus windows.
        block_size: the attention's backward runs over blocks of this many queries, keeping
            q, k and v per layer instead of the pattern, so memory grows linearly with the
            sequence length (exact: the same numbers to float rounding;
            docs/concepts/long-context.md). ``None``: the dense computation (faster at a
            few hundred tokens, quadratic memory).
        verbose: show a progress bar.

    Returns:
        A :class:`FutureGradients` (one row per sequence, layer, site, head, position).

    Raises:
        InterpError: a loss mask with nothing in the loss, a sequence of length 1, a sequence
            longer than the context, ``block_size < 1``, a batch whose estimated memory
            exceeds what is available (:mod:`interp.gradients._memory`), or a non-finite gradient (naming the layer and site).

    Example:
        >>> fg = interp.future_gradients(model, "The cat sat on the mat.", sites=("k", "v"))
        >>> fg.summary()[["site", "future_share", "first_position_share"]]
    """
    sites = resolve_sites(sites, SITES)
    layers = resolve_layers(model, layers)
    check_block_size(block_size)
    batches, total = iter_batches(model, inputs, policy=policy, loss_mask=loss_mask,
                                  n_tokens=n_tokens, batch_size=batch_size,
                                  max_windows=max_windows, split_ranks=True)
    reader = _Reader(sites, layers)
    frames = []
    with activation_gradients_only(model), tqdm(total=total, disable=not verbose,
                                                desc="future gradients", unit="seq") as bar:
        for batch in batches:
            batch.tokens = batch.tokens.to(core_model.device(model))
            batch.loss_mask = batch.loss_mask.to(batch.tokens.device)
            check_fits(model, *batch.tokens.shape, block_size, batch.tokens.device)
            # longer than a block, on a model with a KV cache: the forward runs in chunks of a
            # block (memory linear in the length), both passes over one prefill
            pre = (prefill(model, batch.tokens, batch.loss_mask,
                           forward_chunk(block_size, batch.tokens.shape[1]))
                   if block_size is not None and batch.tokens.shape[1] > block_size
                   and core_model.supports_cache(model) else None)
            g_total = _backward(model, batch, reader, False, block_size, pre)
            g_self = _backward(model, batch, reader, True, block_size, pre)
            frames.append(_rows(model, batch, g_total, g_self))
            bar.update(len(batch.names))
    meta = dict(model=str(getattr(model.cfg, "model_name", "")), sites=list(sites),
                layers=list(layers), conventions=CONVENTIONS,
                policy=policy.to_dict() if policy is not None else None)
    check_same("gradient configuration", dict(meta, n_tokens=n_tokens, batch_size=batch_size,
                                              max_windows=max_windows, block_size=block_size))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    # under torchrun each process computed its share of the sequences: gather them, in order
    table = gather_tables(table, sort_by=["_b"]).drop(columns="_b")
    return FutureGradients(table, meta)
