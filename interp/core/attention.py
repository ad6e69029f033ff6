"""The model's own attention, reproduced once: mask, scores, soft-capping, pattern.

Two instruments recompute a model's attention pattern from its queries and keys: the exact
self/future decomposition (:func:`interp.detached_attention`, which detaches the off-diagonal
keys and values) and AtP* (:func:`interp.attribution_patch` with ``qk_fix=True``, which swaps in
one corrupt key at a time). Both use this module, so every attention variant is reproduced in
one place and checked the same way. Per layer, with q and k after the model's positional
rotation and QK-norm, and query head h reading KV head ``h // n_rep``::

    logits[q, j] = c · tanh(s · q·k_j / c)        (c: soft-cap, Gemma-2; without one s · q·k_j)
    allowed(q, j) = j ≤ q  and  j > q − w         (w: sliding window; none on global layers)
    pattern[q]    = softmax over allowed j of logits[q]

:class:`AttentionSpec` holds s, c and w for one layer, read from the model's own configuration
(:func:`attention_spec`: the Hugging Face attention module's ``scaling``,
``attn_logit_softcapping`` and ``sliding_window``, or the config's ``layer_types`` and
``sliding_window``). The mask is a function of position indices (:meth:`AttentionSpec.allowed`)
and the soft-cap is elementwise (:meth:`AttentionSpec.logits`), so a blocked, flash-style
computation builds each block of queries × keys with the same two methods and keeps a running
log-sum-exp where :meth:`AttentionSpec.pattern` takes the dense softmax.

**Queries and keys as the model scores them.** :func:`qkv_hooks` captures, in one forward,
q, k, v and whatever the bridge exposes of the rotation: ``hook_rot_q``/``hook_rot_k`` where
they fire (Llama, Qwen, Mistral, Gemma: after QK-norm and RoPE), otherwise the rotary tables
``hook_cos``/``hook_sin`` (GPT-NeoX and Phi-3, whose fused-QKV bridge rotates without firing
the rot hooks), to which :func:`rotated_qkv` applies the Hugging Face module's own
``apply_rotary_pos_emb`` (partial rotary included: it rotates the first ``cos.shape[-1]``
dimensions); native TransformerLens models use their attention module's ``rotary``. A rotary
model whose rotation no hook reveals (GPT-J) is refused by name.

**Eager or SDPA.** TransformerLens' attention bridges recompute attention themselves from
the mask the Hugging Face model builds and passes down (so ``hook_pattern`` exists); that mask
carries the sliding window under eager and SDPA alike (checked on Mistral). Bridges that only
wrap the Hugging Face module (``AttentionBridge``, e.g. GPT-J) see a pattern only under eager
attention, which :func:`interp.load_model` always requests.

**Checked on every call.** :func:`check_pattern` compares the reproduced pattern with the
model's own ``hook_pattern``; any variant not reproduced here (an attention mask, an unknown
layer type, a changed bridge) raises an :class:`~interp.errors.InterpError` naming the layer
and the largest difference instead of giving silently wrong numbers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from .._types import Bool, Float, Int, Tensor
from ..errors import InterpError
from . import hooks
from . import model as core_model
from .model import Bridge

__all__ = [
    "AttentionSpec",
    "attention_spec",
    "attention_window",
    "check_pattern",
    "expand_kv",
    "qkv_hooks",
    "rotated_qkv",
    "uniform_attention",
]

#: what the error of an unreproduced variant tells the user to do
_FIX = ("run on whole sequences without an attention mask or KV cache; if this architecture "
        "is new, report it with its config (interp reproduces causal attention with sliding "
        "windows, soft-capping, RoPE (partial too), QK-norm, GQA and absolute positions)")


#: the fix for a variant known not to be reproduced
_UNSUPPORTED = ("the exact decomposition and AtP* cannot run on this model; plain AtP "
                "(attribution_patch(..., qk_fix=False)), activation patching, recording and "
                "probes do not reproduce attention and still work (docs/families.md lists the "
                "families the decomposition supports)")


@dataclass(frozen=True)
class AttentionSpec:
    """One layer's attention, as the model computes it from rotated q and k.

    Attributes:
        layer: the block index.
        scale: s, the multiplier of q · k (``1 / sqrt(d_head)``, or Gemma's
            ``query_pre_attn_scalar ** -0.5``).
        softcap: c of the logit soft-cap ``c · tanh(x / c)`` (Gemma-2), ``None`` without.
        window: w, the sliding window: query q reads keys j with q − w < j ≤ q (``None``:
            every earlier key, a global layer).
        joint_k_norm: the key norm runs over all KV heads of a position together (OLMo-2),
            so patching one head's pre-norm key moves every head's normalised key.
    """

    layer: int
    scale: float
    softcap: float | None = None
    window: int | None = None
    joint_k_norm: bool = False

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise InterpError(f"layer {self.layer}: sliding window {self.window} < 1",
                              "give a window of at least one key (the query's own)")
        if self.softcap is not None and not self.softcap > 0:
            raise InterpError(f"layer {self.layer}: soft-cap {self.softcap} is not positive",
                              "give a positive soft-cap or None")

    def describe(self) -> str:
        """A short name of the variant, e.g. ``"causal, window 8, soft-cap 50"``."""
        parts = ["causal"]
        if self.window is not None:
            parts.append(f"window {self.window}")
        if self.softcap is not None:
            parts.append(f"soft-cap {self.softcap:g}")
        return ", ".join(parts)

    def allowed(self, q_pos: Int[Tensor, " q_pos"], k_pos: Int[Tensor, " k_pos"]
                ) -> Bool[Tensor, "q_pos k_pos"]:
        """Which keys each query reads, from position indices (a block of them will do)."""
        ok = k_pos[None, :] <= q_pos[:, None]
        if self.window is not None:
            ok &= k_pos[None, :] > q_pos[:, None] - self.window
        return ok

    def logits(self, dots: Float[Tensor, "*batch q_pos k_pos"]) -> Float[Tensor, "*batch q_pos k_pos"]:
        """Pre-softmax logits from the raw dot products q · k (scaled, then soft-capped)."""
        x = dots * self.scale
        if self.softcap is not None:
            x = torch.tanh(x / self.softcap) * self.softcap
        return x

    def pattern(self, logits: Float[Tensor, "*batch q_pos k_pos"],
                q_pos: Int[Tensor, " q_pos"] | None = None,
                k_pos: Int[Tensor, " k_pos"] | None = None) -> Float[Tensor, "*batch q_pos k_pos"]:
        """The masked softmax, computed in at least float32 (as the bridge does) and returned
        in the logits' dtype. Positions default to ``0..n-1`` (one whole sequence)."""
        n_q, n_k = logits.shape[-2:]
        dev = logits.device
        q_pos = torch.arange(n_k - n_q, n_k, device=dev) if q_pos is None else q_pos
        k_pos = torch.arange(n_k, device=dev) if k_pos is None else k_pos
        work = torch.promote_types(logits.dtype, torch.float32)
        masked = logits.to(work).masked_fill(~self.allowed(q_pos, k_pos), float("-inf"))
        return masked.softmax(-1).to(logits.dtype)


def attention_spec(model: Bridge, layer: int) -> AttentionSpec:
    """Read layer ``layer``'s attention variant from the model's own configuration.

    Raises:
        InterpError: a variant this module does not reproduce (ALiBi, attention sinks,
            chunked or non-causal attention, a layer type other than full or sliding).
    """
    scale = core_model.attention_scale(model, layer)
    cfg = model.cfg
    if getattr(cfg, "positional_embedding_type", "standard") == "alibi":
        raise InterpError(f"layer {layer} uses ALiBi position biases, which interp does not "
                          "reproduce", "use a model with rotary or learned absolute positions")
    if core_model.is_native(model):
        cap = getattr(cfg, "attn_scores_soft_cap", None)
        return AttentionSpec(layer, scale, softcap=cap if cap and cap > 0 else None)
    attn = core_model.attention(model, layer)
    hf_cfg = model.original_model.config
    if getattr(attn, "sinks", None) is not None:  # GPT-OSS: a learned logit per head
        raise InterpError(f"layer {layer}: attention sinks ({type(attn).__name__}: a learned "
                          "logit per head joins the softmax) are not reproduced by interp",
                          _UNSUPPORTED)
    if getattr(hf_cfg, "attention_chunk_size", None):  # Llama 4
        raise InterpError(f"layer {layer}: chunked attention (attention_chunk_size="
                          f"{hf_cfg.attention_chunk_size}) is not reproduced by interp",
                          _UNSUPPORTED)
    if getattr(attn, "is_causal", True) is False:
        raise InterpError(f"layer {layer}: non-causal attention ({type(attn).__name__})",
                          _UNSUPPORTED)
    softcap = getattr(attn, "attn_logit_softcapping", None)
    k_norm = getattr(getattr(attn, "k_norm", None), "weight", None)
    head_dim = getattr(attn, "head_dim", None) or int(model.cfg.d_head)
    return AttentionSpec(layer, scale, softcap=softcap or None, window=_window(attn, hf_cfg, layer),
                         joint_k_norm=k_norm is not None and k_norm.shape[-1] > head_dim)


def _window(attn: torch.nn.Module, hf_cfg, layer: int) -> int | None:
    # Gemma-2/3, Qwen2 and Starcoder2 keep the window on the layer (None on global layers);
    # Mistral reads config.sliding_window in its forward; the rest follow config.layer_types.
    if hasattr(attn, "sliding_window"):
        return attn.sliding_window
    types = getattr(hf_cfg, "layer_types", None)
    if types:
        kind = types[layer]
        if kind == "full_attention":
            return None
        if kind != "sliding_attention":
            raise InterpError(f"layer {layer} is a {kind!r} layer, which interp does not "
                              "reproduce", _UNSUPPORTED)
    return getattr(hf_cfg, "sliding_window", None)


def qkv_hooks(model: Bridge, layer: int, seen: dict[str, Tensor], *, pattern: bool = False
              ) -> list:
    """Forward hooks that store layer ``layer``'s q, k, v, the rotation the bridge exposes
    (rotated q and k, or the rotary cos/sin tables) and, with ``pattern``, the model's own
    attention pattern in ``seen``; read q, k, v back with :func:`rotated_qkv`."""

    def capture(key: str):
        def hook(t: Tensor, hook) -> None:
            seen[key] = t

        return hook

    names = [(hooks.q, "q"), (hooks.k, "k"), (hooks.v, "v"), (hooks.rot_q, "rot_q"),
             (hooks.rot_k, "rot_k"), (hooks.cos, "cos"), (hooks.sin, "sin")]
    if pattern:
        names.append((hooks.pattern, "pattern"))
    return [(fn(layer), capture(key)) for fn, key in names if fn(layer) in model.hook_dict]


def rotated_qkv(model: Bridge, layer: int, seen: dict[str, Tensor]) -> tuple[
    Float[Tensor, "batch pos head_index d_head"], Float[Tensor, "batch pos kv_head d_head"],
    Float[Tensor, "batch pos kv_head d_head"],
]:
    """q and k as the model scores them (after QK-norm and rotation), and v, from what
    :func:`qkv_hooks` stored; the entries are removed from ``seen`` (the pattern stays).

    Raises:
        InterpError: a rotary model whose rotation no hook reveals.
    """
    q, k, v = seen.pop("q"), seen.pop("k"), seen.pop("v")
    rot_q, rot_k = seen.pop("rot_q", None), seen.pop("rot_k", None)
    cos, sin = seen.pop("cos", None), seen.pop("sin", None)
    if rot_q is not None and rot_k is not None:
        return rot_q, rot_k, v
    rotary = core_model.rotary(model, layer)
    if rotary is not None:  # native models rotate internally, with this module
        qr, kr = rotary.apply_rope(q.transpose(1, 2), k.transpose(1, 2))
        return qr.transpose(1, 2), kr.transpose(1, 2), v
    if cos is not None and sin is not None:
        apply = _hf_rotary(model, layer)
        qr, kr = apply(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        return qr.transpose(1, 2), kr.transpose(1, 2), v
    if getattr(model.cfg, "positional_embedding_type", "standard") == "rotary":
        attn = type(core_model.attention(model, layer)).__name__
        raise InterpError(
            f"layer {layer}: {attn} applies its rotary embedding where no TransformerLens hook "
            "sees the rotated queries and keys (neither hook_rot_q/hook_rot_k nor "
            "hook_cos/hook_sin fire), so interp cannot reproduce its attention",
            "use a family whose bridge exposes them (Llama, Qwen, Mistral, Gemma, GPT-NeoX, "
            "Phi-3, ...; see docs/families.md)",
        )
    return q, k, v  # learned absolute positions (GPT-2): no rotation


def _hf_rotary(model: Bridge, layer: int):
    """The Hugging Face modeling module's own ``apply_rotary_pos_emb(q, k, cos, sin)``."""
    attn = core_model.attention(model, layer)
    apply = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None)
    if apply is None:
        raise InterpError(f"layer {layer}: {type(attn).__name__}'s module has no "
                          "apply_rotary_pos_emb to rotate the captured queries and keys", _FIX)
    return apply


def expand_kv(t: Float[Tensor, "batch kv_head pos d_head"], n_heads: int
              ) -> Float[Tensor, "batch head_index pos d_head"]:
    """Repeat KV heads for their query heads (Llama's ``repeat_kv`` order: h reads h // n_rep)."""
    return t.repeat_interleave(n_heads // t.shape[1], dim=1)


def check_pattern(spec: AttentionSpec, mine: Float[Tensor, "*batch q_pos k_pos"],
                  theirs: Float[Tensor, "*batch q_pos k_pos"], what: str) -> float:
    """Raise unless the reproduced pattern equals the model's own ``hook_pattern``.

    The bridge's softmax runs in float32 even for float64 weights, so the tolerance is a
    multiple of float32 rounding (or of the model's dtype where that is coarser); a wrong
    window or a missing soft-cap moves the pattern by orders of magnitude more.

    Args:
        spec: the layer's variant (named in the error).
        mine, theirs: the reproduced and the model's pattern.
        what: which instrument checks (named in the error).

    Returns:
        The largest absolute difference.
    """
    eps = max(torch.finfo(theirs.dtype).eps, torch.finfo(torch.float32).eps)
    err = float((mine.detach().to(theirs.dtype) - theirs.detach()).abs().max())
    if not err <= 1e3 * eps:
        raise InterpError(
            f"layer {spec.layer}: {what} reproduced the attention pattern ({spec.describe()}) "
            f"{err:.3g} away from the model's own hook_pattern, so its numbers would be wrong; "
            "this attention variant (or an attention mask or KV cache) is not reproduced", _FIX)
    return err


def uniform_attention(n: int, window: int | None = None) -> Float[np.ndarray, " pos"]:
    """The attention key j receives, averaged over the later queries, when every query spreads
    its attention evenly over the keys its mask allows: the no-sink baseline of
    :mod:`interp.sinks`. Query i allows ``min(i + 1, w)`` keys (w: the sliding window; without
    one, i + 1), and a query past the window gives nothing to the keys it cannot see::

        uniform(j) = mean_{i > j} [i − j < w] / min(i + 1, w)

    NaN at j = n − 1 (no later query). Without a window this is ``mean_{i > j} 1/(i + 1)``.
    """
    w = n if window is None else min(window, n)
    inv = 1.0 / np.minimum(np.arange(1, n + 1), w)  # inv[i]: what query i gives each key
    cum = np.concatenate([[0.0], np.cumsum(inv)])  # cum[a] = sum_{i < a} inv[i]
    j = np.arange(n)
    seen = cum[np.minimum(j + w, n)] - cum[j + 1]  # the queries j < i < j + w that see key j
    later = (n - 1 - j).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(later > 0, seen / later, np.nan)


def attention_window(model: Bridge, layer: int) -> int | None:
    """Layer ``layer``'s sliding window w (query q reads keys q − w < j ≤ q), or ``None`` for
    full causal attention, read from the model's configuration as :func:`attention_spec` reads
    it (TransformerLens-native models have no window)."""
    if core_model.is_native(model):
        return None
    return _window(core_model.attention(model, layer), model.original_model.config, layer)
