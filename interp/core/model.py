"""The model adapter: the only code that reaches inside a ``TransformerBridge``.

TransformerLens' bridge wraps a Hugging Face or native module tree whose layout differs between
architectures and versions (``blocks[l].attn.original_component``, ``embed.original_component``,
the Hugging Face config behind ``original_model``). Every analysis asks this module instead, so
a layout change is fixed in one place.

Pause state. interp keeps three facts about a model on the bridge itself, so that they travel
with it through user code: the ``<pause>`` token id (:func:`pause_id`), the real-valued input
projection of a regression toy model (:func:`real_input`) and the :class:`~interp.TinyConfig` a
native model was built from (:func:`native_config`). They are stored as the attributes
``interp_pause_id``, ``interp_real_input`` and ``interp_config`` (the names earlier releases
used, still readable), and read and written only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..errors import InterpError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge as Bridge
else:  # a plain name at run time: annotations stay cheap and the bridge import lazy
    Bridge = Any

_PAUSE_ID = "interp_pause_id"
_REAL_INPUT = "interp_real_input"
_NATIVE_CONFIG = "interp_config"


# ------------------------------------------------------------------------------ state on the bridge


def pause_id(model: Bridge, *, required: bool = False) -> int | None:
    """The ``<pause>`` token id: ``None`` before :func:`interp.add_pause_token`, or with
    ``required`` an error that says to call it.

    Raises:
        InterpError: ``required`` and the model has no ``<pause>`` token.
    """
    pid = getattr(model, _PAUSE_ID, None)
    if pid is None and required:
        raise InterpError("this model has no <pause> token yet", "call interp.add_pause_token(model)")
    return None if pid is None else int(pid)


def set_pause_id(model: Bridge, token_id: int | None) -> None:
    setattr(model, _PAUSE_ID, token_id)


def real_input(model: Bridge) -> torch.nn.Linear | None:
    """The projection that feeds real values to a regression toy model, if it has one."""
    return getattr(model, _REAL_INPUT, None)


def set_real_input(model: Bridge, proj: torch.nn.Linear) -> None:
    setattr(model, _REAL_INPUT, proj)


def native_config(model: Bridge):
    """The :class:`~interp.TinyConfig` a native model was built from (``None`` otherwise)."""
    return getattr(model, _NATIVE_CONFIG, None)


def set_native_config(model: Bridge, cfg) -> None:
    setattr(model, _NATIVE_CONFIG, cfg)


# ------------------------------------------------------------------------------ plain facts


def device(model: Bridge) -> torch.device:
    """Where the model's (first) parameters live."""
    return next(model.parameters()).device


def dtype(model: Bridge) -> torch.dtype:
    return next(model.parameters()).dtype


def n_kv_heads(model: Bridge) -> int:
    """Number of key/value heads per layer (``n_heads`` for full multi-head attention)."""
    return int(getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)


# ------------------------------------------------------------------------------ modules inside


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def context_length(model: Bridge) -> int:
    """The longest sequence the model accepts (``n_ctx``)."""
    return int(model.cfg.n_ctx)


def check_context(model: Bridge, n_tokens: int) -> None:
    """Raise an :class:`InterpError` naming the limit when ``n_tokens`` exceeds ``n_ctx``."""
    limit = context_length(model)
    if n_tokens > limit:
        raise InterpError(
            f"a sequence of {n_tokens} tokens is longer than the model's context of {limit}",
            f"use windows of at most {limit} tokens (e.g. --n-tokens {min(limit, 512)})",
        )


def embedding(model: Bridge) -> torch.nn.Embedding:
    """The token embedding module (its ``weight`` is ``[d_vocab, d_model]``)."""
    return model.embed.original_component


def unembedding(model: Bridge) -> torch.nn.Linear:
    """The unembedding module (an ``nn.Linear`` with ``weight`` ``[d_vocab, d_model]``)."""
    return model.unembed.original_component


def set_vocab_size(model: Bridge, n: int) -> None:
    """Record a new vocabulary size in the bridge's config and the Hugging Face config."""
    model.cfg.d_vocab = n
    model.cfg.d_vocab_out = n
    hf_cfg = getattr(getattr(model, "original_model", None), "config", None)
    if hf_cfg is not None and hasattr(hf_cfg, "vocab_size"):
        hf_cfg.vocab_size = n


def attention(model: Bridge, layer: int) -> torch.nn.Module:
    """The attention module the bridge wraps at ``layer`` (Hugging Face or native)."""
    return model.blocks[layer].attn.original_component


def rotary(model: Bridge, layer: int):
    """The native attention module's rotary (``None`` for HF models and models without RoPE)."""
    return getattr(attention(model, layer), "rotary", None)


def is_native(model: Bridge) -> bool:
    """True for TransformerLens-native models (RoPE applied inside the attention module)."""
    return hasattr(attention(model, 0), "rotary")


def attention_scale(model: Bridge, layer: int) -> float:
    """Multiplier of q · kᵀ: HF modules keep ``scaling``, native ones divide by ``scale``."""
    orig = attention(model, layer)
    if getattr(orig, "scaling", None) is not None:
        return float(orig.scaling)
    if getattr(orig, "scale", None) is not None:
        return 1.0 / float(orig.scale)
    return float(model.cfg.d_head) ** -0.5


def projection(model: Bridge, layer: int, name: str, *, attn: bool) -> torch.nn.Module | None:
    """The wrapped module ``name`` (``q``, ``o``, ``gate``, ...) of the attention (``attn``) or
    the MLP of block ``layer``; ``None`` when the block has none by that name."""
    block = model.blocks[layer]
    wrapper = getattr(block.attn if attn else block.mlp, name, None)
    return getattr(wrapper, "original_component", None)


# ------------------------------------------------------------------------------ the KV cache


def supports_cache(model: Bridge) -> bool:
    """True when the bridge can run incrementally over a Hugging Face KV cache."""
    return not is_native(model) and bool(getattr(model.adapter, "supports_kv_cache", True))


def cache_kv(past, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer ``layer``'s cached keys and values, ``[batch, kv_head, pos, d_head]`` each.

    With :func:`cache_prefix`, the only code that reads transformers' cache objects:
    ``Cache.layers[i].keys/.values`` (transformers >= 4.56, every 5.x) or a legacy tuple of
    ``(key, value)`` pairs.
    """
    if hasattr(past, "layers"):
        entry = past.layers[layer]
        return entry.keys, entry.values
    key, value = past[layer][:2]
    return key, value


def cache_length(past) -> int:
    """Positions held by the cache (0 when it holds nothing)."""
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    key = cache_kv(past, 0)[0]
    return 0 if key is None else int(key.shape[-2])


def cache_prefix(past, n: int, n_positions: int):
    """A new cache holding the first ``n`` positions of ``past`` (detached), or ``None``
    when ``past`` is not a plain full-length cache (a sliding-window or quantized layer, or
    a cache that does not hold all ``n_positions`` positions fed): then the caller must
    run without it. ``past`` is left as it was."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = getattr(past, "layers", None)
    if not layers or any(type(e) is not DynamicLayer for e in layers):
        return None
    if any(e.keys is None or e.keys.shape[-2] != n_positions for e in layers):
        return None
    out = DynamicCache()
    for i, e in enumerate(layers):
        out.update(e.keys[:, :, :n].detach(), e.values[:, :, :n].detach(), i)
    return out


def check_cache_grew(past, expected: int,
                     fix: str = "or call generate(..., use_cache=False)") -> None:
    """Fail loudly when the model ignored the cache it was handed.

    transformers 5.24 renamed the forward argument ``past_key_values`` to ``cache``; the
    attention bridge of TransformerLens 4.3 still reads ``past_key_values``, so with that pair
    every cached step silently attends to nothing but itself (logits off by ~0.1 on a tiny
    Llama). Checking the cache length after each step turns that into an error.
    """
    import transformers

    held = 0 if past is None else cache_length(past)
    if held != expected:
        raise InterpError(
            f"the KV cache holds {held} positions after {expected} were fed: this transformers "
            f"version ({transformers.__version__}) hands the cache to the model under a name "
            "TransformerLens' attention bridge does not read, so cached forwards would be wrong",
            "install the locked versions (bash scripts/setup.sh; transformers<5.24 with "
            f"transformer-lens 4.3), {fix}",
        )
