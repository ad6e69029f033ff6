"""The core every analysis shares, so each one is the same short path.

* :mod:`interp.core.sites`: the site registry (hook, head axis, aliases, shape) and
  :func:`resolve_layers`, the one rule for layer indices (negative ones count from the end).
* :mod:`interp.core.inputs`: :func:`~interp.core.inputs.as_sequences`, the one reader of
  texts, token ids, sequences, corpus documents and windows.
* :mod:`interp.core.model`: the adapter, the only code that reaches inside a bridge and
  keeps the ``<pause>`` state on it.
* :mod:`interp.core.result`: the result protocol (files, save, load, figures) from which the
  report's registry, ``interp figures`` and every command's figure export are derived.
"""

from __future__ import annotations

from .sites import REGISTRY, Site, hook_name, resolve_layer, resolve_layers, resolve_sites, site

__all__ = ["REGISTRY", "Site", "hook_name", "resolve_layer", "resolve_layers", "resolve_sites",
           "site"]
