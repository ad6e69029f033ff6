"""Positive controls: each instrument on a case where the phenomenon is known to be there,
beside one where it is absent.

* **Pauses** (:func:`pause_control`, :func:`pause_instruments`): a toy task where inserted
  tokens raise held-out accuracy far above answering at once, and the instruments on the
  pause-trained model, the no-pause model, and the no-pause model with pauses inserted but
  untrained.
* **Lookahead** (:func:`lookahead_control`): the pre-caching regression of Wu et al. (2024),
  vanilla versus myopic: future share of the K/V gradient, a probe for the feature only later
  positions need, and patching along that probe's direction.
* **Lookahead in a real model** (:func:`future_lens_causal`): whether what the Future Lens
  reads at t about token t + 2 is used, by transplanting h_t^l between contexts and steering
  along the lens direction, each against a null of the same kind.

See ``docs/concepts/positive-controls.md`` for the measured numbers and ``interp controls``
for the command line.
"""

from __future__ import annotations

from ._future_lens_causal import (
    FutureLensCausal,
    TargetRun,
    future_lens_causal,
    lens_directions,
    load_future_lens_causal,
)
from ._lookahead import (
    LookaheadControl,
    kv_future_share,
    load_lookahead,
    lookahead_control,
    lookahead_runs,
    precache_probe,
)
from ._pauses import (
    INSERTED,
    PauseInstruments,
    control_run,
    load_pause_instruments,
    patch_inserted_kv,
    pause_control,
    pause_control_config,
    pause_instruments,
)

__all__ = [
    "FutureLensCausal",
    "INSERTED",
    "LookaheadControl",
    "PauseInstruments",
    "TargetRun",
    "control_run",
    "future_lens_causal",
    "kv_future_share",
    "lens_directions",
    "load_future_lens_causal",
    "load_lookahead",
    "load_pause_instruments",
    "lookahead_control",
    "lookahead_runs",
    "patch_inserted_kv",
    "pause_control",
    "pause_control_config",
    "pause_instruments",
    "precache_probe",
]
