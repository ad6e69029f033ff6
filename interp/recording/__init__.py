"""Recording activations: residual stream, per-head Q/K/V, head outputs and attention rows, at
the positions whose role you select, in memory or streamed to sharded safetensors on disk.

Quick start::

    import interp
    model = interp.load_model()
    interp.add_pause_token(model)
    rec = interp.record(model, interp.load_corpus(), sites=("resid_post", "k", "v"),
                        layers=[0, 10, 20], roles=("regular", "pause"),
                        policy=interp.PausePolicy(every=8), n_tokens=128, out="rec/")
    rec = interp.load_recording("rec/")        # later, elsewhere: memory-mapped
    rec.index                                  # tidy table, one row per recorded position
    rec["k"]                                   # [n, layer, kv_head, d_head]
    rec.get("resid_post", layer=10)            # [n, d_model], one layer only
    rec["k"][rec.mask(role="pause")]           # rows at pause positions only

**Tensors.** ``rec[site]`` has shape ``[n, layer, ...]``; row ``i`` is the position described
by ``rec.index.iloc[i]`` and axis 1 follows ``rec.layers``. Per position:

* ``resid_pre``, ``resid_mid``, ``resid_post``: ``[d_model]``
* ``q``, ``rot_q``, ``z``: ``[head_index, d_head]``
* ``k``, ``v`` (before RoPE), ``rot_k`` (after RoPE): ``[kv_head, d_head]``. K/V are kept per
  KV head, never expanded to query heads: query head ``h`` reads KV head
  ``rec.kv_head_of_query_head[h]`` (``h // (n_heads // n_kv_heads)``).
* ``pattern``: ``[head_index, k_pos]``, the attention row of the recorded query position,
  zero-padded on the right to the longest sequence (causal-mask zeros and padding zeros
  coincide: the row is valid on ``k_pos <= position``).

On TransformerLens-native models RoPE happens inside the attention module, so ``rot_q`` and
``rot_k`` are computed from ``q``/``k`` with that module's own ``rotary.apply_rope``.

**Index.** ``rec.index`` / ``rec.to_pandas()``: ``sequence``, ``document``, ``window``,
``position`` (in the sequence the model saw), ``original_position`` (before pauses were
inserted; ``-1`` for inserted tokens), ``token``, ``token_str``, ``role``. Split probes by
``document``.

**On disk.** ``out/recording.json`` (model, tokenizer, hook names, sites, layers, roles, dtype,
interp version, configuration, shard checksums), ``out/shard-NNNNN.safetensors`` and
``out/shard-NNNNN.parquet``. Shards are written atomically as they fill, so memory stays
bounded; ``resume=True`` skips finished shards after verifying them; loading checks every
sha256 and names a corrupted shard. A directory holding another configuration is refused
unless ``fresh=True``
(``Recording.save(path, overwrite=True)`` likewise replaces a saved one).

**Generation.** :func:`generate` decodes greedily with the model's KV cache (prompt, optional
forced pauses, then generated tokens) and records, at each step, the K/V written for the new
position, and on request the cache contents each step read.
"""

from ._generate import Generation, generate
from ._record import record
from ._sites import DEFAULT_ROLES, DEFAULT_SITES, RECORDABLE_ROLES, SITES
from ._store import Recording, load_recording

__all__ = [
    "DEFAULT_ROLES",
    "DEFAULT_SITES",
    "Generation",
    "RECORDABLE_ROLES",
    "Recording",
    "SITES",
    "generate",
    "load_recording",
    "record",
]
