"""Recording sites: which hook each site reads, the shape it stores, and validation.

A *site* names one activation per position. Stored shapes (after the leading ``[n, layer]``):

===============================  ======================  ======================================
site                             stored per position     read from
===============================  ======================  ======================================
``resid_pre/mid/post``           ``[d_model]``           ``hooks.resid(l, ...)``
``q``, ``z``                     ``[head_index, d_head]`` ``hooks.q(l)``, ``hooks.z(l)``
``k``, ``v``                     ``[kv_head, d_head]``   ``hooks.k(l)``, ``hooks.v(l)`` (pre-RoPE)
``rot_q``                        ``[head_index, d_head]`` ``hooks.rot_q(l)`` (post-RoPE)
``rot_k``                        ``[kv_head, d_head]``   ``hooks.rot_k(l)`` (post-RoPE)
``pattern``                      ``[head_index, k_pos]`` ``hooks.pattern(l)``, the query's row
===============================  ======================  ======================================

RoPE on native models. TransformerLens-native models apply RoPE inside their attention module,
so ``hook_rot_q``/``hook_rot_k`` exist but never fire. There ``rot_q``/``rot_k`` are computed
from the captured ``q``/``k`` with the attention module's own ``rotary.apply_rope`` at the
token's position (the same elementwise formula the attention uses, so the values are the ones
its scores are built from). A model without rotary embeddings has no ``rot_*`` sites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import hooks
from ..errors import InterpError
from ..models import n_kv_heads
from ..pauses import ROLES

SITES = ("resid_pre", "resid_mid", "resid_post", "q", "k", "v", "rot_q", "rot_k", "z", "pattern")
DEFAULT_SITES = ("resid_post", "k", "v")
# Roles a recording may select: every role except right padding, which is never real input.
RECORDABLE_ROLES = tuple(r for r in ROLES if r != "pad")
DEFAULT_ROLES = ("regular", "pause")

_HOOK = {
    "resid_pre": lambda layer: hooks.resid(layer, "pre"),
    "resid_mid": lambda layer: hooks.resid(layer, "mid"),
    "resid_post": lambda layer: hooks.resid(layer, "post"),
    "q": hooks.q,
    "k": hooks.k,
    "v": hooks.v,
    "rot_q": hooks.rot_q,
    "rot_k": hooks.rot_k,
    "z": hooks.z,
    "pattern": hooks.pattern,
}
# For native rotary models, rot_* is computed from the pre-RoPE site.
_PRE_ROPE = {"rot_q": "q", "rot_k": "k"}


@dataclass(frozen=True)
class SitePlan:
    """How one site is captured on one model.

    Attributes:
        site: the site name.
        hook: hook-name function of the layer that is actually hooked.
        native_rope: True when the value is computed from ``hook`` with the native rotary.
    """

    site: str
    hook: Callable[[int], str]
    native_rope: bool = False

    def hook_name(self, layer: int) -> str:
        return self.hook(layer)


def native_rotary(model, layer: int):
    """The native attention module's rotary (``None`` for HF models and models without RoPE)."""
    attn = model.blocks[layer].attn.original_component
    return getattr(attn, "rotary", None)


def is_native(model) -> bool:
    """True for TransformerLens-native models (RoPE applied inside the attention module)."""
    return hasattr(model.blocks[0].attn.original_component, "rotary")


def plan_sites(model, sites: Sequence[str]) -> list[SitePlan]:
    """Validate ``sites`` and decide how each is captured on ``model``."""
    if isinstance(sites, str):
        sites = (sites,)
    if not sites:
        raise InterpError("no sites to record", f"choose from: {', '.join(SITES)}")
    plans = []
    for s in dict.fromkeys(sites):
        if s not in SITES:
            raise InterpError(f"unknown site {s!r}", f"choose from: {', '.join(SITES)}")
        if s in _PRE_ROPE:
            if is_native(model):
                if native_rotary(model, 0) is None:
                    raise InterpError(
                        f"site {s!r}: this model has no rotary position embedding",
                        f"record {_PRE_ROPE[s]!r}: it is the vector the attention reads",
                    )
                plans.append(SitePlan(s, _HOOK[_PRE_ROPE[s]], native_rope=True))
                continue
            if _HOOK[s](0) not in model.hook_dict:
                raise InterpError(
                    f"site {s!r}: this model exposes no {_HOOK[s](0)!r} hook (no RoPE?)",
                    f"record {_PRE_ROPE[s]!r} instead",
                )
        plans.append(SitePlan(s, _HOOK[s]))
    return plans


def check_layers(model, layers: Sequence[int] | None) -> tuple[int, ...]:
    """``None`` means every layer; negative indices count from the end; sorted, unique."""
    n = int(model.cfg.n_layers)
    if layers is None:
        return tuple(range(n))
    if isinstance(layers, int):
        layers = (layers,)
    out = []
    for layer in layers:
        if not -n <= int(layer) < n:
            raise InterpError(
                f"layer {layer} does not exist: the model has {n} layers", f"choose from 0..{n - 1}"
            )
        out.append(int(layer) % n)
    if not out:
        raise InterpError("no layers to record", f"choose from 0..{n - 1}, or None for all")
    return tuple(sorted(set(out)))


def check_roles(roles: Sequence[str] | None) -> tuple[str, ...]:
    """``None`` means every recordable role."""
    if roles is None:
        return RECORDABLE_ROLES
    if isinstance(roles, str):
        roles = (roles,)
    for r in roles:
        if r not in RECORDABLE_ROLES:
            raise InterpError(f"unknown role {r!r}", f"choose from: {', '.join(RECORDABLE_ROLES)}")
    if not roles:
        raise InterpError("no roles selected", f"choose from: {', '.join(RECORDABLE_ROLES)}")
    return tuple(dict.fromkeys(roles))


def kv_head_of_query_head(model) -> list[int]:
    """Query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)`` (GQA groups)."""
    n_heads, n_kv = int(model.cfg.n_heads), n_kv_heads(model)
    return [h // (n_heads // n_kv) for h in range(n_heads)]
