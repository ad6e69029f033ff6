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

from .._types import Float, Tensor
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

__all__ = ["detached_attention", "myopic_attention"]


def myopic_attention(
    q: Float[Tensor, "batch pos head_index d_head"],
    k: Float[Tensor, "batch pos kv_head d_head"],
    v: Float[Tensor, "batch pos kv_head d_head"],
    spec: AttentionSpec,
) -> tuple[Float[Tensor, "batch pos head_index d_head"], Float[Tensor, "batch head_index pos pos"]]:
    """The layer's attention with each query reading only its own position's k and v live.

    Args:
        q: queries as the model scores them (after QK-norm and RoPE).
        k: keys likewise (``kv_head`` may divide ``head_index``: query head h reads KV head
            ``h // (n_heads // n_kv_heads)``).
        v: values.
        spec: the layer's scale, soft-cap and mask.

    Returns:
        The head outputs z and the pattern, equal in value to the layer's own attention; their
        gradient reaches k and v only through the diagonal (query i reading key/value i).
    """
    n_pos = q.shape[1]
    qh = q.transpose(1, 2)  # [batch, head, pos, d_head]
    kh, vh = expand_kv(k.transpose(1, 2), q.shape[2]), expand_kv(v.transpose(1, 2), q.shape[2])
    eye = torch.eye(n_pos, dtype=torch.bool, device=q.device)
    off = torch.matmul(qh, kh.detach().transpose(-1, -2))
    diag = (qh * kh).sum(-1)  # q_i · k_i, live in both
    pattern = spec.pattern(spec.logits(torch.where(eye, torch.diag_embed(diag), off)))
    own = torch.diagonal(pattern, dim1=-2, dim2=-1)[..., None]  # [batch, head, pos, 1]
    z = torch.matmul(pattern, vh.detach()) + own * (vh - vh.detach())
    return z.transpose(1, 2), pattern


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
    n_kv = n_kv_heads(model)
    fwd = []
    for layer in resolve_layers(model, layers):
        fwd += _layer_hooks(model, attention_spec(model, layer), n_kv)
    with model.hooks(fwd_hooks=fwd):
        yield


def _layer_hooks(model: Bridge, spec: AttentionSpec, n_kv: int) -> list:
    seen: dict[str, Tensor] = {}
    layer = spec.layer

    def replace_z(z: Tensor, hook) -> Tensor:
        q, k, v = rotated_qkv(model, layer, seen)
        if k.shape[2] != n_kv or k.shape[1] != q.shape[1]:
            raise InterpError(
                f"layer {layer}: keys of shape {tuple(k.shape)} for queries of shape "
                f"{tuple(q.shape)}; detached_attention needs one full forward without a KV cache",
                "call the model on whole sequences (no past_key_values) inside the block",
            )
        b, pattern = myopic_attention(q, k, v, spec)
        check_pattern(spec, pattern, seen.pop("pattern"), "detached_attention")
        b = b.to(z.dtype)
        _check_close(b.detach(), z.detach(), layer)
        return z.detach() + (b - b.detach())

    return qkv_hooks(model, layer, seen, pattern=True) + [(hooks.z(layer), replace_z)]


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
