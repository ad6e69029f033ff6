"""The core every analysis shares, so each one is the same short path: the lowest layer of
the package above :mod:`interp.errors` (it imports nothing else of interp).

* :mod:`interp.core.hooks`: the one place that spells TransformerLens hook names.
* :mod:`interp.core.sites`: the site registry (hook, head axis, aliases, shape) and
  :func:`resolve_layers`, the one rule for layer indices (negative ones count from the end).
* :mod:`interp.core.model`: the adapter, the only code that reaches inside a bridge and
  keeps the ``<pause>`` state on it; the model's facts (context length, device).
* :mod:`interp.core.attention`: the model's own attention (mask, soft-cap, rotation),
  reproduced once for the exact decomposition and AtP* and checked against ``hook_pattern``.
* :mod:`interp.core.pauses`: the ``<pause>`` token, insertion policies, roles, the loss mask.
* :mod:`interp.core.corpora`: corpora and their windows.
* :mod:`interp.core.inputs`: :func:`~interp.core.inputs.as_sequences`, the one reader of
  texts, token ids, sequences, corpus documents and windows.
* :mod:`interp.core.loss`: the one next-token loss.
* :mod:`interp.core.result`: the result protocol (files, save, load, figures), with
  :class:`~interp.core.result.SavedResult` and :class:`~interp.core.result.TableResult`.
* :mod:`interp.core.io`: atomic writes and reading tables back.
* :mod:`interp.core.distributed`: ranks, sharding and reductions over processes.
"""

from __future__ import annotations

from .sites import REGISTRY, Site, hook_name, resolve_layer, resolve_layers, resolve_sites, site

__all__ = ["REGISTRY", "Site", "hook_name", "resolve_layer", "resolve_layers", "resolve_sites",
           "site"]
