"""interp: where and when does a transformer compute for the future?

The public API, re-exported from the subpackages (see ``docs/`` for concepts and recipes):

* models: :func:`load_model`, :class:`TinyConfig`, :func:`list_models`
* pauses and roles: :func:`add_pause_token`, :class:`PausePolicy`, :func:`insert_pauses`,
  :func:`tokenize`, :func:`make_sequence`, :class:`PausedSequence`, ``ROLES``
* corpora: :func:`load_corpus`, :func:`windows`
* recording: :func:`record`, :class:`Recording`, :func:`load_recording`, :func:`generate`
* gradients: :func:`future_gradients`, :func:`by_distance`, :func:`detached_attention`
* patching: :func:`attribution_patch`, :func:`activation_patch`, :func:`compare_patching`
* probes: :func:`train_probes`, :class:`ProbeSpec`, :class:`ProbeResults`, :func:`load_probes`,
  :func:`evaluate_probes`, :func:`future_lens`, :func:`load_future_lens`
* registers: :func:`registers`, :func:`massive_activations`, :func:`ablate_massive`,
  :func:`cache_eviction`
* toy tasks: :mod:`interp.training.tasks`, :func:`train_toy`
* positive controls (pauses that compute, pre-caching): :mod:`interp.controls`
* pause training: :func:`pause_train` (:mod:`interp.training.pause`), base vs pause-trained
  in :mod:`interp.reporting.pause_compare`; learned pause requests on an LM:
  :func:`learned_pause_lm_study` (:mod:`interp.training.learned_pauses_lm`)
* figures and the report: :mod:`interp.figures`, :func:`report`
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__ as __version__
from .core.corpora import Document, load_corpus, windows
from .core.pauses import (
    ROLES,
    PausedSequence,
    PausePolicy,
    add_pause_token,
    insert_pauses,
    make_sequence,
    tokenize,
)
from .errors import InterpError
from .models import TinyConfig, list_models, load_model

# Names whose modules are heavier to import; loaded on first use.
_LAZY = {
    "record": "interp.recording",
    "Recording": "interp.recording",
    "load_recording": "interp.recording",
    "generate": "interp.recording",
    "future_gradients": "interp.gradients",
    "by_distance": "interp.gradients",
    "detached_attention": "interp.gradients",
    "FutureGradients": "interp.gradients",
    "attribution_patch": "interp.patching",
    "activation_patch": "interp.patching",
    "compare_patching": "interp.patching",
    "train_probes": "interp.probes",
    "ProbeSpec": "interp.probes",
    "ProbeResults": "interp.probes",
    "load_probes": "interp.probes",
    "evaluate_probes": "interp.probes",
    "future_lens": "interp.probes",
    "FutureLensResults": "interp.probes",
    "load_future_lens": "interp.probes",
    "registers": "interp.sinks",
    "massive_activations": "interp.sinks",
    "ablate_massive": "interp.sinks",
    "cache_eviction": "interp.sinks",
    "train_toy": "interp.training.toy",
    "pause_train": "interp.training.pause",
    "train_learned_pauses": "interp.training.learned_pauses",
    "learned_pause_lm_study": "interp.training.learned_pauses_lm",
    "report": "interp.reporting",
}

__all__ = [
    "ROLES",
    "Document",
    "InterpError",
    "PausePolicy",
    "PausedSequence",
    "TinyConfig",
    "add_pause_token",
    "insert_pauses",
    "list_models",
    "load_corpus",
    "load_model",
    "make_sequence",
    "tokenize",
    "windows",
    *_LAZY,
]


# Modules reachable as attributes after a plain ``import interp`` (interp.figures, ...), under
# their own names and under the names they had before the layered layout (interp.train, ...).
_SUBMODULES = {
    **{name: f"interp.{name}" for name in (
        "core", "figures", "models", "gradients", "patching", "probes", "recording", "reporting",
        "sinks", "training", "controls")},
    "hooks": "interp.core.hooks",
    "pauses": "interp.core.pauses",
    "corpora": "interp.core.corpora",
    "distributed": "interp.core.distributed",
    "tasks": "interp.training.tasks",
    "train": "interp.training.toy",
    "pause_training": "interp.training.pause",
    "learned_pauses": "interp.training.learned_pauses",
    "pause_compare": "interp.reporting.pause_compare",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
