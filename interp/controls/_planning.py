"""The planning control: a rhyme plan at the separator, read by probes and moved by patching.

On the ``rhyme`` task (:class:`interp.training.tasks.Rhyme`), line 1's last word fixes a rhyme
class, the separator ``/`` follows, and line 2's lead words name the final word, which must be
in that class. The first lead word is a free choice among the class's words, so the output at
the separator must already hold the class: the *plan* (the analogue of the rhyme plan at the
newline in Lindsey et al. 2025). Two instruments, on the trained model and on the same model
untrained (its initialisation):

* **probes at the separator** by layer (closed-form ridge on one-hot labels, held-out
  accuracy beside the majority baseline) for the rhyme class; for the class of line 1's first
  word, a distractor no output needs (the control label); and for the final word the model
  itself writes when it continues greedily (its own plan).
* **patching**: the residual stream at one position, entering one layer (``n_layers``: the
  final one), is replaced by that of a *donor* example whose rhyme class differs, and the
  model continues line 2 greedily with the patch in place. ``follows_donor`` is how often the
  final word it writes is in the donor's class, ``keeps_own`` how often in the example's own.
  Patched positions: the separator (the plan), line 1's rhyme word (the source of the class)
  and a distractor of line 1 (no plan). The null at the separator adds a random vector with
  the norm of the donor patch's change, ‖h_donor − h‖. Chance for ``follows_donor`` is
  1 / classes. Beside it, the same patch with the example's own line 2 given instead of
  written: whether the end of the line reads the plan from the separator directly or only
  through the lead words the plan chose.

The patch is one forward hook on the residual stream (:func:`residual_patch_hook`), the same
replacement :func:`interp.activation_patch` makes at ``resid_post``; the tests check both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch

from .._types import Float, Int, Tensor
from ..core import hooks
from ..core.result import Figure, SavedResult
from ..errors import InterpError, check_choice
from ..probes._fit import fit_ridge, ridge_outputs
from ..training.tasks import TaskBatch
from ..training.tasks.rhyme import Rhyme
from ..training.toy import TrainConfig, build_model, default_config, train_toy
from ..training.toy._loop import ToyResult
from ._common import residuals

__all__ = [
    "PLACES",
    "PlanningControl",
    "greedy_line",
    "load_planning",
    "planning_config",
    "planning_control",
    "planning_positions",
    "planning_runs",
    "prefix_batch",
    "residual_patch_hook",
]

#: The positions the planning control patches: the separator (where the plan should be),
#: line 1's last word (the rhyme word, the plan's source) and line 1's first word (a
#: distractor: no plan).
PLACES = ("separator", "rhyme word", "distractor")
_SEED = 4_000_037
_ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def planning_positions(task: Rhyme) -> dict[str, int]:
    """The position of each of :data:`PLACES` in the task's examples (``<bos>`` is 0)."""
    out = {"separator": task.separator, "rhyme word": task.line}
    if task.line >= 2:  # with one word, line 1 is the rhyme word alone
        out["distractor"] = 1
    return out


def residual_patch_hook(position: int, layer: int, n_layers: int,
                        value: Float[Tensor, "batch d_model"]) -> tuple[str, Callable]:
    """A forward hook that sets the residual stream entering ``layer`` (``n_layers``: the
    final residual stream) at ``position`` to ``value``, in every example of the batch."""
    name = hooks.resid(layer, "pre") if layer < n_layers else hooks.resid(n_layers - 1, "post")

    def put(x: Tensor, hook) -> Tensor:
        x = x.clone()
        x[:, position] = value.to(x.dtype)
        return x

    return name, put


@torch.no_grad()
def greedy_line(model, prefix: Int[Tensor, "batch pos"], n_new: int,
                fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> Int[Tensor, "batch new"]:
    """The ``n_new`` tokens the model writes after ``prefix``, greedily, with ``fwd_hooks``
    active in every forward pass (a patch at a prefix position stays in place)."""
    tokens = prefix
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        for _ in range(n_new):
            nxt = model(tokens)[:, -1].argmax(-1)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
    return tokens[:, prefix.shape[1]:]


def prefix_batch(batch: TaskBatch, n: int) -> TaskBatch:
    """The first ``n`` positions of every example of ``batch`` (a prompt to continue)."""
    return dataclasses.replace(batch, tokens=batch.tokens[:, :n],
                               roles=[r[:n] for r in batch.roles],
                               loss_mask=batch.loss_mask[:, :n], targets=batch.targets[:, :n],
                               sequences=[])


def _score(task: Rhyme, line2: Tensor) -> pd.DataFrame:
    """Per generated line 2: the final word's class (-1: not a rhyme word) and whether every
    lead word names the final word."""
    rows = []
    for ids in line2.tolist():
        words = task.vocab.decode(ids)
        final = words[-1]
        rows.append(dict(final=final, final_class=task.rhyme_class(final),
                         consistent=all(task.lead_final(w, j) == final
                                        for j, w in enumerate(words[:-1]))))
    return pd.DataFrame(rows)


def _donors(classes: Tensor) -> Tensor:
    """For each example, the next one (cyclically) whose rhyme class differs."""
    n = len(classes)
    out = []
    for b in range(n):
        k = next((k for k in range(1, n) if classes[(b + k) % n] != classes[b]), None)
        if k is None:
            raise InterpError("every held-out example has the same rhyme class",
                              "draw more examples (n_examples) so that classes differ")
        out.append((b + k) % n)
    return torch.tensor(out)


def _class_probe(X: Float[Tensor, "n d_model"], y: Int[Tensor, " n"]) -> tuple[float, float]:
    """Held-out accuracy of a ridge probe on one-hot labels (fit on the first half, penalty
    chosen on the third quarter, scored on the last quarter) and the majority baseline."""
    n = X.shape[0]
    labels, y = torch.unique(y, return_inverse=True)
    onehot = torch.nn.functional.one_hot(y, len(labels)).double()
    train, val, test = (torch.arange(n // 2), torch.arange(n // 2, 3 * n // 4),
                        torch.arange(3 * n // 4, n))
    fit = fit_ridge(X.double()[None], onehot[None, :, None], train, val, _ALPHAS,
                    torch.device("cpu"))
    pred = ridge_outputs(X[None, test], fit.W, fit.b, torch.device("cpu"))[0, :, 0].argmax(-1)
    majority = torch.bincount(y[train], minlength=len(labels)).argmax()
    return (float((pred == y[test]).float().mean()),
            float((y[test] == majority).float().mean()))


@dataclass
class PlanningControl(SavedResult):
    """The planning control, trained model beside its initialisation, one row per seed.

    Attributes:
        generation: ``seed``, ``model`` (``trained``, ``untrained``): ``rhyme_rate`` (greedy
            line 2 ends in a right final word), ``consistent`` (its lead words name its final
            word), ``n``.
        probes: ``seed``, ``model``, ``layer`` (residual entering it; ``n_layers``: the final
            one), ``target`` (``rhyme class``, ``first word's class``, ``planned word``),
            ``accuracy`` (held-out), ``baseline`` (majority).
        patching: ``seed``, ``model``, ``place`` (one of :data:`PLACES`), ``intervention``
            (``donor`` or ``random``), ``layer``: ``follows_donor``, ``keeps_own``,
            ``consistent``, ``n``; and ``follows_donor_given_line``: the same patch with the
            example's own line 2 given (teacher forcing), how often the final word predicted
            after it is in the donor's class (does the end of the line read the plan at the
            separator directly, or from the words written?).
        settings: the runs, sizes, positions and ``chance`` (1 / classes).
    """

    generation: pd.DataFrame
    probes: pd.DataFrame
    patching: pd.DataFrame
    settings: dict

    MADE_BY: ClassVar[str] = "interp controls planning --out DIR"
    SAVED: ClassVar[dict] = {"patching": "planning_patching.csv",
                             "generation": "planning_generation.csv",
                             "probes": "planning_probes.csv",
                             "settings": "planning_settings.json"}

    def figures(self) -> list[Figure]:
        from ..figures import controls as f

        return [Figure("planning", f.planning,
                       "Left: probes at the separator by layer for the rhyme class, the "
                       "planned word and a distractor's class, trained vs untrained. Right: "
                       "how often the written final word takes the donor's rhyme class when "
                       "one position's residual stream is patched from the donor.")]


def _check_run(run: ToyResult) -> Rhyme:
    task = run.task
    if not isinstance(task, Rhyme):
        raise InterpError(f"the planning control reads the rhyme task; this run is "
                          f"{task.name!r}", "train the run with task='rhyme' "
                          "(interp.controls.planning_runs)")
    if run.config.pauses:
        raise InterpError(f"the rhyme run was trained with {run.config.pauses} pauses; the "
                          "control patches fixed positions of pause-free lines",
                          "train the rhyme run with pauses=0")
    length = task.separator + task.lead + 2
    n_ctx = int(run.model.cfg.n_ctx)
    if length > n_ctx:
        raise InterpError(f"the model's context ({n_ctx}) cannot hold the task's {length} "
                          f"tokens (line={task.line}, lead={task.lead})",
                          "use the task the run was trained on, or train with "
                          f"TrainConfig.n_ctx >= {length}")
    return task


def planning_control(runs: Sequence[ToyResult], *, n_examples: int = 512,
                     places: Sequence[str] = PLACES, seed: int = _SEED) -> PlanningControl:
    """The planning instruments on each trained ``rhyme`` run and on its initialisation.

    Args:
        runs: ``rhyme`` runs (one per seed) of one task; see :func:`planning_runs`.
        n_examples: held-out examples (probes fit on half, choose the penalty on a quarter,
            score on the last quarter; patching and generation use all).
        places: the positions to patch, among :data:`PLACES`.
        seed: the held-out examples and the random patch.

    Raises:
        InterpError: no runs, a run of another task or with pauses, a model whose context
            cannot hold the task's lines, a place the task does not have (``distractor``
            needs ``line >= 2``), fewer than 8 examples.
    """
    if not runs:
        raise InterpError("no rhyme runs given", "train some with interp.controls.planning_runs")
    if n_examples < 8:
        raise InterpError(f"n_examples must be >= 8, got {n_examples}",
                          "give enough held-out examples for the probes' three splits")
    tasks = [_check_run(run) for run in runs]
    if any(t.options() != tasks[0].options() for t in tasks):
        raise InterpError("the runs are of different rhyme tasks",
                          "give runs of one task (one per seed)")
    task = tasks[0]
    where = planning_positions(task)
    for place in places:
        check_choice("place", place, list(where))
    batch = task.batch(n_examples, seed)
    gen, probes, patch = [], [], []
    for run in runs:
        untrained = build_model(run.config, task, int(run.model.cfg.n_ctx))
        for label, model in (("trained", run.model.eval()), ("untrained", untrained.eval())):
            g, p, q = _instruments(model, task, batch, where, places, seed)
            tag = dict(seed=run.config.seed, model=label)
            gen.append({**tag, **g})
            probes += [{**tag, **row} for row in p]
            patch += [{**tag, **row} for row in q]
    settings = dict(runs=[r.config.to_dict() for r in runs], task=task.config(),
                    n_examples=n_examples, positions=where, seed=seed,
                    chance=1.0 / task.classes)
    return PlanningControl(generation=pd.DataFrame(gen), probes=pd.DataFrame(probes),
                           patching=pd.DataFrame(patch), settings=settings)


def _instruments(model, task: Rhyme, batch: TaskBatch, where: dict[str, int],
                 places: Sequence[str], seed: int) -> tuple[dict, list[dict], list[dict]]:
    sep = task.separator
    prefix = batch.tokens[:, :sep + 1]
    n_new = task.lead + 1
    words = [task.vocab.decode(t) for t in batch.tokens]
    own = torch.tensor([task.rhyme_class(w[task.line]) for w in words])
    clean = _score(task, greedy_line(model, prefix, n_new))
    valid = [f in task.valid_finals(w[:sep + 1]) for f, w in zip(clean["final"], words,
                                                                   strict=True)]
    generation = dict(rhyme_rate=float(pd.Series(valid).mean()),
                      consistent=float(clean["consistent"].mean()), n=len(batch))
    resid = residuals(model, task, prefix_batch(batch, sep + 1))
    n_layers = len(resid) - 1
    planned = torch.tensor([task.vocab[f] for f in clean["final"]])
    first = torch.tensor([task.rhyme_class(w[1]) for w in words])
    probes = []
    for layer, h in enumerate(resid):
        for target, y in (("rhyme class", own), ("first word's class", first),
                          ("planned word", planned)):
            acc, base = _class_probe(h[:, sep], y)
            probes.append(dict(layer=layer, target=target, accuracy=acc, baseline=base))
    donor = _donors(own)
    gen = torch.Generator().manual_seed(seed)
    patching = []
    for place in places:
        pos = where[place]
        for layer, h in enumerate(resid):
            moves = {"donor": h[donor, pos]}
            if place == "separator":
                change = (h[donor, pos] - h[:, pos]).norm(dim=-1, keepdim=True)
                r = torch.randn(h[:, pos].shape, generator=gen, dtype=h.dtype)
                moves["random"] = h[:, pos] + r / r.norm(dim=-1, keepdim=True) * change
            for intervention, value in moves.items():
                hook = residual_patch_hook(pos, layer, n_layers, value)
                s = _score(task, greedy_line(model, prefix, n_new, [hook]))
                fc = torch.tensor(s["final_class"].to_numpy())
                with torch.no_grad(), model.hooks(fwd_hooks=[hook]):
                    given = model(batch.tokens)[:, -2].argmax(-1)  # reading its own line 2
                gc = torch.tensor([task.rhyme_class(w) for w in task.vocab.decode(given)])
                patching.append(dict(place=place, intervention=intervention, layer=layer,
                                     follows_donor=float((fc == own[donor]).float().mean()),
                                     keeps_own=float((fc == own).float().mean()),
                                     consistent=float(s["consistent"].mean()),
                                     follows_donor_given_line=float(
                                         (gc == own[donor]).float().mean()),
                                     n=len(batch)))
    return generation, probes, patching


def planning_config(**overrides) -> TrainConfig:
    """The planning control's run: the ``rhyme`` task's defaults
    (:data:`interp.training.toy.DEFAULTS`) with ``overrides``."""
    return default_config("rhyme", **overrides)


def planning_runs(out: str | os.PathLike | None = None, *, seeds: Sequence[int] = (0, 1, 2),
                  verbose: bool = True, **overrides) -> list[ToyResult]:
    """Train (or resume) one ``rhyme`` run per seed, in ``out/seed<s>``
    (:func:`planning_config` with ``overrides``)."""
    return [train_toy(planning_config(**{**overrides, "seed": s}),
                      None if out is None else Path(out) / f"seed{s}", verbose=verbose)
            for s in seeds]


def load_planning(out: str | os.PathLike) -> PlanningControl:
    """The :class:`PlanningControl` saved in ``out``."""
    return PlanningControl.load(Path(out))
