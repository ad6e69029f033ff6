"""Recording sites: how each site is captured on a given model, and role validation.

Which hook each site reads, its head axis and its stored shape live in the one registry,
:mod:`interp.core.sites`; a recording may capture every site there.

RoPE on native models. TransformerLens-native models apply RoPE inside their attention module,
so ``hook_rot_q``/``hook_rot_k`` exist but never fire. There ``rot_q``/``rot_k`` are computed
from the captured ``q``/``k`` with the attention module's own ``rotary.apply_rope`` at the
token's position (the same elementwise formula the attention uses, so the values are the ones
its scores are built from). A model without rotary embeddings has no ``rot_*`` sites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.model import Bridge, is_native, n_kv_heads
from ..core.model import rotary as native_rotary
from ..core.pauses import ROLES
from ..core.sites import REGISTRY, resolve_sites
from ..errors import InterpError

SITES = tuple(REGISTRY)
DEFAULT_SITES = ("resid_post", "k", "v")
# Roles a recording may select: every role except right padding, which is never real input.
RECORDABLE_ROLES = tuple(r for r in ROLES if r != "pad")
DEFAULT_ROLES = ("regular", "pause")

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


def plan_sites(model: Bridge, sites: Sequence[str]) -> list[SitePlan]:
    """Validate ``sites`` and decide how each is captured on ``model``."""
    plans = []
    for s in resolve_sites(sites, SITES):
        if s in _PRE_ROPE:
            if is_native(model):
                if native_rotary(model, 0) is None:
                    raise InterpError(
                        f"site {s!r}: this model has no rotary position embedding",
                        f"record {_PRE_ROPE[s]!r}: it is the vector the attention reads",
                    )
                plans.append(SitePlan(s, REGISTRY[_PRE_ROPE[s]].hook, native_rope=True))
                continue
            if REGISTRY[s].hook(0) not in model.hook_dict:
                raise InterpError(
                    f"site {s!r}: this model exposes no {REGISTRY[s].hook(0)!r} hook (no RoPE?)",
                    f"record {_PRE_ROPE[s]!r} instead",
                )
        plans.append(SitePlan(s, REGISTRY[s].hook))
    return plans


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


def kv_head_of_query_head(model: Bridge) -> list[int]:
    """Query head ``h`` reads KV head ``h // (n_heads // n_kv_heads)`` (GQA groups)."""
    n_heads, n_kv = int(model.cfg.n_heads), n_kv_heads(model)
    return [h // (n_heads // n_kv) for h in range(n_heads)]
