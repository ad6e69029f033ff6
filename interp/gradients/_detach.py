"""The detached-attention forward: every query reads the *other* positions' keys and values
detached, its own (the diagonal) live.

Under a causal mask, every gradient path from the key k_i (or value v_i, or residual h_i) of
position i to that position's own next-token loss ℓ_i runs inside column i: the only way
information leaves position i is through later queries reading its keys and values. Detaching
the off-diagonal keys and values therefore cuts exactly the paths to the *future* losses
ℓ_t, t > i, and one backward pass through this forward gives the "self" gradient ∂ℓ_i/∂x_i
for every position, layer and head at once (see :mod:`interp.gradients`).

For each attention layer, with q, k, v after RoPE and GQA head expansion,

    scores = q · k.detach()ᵀ  off the diagonal,  q · kᵀ  on it
    z      = pattern · v.detach() + diag(pattern) · (v − v.detach())

Only forward hooks are used. They capture q and k as the model scores them (after QK-norm and
RoPE, partial rotary included), v and the model's own pattern (:mod:`interp.core.attention`,
the one reproduction of the model's attention, shared with AtP*); at ``hook_z`` the head
outputs B are recomputed from them with the detaching above, under the layer's own mask
(causal, sliding window) and logit soft-cap, and the hook returns
``z.detach() + (B − B.detach())``: the value of z exactly (the second term is exactly zero),
the gradient of B. The model's own attention computation is thereby cut from the graph, so
this works whether or not the model's pattern hook is on the live path. The recomputed
pattern is checked against the model's ``hook_pattern`` and B against z on every call; an
attention variant that is not reproduced raises instead of giving silently wrong gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .._types import Bool, Float, Int, Tensor
from ..core import hooks
from ..core import model as core_model
from ..core.attention import (
    AttentionSpec,
    attention_spec,
    check_pattern,
    expand_kv,
    qkv_hooks,
    rotated_qkv,
)
from ..core.loss import next_token_nll
from ..core.model import Bridge, n_kv_heads
from ..core.sites import resolve_layers
from ..errors import InterpError

__all__ = [
    "DEFAULT_BLOCK",
    "blocked_attention",
    "Prefill",
    "chunked_backward",
    "chunked_target_grads",
    "detached_attention",
    "forward_chunk",
    "myopic_attention",
    "prefill",
    "recomputed_attention",
]


#: query rows per block of the blocked attention (the default of :func:`interp.future_gradients`)
DEFAULT_BLOCK = 512


def myopic_attention(
    q: Float[Tensor, "batch head_index q_pos d_head"],
    k: Float[Tensor, "batch head_index k_pos d_head"],
    v: Float[Tensor, "batch head_index k_pos d_head"],
    spec: AttentionSpec,
    q_pos: Int[Tensor, " q_pos"],
    k_pos: Int[Tensor, " k_pos"],
    *,
    detach: bool = True,
) -> tuple[Float[Tensor, "batch head_index q_pos d_head"], Float[Tensor, "batch head_index q_pos k_pos"]]:
    """Rows ``q_pos`` of the layer's attention over keys ``k_pos``, each query reading only its
    own position's k and v live (with ``detach=False``: every key and value live).

    The dense computation passes every position; the blocked one (:class:`_BlockedAttention`)
    a block of consecutive queries and the keys its mask allows, so both compute the same
    numbers with the same code.

    Args:
        q: queries at positions ``q_pos``, as the model scores them (after QK-norm and RoPE),
            head-major.
        k: keys at positions ``k_pos`` (KV heads already expanded to query heads); with
            ``detach``, ``k_pos`` must hold every position of ``q_pos`` (its own key).
        v: values at positions ``k_pos``.
        spec: the layer's scale, soft-cap and mask.
        q_pos, k_pos: the positions, ``k_pos`` consecutive.
        detach: detach the off-diagonal keys and values.

    Returns:
        The head outputs z and the pattern rows, equal in value to the layer's own attention;
        with ``detach`` their gradient reaches k and v only through the diagonal.
    """
    kd, vd = (k.detach(), v.detach()) if detach else (k, v)
    dots = torch.matmul(q, kd.transpose(-1, -2))
    own = (q_pos - k_pos[0]).expand(*q.shape[:-2], -1)[..., None]  # index of the own key
    if detach:
        own_k = k.gather(-2, own.expand(*own.shape[:-1], k.shape[-1]))
        eye = q_pos[:, None] == k_pos[None, :]
        dots = torch.where(eye, (q * own_k).sum(-1, keepdim=True), dots)  # q_i · k_i live
    pattern = spec.pattern(spec.logits(dots), q_pos, k_pos)
    z = torch.matmul(pattern, vd)
    if detach:
        own_v = v.gather(-2, own.expand(*own.shape[:-1], v.shape[-1]))
        z = z + pattern.gather(-1, own) * (own_v - own_v.detach())
    return z, pattern


class _BlockedAttention(torch.autograd.Function):
    """Zero in value; in the backward, the gradient of the layer's attention output z, computed
    one block of queries at a time.

    The hook returns ``z + this``: the model's own z as the value and this function's
    gradient. Only q and the keys and values are kept for the backward (linear in the number
    of positions); each block of ``block`` queries recomputes its pattern over the keys its
    mask allows (:func:`myopic_attention`, the code of the dense path) and backpropagates
    through it, so no tensor larger than block × positions per head ever exists.

    The queries sit at positions ``q_start``, ``q_start + 1``, ...; the keys and values come
    as consecutive pieces starting at position ``k_start`` (one piece for a whole sequence,
    one per earlier chunk of a forward run in chunks), so a chunk's gradient reaches the keys
    and values of the chunks before it without copying them.
    """

    @staticmethod
    def forward(ctx, q: Tensor, spec: AttentionSpec, block: int, detach: bool, q_start: int,
                k_start: int, n_pieces: int, *pieces: Tensor) -> Tensor:
        ctx.save_for_backward(q, *pieces)
        ctx.spec, ctx.block, ctx.detach, ctx.n_pieces = spec, block, detach, n_pieces
        ctx.q_start, ctx.k_start = q_start, k_start
        return q.new_zeros(q.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dz: Tensor):
        q, *pieces = ctx.saved_tensors
        ks, vs = pieces[:ctx.n_pieces], pieces[ctx.n_pieces:]
        k, v = torch.cat(ks, -2), torch.cat(vs, -2)
        spec, n_heads, k0, n_k = ctx.spec, q.shape[1], ctx.k_start, k.shape[-2]
        work = torch.promote_types(q.dtype, torch.float32)  # accumulate over blocks in >= fp32
        pos = torch.arange(k0, k0 + n_k, device=q.device)
        rows = tile_rows(ctx.block, n_k)
        dqs, dk, dv = [], None, None
        # the last tile first: its keys reach furthest, so dk and dv start as its gradient
        # (padded to all keys) and every other tile adds into them in place. Under a batched
        # VJP (torch.autograd.grad(..., is_grads_batched=True), as by_distance runs it) dz is
        # vmapped: so are dk and dv then, and the in-place adds are allowed
        for start in reversed(range(0, q.shape[-2], rows)):
            end = min(q.shape[-2], start + rows)
            first, last = ctx.q_start + start, ctx.q_start + end  # absolute query positions
            lo = k0 if spec.window is None else max(k0, first - spec.window + 1)
            with torch.enable_grad():
                qb = q[..., start:end, :].detach().requires_grad_()
                kb = k[..., lo - k0:last - k0, :].detach().requires_grad_()
                vb = v[..., lo - k0:last - k0, :].detach().requires_grad_()
                zb, _ = myopic_attention(qb, expand_kv(kb, n_heads), expand_kv(vb, n_heads), spec,
                                         pos[first - k0:last - k0], pos[lo - k0:last - k0],
                                         detach=ctx.detach)
                gq, gk, gv = torch.autograd.grad(zb, (qb, kb, vb),
                                                 dz.narrow(-2, start, end - start))
            dqs.append(gq.to(work))
            if dk is None:
                around = (0, 0, lo - k0, n_k - (last - k0))  # the tile's keys among all
                dk = torch.nn.functional.pad(gk.to(work), around)
                dv = torch.nn.functional.pad(gv.to(work), around)
            else:
                dk[..., lo - k0:last - k0, :] += gk
                dv[..., lo - k0:last - k0, :] += gv
        sizes = [p.shape[-2] for p in ks]
        dks = [g.to(p.dtype) for g, p in zip(dk.split(sizes, -2), ks, strict=True)]
        dvs = [g.to(p.dtype) for g, p in zip(dv.split(sizes, -2), vs, strict=True)]
        return (torch.cat(dqs[::-1], -2).to(q.dtype), None, None, None, None, None, None, *dks, *dvs)


#: a forward run in chunks keeps chunk × N at most this many blocks² (see forward_chunk)
FORWARD_SPAN = 8


def forward_chunk(block: int, n_pos: int) -> int:
    """Positions per chunk of a forward run in chunks over a KV cache: ``block``, fewer
    beyond ``FORWARD_SPAN · block`` positions, so the model's own attention over a chunk
    (chunk × N scores per head, in float32) stays at most what it is at that length."""
    return max(1, min(block, FORWARD_SPAN * block * block // max(n_pos, 1)))


def tile_rows(block: int, n_keys: int) -> int:
    """Query rows per tile of the blocked backward: ``block``, fewer when the keys are more
    than ``block``, so a tile holds at most block² scores per head at any length (the
    backward's memory does not grow with the keys read)."""
    return max(1, min(block, block * block // max(n_keys, 1)))


def blocked_attention(
    q: Float[Tensor, "batch head_index q_pos d_head"],
    keys: list[Float[Tensor, "batch kv_head _piece d_head"]],
    values: list[Float[Tensor, "batch kv_head _piece d_head"]],
    spec: AttentionSpec,
    block: int,
    *,
    detach: bool,
    q_start: int = 0,
    k_start: int = 0,
) -> Float[Tensor, "batch head_index q_pos d_head"]:
    """Zero, carrying in its backward the gradient of the attention of ``q`` (queries at
    positions ``q_start..``) over the keys and values given in consecutive pieces from position
    ``k_start``, computed ``block`` queries at a time (:class:`_BlockedAttention`); with
    ``detach``, the detached-attention variant of :func:`myopic_attention`."""
    return _BlockedAttention.apply(q, spec, block, detach, q_start, k_start, len(keys),
                                   *keys, *values)


@contextmanager
def detached_attention(model: Bridge, layers: list[int] | None = None, *,
                       block_size: int | None = None) -> Iterator[None]:
    """Run the model with each query reading the other positions' keys and values detached.

    Inside the ``with`` block the forward pass gives the same values (logits, activations)
    as usual, but gradients reach a position's keys and values only from that position's own
    query. Backpropagating a per-position loss summed over positions, L = Σ_t ℓ_t, then gives
    at any activation x_i (key, value, residual stream of position i) the **self term**
    ∂ℓ_i/∂x_i instead of the total ∂L/∂x_i; the difference is the **future term**
    Σ_{t>i} ∂ℓ_t/∂x_i (see :func:`interp.future_gradients`). Per attention layer:

        scores = q · k.detach()ᵀ  off the diagonal, q · kᵀ on it
        z      = pattern · v.detach() + diag(pattern) · (v − v.detach())

    **Myopic training** (Wu, Morris & Levine 2024): call the model and the loss inside the
    block, and ``loss.backward()`` fills the parameters' ``.grad`` with the myopic gradient,
    which excludes every path through past keys and values: the model is never rewarded for
    computing at position i something only a later position needs. Works with parameters
    requiring grad, any batch size, float32/float64, MHA and GQA, in train or eval mode::

        with interp.detached_attention(model):
            logits = model(tokens)                       # [batch, pos, d_vocab], unchanged
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()                                  # myopic gradient
        optimizer.step()

    The backward pass may run inside or after the block. Evaluate without the block: the
    values are identical either way, so only gradients differ.

    Args:
        model: a ``TransformerBridge`` (Hugging Face, e.g. SmolLM2, or a tiny native model).
        layers: detach only in these layers (default: all).
        block_size: compute the attention gradient in blocks of this many queries, keeping
            only q, k and v for the backward (memory linear in the sequence length; see
            :func:`recomputed_attention`); ``None``: dense, the pattern kept per layer and head.

    Sliding windows (Mistral, Gemma-2/3), logit soft-capping (Gemma-2), partial rotary
    (GPT-NeoX), QK-norm and one KV head (Gemma-3), qkv biases (Qwen2) and absolute positions
    (GPT-2) are reproduced (:mod:`interp.core.attention`; docs/families.md lists the families
    checked).

    Raises:
        InterpError: an attention variant that is not reproduced (ALiBi, attention sinks, a
            rotation no hook reveals), or, during the forward, a recomputed pattern or output
            that does not match the model's own (e.g. under an attention mask or KV cache),
            which would make the gradients wrong.
    """
    with recomputed_attention(model, layers, detach=True, block_size=block_size):
        yield


@contextmanager
def recomputed_attention(model: Bridge, layers: list[int] | None = None, *, detach: bool,
                         block_size: int | None) -> Iterator[list[_Chunks]]:
    """Replace each layer's attention in the backward pass by interp's own reproduction.

    At ``hook_z`` the hook returns ``z + (B − B.detach())``: the model's own head outputs z
    as the value and the gradient of B, interp's attention from the captured q, k, v (with
    ``detach``, the detached-attention variant of :func:`detached_attention`; without, the
    ordinary attention). The model's own attention graph, with its pattern of
    positions² entries per layer and head, is cut away and freed after each layer.

    Dense (``block_size=None``), B is :func:`myopic_attention` over all positions, its
    pattern kept for the backward. Blocked, the backward recomputes it ``block_size``
    queries at a time (:class:`_BlockedAttention`), so what a layer keeps is q, k and v.

    **Chunked forwards.** Blocked, the model may also be called on consecutive chunks of one
    sequence over a KV cache (:func:`chunked_backward`): each call's queries then attend to
    the keys and values of the earlier calls, which the hooks kept or were given
    (:meth:`_Chunks.seed`; the values the cache holds), and B's gradient reaches them, so
    the decomposition stays exact while the model's own forward never holds more than
    chunk × positions scores per head. A call whose pattern starts at key 0 begins a new
    sequence; a cache the hooks did not see fill (nor were given) is refused. Yields the
    layers' :class:`_Chunks`.

    **Checked on every call.** The model's ``hook_pattern`` and z are compared with the
    reproduction: on every row when the call's queries fit one block, else on ``block_size``
    rows spread evenly from its first to its last query (a wrong mask, window or soft-cap
    moves every row past the window); a chunk after the first is checked on
    :data:`CHUNK_CHECK_ROWS` rows spread the same way. The rows' pattern and output are
    recomputed from the same q, k, v the backward uses.

    Raises:
        InterpError: ``block_size < 1``, an attention variant not reproduced, or a
            reproduction that does not match the model's pattern or output.
    """
    check_block_size(block_size)
    n_kv = n_kv_heads(model)
    fwd, states = [], []
    for layer in resolve_layers(model, layers):
        hooks_, state = _layer_hooks(model, attention_spec(model, layer), n_kv, detach,
                                     block_size)
        fwd += hooks_
        states.append(state)
    try:
        with model.hooks(fwd_hooks=fwd):
            yield states
    finally:
        for state in states:  # the kept keys and values of a chunked forward
            state.clear()


#: query rows checked against the model's pattern in each chunk after the first
CHUNK_CHECK_ROWS = 32
#: positions of the second chunk that :func:`chunked_losses` checks against one whole forward
CHUNK_CHECK_SPAN = 64


def check_block_size(block_size: int | None) -> None:
    """Raise an :class:`InterpError` unless ``block_size`` is None or at least 1."""
    if block_size is not None and block_size < 1:
        raise InterpError(f"attention block_size={block_size}",
                          f"use a block of at least one query (default {DEFAULT_BLOCK}), or "
                          "None for the dense computation")


def check_rows(n_pos: int, block_size: int | None, device) -> Int[Tensor, " rows"]:
    """The query rows whose pattern is checked: all of them when they fit one block, else
    ``block_size`` rows spread evenly over the positions (the first and the last included)."""
    if block_size is None or n_pos <= block_size:
        return torch.arange(n_pos, device=device)
    return torch.linspace(0, n_pos - 1, block_size, device=device).round().long().unique()


def _layer_hooks(model: Bridge, spec: AttentionSpec, n_kv: int, detach: bool,
                 block_size: int | None) -> tuple[list, _Chunks]:
    seen: dict[str, Tensor] = {}
    chunks = _Chunks(spec, block_size)
    layer = spec.layer
    what = "detached_attention" if detach else "recomputed_attention"

    def keep_rows(pattern: Tensor, hook) -> None:
        # only the checked rows are kept: the full pattern is freed with the layer
        n_q, n_keys = pattern.shape[-2:]
        rows = chunks.rows(n_q, n_keys - n_q, pattern.device)
        seen["pattern"] = pattern.detach()[..., rows, :] if len(rows) < n_q else pattern.detach()

    def replace_z(z: Tensor, hook) -> Tensor:
        q, k, v = rotated_qkv(model, layer, seen)
        theirs = seen.pop("pattern")
        n_heads, n_q = q.shape[2], q.shape[1]
        if k.shape[2] != n_kv or k.shape[1] != n_q:
            raise InterpError(
                f"layer {layer}: keys of shape {tuple(k.shape)} for queries of shape "
                f"{tuple(q.shape)}; {what} needs the keys of the queries' own positions",
                "call the model on whole sequences (no past_key_values) inside the block",
            )
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        offset = theirs.shape[-1] - n_q  # positions before this call's queries
        keys, values, k_start = chunks.add(kh, vh, offset, what)
        rows = chunks.rows(n_q, offset, q.device)
        if block_size is None:
            pos = torch.arange(n_q, device=q.device)
            b, mine = myopic_attention(qh, expand_kv(kh, n_heads), expand_kv(vh, n_heads),
                                       spec, pos, pos, detach=detach)
            b_rows = b
        else:
            with torch.no_grad():
                k_all, v_all = torch.cat(keys, -2), torch.cat(values, -2)
                k_pos = torch.arange(k_start, offset + n_q, device=q.device)
                b_rows, mine = myopic_attention(qh[..., rows, :], expand_kv(k_all, n_heads),
                                                expand_kv(v_all, n_heads), spec, rows + offset,
                                                k_pos, detach=False)
                mine = torch.nn.functional.pad(mine, (k_start, 0))  # keys the window left out
            b = blocked_attention(qh, keys, values, spec, block_size, detach=detach,
                                  q_start=offset, k_start=k_start)
        check_pattern(spec, mine, theirs, what)
        _check_close(b_rows.detach().transpose(1, 2).to(z.dtype), z.detach()[:, rows], layer)
        b = b.transpose(1, 2).to(z.dtype)
        return z.detach() + (b - b.detach()) if block_size is None else z.detach() + b

    return (qkv_hooks(model, layer, seen) + [(hooks.pattern(layer), keep_rows)]
            + [(hooks.z(layer), replace_z)]), chunks


class _Chunks:
    """One layer's keys and values of the earlier calls of a forward run in chunks.

    A call whose queries start at position 0 begins a sequence; a later call must start
    where the kept keys end (the model read the same positions from its KV cache). Pieces
    that a sliding window no longer reaches are dropped: later chunks start later still.
    """

    def __init__(self, spec: AttentionSpec, block_size: int | None):
        self.spec, self.block_size = spec, block_size
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.start = self.end = 0  # positions held: start..end-1

    def clear(self) -> None:
        self.keys, self.values = [], []
        self.start = self.end = 0

    def seed(self, keys: list[Tensor], values: list[Tensor]) -> None:
        """Hold these pieces (positions 0.., head-major) as the keys and values of earlier
        calls: the next call continues after them."""
        self.clear()
        self.keys, self.values = list(keys), list(values)
        self.end = sum(k.shape[-2] for k in keys)

    def rows(self, n_q: int, offset: int, device) -> Int[Tensor, " rows"]:
        """The rows of this call checked against the model's pattern."""
        return check_rows(n_q, self.block_size if offset == 0 else
                          min(CHUNK_CHECK_ROWS, self.block_size or n_q), device)

    def add(self, k: Tensor, v: Tensor, offset: int, what: str
            ) -> tuple[list[Tensor], list[Tensor], int]:
        """Append this call's keys and values; return the pieces its queries read and the
        position of the first."""
        if offset == 0:
            self.clear()
        elif self.block_size is None or offset != self.end:
            raise InterpError(
                f"layer {self.spec.layer}: the model attended over {offset} cached positions "
                f"before this call's queries, but {what} "
                + ("runs on whole sequences only (block_size=None)" if self.block_size is None
                   else f"saw {self.end} positions before them in this forward"),
                "call the model on whole sequences, or on consecutive chunks of one sequence "
                "over a fresh KV cache (interp.gradients._detach.chunked_losses), inside the "
                "block",
            )
        self.keys.append(k)
        self.values.append(v)
        self.end = offset + k.shape[-2]
        if self.spec.window is not None:  # drop pieces no query of this call or later reads
            lo = offset - self.spec.window + 1
            while self.start + self.keys[0].shape[-2] <= lo:
                self.start += self.keys.pop(0).shape[-2]
                self.values.pop(0)
        return list(self.keys), list(self.values), self.start


def _check_close(b: Tensor, z: Tensor, layer: int) -> None:
    # the model's softmax may run in float32 even for float64 weights
    eps = max(torch.finfo(z.dtype).eps, torch.finfo(torch.float32).eps)
    err = float((b - z).abs().max())
    if not err <= 1e3 * eps * (1.0 + float(z.abs().max())):
        raise InterpError(
            f"layer {layer}: the recomputed attention output differs from the model's by "
            f"{err:.3g} although the pattern matches: the values it reads are not the ones "
            "hook_v captured (an attention mask, KV cache or a value transform interp does not "
            "reproduce)",
            "run on whole unpadded sequences without a KV cache",
        )


@dataclass
class Prefill:
    """The keys and values of a sequence, computed without gradient: each layer's, for the
    positions fed (head-major, as the KV cache holds them), and the losses there (the first
    ``chunk`` + :data:`CHUNK_CHECK_SPAN` positions in one whole forward, the rest in chunks
    over the cache)."""

    chunk: int
    keys: list[Float[Tensor, "batch kv_head fed d_head"]]
    values: list[Float[Tensor, "batch kv_head fed d_head"]]
    losses: Float[Tensor, "batch fed"]

    def leaves(self, bounds: list[int]) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        """Per layer, the keys and values of positions ``bounds[j]..bounds[j + 1] - 1`` as
        leaves that require grad (views: nothing is copied)."""
        cut = list(zip(bounds[:-1], bounds[1:], strict=True))
        return ([[k[..., s:e, :].detach().requires_grad_() for s, e in cut] for k in self.keys],
                [[v[..., s:e, :].detach().requires_grad_() for s, e in cut] for v in self.values])

    def cache(self, end: int):
        """A fresh KV cache of the positions before ``end``."""
        from transformers import DynamicCache

        cache = DynamicCache()
        if end:
            for layer, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
                cache.update(k[..., :end, :], v[..., :end, :], layer)
        return cache


def prefill(model: Bridge, tokens: Int[Tensor, "batch pos"], loss_mask: Bool[Tensor, "batch pos"],
            chunk: int, upto: int | None = None) -> Prefill:
    """Run the model without gradient on the positions before ``upto`` (default: the start of
    the last chunk of ``chunk`` positions): the first chunk and :data:`CHUNK_CHECK_SPAN` more
    positions in one whole forward (the reference :func:`chunked_backward` checks the cached
    forward against), the rest in chunks over the KV cache (a chunked prefill). Call it
    outside any hooks; both passes of the decomposition share it.

    Raises:
        InterpError: a model that ignored the cache.
    """
    from transformers import DynamicCache

    n = tokens.shape[1]
    stop = max((n - 1) // chunk * chunk, 1) if upto is None else upto
    cache = DynamicCache()  # full-length layers: the hooks follow the model's own mask
    losses, s = [], 0
    with torch.no_grad():
        while s < stop:
            e = min(n, chunk + CHUNK_CHECK_SPAN) if s == 0 else min(stop, s + chunk)
            logits = model(tokens[:, s:e], past_key_values=cache)
            core_model.check_cache_grew(cache, e, "or call with block_size=None")
            losses.append(_chunk_losses(logits, tokens, loss_mask, s))
            s = e
    kv = [core_model.cache_kv(cache, layer) for layer in range(model.cfg.n_layers)]
    return Prefill(chunk, [k for k, _ in kv], [v for _, v in kv], torch.cat(losses, 1))


def chunked_backward(model: Bridge, tokens: Int[Tensor, "batch pos"],
                     loss_mask: Bool[Tensor, "batch pos"], pre: Prefill, states: list[_Chunks],
                     before_chunk: Callable[[int], None] | None = None,
                     ) -> Float[Tensor, "batch pos"]:
    """Backpropagate Σ_t ℓ_t one chunk at a time, last chunk first, recomputing each chunk's
    forward over a cache of the :func:`prefill` keys and values: memory holds one chunk's
    activations, and every position's keys and values, instead of every position's
    activations (activation checkpointing at the chunk boundaries).

    Exact: a position reaches later positions' losses only through its keys and values, so
    chunk j's gradient is its own losses' plus the gradient the later chunks' attention (run
    first) sent to its keys and values, which is fed back into its recomputed forward. Call
    it inside :func:`recomputed_attention` over every layer (blocked); ``states`` are the
    layers' :class:`_Chunks` it yields; ``before_chunk(j)`` runs before chunk j's forward
    (e.g. to file the gradients read during its backward).

    Returns:
        The losses ℓ_t, detached.

    Raises:
        InterpError: a chunk's losses that differ from the prefill's, which ran the first
            chunk and the start of the second in one whole forward (the cached forward would
            not be the model's computation), or a non-finite loss.
    """
    n, chunk = tokens.shape[1], pre.chunk
    _check_states(model, states)
    starts = list(range(0, n, chunk))
    leaves_k, leaves_v = pre.leaves(starts)
    out: dict[int, Tensor] = {}
    for j in reversed(range(len(starts))):
        s, e = starts[j], min(n, starts[j] + chunk)
        for layer, state in enumerate(states):
            state.seed(leaves_k[layer][:j], leaves_v[layer][:j])
        if before_chunk is not None:
            before_chunk(j)
        cache = pre.cache(s)
        logits = model(tokens[:, s:e], past_key_values=cache)
        core_model.check_cache_grew(cache, e, "or call with block_size=None")
        losses = _chunk_losses(logits, tokens, loss_mask, s)
        del logits, cache
        mine = losses.detach()
        m = min(e, pre.losses.shape[1]) - s
        if m > 0:
            _check_chunked(mine[:, :m], pre.losses[:, s:s + m], chunk)
        total = losses.sum()
        if not torch.isfinite(total):
            raise InterpError("the loss is not finite", "check the inputs and the model's dtype")
        outs, grads = [total], [torch.ones_like(total)]
        if j < len(starts) - 1:  # the later chunks' gradient at this chunk's keys and values
            for layer, state in enumerate(states):
                for own, leaf in ((state.keys[-1], leaves_k[layer][j]),
                                  (state.values[-1], leaves_v[layer][j])):
                    if leaf.grad is not None:
                        outs.append(own)
                        grads.append(leaf.grad)
        torch.autograd.backward(outs, grads)
        out[j] = mine
        for layer in range(len(states)):  # this chunk's gradient is delivered: free it
            if j < len(starts) - 1:
                leaves_k[layer][j] = leaves_v[layer][j] = None
    for state in states:
        state.clear()
    return torch.cat([out[j] for j in sorted(out)], 1)


def chunked_target_grads(
    model: Bridge, tokens: Int[Tensor, "batch pos"], loss_mask: Bool[Tensor, "batch pos"],
    pre: Prefill, states: list[_Chunks], start: int, targets: list[int],
    acts: dict, on_grads: Callable[[int, dict], None],
) -> None:
    """The gradient of each target's loss ℓ_t, t in ``targets``, at the activations of the
    positions ``start..max(targets)``, one chunk at a time, last chunk first (as
    :func:`chunked_backward`, whose prefill ``pre`` must hold the keys and values of every
    position before the last target): the targets' cotangents are batched
    (``torch.autograd.grad(..., is_grads_batched=True)``), so each recomputed chunk serves
    them all, and the keys and values of positions before ``start`` enter as constants (no
    gradient before ``start`` is asked for, and a gradient at a position flows only to
    earlier ones, so the rest is exact).

    Call it inside hooks that file the activations to read in ``acts`` (``{key: tensor}``,
    returning the tensor they are given, entered before :func:`recomputed_attention` over
    every layer, blocked); ``on_grads(s, grads)`` gets, for the chunk starting at position
    ``s``, ``{key: [len(targets), *activation shape]}``. Only the targets' logits are
    computed (the unembedding's input is narrowed to them; in the other chunks to one
    position).

    Raises:
        InterpError: target losses that differ from the prefill's (the cached forward would
            not be the model's computation).
    """
    chunk, end = pre.chunk, targets[-1] + 1
    _check_states(model, states)
    bounds = list(range(start, end, chunk)) + [end]
    leaves_k, leaves_v = pre.leaves(bounds[:-1])
    fixed_k = [[k[..., :start, :]] if start else [] for k in pre.keys]
    fixed_v = [[v[..., :start, :]] if start else [] for v in pre.values]
    idx = torch.tensor(targets, device=tokens.device)
    eye = torch.eye(len(targets), dtype=pre.losses.dtype, device=tokens.device)
    received: dict[tuple[int, int], tuple[Tensor | None, Tensor | None]] = {}
    for j in reversed(range(len(bounds) - 1)):
        s, e = bounds[j], bounds[j + 1]
        mine = ((idx >= s) & (idx < e)).nonzero()[:, 0]  # the targets in this chunk
        for layer, state in enumerate(states):
            state.seed(fixed_k[layer] + leaves_k[layer][:j], fixed_v[layer] + leaves_v[layer][:j])
        cache = pre.cache(s)
        rows = idx[mine] - s if len(mine) else torch.tensor([e - s - 1], device=tokens.device)
        with model.hooks(fwd_hooks=[(hooks.UNEMBED_IN, lambda t, hook, rows=rows: t[:, rows])]):
            logits = model(tokens[:, s:e], past_key_values=cache)
        core_model.check_cache_grew(cache, e, "or call with block_size=None")
        del cache
        outs, grads = [], []
        if len(mine):
            at = idx[mine]
            nll = next_token_nll(logits, tokens[:, at + 1])
            part = torch.where(loss_mask[:, at], nll, torch.zeros_like(nll))
            _check_chunked(part.detach(), pre.losses[:, at], chunk)
            outs.append(part)
            grads.append(eye[:, None, mine].expand(len(targets), *part.shape))
        del logits
        for layer, state in enumerate(states):  # the later chunks' gradient at this chunk's
            for own, g in zip((state.keys[-1], state.values[-1]),  # keys and values
                              received.pop((layer, j), (None, None)), strict=True):
                if g is not None:
                    outs.append(own)
                    grads.append(g)
        keys = list(acts)
        earlier = [(layer, i, kind) for layer in range(len(states)) for i in range(j)
                   for kind in (0, 1)]
        inputs = [acts[key] for key in keys] + [(leaves_k, leaves_v)[kind][layer][i]
                                                for layer, i, kind in earlier]
        res = (torch.autograd.grad(outs, inputs, grads, is_grads_batched=True, allow_unused=True)
               if outs else [None] * len(inputs))  # no target reads this chunk (a window)
        # an activation no target reaches from here (the last layer's residual stream
        # outside the targets' chunk) has no gradient: zero
        on_grads(s, {key: torch.zeros((len(targets), *acts[key].shape), dtype=acts[key].dtype,
                                      device=acts[key].device) if g is None else g
                     for key, g in zip(keys, res[:len(keys)], strict=False)})
        acts.clear()
        for (layer, i, kind), g in zip(earlier, res[len(keys):], strict=True):
            if g is not None:
                have = list(received.get((layer, i), (None, None)))
                have[kind] = g if have[kind] is None else have[kind] + g
                received[(layer, i)] = (have[0], have[1])
    for state in states:
        state.clear()


def _check_states(model: Bridge, states: list[_Chunks]) -> None:
    if len(states) != model.cfg.n_layers or any(s.block_size is None for s in states):
        raise InterpError(f"a chunked backward over {len(states)} of {model.cfg.n_layers} "
                          "layers or with dense attention",
                          "enter recomputed_attention over every layer (layers=None) with a "
                          "block_size")


def _chunk_losses(logits: Tensor, tokens: Tensor, loss_mask: Tensor, s: int) -> Tensor:
    """ℓ_t for the positions s.. of one chunk's logits (0 at the sequence's last position)."""
    n, e = tokens.shape[1], s + logits.shape[1]
    nll = next_token_nll(logits[:, :min(e, n - 1) - s], tokens[:, s + 1:e + 1])
    if e == n:  # the last position has no target
        nll = torch.cat([nll, nll.new_zeros(nll.shape[0], 1)], 1)
    return torch.where(loss_mask[:, s:e], nll, torch.zeros_like(nll))


def _check_chunked(mine: Tensor, theirs: Tensor, chunk: int) -> None:
    eps = max(torch.finfo(theirs.dtype).eps, torch.finfo(torch.float32).eps)
    err = float((mine - theirs).abs().max())
    if not err <= 1e3 * eps * (1.0 + float(theirs.abs().max())):
        raise InterpError(
            f"the model run in chunks of {chunk} positions over a KV cache gives next-token "
            f"losses {err:.3g} away from the same positions in one whole forward (the first "
            f"{chunk + CHUNK_CHECK_SPAN}) or in the prefill: this model's cached forward is not "
            "its whole-sequence computation",
            "use block_size=None (dense), or a block_size at least the window length",
        )
