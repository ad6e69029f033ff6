"""Shape types and the axis glossary used across interp.

Every tensor argument and return value in interp is annotated with jaxtyping, using the axis
names of TransformerLens. The glossary, once:

=============  ===============================================================================
axis           meaning
=============  ===============================================================================
``batch``      sequences processed together
``pos``        token position in the sequence the model saw (a prepended BOS is position 0)
``q_pos``      query position of an attention pattern
``k_pos``      key position of an attention pattern
``layer``      transformer block index
``head_index`` query head (``n_heads`` of them)
``kv_head``    key/value head (``n_key_value_heads``; equal to ``n_heads`` without GQA).
               Query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)``.
``d_model``    residual-stream width
``d_head``     width of one head's query, key, value and output
``d_vocab``    vocabulary size (including an added ``<pause>`` token)
``offset``     how many tokens ahead a target lies (``k`` in "token i + k")
``distance``   ``t - i`` between a loss target position t and a source position i
``n``          examples (selected positions), rows of an index table
``feature``    a flattened activation vector fed to a probe
=============  ===============================================================================
"""

from __future__ import annotations

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]
