"""The site registry and the one rule for layer indices.

A *site* names one activation per position and layer. Every analysis (recording, gradients,
patching, probes, registers) asks this module which hook a site reads, which head axis it has
and what it stores per position; each analysis only chooses the subset of sites it supports.

===============  ==========================  ===========  ====================================
site             stored per position         head axis    read from
===============  ==========================  ===========  ====================================
``resid_pre``    ``d_model``                 —            ``hooks.resid(l, "pre")``
``resid_mid``    ``d_model``                 —            ``hooks.resid(l, "mid")``
``resid_post``   ``d_model`` (alias resid)   —            ``hooks.resid(l, "post")``
``q``            ``head_index d_head``       head_index   ``hooks.q(l)``
``k``            ``kv_head d_head``          kv_head      ``hooks.k(l)`` (before RoPE)
``v``            ``kv_head d_head``          kv_head      ``hooks.v(l)``
``rot_q``        ``head_index d_head``       head_index   ``hooks.rot_q(l)`` (after RoPE)
``rot_k``        ``kv_head d_head``          kv_head      ``hooks.rot_k(l)`` (after RoPE)
``z``            ``head_index d_head``       head_index   ``hooks.z(l)``
``pattern``      ``head_index k_pos``        head_index   ``hooks.pattern(l)``, the query's row
===============  ==========================  ===========  ====================================

Layers. :func:`resolve_layers` is the only place that reads a user's layer list: ``None`` (or
``"all"``) means every layer, negative indices count from the end as in Python (``-1`` is the
last layer), and an index outside ``-n_layers .. n_layers - 1`` raises an error that names the
valid range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import InterpError
from . import hooks


@dataclass(frozen=True)
class Site:
    """One activation per position and layer.

    Attributes:
        name: the canonical name (``"resid_post"``, ``"k"``, ...).
        hook: the hook name at a layer (``hook(layer) -> str``).
        head_axis: ``"head_index"``, ``"kv_head"`` or ``None`` (no head axis).
        shape: the axes stored per position, TransformerLens axis names.
        aliases: other spellings accepted for this site.
    """

    name: str
    hook: Callable[[int], str]
    head_axis: str | None
    shape: str
    aliases: tuple[str, ...] = field(default=())

    def hook_name(self, layer: int) -> str:
        return self.hook(layer)


def _resid(where: str) -> Callable[[int], str]:
    return lambda layer: hooks.resid(layer, where)


REGISTRY: dict[str, Site] = {
    s.name: s
    for s in (
        Site("resid_pre", _resid("pre"), None, "d_model"),
        Site("resid_mid", _resid("mid"), None, "d_model"),
        Site("resid_post", _resid("post"), None, "d_model", aliases=("resid",)),
        Site("q", hooks.q, "head_index", "head_index d_head"),
        Site("k", hooks.k, "kv_head", "kv_head d_head"),
        Site("v", hooks.v, "kv_head", "kv_head d_head"),
        Site("rot_q", hooks.rot_q, "head_index", "head_index d_head"),
        Site("rot_k", hooks.rot_k, "kv_head", "kv_head d_head"),
        Site("z", hooks.z, "head_index", "head_index d_head"),
        Site("pattern", hooks.pattern, "head_index", "head_index k_pos"),
    )
}
_ALIASES = {a: s.name for s in REGISTRY.values() for a in s.aliases}

#: the residual-stream sites, before, between and after the two halves of a block
RESID = ("resid_pre", "resid_mid", "resid_post")


def site(name: str) -> Site:
    """The :class:`Site` called ``name`` (an alias such as ``"resid"`` is accepted)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in REGISTRY:
        raise InterpError(f"unknown site {name!r}", f"choose from: {', '.join(REGISTRY)}")
    return REGISTRY[canonical]


def hook_name(name: str, layer: int) -> str:
    """The hook a site reads at ``layer``."""
    return site(name).hook(layer)


def resolve_sites(sites: str | Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Validate ``sites`` against the ones an analysis supports; aliases become canonical
    names, duplicates are dropped, the order is kept.

    Raises:
        InterpError: a site that is unknown or not in ``allowed``, or no site at all.
    """
    if isinstance(sites, str):
        sites = [sites]
    aliases = [a for a, s in _ALIASES.items() if s in allowed]
    choices = ", ".join([*allowed, *aliases])
    out: list[str] = []
    for s in sites:
        canonical = _ALIASES.get(s, s)
        if canonical not in allowed:
            raise InterpError(f"unknown site {s!r}", f"choose from: {choices}")
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise InterpError("no sites given", f"choose from: {choices}")
    return tuple(out)


def n_layers(model_or_n) -> int:
    return int(model_or_n) if isinstance(model_or_n, int) else int(model_or_n.cfg.n_layers)


def resolve_layer(model_or_n, layer: int, *, what: str = "layer") -> int:
    """One layer index, negative counting from the end (``-1`` is the last layer)."""
    return resolve_layers(model_or_n, [layer], what=what)[0]


def resolve_layers(model_or_n, layers: int | Sequence[int] | str | None = None, *,
                   what: str = "layers") -> tuple[int, ...]:
    """The layers an analysis reads: sorted, unique, non-negative.

    Args:
        model_or_n: a bridge (its ``cfg.n_layers``) or the number of layers.
        layers: ``None`` or ``"all"`` for every layer; an index or indices, negative ones
            counting from the end (``-1`` is the last layer).
        what: how the error names the argument (e.g. ``"probe spec field inputs.layers"``).

    Raises:
        InterpError: an index outside ``-n_layers .. n_layers - 1``, or an empty list.
    """
    n = n_layers(model_or_n)
    if layers is None or (isinstance(layers, str) and layers == "all"):
        return tuple(range(n))
    if isinstance(layers, str):
        raise InterpError(f"{what}: {layers!r} is not a list of layers",
                          f'give layer indices in 0..{n - 1} (or -{n}..-1), or "all"')
    if isinstance(layers, int):
        layers = [layers]
    layers = list(layers)
    bad = [x for x in layers if not -n <= int(x) < n]
    if bad:
        raise InterpError(f"{what}: layer(s) {bad} out of range for a model with {n} layers",
                          f"choose layers in 0..{n - 1}, or -{n}..-1 counting from the end")
    if not layers:
        raise InterpError(f"{what}: no layers given",
                          f"choose layers in 0..{n - 1}, or None for all")
    return tuple(sorted({int(x) % n for x in layers}))
