"""Grids of toy runs (task × pauses × insert × mode × seed) and their comparison table
(:func:`compare_toy`, :class:`ToyComparison`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
from tqdm.auto import tqdm

from ...core.io import atomic_write_csv
from ...core.result import Figure, SavedResult
from ...errors import InterpError, check_choice
from ._config import CONDITIONS, TrainConfig, run_labels
from ._loop import train_toy


@dataclass
class ToyComparison(SavedResult):
    """A grid of runs (task × pauses × insert × mode × seed).

    Attributes:
        runs: one row per run: ``task``, ``mode``, ``pauses``, ``insert``, ``seed``,
            ``metric`` (its name), ``value`` (its final value), ``loss``, ``baseline``,
            ``steps_to_target``, ``seconds_to_target``, ``train_seconds``, ``tokens_per_second``.
        histories: the runs' histories stacked, with the same identifying columns.
    """

    runs: pd.DataFrame
    histories: pd.DataFrame

    MADE_BY: ClassVar[str] = "interp toy compare --out DIR"
    SAVED: ClassVar[dict] = {"runs": "compare.csv", "histories": "histories.csv"}

    def to_pandas(self) -> pd.DataFrame:
        return self.runs

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``compare.csv`` and ``histories.csv`` (read back by :meth:`load`, no model
        needed), and ``summary.csv`` (:meth:`summary`, for reading) into ``out``."""
        out = super().save(out)
        atomic_write_csv(out / "summary.csv", self.summary())
        return out

    def figures(self) -> list[Figure]:
        from ...figures import toy as f

        return [Figure("toy_compare", f.compare_bars,
                       "Final held-out metric of tiny models trained on a synthetic task, per "
                       "condition (vanilla / myopic, with or without pauses), over seeds."),
                Figure("toy_curves", f.training_curves,
                       "Held-out metric during training, one line per seed.")]

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation, min and max of the final metric over seeds, per condition."""
        keys = ["task", "mode", "pauses", "insert", "metric"]
        g = self.runs.groupby(keys, sort=False)
        out = g["value"].agg(["mean", "std", "min", "max", "count"]).reset_index()
        out["baseline"] = g["baseline"].mean().to_numpy()
        return out.rename(columns={"count": "seeds"})


def load_comparison(out: str | os.PathLike) -> ToyComparison:
    """The :class:`ToyComparison` saved in ``out`` by ``interp toy compare`` / :func:`compare_toy`."""
    return ToyComparison.load(out)


_RUN_COLUMNS = ["metric", "loss", "baseline", "steps_to_target", "seconds_to_target",
                "train_seconds", "tokens_per_second"]


def compare_toy(configs: list[TrainConfig], out: str | os.PathLike | None = None, *,
                verbose: bool = True) -> ToyComparison:
    """Train every config (each in ``out/runs/<label>`` when ``out`` is given; finished runs
    are resumed, i.e. skipped) and gather the final metrics and histories."""
    if not configs:
        raise InterpError("no runs to compare", "give at least one task, pause count, mode and seed")
    rows, hists = [], []
    for cfg in tqdm(configs, desc="runs", disable=not verbose or len(configs) == 1):
        labels = run_labels(cfg)
        run_dir = None if out is None else Path(out) / "runs" / "_".join(
            f"{k}{v}" if k in ("pauses", "seed") else str(v) for k, v in labels.items())
        res = train_toy(cfg, run_dir, verbose=False)
        m = res.metrics
        rows.append(dict(**labels, value=m[m["metric"]], **{k: m[k] for k in _RUN_COLUMNS}))
        hists.append(res.to_pandas())
    comp = ToyComparison(runs=pd.DataFrame(rows), histories=pd.concat(hists, ignore_index=True))
    if out is not None:
        comp.save(out)
    return comp


def grid(base: TrainConfig, *, pauses: list[int], modes: list[str], inserts: list[str],
         seeds: list[int], cot_mixture: float = 0.5) -> list[TrainConfig]:
    """The configs of a task × pauses × insert × mode × seed grid around ``base``.

    ``inserts`` holds ``"pause"``, ``"filler"`` and/or ``"filler_cot"`` (fillers, with
    ``cot_mixture`` of the training examples carrying the chain of thought instead); it only
    matters where pauses > 0, so a pause count of 0 appears once per mode and seed.
    """
    for m in modes:
        check_choice("mode", m, ("vanilla", "myopic"))
    for i in inserts:
        check_choice("insert", i, CONDITIONS[1:])
    out = []
    for p in pauses:
        for ins in inserts if p else inserts[:1]:
            for mode in modes:
                for seed in seeds:
                    out.append(dataclasses.replace(
                        base, pauses=p, filler=bool(p) and ins.startswith("filler"),
                        cot_mixture=cot_mixture if p and ins == "filler_cot" else 0.0,
                        myopic=mode == "myopic", seed=seed))
    return out


def condition_grid(base: TrainConfig, conditions: list[str], *, seeds: list[int],
                   fillers: int | None = None, cot_mixture: float = 0.5,
                   modes: list[str] | None = None) -> list[TrainConfig]:
    """The configs that compare :data:`CONDITIONS` at one insert count, per mode and seed.

    Args:
        base: the shared settings (task, model, schedule).
        conditions: names from :data:`CONDITIONS`, e.g. ``["none", "filler", "filler_cot"]``.
        seeds: one run per seed and condition.
        fillers: tokens inserted before the answer in every condition but ``none``; default
            the task's chain-of-thought length (``n_cot``), which ``filler_cot`` requires.
        cot_mixture: for ``filler_cot``, the fraction of training examples with the chain.
        modes: ``vanilla`` and/or ``myopic`` (default ``["vanilla"]``).

    Raises:
        InterpError: an unknown condition, a negative filler count, a mixture outside [0, 1].
    """
    if not conditions:
        raise InterpError("no conditions to compare", f"choose from: {', '.join(CONDITIONS)}")
    for c in conditions:
        check_choice("condition", c, CONDITIONS)
    if fillers is None:
        fillers = base.make_task().n_cot or 0
        if not fillers:
            raise InterpError(f"task {base.task!r} has no chain-of-thought length to default to",
                              "give the number of fillers (--fillers N)")
    inserts = [c for c in dict.fromkeys(conditions) if c != "none"]
    if fillers < 0 or (fillers == 0 and inserts):
        raise InterpError(f"the filler count must be >= 1, got {fillers}",
                          "give the number of tokens to insert before the answer (or only "
                          "the condition 'none')")
    if not 0.0 <= cot_mixture <= 1.0:
        raise InterpError(f"the chain-of-thought mixture must be in [0, 1], got {cot_mixture}",
                          "give the fraction of training examples that carry the chain")
    pauses = ([0] if "none" in conditions else []) + ([fillers] if inserts else [])
    return grid(base, pauses=pauses, modes=modes or ["vanilla"], inserts=inserts or ["pause"],
                seeds=seeds, cot_mixture=cot_mixture)
