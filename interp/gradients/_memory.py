"""Peak memory of the decomposition, from per-token and per-block costs measured on SmolLM2.

One pass of :func:`interp.future_gradients` on a batch of b windows of N tokens (the two
passes run one after the other, so the peak is one pass's) holds, besides the weights:

* **the activations the backward keeps**: ``6.9 · (d_model + d_mlp)`` elements per layer
  and token (the residual stream, norms, q, k, v and the MLP's products, with the backward's
  own buffers and the allocator's slack) plus ``4 · d_vocab`` bytes of float32
  log-probabilities. Blocked, on a model with a KV cache, a window longer than a block runs
  chunk by chunk (:func:`~interp.gradients._detach.chunked_backward`: a prefill keeps each
  layer's keys and values, and each chunk's forward is recomputed in the backward), so
  these are held for one block of tokens only; for every token it keeps
  ``KV_COPIES · 2 · n_kv_heads · d_head`` elements per layer (the prefill's keys and
  values, their gradients, the cache a chunk reads) and the gradients read at the sites
  (``d_model + 2 · n_kv_heads · d_head`` per layer for k, v and one residual site). A model
  without a cache (TransformerLens-native), or a window of one block, keeps every token's;
* **the model's own attention forward**, one layer at a time (the bridge computes scores,
  mask and softmax densely in float32; interp cuts that graph after each layer):
  ``2 · n_heads · 4`` bytes per query and key, plus the causal mask the Hugging Face model
  builds: chunk × N run in chunks (:func:`~interp.gradients._detach.forward_chunk`), else N²;
* **per tile**: the blocked backward of one layer, about ``6 · n_heads · 4`` bytes per score
  of a tile, at most block² of them (with ``block_size=None`` the dense path keeps
  ``2 · n_heads · 4`` bytes per N² and layer instead).

The per-token constant comes from the peak resident memory of SmolLM2 in float32 with
every token's activations kept (N = 1024, 2048, 4096, blocks of 512, before the chunked
backward: 3.32, 5.40 and 9.99 GiB, fitted as a + b·N + c·N²: b = 1.87 MiB per token, c = 77
bytes per N², a = 1.3 GiB of weights and Python process); docs/concepts/long-context.md
has the chunked measurements and tabulates the estimate for SmolLM2, a 1B and an 8B
Llama-type model.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from ..core.model import Bridge, n_kv_heads, supports_cache
from ..errors import InterpError
from ._detach import forward_chunk

#: elements per layer and token, in units of d_model + d_mlp (fitted on SmolLM2's peak RSS)
PER_LAYER_TOKEN = 6.9
#: float32 N × N tensors per head alive at once in the model's own attention forward (fitted)
FORWARD_SQUARES = 2
#: copies of every token's keys and values held by the chunked backward, per layer
KV_COPIES = 4
#: float32 tensors of a tile's scores per head alive at once in the blocked backward
BLOCK_TENSORS = 6
GIB = 2**30


@dataclass(frozen=True)
class Shape:
    """The dimensions the estimate needs (read from a model, or given for one not loaded)."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_vocab: int
    n_params: int
    elem: int  #: bytes per element of the model's dtype
    d_kv: int  #: n_kv_heads · d_head
    chunked: bool = True  #: the blocked forward runs in chunks over a KV cache

    @classmethod
    def from_model(cls, model: Bridge) -> Shape:
        cfg = model.cfg
        dtype = next(model.parameters()).dtype
        return cls(int(cfg.n_layers), int(cfg.d_model), int(cfg.d_mlp or 4 * cfg.d_model),
                   int(cfg.n_heads), int(cfg.d_vocab), sum(p.numel() for p in model.parameters()),
                   torch.finfo(dtype).bits // 8, n_kv_heads(model) * int(cfg.d_head),
                   supports_cache(model))


def estimate_bytes(shape: Shape, n_batch: int, n_pos: int, block_size: int | None,
                   targets: int = 0) -> float:
    """Estimated peak bytes of one pass (weights included) on ``n_batch`` windows of ``n_pos``;
    with ``targets``, a pass of :func:`interp.by_distance` run in chunks, which also holds
    every position's key and value gradient once per target of a chunk."""
    per_token = (shape.elem * PER_LAYER_TOKEN * (shape.d_model + shape.d_mlp) * shape.n_layers
                 + 4 * shape.d_vocab)
    chunked = block_size is not None and shape.chunked and n_pos > block_size
    rows = forward_chunk(block_size, n_pos) if chunked else n_pos
    kept = n_batch * rows * per_token
    if chunked:  # every token's keys and values, and the gradients read at the sites
        kept += (n_batch * n_pos * shape.elem * shape.n_layers
                 * ((KV_COPIES + targets) * 2 * shape.d_kv + shape.d_model + 2 * shape.d_kv))
    square = n_batch * rows * n_pos * (FORWARD_SQUARES * shape.n_heads * 4 + shape.elem)
    if block_size is None:  # the dense path keeps two patterns per layer
        square += n_batch * n_pos**2 * 2 * shape.n_heads * 4 * shape.n_layers
        block = 0.0
    else:
        # a tile of the blocked backward holds at most block² scores per head (fewer queries
        # when the keys outnumber them; under by_distance's batched VJP, tiles of
        # block / √chunk_size queries, the same in all)
        tile = min(block_size * n_pos, block_size**2)
        block = BLOCK_TENSORS * n_batch * tile * shape.n_heads * 4
    return shape.n_params * shape.elem + kept + square + block


def available_bytes(device: torch.device) -> float:
    """Free memory where the model lives (the GPU's, or the machine's available memory)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free) + torch.cuda.memory_allocated(device)
    return float(psutil.virtual_memory().available + psutil.Process().memory_info().rss)


def fits(model: Bridge, n_batch: int, n_pos: int, block_size: int | None,
         device: torch.device, targets: int = 0) -> bool:
    """Whether the estimate is within the memory available now."""
    need = estimate_bytes(Shape.from_model(model), n_batch, n_pos, block_size, targets)
    return need <= available_bytes(device)


def check_fits(model: Bridge, n_batch: int, n_pos: int, block_size: int | None,
               device: torch.device, targets: int = 0, what: str = "the decomposition") -> None:
    """Raise before the forward pass when the estimate exceeds the memory available.

    Raises:
        InterpError: naming the estimate, what is available and the longest window that fits.
    """
    shape = Shape.from_model(model)
    need = estimate_bytes(shape, n_batch, n_pos, block_size, targets)
    have = available_bytes(device)
    if need <= have:
        return
    fits = n_pos
    while fits > 2 and estimate_bytes(shape, n_batch, fits, block_size, targets) > have:
        fits = int(fits * 0.9)
    raise InterpError(
        f"{n_batch} window(s) of {n_pos} tokens need about {need / GIB:.1f} GiB for {what} "
        f"(block_size={block_size}; estimate of interp.gradients._memory: "
        f"{(need - shape.n_params * shape.elem) / GIB:.1f} GiB of activations) but "
        f"{have / GIB:.1f} GiB are available on {device}",
        f"use windows of at most about {fits} tokens (n_tokens={fits}), batch_size=1, "
        "block_size (not None), a bfloat16 model, "
        + ("a smaller chunk_size, " if targets else "") + "or a machine with more memory",
    )
