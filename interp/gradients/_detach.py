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

Only forward hooks are used. The hooks capture q, k (after RoPE: ``hook_rot_q``/``hook_rot_k``
on Hugging Face bridges; native models rotate internally, so the captured pre-RoPE q and k
are rotated here with the model's own rotary module) and v; at ``hook_z`` the head outputs B
are recomputed from them with the detaching above, and the hook returns
``z.detach() + (B − B.detach())``: the value of z exactly (the second term is exactly zero),
the gradient of B. The model's own attention computation is thereby cut from the graph, so
this works whether or not the model's pattern hook is on the live path. B is checked against
z on every call; an attention variant this module does not reproduce (ALiBi, sliding windows,
soft-capping, a KV cache) raises instead of giving silently wrong gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .._types import Float, Tensor
from ..core import hooks
from ..core import model as core_model
from ..core.model import Bridge, attention_scale, n_kv_heads
from ..core.sites import resolve_layers
from ..errors import InterpError

__all__ = [
    "attention_scale",
    "detached_attention",
    "myopic_attention_output",
    "qkv_hooks",
    "rotated_qkv",
]


def myopic_attention_output(
    q: Float[Tensor, "batch pos head_index d_head"],
    k: Float[Tensor, "batch pos kv_head d_head"],
    v: Float[Tensor, "batch pos kv_head d_head"],
    scale: float,
) -> Float[Tensor, "batch pos head_index d_head"]:
    """Causal attention whose queries read only their own position's k and v live.

    Args:
        q: queries after RoPE.
        k: keys after RoPE (``kv_head`` may divide ``head_index``: query head h reads KV head
            ``h // (n_heads // n_kv_heads)``).
        v: values.
        scale: multiplier of q · kᵀ (``1 / sqrt(d_head)`` for standard attention).

    Returns:
        The head outputs z, equal in value to ordinary causal attention; their gradient
        reaches k and v only through the diagonal (query i reading key/value i).
    """
    n_pos = q.shape[1]
    rep = q.shape[2] // k.shape[2]
    # [batch, head, pos, d_head], KV heads repeated in Llama's repeat_kv order
    qh = q.transpose(1, 2)
    kh = k.transpose(1, 2).repeat_interleave(rep, dim=1)
    vh = v.transpose(1, 2).repeat_interleave(rep, dim=1)
    work = torch.promote_types(q.dtype, torch.float32)
    eye = torch.eye(n_pos, dtype=torch.bool, device=q.device)
    off = torch.matmul(qh, kh.detach().transpose(-1, -2))
    diag = (qh * kh).sum(-1)  # q_i · k_i, live in both
    scores = torch.where(eye, torch.diag_embed(diag), off) * scale
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=q.device).triu(1)
    pattern = scores.to(work).masked_fill(causal, float("-inf")).softmax(-1).to(q.dtype)
    own = torch.diagonal(pattern, dim1=-2, dim2=-1)[..., None]  # [batch, head, pos, 1]
    z = torch.matmul(pattern, vh.detach()) + own * (vh - vh.detach())
    return z.transpose(1, 2)


def _check_supported(model: Bridge) -> None:
    for name in ("attn_scores_soft_cap", "attn_logit_softcapping"):
        cap = getattr(model.cfg, name, None)
        if cap not in (None, 0, -1, 0.0, -1.0):
            raise InterpError(f"detached_attention does not support attention soft-capping "
                              f"({name}={cap})", "use a model without attention soft-capping")
    if getattr(model.cfg, "positional_embedding_type", "standard") == "alibi":
        raise InterpError("detached_attention does not support ALiBi attention",
                          "use a model with rotary or learned absolute positions")


@contextmanager
def detached_attention(model: Bridge, layers: list[int] | None = None) -> Iterator[None]:
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

    Raises:
        InterpError: an unsupported attention variant (soft-capping, ALiBi), or, during the
            forward, a recomputed attention output that does not match the model's (e.g. a
            KV cache or sliding window), which would make the gradients wrong.
    """
    _check_supported(model)
    n_kv = n_kv_heads(model)
    fwd = []
    for layer in resolve_layers(model, layers):
        fwd += _layer_hooks(model, layer, n_kv)
    with model.hooks(fwd_hooks=fwd):
        yield


def qkv_hooks(model: Bridge, layer: int, seen: dict[str, Tensor]) -> list:
    """Forward hooks that store layer ``layer``'s q, k, v (and q, k after RoPE where the
    bridge exposes them) in ``seen``; read them back with :func:`rotated_qkv`."""

    def capture(key: str):
        def hook(t: Tensor, hook) -> None:
            seen[key] = t

        return hook

    names = [(hooks.q(layer), capture("q")), (hooks.k(layer), capture("k")),
             (hooks.v(layer), capture("v"))]
    if hooks.rot_q(layer) in model.hook_dict:
        names += [(hooks.rot_q(layer), capture("rot_q")), (hooks.rot_k(layer), capture("rot_k"))]
    return names


def rotated_qkv(model: Bridge, layer: int, seen: dict[str, Tensor]) -> tuple[
    Float[Tensor, "batch pos head_index d_head"], Float[Tensor, "batch pos kv_head d_head"],
    Float[Tensor, "batch pos kv_head d_head"],
]:
    """q and k after RoPE, and v, from what :func:`qkv_hooks` stored (emptying ``seen``).

    Native models rotate inside the attention module, where no hook fires, so their stored
    pre-RoPE q and k are rotated here with the model's own rotary module."""
    q, k = seen.pop("rot_q", None), seen.pop("rot_k", None)
    q_pre, k_pre, v = seen.pop("q"), seen.pop("k"), seen.pop("v")
    if q is None or k is None:
        rotary = core_model.rotary(model, layer)
        if rotary is None:
            return q_pre, k_pre, v  # learned absolute positions: no rotation
        qr, kr = rotary.apply_rope(q_pre.transpose(1, 2), k_pre.transpose(1, 2))
        return qr.transpose(1, 2), kr.transpose(1, 2), v
    return q, k, v


def _layer_hooks(model: Bridge, layer: int, n_kv: int) -> list:
    scale = attention_scale(model, layer)
    seen: dict[str, Tensor] = {}

    def replace_z(z: Tensor, hook) -> Tensor:
        q, k, v = rotated_qkv(model, layer, seen)
        if k.shape[2] != n_kv or k.shape[1] != q.shape[1]:
            raise InterpError(
                f"layer {layer}: keys of shape {tuple(k.shape)} for queries of shape "
                f"{tuple(q.shape)}; detached_attention needs one full forward without a KV cache",
                "call the model on whole sequences (no past_key_values) inside the block",
            )
        b = myopic_attention_output(q, k, v, scale).to(z.dtype)
        _check_close(b.detach(), z.detach(), layer)
        return z.detach() + (b - b.detach())

    return qkv_hooks(model, layer, seen) + [(hooks.z(layer), replace_z)]


def _check_close(b: Tensor, z: Tensor, layer: int) -> None:
    # the model's softmax may run in float32 even for float64 weights
    eps = max(torch.finfo(z.dtype).eps, torch.finfo(torch.float32).eps)
    err = float((b - z).abs().max())
    if not err <= 1e3 * eps * (1.0 + float(z.abs().max())):
        raise InterpError(
            f"layer {layer}: the recomputed attention output differs from the model's by {err:.3g}; "
            "this attention variant (sliding window, attention mask, KV cache, ...) is not "
            "supported by detached_attention",
            "use a causal model without these features, on whole unpadded sequences",
        )
