"""The core every analysis shares: sites, layers, inputs, model access and results.

* :mod:`interp.core.sites`: the site registry (hook, head axis, aliases, shape) and
  :func:`resolve_layers`, the one rule for layer indices.
"""

from __future__ import annotations

from .sites import REGISTRY, Site, hook_name, resolve_layer, resolve_layers, resolve_sites, site

__all__ = ["REGISTRY", "Site", "hook_name", "resolve_layer", "resolve_layers", "resolve_sites",
           "site"]
