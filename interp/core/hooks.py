"""The one place that spells TransformerLens hook names.

Hook strings differ between TransformerLens versions and architectures. Everything else in
interp asks this module; nothing else writes ``"blocks.{l}..."`` by hand.

Shapes, as seen by forward hooks on a ``TransformerBridge`` (TransformerLens 4.3):

* ``resid(l, "pre"|"mid"|"post")``: ``[batch, pos, d_model]``
* ``q(l)``, ``z(l)``: ``[batch, pos, head_index, d_head]``
* ``k(l)``, ``v(l)``: ``[batch, pos, kv_head, d_head]`` (before RoPE)
* ``rot_q(l)``, ``rot_k(l)``: after RoPE (fire only on models that apply RoPE through the
  bridge's hooks, such as Hugging Face Llama models; native models apply RoPE internally)
* ``cos(l)``, ``sin(l)``: the rotary tables ``[batch, pos, rotary_dim]`` the layer rotates q
  and k with (on rotary Hugging Face models; on GPT-NeoX and Phi-3 the rot hooks do not fire
  but these do)
* ``attn_scores(l)``, ``pattern(l)``: ``[batch, head_index, q_pos, k_pos]``

A backward hook on ``attn.hook_k`` fires under the alias ``attn.k.hook_out``; to read
gradients reliably, register a tensor hook inside a forward hook instead (see
``interp.gradients``).
"""

from __future__ import annotations

from ..errors import InterpError

RESID_SITES = ("pre", "mid", "post")


def resid(layer: int, site: str = "post") -> str:
    """Residual stream before the block (``pre``), after attention (``mid``), after it (``post``)."""
    if site not in RESID_SITES:
        raise InterpError(f"unknown residual site {site!r}", f"choose one of: {', '.join(RESID_SITES)}")
    return f"blocks.{layer}.hook_resid_{site}"


def q(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_q"


def k(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_k"


def v(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_v"


def rot_q(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_rot_q"


def rot_k(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_rot_k"


def cos(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_cos"


def sin(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_sin"


def z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def attn_scores(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_attn_scores"


def pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def attn_out(layer: int) -> str:
    return f"blocks.{layer}.hook_attn_out"


def mlp_out(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


EMBED = "hook_embed"
UNEMBED = "hook_unembed"
#: the input of the unembedding (after the final norm): narrowing it here unembeds fewer positions
UNEMBED_IN = "unembed.hook_in"
FINAL_NORM = "ln_final.hook_normalized"
