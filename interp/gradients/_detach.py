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

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .._types import Float, Int, Tensor
from ..core import hooks
from ..core.attention import (
    AttentionSpec,
    attention_spec,
    check_pattern,
    expand_kv,
    qkv_hooks,
    rotated_qkv,
)
from ..core.model import Bridge, n_kv_heads
from ..core.sites import resolve_layers
from ..errors import InterpError

__all__ = ["DEFAULT_BLOCK", "detached_attention", "myopic_attention", "recomputed_attention"]


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
    gradient. Only q, k and v are kept for the backward (linear in the number of positions);
    each block of ``block`` queries recomputes its pattern over the keys its mask allows
    (:func:`myopic_attention`, the code of the dense path) and backpropagates through it, so
    no tensor larger than block × positions per head ever exists.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, block: int,
                detach: bool) -> Tensor:
        ctx.save_for_backward(q, k, v)
        ctx.spec, ctx.block, ctx.detach = spec, block, detach
        return q.new_zeros(q.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dz: Tensor):
        q, k, v = ctx.saved_tensors
        spec, block, n_heads = ctx.spec, ctx.block, q.shape[1]
        work = torch.promote_types(q.dtype, torch.float32)  # accumulate over blocks in >= fp32
        dq = torch.zeros_like(q, dtype=work)
        dk, dv = torch.zeros_like(k, dtype=work), torch.zeros_like(v, dtype=work)
        n_pos = q.shape[-2]
        pos = torch.arange(n_pos, device=q.device)
        for start in range(0, n_pos, block):
            end = min(n_pos, start + block)
            lo = 0 if spec.window is None else max(0, start - spec.window + 1)
            with torch.enable_grad():
                qb = q[..., start:end, :].detach().requires_grad_()
                kb = k[..., lo:end, :].detach().requires_grad_()
                vb = v[..., lo:end, :].detach().requires_grad_()
                zb, _ = myopic_attention(qb, expand_kv(kb, n_heads), expand_kv(vb, n_heads), spec,
                                         pos[start:end], pos[lo:end], detach=ctx.detach)
                gq, gk, gv = torch.autograd.grad(zb, (qb, kb, vb), dz[..., start:end, :])
            dq[..., start:end, :] += gq
            dk[..., lo:end, :] += gk
            dv[..., lo:end, :] += gv
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


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
                         block_size: int | None) -> Iterator[None]:
    """Replace each layer's attention in the backward pass by interp's own reproduction.

    At ``hook_z`` the hook returns ``z + (B − B.detach())``: the model's own head outputs z
    as the value and the gradient of B, interp's attention from the captured q, k, v (with
    ``detach``, the detached-attention variant of :func:`detached_attention`; without, the
    ordinary attention). The model's own attention graph, with its pattern of
    positions² entries per layer and head, is cut away and freed after each layer.

    Dense (``block_size=None``), B is :func:`myopic_attention` over all positions, its
    pattern kept for the backward. Blocked, the backward recomputes it ``block_size``
    queries at a time (:class:`_BlockedAttention`), so what a layer keeps is q, k and v.

    **Checked on every call.** The model's ``hook_pattern`` and z are compared with the
    reproduction: on every row when the sequence fits one block, else on ``block_size``
    rows spread evenly from the first to the last position (a wrong mask, window or soft-cap
    moves every row past the window); the rows' pattern and output are recomputed from the
    same q, k, v the backward uses.

    Raises:
        InterpError: ``block_size < 1``, an attention variant not reproduced, or a
            reproduction that does not match the model's pattern or output.
    """
    check_block_size(block_size)
    n_kv = n_kv_heads(model)
    fwd = []
    for layer in resolve_layers(model, layers):
        fwd += _layer_hooks(model, attention_spec(model, layer), n_kv, detach, block_size)
    with model.hooks(fwd_hooks=fwd):
        yield


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
                 block_size: int | None) -> list:
    seen: dict[str, Tensor] = {}
    layer = spec.layer
    what = "detached_attention" if detach else "recomputed_attention"

    def keep_rows(pattern: Tensor, hook) -> None:
        # only the checked rows are kept: the full pattern is freed with the layer
        rows = check_rows(pattern.shape[-2], block_size, pattern.device)
        seen["pattern"] = pattern.detach()[..., rows, :] if len(rows) < pattern.shape[-2] \
            else pattern.detach()

    def replace_z(z: Tensor, hook) -> Tensor:
        q, k, v = rotated_qkv(model, layer, seen)
        if k.shape[2] != n_kv or k.shape[1] != q.shape[1]:
            raise InterpError(
                f"layer {layer}: keys of shape {tuple(k.shape)} for queries of shape "
                f"{tuple(q.shape)}; {what} needs one full forward without a KV cache",
                "call the model on whole sequences (no past_key_values) inside the block",
            )
        n_heads, n_pos = q.shape[2], q.shape[1]
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        pos = torch.arange(n_pos, device=q.device)
        rows = check_rows(n_pos, block_size, q.device)
        if block_size is None:
            b, pattern = myopic_attention(qh, expand_kv(kh, n_heads), expand_kv(vh, n_heads),
                                          spec, pos, pos, detach=detach)
            b_rows = b
        else:
            with torch.no_grad():
                b_rows, pattern = myopic_attention(qh[..., rows, :], expand_kv(kh, n_heads),
                                                   expand_kv(vh, n_heads), spec, rows, pos,
                                                   detach=False)
            b = _BlockedAttention.apply(qh, kh, vh, spec, block_size, detach)
        check_pattern(spec, pattern, seen.pop("pattern"), what)
        _check_close(b_rows.detach().transpose(1, 2).to(z.dtype), z.detach()[:, rows], layer)
        b = b.transpose(1, 2).to(z.dtype)
        return z.detach() + (b - b.detach()) if block_size is None else z.detach() + b

    return (qkv_hooks(model, layer, seen) + [(hooks.pattern(layer), keep_rows)]
            + [(hooks.z(layer), replace_z)])


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
