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
* **Planning** (:func:`planning_control`): the ``rhyme`` task, whose final word must rhyme
  with line 1: probes for the rhyme class at the separator, and patching the separator's
  residual stream from an example of another class, which changes the final word written.
* **Self-requested pauses** (:func:`self_pause_instruments`): attention received, the
  gradient of the answer's loss, probes and patching at the pauses a learned-pause model chose
  to take, each beside a null (random positions, shuffled labels, an equal-norm random patch)
  and a positive control (the bits).

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
from ._learned import (
    SelfPauseInstruments,
    load_self_pause_instruments,
    self_pause_instruments,
    self_pause_patching,
    self_pause_sequences,
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
from ._planning import (
    PLACES,
    PlanningControl,
    greedy_line,
    load_planning,
    planning_config,
    planning_control,
    planning_positions,
    planning_runs,
    residual_patch_hook,
)

__all__ = [
    "FutureLensCausal",
    "INSERTED",
    "LookaheadControl",
    "PLACES",
    "PlanningControl",
    "PauseInstruments",
    "TargetRun",
    "control_run",
    "future_lens_causal",
    "greedy_line",
    "kv_future_share",
    "lens_directions",
    "load_future_lens_causal",
    "load_lookahead",
    "load_pause_instruments",
    "load_planning",
    "lookahead_control",
    "lookahead_runs",
    "patch_inserted_kv",
    "pause_control",
    "pause_control_config",
    "pause_instruments",
    "planning_config",
    "planning_control",
    "planning_positions",
    "planning_runs",
    "precache_probe",
    "residual_patch_hook",
    "SelfPauseInstruments",
    "load_self_pause_instruments",
    "self_pause_instruments",
    "self_pause_patching",
    "self_pause_sequences",
]
