"""Training probes from a spec, evaluating them, and their artifacts on disk.

An output directory holds::

    spec.toml                  the spec as run (overrides applied)
    metrics.csv                one row per (layer, site, head, offset, role, split)
    probes/<site>.safetensors  W [unit, feature, task, class], b [unit, task, class] for raw
                               activations: logits = x @ W[u, :, t] + b[u, t]
    probes.json                what the tensors mean: units, tasks, classes, formula
    probe_accuracy.html        accuracy by layer and offset against the baselines (the
                               figures of :meth:`ProbeResults.figures`, as ``interp figures``)
    cells/<site>.csv           metrics of a finished site (resume skips the site)
    checkpoints/<site>.*       the optimiser state of an unfinished site (resume continues it)
"""

from __future__ import annotations

import json
import operator
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from ..core.io import (
    atomic_save_tensors,
    atomic_write_csv,
    atomic_write_text,
    read_json,
    read_table,
    read_tensors,
    sha256_file,
    verify_checksums,
)
from ..core.model import Bridge, resolve_device
from ..core.result import Figure, check_files
from ..core.sites import resolve_layer, resolve_layers
from ..errors import InterpError, refuse_renamed
from ..figures._export import export_figures
from ._baselines import classification_baselines, control_labels, regression_baselines
from ._data import SPLITS, ProbeData, collect, load_sequences, split_groups
from ._fit import SoftmaxState, _r2, fit_ridge, fit_softmax, ridge_outputs, softmax_outputs
from ._future_lens import FutureLensResults
from ._spec import ProbeSpec

__all__ = ["METRIC_COLUMNS", "ProbeResults", "evaluate_probes", "load_probes", "train_probes"]

METRIC_COLUMNS = [
    "layer", "site", "head", "offset", "target", "role", "split", "n",
    "accuracy", "top5", "xent", "r2",
    "baseline_majority", "baseline_unigram", "baseline_bigram", "baseline_bigram_top5",
    "baseline_bigram_xent", "baseline_unigram_xent", "control_accuracy", "selectivity",
]


@dataclass
class ProbeResults:
    """Trained probes and their metrics.

    Attributes:
        spec: the spec that produced them.
        metrics: the tidy metrics table (columns :data:`METRIC_COLUMNS`): per (layer, site,
            head, offset, role, split) the probe's accuracy, top-5 accuracy and cross-entropy
            (nats) — or R² for regression targets — next to the majority, unigram and bigram
            baselines (the same rows, the same label space), the control task's accuracy and
            the selectivity = accuracy − control accuracy. ``role == "all"`` pools the roles;
            ``head == -1`` marks residual-stream sites.
        probes: per site, ``W`` ``[unit, feature, task, class]`` and ``b`` ``[unit, task, class]``
            acting on raw activations (``task`` runs over the offsets, then ``control``).
        description: what the tensors mean (units, tasks, classes; written as probes.json).
        out_dir: where the artifacts are, if saved.
    """

    spec: ProbeSpec
    metrics: pd.DataFrame
    probes: dict[str, dict[str, Tensor]]
    description: dict[str, Any]
    out_dir: Path | None = None

    FILES: ClassVar[tuple[str, ...]] = ("metrics.csv", "spec.toml", "probes.json")
    MADE_BY: ClassVar[str] = "interp probe train SPEC --out DIR"

    @classmethod
    def recognises(cls, folder: Path) -> bool:
        """A ``metrics.csv`` is a probe run's only beside its spec or its probes."""
        return (folder / "probes.json").is_file() or (folder / "spec.toml").is_file()

    @classmethod
    def load(cls, out: str | Path) -> ProbeResults:
        """Read the artifacts :func:`train_probes` wrote (no model needed)."""
        return load_probes(out)

    def figures(self) -> list[Figure]:
        from ..figures import probes as f

        return [Figure("probe_accuracy", f.probe_accuracy,
                       "Test accuracy of linear probes predicting the token k positions ahead "
                       "from each layer, against the bigram baseline (dashed) and a control "
                       "task.")]

    def to_pandas(self) -> pd.DataFrame:
        """The metrics table (a copy)."""
        return self.metrics.copy()

    def summary(self, *, split: str = "test", role: str = "all", site: str | None = None) -> pd.DataFrame:
        """Per offset, the layer with the best accuracy (R² for regression), with the baselines."""
        site = site or self.spec.inputs.sites[0]
        m = self.metrics
        m = m[(m.split == split) & (m.role == role) & (m.site == site)]
        if m.empty:
            raise InterpError(f"no metrics for split={split!r}, role={role!r}, site={site!r}",
                              f"roles: {sorted(self.metrics.role.unique())}, sites: {self.spec.inputs.sites}")
        key = "r2" if self.description["kind"] == "ridge" else "accuracy"
        best = m.loc[m.groupby("offset")[key].idxmax()]
        return best.reset_index(drop=True)

    def probe(self, layer: int, offset: int, *, site: str | None = None, head: int = -1) -> tuple[
        Float[Tensor, "feature cls"], Float[Tensor, " cls"]
    ]:
        """The weights of one probe: ``logits = x @ W + b`` for a raw activation ``x``."""
        site = site or self.spec.inputs.sites[0]
        info = self.description["sites"].get(site)
        if info is None:
            raise InterpError(f"no probes for site {site!r}", f"sites: {', '.join(self.description['sites'])}")
        units = [tuple(u) for u in info["units"]]
        if (layer, head) not in units:
            raise InterpError(f"no probe at layer {layer}, head {head} of site {site}",
                              f"layers: {sorted({u[0] for u in units})}; heads: {sorted({u[1] for u in units})}")
        tasks = self.description["tasks"]
        if offset not in tasks:
            raise InterpError(f"no probe for offset {offset}", f"offsets: {tasks}")
        u, t = units.index((layer, head)), tasks.index(offset)
        return self.probes[site]["W"][u, :, t], self.probes[site]["b"][u, t]

    def figure(self, **kwargs):
        """:func:`interp.figures.probes.probe_accuracy` of these results."""
        from ..figures.probes import probe_accuracy

        return probe_accuracy(self, **kwargs)

    def save(self, out_dir: str | Path) -> Path:
        """Write spec.toml, the probes, metrics.csv and, last, probes.json with the SHA-256 of
        each of them (atomically, file by file): :func:`load_probes` names any file edited or
        damaged since."""
        out = Path(out_dir)
        (out / "probes").mkdir(parents=True, exist_ok=True)
        written = [atomic_write_text(out / "spec.toml", self.spec.to_toml())]
        for site, tensors in self.probes.items():
            written.append(atomic_save_tensors(out / "probes" / f"{site}.safetensors", tensors))
        written.append(atomic_write_csv(out / "metrics.csv", self.metrics))
        files = {p.relative_to(out).as_posix(): sha256_file(p) for p in written}
        atomic_write_text(out / "probes.json", json.dumps(dict(self.description, files=files), indent=2))
        self.out_dir = out
        return out


def load_probes(out_dir: str | Path) -> ProbeResults:
    """Read the artifacts :func:`train_probes` wrote (no model needed)."""
    out = check_files(ProbeResults, out_dir, ["spec.toml", "metrics.csv", "probes.json"],
                      problem="is not a finished probe run")
    fix = f"train again with `interp probe train SPEC --out {out} --fresh`"
    desc = read_json(out / "probes.json", fix)
    verify_checksums(out, desc.pop("files", {}), fix)  # runs of earlier releases have none
    spec = ProbeSpec.from_toml(out / "spec.toml")
    probes = {site: read_tensors(out / "probes" / f"{site}.safetensors", fix) for site in desc["sites"]}
    metrics = read_table(out / "metrics.csv")
    return ProbeResults(spec=spec, metrics=metrics, probes=probes, description=desc, out_dir=out)


@dataclass
class _Prepared:
    """The collected data with splits, encoded targets and baselines: shared by every site."""

    data: ProbeData
    kind: str  # "softmax" or "ridge"
    tasks: list[int]  # offsets (0 for a table column)
    y: Tensor | None = None  # [n, task (+ control)] class ids
    n_classes: int = 0
    classes: list = field(default_factory=list)
    Y: Tensor | None = None  # [target layer, n, task, out]
    baselines: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[tuple[str, str], Tensor] = field(default_factory=dict)  # (split, role) -> bool [n]


def _as_spec(spec: ProbeSpec | str | Path | dict, overrides: list[str] | None) -> ProbeSpec:
    if isinstance(spec, ProbeSpec):
        return spec.with_overrides(overrides) if overrides else spec
    if isinstance(spec, dict):
        s = ProbeSpec.from_dict(spec)
        return s.with_overrides(overrides) if overrides else s
    return ProbeSpec.from_toml(spec, overrides)


def _load_model(spec: ProbeSpec):
    from ..models import load_model

    m = spec.model
    if m.toy is not None:
        from ..training.toy import load_toy

        try:
            return load_toy(m.toy).model
        except InterpError as e:
            raise InterpError(f"probe spec field model.toy: {e.problem}", e.fix) from None
    return load_model(m.tiny if m.tiny is not None else m.name, device=None if m.device == "auto" else m.device,
                      dtype=getattr(torch, m.dtype))


def _layers(spec: ProbeSpec, model: Bridge) -> list[int]:
    if spec.target.kind == "hidden" and spec.target.hidden_layer is not None:
        resolve_layer(model, spec.target.hidden_layer, what="probe spec field target.hidden_layer")
    return list(resolve_layers(model, spec.inputs.layers, what="probe spec field inputs.layers"))


def _encode_tokens(targets: Tensor, train: Tensor, vocab: int, min_count: int,
                   classes: list[int] | None = None) -> tuple[Tensor, list[int]]:
    """Map target token ids to classes: the ``vocab`` most frequent training tokens with at
    least ``min_count`` training occurrences (all of them when ``vocab == 0``), then "other"
    (class id -1 in the returned list). Saved ``classes`` (from probes.json) are reused as given."""
    if classes is None:
        counts = torch.bincount(targets[train].reshape(-1))
        ids = torch.nonzero(counts >= min_count)[:, 0]
        kept = sorted(ids.tolist(), key=lambda i: (-int(counts[i]), i))
        kept = kept[:vocab] if vocab else kept
        if not kept:
            raise InterpError(
                f"too few examples per class for the train split: no target token occurs {min_count} times",
                "use more data (data.max_windows) or lower train.min_per_class",
            )
    else:
        kept = [c for c in classes if c >= 0]
    lut = torch.full((max(int(targets.max()), max(kept)) + 1,), len(kept), dtype=torch.long)
    lut[torch.tensor(kept)] = torch.arange(len(kept))
    return lut[targets], kept + [-1]


def _prepare(spec: ProbeSpec, data: ProbeData, classes: list | None = None) -> _Prepared:
    """Splits, class encoding (or the saved ``classes`` of a run being evaluated), baselines
    and the control task."""
    t = spec.target
    data.split = split_groups(data.groups, spec.train.val_fraction, spec.train.test_fraction, spec.train.seed)
    train = torch.tensor(data.split == "train")
    roles = sorted(set(data.roles.tolist()))
    masks = {}
    for s in SPLITS:
        in_split = data.split == s
        for r in roles + ["all"]:
            m = in_split & (data.roles == r) if r != "all" else in_split
            if m.any():
                masks[(s, r)] = torch.tensor(m)
    if t.kind in ("token", "label", "answer"):
        if t.kind == "token":
            y, classes = _encode_tokens(data.targets, train, t.vocab, spec.train.min_per_class, classes)
        else:
            if classes is not None and list(classes) != list(data.label_names):
                raise InterpError(f"the data's labels {data.label_names} differ from the saved probes' {classes}",
                                  "evaluate on data with the same label set")
            y, classes = data.targets, list(data.label_names)
            counts = torch.bincount(y[train, 0], minlength=len(classes))
            rare = [f"{classes[i]!r} ({int(c)})" for i, c in enumerate(counts) if c < spec.train.min_per_class]
            if rare:
                raise InterpError(
                    f"too few examples per class for the train split: {', '.join(rare[:10])}; "
                    f"train.min_per_class is {spec.train.min_per_class}",
                    "use more data, merge rare labels, or lower train.min_per_class",
                )
        n_classes = len(classes)
        base = classification_baselines(data.tokens, y, n_classes, train)
        if spec.train.control:
            ctrl = control_labels(data.tokens, y, n_classes, train, spec.train.seed)
            y = torch.cat([y, ctrl[:, None]], 1)
        return _Prepared(data, "softmax", list(t.offsets), y=y, n_classes=n_classes, classes=classes,
                         baselines=base, masks=masks)
    Y = data.values
    # per-layer hidden targets (no target.hidden_layer) have no single baseline target
    base = regression_baselines(data.tokens, Y[0], train) if Y.shape[0] == 1 else {}
    return _Prepared(data, "ridge", list(t.offsets), Y=Y, baselines=base, masks=masks)


def _target_name(spec: ProbeSpec) -> str:
    t = spec.target
    if t.kind == "hidden":
        return "hidden" if t.hidden_layer is None else f"hidden@{t.hidden_layer}"
    return t.kind if t.kind in ("token", "answer") else t.column


def _metrics(spec: ProbeSpec, prep: _Prepared, site: str, units: list[tuple[int, int]],
             W: Tensor, b: Tensor, device: torch.device) -> pd.DataFrame:
    """The metrics rows of one site's probes (raw-space weights), for every split and role."""
    X = prep.data.features[site]
    rows = []
    target = _target_name(spec)
    T = len(prep.tasks)
    if prep.kind == "softmax":
        out = softmax_outputs(X, prep.y, W, b, device)
        for (s, r), m in prep.masks.items():
            acc = out["correct"][:, :, m].float().mean(-1)
            top5 = out["top5"][:, :, m].float().mean(-1)
            xent = out["nll"][:, :, m].mean(-1)
            base = {k: v[:, m].mean(-1) for k, v in prep.baselines.items()}
            ctrl = acc[:, T] if spec.train.control else torch.full((len(units),), float("nan"))
            for u, (layer, head) in enumerate(units):
                for ti, k in enumerate(prep.tasks):
                    rows.append(dict(
                        layer=layer, site=site, head=head, offset=k, target=target, role=r, split=s,
                        n=int(m.sum()), accuracy=float(acc[u, ti]), top5=float(top5[u, ti]),
                        xent=float(xent[u, ti]), r2=float("nan"),
                        baseline_majority=float(base["majority"][ti]), baseline_unigram=float(base["unigram"][ti]),
                        baseline_bigram=float(base["bigram"][ti]), baseline_bigram_top5=float(base["bigram_top5"][ti]),
                        baseline_bigram_xent=float(base["bigram_xent"][ti]),
                        baseline_unigram_xent=float(base["unigram_xent"][ti]),
                        control_accuracy=float(ctrl[u]), selectivity=float(acc[u, ti] - ctrl[u]),
                    ))
    else:
        pred = ridge_outputs(X, W, b, device)
        Yu = _unit_targets(spec, prep, units)
        nan = float("nan")
        for (s, r), m in prep.masks.items():
            r2 = _r2(pred[:, m], Yu[:, m])
            base = {k: _r2(v[None, m], prep.Y[:1, m])[0] for k, v in prep.baselines.items()}
            for u, (layer, head) in enumerate(units):
                for ti, k in enumerate(prep.tasks):
                    rows.append(dict(
                        layer=layer, site=site, head=head, offset=k, target=target, role=r, split=s,
                        n=int(m.sum()), accuracy=nan, top5=nan, xent=nan, r2=float(r2[u, ti]),
                        baseline_majority=float(base["mean"][ti]) if base else nan, baseline_unigram=nan,
                        baseline_bigram=float(base["token"][ti]) if base else nan, baseline_bigram_top5=nan,
                        baseline_bigram_xent=nan, baseline_unigram_xent=nan, control_accuracy=nan, selectivity=nan,
                    ))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _unit_targets(spec: ProbeSpec, prep: _Prepared, units: list[tuple[int, int]]) -> Tensor:
    """Regression targets per unit: a unit's own layer for ``hidden`` without ``hidden_layer``."""
    Y = prep.Y
    if Y.shape[0] == 1:
        return Y.expand(len(units), -1, -1, -1)
    return Y[[prep.data.value_layers.index(layer) for layer, _ in units]]


def _fit_site(spec: ProbeSpec, prep: _Prepared, site: str, device: torch.device, out: Path | None,
              verbose: bool) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    X = prep.data.features[site]
    units = prep.data.units[site]
    split = prep.data.split
    train = torch.tensor(np.flatnonzero(split == "train"))
    val = torch.tensor(np.flatnonzero(split == "val"))
    if prep.kind == "ridge":
        fit = fit_ridge(X, _unit_targets(spec, prep, units), train, val, spec.train.ridge_alphas, device)
        W, b = fit.W, fit.b
        extra = {"alpha": fit.alpha}
    else:
        ckpt = out / "checkpoints" / f"{site}.safetensors" if out is not None else None
        state = None
        if ckpt is not None and ckpt.is_file():
            state = SoftmaxState.from_tensors(load_file(str(ckpt)), device)

        def save(st: SoftmaxState) -> None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_tensors(ckpt, st.tensors())

        state = fit_softmax(X, prep.y, prep.n_classes, train, val, spec.train, device, state=state,
                            on_epoch=save if ckpt is not None else None, verbose=verbose)
        W, b = state.raw()
        W, b = W.cpu(), b.cpu()
        extra = {"best_epoch": state.best_epoch.cpu()}
    metrics = _metrics(spec, prep, site, units, W, b, device)
    return metrics, {"W": W, "b": b, **extra}


def _description(spec: ProbeSpec, prep_kind: str, classes: list, tokenizer, tasks: list) -> dict[str, Any]:
    """probes.json without ``sites`` (added once every site is trained)."""
    desc: dict[str, Any] = dict(
        name=spec.name, kind=prep_kind, target=_target_name(spec),
        formula="logits = x @ W[u, :, t, :] + b[u, t, :]" if prep_kind == "softmax"
        else "prediction = x @ W[u, :, t, :] + b[u, t, :]",
        tasks=tasks,
    )
    if prep_kind == "softmax":
        desc["classes"] = classes
        if spec.target.kind == "token" and tokenizer is not None:
            desc["class_strings"] = [tokenizer.decode([c]) if c >= 0 else "<other>" for c in classes]
    return desc


def _site_done(out: Path | None, site: str) -> bool:
    return out is not None and (out / "cells" / f"{site}.csv").is_file() and (out / "probes" / f"{site}.safetensors").is_file()


def _check_out(out: Path, spec: ProbeSpec, resume: bool) -> None:
    old = out / "spec.toml"
    if old.is_file() and resume:
        if ProbeSpec.from_toml(old).fingerprint() != spec.fingerprint():
            raise InterpError(
                f"{out} holds a run of a different spec, so it cannot be resumed",
                "choose another --out directory, or pass --fresh (fresh=True) to start over",
            )
    elif old.is_file():
        for name in ("cells", "checkpoints", "probes"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(old, spec.to_toml())


def _collect_all(spec: ProbeSpec, model: Bridge, sites: list[str], verbose: bool, classes: list | None = None) -> _Prepared:
    if spec.data.recording is not None:
        from ._recorded import collect_recorded

        return _prepare(spec, collect_recorded(spec, sites), classes)
    data = collect(spec, model, load_sequences(spec, model), sites, _layers(spec, model), verbose=verbose)
    return _prepare(spec, data, classes)


def _model_for(spec: ProbeSpec, model: Bridge | None):
    """The model to run, or ``None`` when the spec reads a recording."""
    if spec.data.recording is not None:
        return model
    return model if model is not None else _load_model(spec)


def train_probes(
    spec: ProbeSpec | str | Path | dict,
    out_dir: str | Path | None = None,
    *,
    model=None,
    overrides: list[str] | None = None,
    fresh: bool = False,
    verbose: bool = False,
    **old,
) -> ProbeResults | FutureLensResults:
    """Train every probe a spec asks for — all layers, heads and offsets of a site in one pass —
    and measure them against the baselines.

    Args:
        spec: a :class:`ProbeSpec`, the path of a TOML spec, or a dict.
        out_dir: write the artifacts here (module docstring); ``None`` keeps them in memory.
        model: an already loaded ``TransformerBridge`` to use instead of ``spec.model``
            (it must be the model the spec names; with ``model.add_pause`` it gains a
            ``<pause>`` token).
        overrides: ``key=value`` strings applied to the spec (``["train.seed=1"]``).
        fresh: start over (``--fresh``). By default an interrupted run in ``out_dir`` is
            continued: finished sites are skipped and an unfinished one continues from its
            last epoch. ``resume=`` of earlier releases raises, naming this.
        verbose: progress bars.

    Returns:
        :class:`ProbeResults` (``.to_pandas()`` for the metrics, ``.figure()``), or
        :class:`interp.probes.FutureLensResults` for ``method = "future_lens"``.

    Raises:
        InterpError: bad spec fields, a layer out of range, an offset longer than the window,
            a role selection matching no position, a misaligned label table, too few examples
            per class, or ``out_dir`` holding a different spec when resuming.

    Example:
        >>> res = interp.train_probes("probes/tiny.toml", overrides=["data.max_windows=24"])
        >>> res.summary()[["offset", "layer", "accuracy", "baseline_bigram"]]
    """
    refuse_renamed("train_probes", old, {"resume": ("fresh", operator.not_)})
    resume = not fresh
    spec = _as_spec(spec, overrides)
    out = Path(out_dir) if out_dir is not None else None
    if spec.method == "future_lens":
        return _train_future_lens(spec, out, model, resume, verbose)
    if out is not None:
        _check_out(out, spec, resume)
    device = resolve_device(None if spec.train.device == "auto" else spec.train.device)
    metrics: dict[str, pd.DataFrame] = {}
    tensors: dict[str, dict[str, Tensor]] = {}
    for site in spec.inputs.sites:
        if resume and _site_done(out, site):
            metrics[site] = pd.read_csv(out / "cells" / f"{site}.csv")
            tensors[site] = read_tensors(out / "probes" / f"{site}.safetensors",
                                         "start over with --fresh (fresh=True)")
    todo = [s for s in spec.inputs.sites if s not in metrics]
    meta_path = out / "cells" / "description.json" if out is not None else None
    if todo:
        model = _model_for(spec, model)
        prep = _collect_all(spec, model, todo, verbose)
        desc = _description(spec, prep.kind, prep.classes, getattr(model, "tokenizer", None),
                            prep.tasks + (["control"] if prep.kind == "softmax" and spec.train.control else []))
        for site in todo:
            metrics[site], tensors[site] = _fit_site(spec, prep, site, device, out, verbose)
            if out is not None:
                (out / "cells").mkdir(exist_ok=True)
                (out / "probes").mkdir(exist_ok=True)
                atomic_save_tensors(out / "probes" / f"{site}.safetensors", tensors[site])
                atomic_write_csv(out / "cells" / f"{site}.csv", metrics[site])
                atomic_write_text(meta_path, json.dumps(desc))
                (out / "checkpoints" / f"{site}.safetensors").unlink(missing_ok=True)
        units = prep.data.units
    else:
        desc = json.loads(meta_path.read_text())
        units = {}
    desc["sites"] = {s: dict(units=[list(u) for u in (units[s] if s in units else _units_of(metrics[s]))])
                     for s in spec.inputs.sites}
    table = pd.concat([metrics[s] for s in spec.inputs.sites], ignore_index=True)
    results = ProbeResults(spec=spec, metrics=table, probes=tensors, description=desc)
    if out is not None:
        results.save(out)
        export_figures([results], out)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return results


def _train_future_lens(spec: ProbeSpec, out: Path | None, model: Bridge, resume: bool, verbose: bool):
    """``method = "future_lens"``: one pass over the spec's corpus windows, the ridge maps, the
    learned prompts and their metrics; ``out`` gets ``spec.toml``, ``future_lens.csv`` (+ json),
    ``lens.safetensors`` and its figures. A finished run of the same spec is read back."""
    from ._future_lens import future_lens

    if out is not None:
        if resume and (out / "future_lens.csv").is_file() and (out / "spec.toml").is_file() and \
                ProbeSpec.from_toml(out / "spec.toml").fingerprint() == spec.fingerprint():
            return FutureLensResults.load(out)
        _check_out(out, spec, resume)  # another spec's finished run is refused, not deleted
    model = _model_for(spec, model)
    seqs = load_sequences(spec, model)
    res = future_lens(model, seqs, layers=spec.inputs.layers, offsets=spec.target.offsets, config=spec.future_lens,
                      roles=spec.inputs.roles, seed=spec.train.seed, val_fraction=spec.train.val_fraction,
                      test_fraction=spec.train.test_fraction, batch_size=spec.data.batch_size, verbose=verbose)
    res.meta.update(name=spec.name, description=spec.description, headline=res.headline())
    if out is not None:
        res.save(out, weights=spec.future_lens.save_weights)
        export_figures([res], out)
    return res


def _units_of(metrics: pd.DataFrame) -> list[tuple[int, int]]:
    pairs = metrics[["layer", "head"]].drop_duplicates()
    return [(int(a), int(b)) for a, b in zip(pairs["layer"], pairs["head"], strict=True)]


def evaluate_probes(out_dir: str | Path, *, model=None, verbose: bool = False) -> ProbeResults:
    """Re-collect the data of a finished run and measure its saved probes again (no training).

    The metrics reproduce ``metrics.csv`` when model and data are unchanged, which checks the
    saved artifacts end to end; on a changed model or corpus they measure transfer.
    """
    saved = load_probes(out_dir)
    spec = saved.spec
    device = resolve_device(None if spec.train.device == "auto" else spec.train.device)
    model = _model_for(spec, model)
    prep = _collect_all(spec, model, list(spec.inputs.sites), verbose, saved.description.get("classes"))
    tables = []
    for site in spec.inputs.sites:
        units = prep.data.units[site]
        if [list(u) for u in units] != saved.description["sites"][site]["units"]:
            raise InterpError(f"the saved probes of site {site} do not match the model's layers/heads",
                              "evaluate with the model the probes were trained on")
        tables.append(_metrics(spec, prep, site, units, saved.probes[site]["W"], saved.probes[site]["b"], device))
    return ProbeResults(spec=spec, metrics=pd.concat(tables, ignore_index=True), probes=saved.probes,
                        description=saved.description, out_dir=saved.out_dir)
