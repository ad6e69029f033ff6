"""The pause control: a task where inserted positions carry computation, and every instrument on
the model that uses them, the model that answers at once, and that model with pauses inserted
but never trained.

The instruments, per model, at the inserted (pause or filler) positions beside the prompt:

* **accuracy** on held-out examples;
* **attention received** (mean over later queries and heads) over what uniform causal
  attention would give the same positions (:func:`interp.registers`);
* **future share of the K/V gradient** (:func:`interp.future_gradients`); inserted positions
  are outside the loss, so everything they receive is future gradient by construction: the
  informative number is how *large* that gradient is (``total_norm``), i.e. whether the answer
  depends on them;
* **probes** by layer (closed-form ridge on ±1 labels, accuracy on held-out examples, beside
  the majority baseline): at each inserted position the *partial result* the same position is
  trained to emit in the chain-of-thought version of the sequence, and the final answer; at
  the position that predicts the answer, the answer;
* **patching**: the inserted positions' keys and values replaced, at one layer or all, by
  those of another example (the batch rolled by one); accuracy against the example's own
  answer, and how often the output follows the donor's answer instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from .._types import Float, Tensor
from ..core import hooks
from ..core.result import Figure, SavedResult
from ..errors import InterpError
from ..probes._fit import fit_ridge, ridge_outputs
from ..training.tasks import Task, TaskBatch
from ..training.toy import TrainConfig, compare_toy, condition_grid, evaluate
from ..training.toy._compare import ToyComparison
from ..training.toy._loop import ToyResult
from ._common import residuals

__all__ = [
    "INSERTED",
    "PauseInstruments",
    "control_run",
    "load_pause_instruments",
    "pause_control",
    "pause_control_config",
    "pause_instruments",
    "patch_inserted_kv",
]

#: The roles of inserted positions.
INSERTED = ("pause", "filler")
_PROBE_SEED = 2_000_003


def pause_control_config(n_bits: int = 16, **overrides) -> TrainConfig:
    """The pause control's run: parity of ``n_bits`` bits, 2 layers, learned positions, a
    context with room for ``n_bits`` inserted tokens (so the no-pause model can later read
    sequences with pauses inserted). ``overrides`` are :class:`~interp.training.toy.TrainConfig`
    fields (see ``docs/concepts/positive-controls.md`` for the measured settings)."""
    base = dict(task="parity", task_options=dict(n_bits=n_bits), positional="standard",
                n_layers=2, d_model=64, n_heads=4, steps=1000, batch_size=128, lr=3e-3,
                eval_every=100, eval_size=512, target=0.95)
    return TrainConfig(**{**base, **overrides})


def pause_control(base: TrainConfig | None = None, *, lengths: Sequence[int] | None = None,
                  conditions: Sequence[str] = ("none", "filler_cot"),
                  seeds: Sequence[int] = (0, 1, 2), cot_mixture: float = 0.5,
                  out: str | os.PathLike | None = None, verbose: bool = True) -> ToyComparison:
    """Train the pause control grid: length × condition × seed, with as many inserted tokens
    as the task's chain of thought has (one per bit for parity).

    Args:
        base: the shared run (default :func:`pause_control_config`).
        lengths: task lengths (``n_bits`` for parity, ``length`` for the sums); default the
            base's own.
        conditions: among ``none``, ``pause``, ``filler``, ``filler_cot`` (see
            :func:`interp.training.toy.condition_grid`).
        seeds: one run per seed and condition.
        cot_mixture: for ``filler_cot``, the fraction of training examples with the chain.
        out: folder for ``compare.csv`` and the runs, in ``length<n>/runs/`` (finished runs
            are resumed, i.e. skipped; :func:`control_run` finds one).
        verbose: a progress bar over runs.

    Returns:
        The comparison; its ``runs`` and ``histories`` have a ``length`` column.

    Raises:
        InterpError: a task without a length or a chain of thought (see
            :func:`interp.training.toy.condition_grid`).
    """
    base = base or pause_control_config()
    key = _length_key(base)
    runs, histories = [], []
    for n in lengths or [base.task_options.get(key)]:
        b = dataclasses.replace(base, task_options={**base.task_options, key: n}, n_ctx=None)
        fillers = b.make_task().n_cot
        # one context for every condition, so the no-pause model can read paused sequences
        b = dataclasses.replace(b, n_ctx=_length(b, fillers))
        configs = condition_grid(b, list(conditions), seeds=list(seeds), fillers=fillers,
                                 cot_mixture=cot_mixture)
        comp = compare_toy(configs, None if out is None else Path(out) / f"length{n}",
                           verbose=verbose)
        runs.append(comp.runs.assign(length=n))
        histories.append(comp.histories.assign(length=n))
    comp = ToyComparison(runs=pd.concat(runs, ignore_index=True),
                         histories=pd.concat(histories, ignore_index=True))
    if out is not None:
        comp.save(out)
    return comp


def control_run(out: str | os.PathLike, length: int, condition: str, seed: int) -> Path:
    """The folder of one run of a :func:`pause_control` grid saved in ``out``."""
    folder = Path(out) / f"length{length}" / "runs"
    hits = [h for h in sorted(folder.glob(f"*_{condition}_seed{seed}"))
            if (condition == "none") == ("_pauses0_" in h.name)]
    if len(hits) != 1:
        raise InterpError(f"{folder} holds no single {condition!r} run of seed {seed}",
                          "give the --out folder of `interp controls pauses` with that "
                          "length, condition and seed")
    return hits[0]


def _length_key(config: TrainConfig) -> str:
    keys = {"parity": "n_bits", "3sum": "length", "2sum_transform": "length"}
    if config.task not in keys:
        raise InterpError(f"the pause control has no length for task {config.task!r}",
                          f"use one of: {', '.join(keys)}")
    return keys[config.task]


def _length(config: TrainConfig, fillers: int) -> int:
    """Tokens in one example of ``config``'s task with ``fillers`` tokens inserted."""
    task = dataclasses.replace(config, pauses=fillers).make_task()
    return int(task.batch(1, 0).tokens.shape[1])


# -- instruments --------------------------------------------------------------------------

@dataclass
class PauseInstruments(SavedResult):
    """Every instrument on the pause control, one row per model (and layer, site, ...).

    Models: ``pause-trained`` (trained and evaluated with inserted tokens), ``no pauses``
    (trained and evaluated without), ``pauses untrained`` (the no-pause model, evaluated on
    the same sequences as the pause model: inserted tokens it never saw in training).

    Attributes:
        accuracy: ``model``, ``accuracy``, ``majority_accuracy``, ``n``.
        attention: ``model``, ``layer``, ``kind`` (``inserted``, ``prompt``, ``bos``):
            ``attn_received`` (mean over heads and later queries), ``uniform`` (the same
            under uniform causal attention), ``attn_ratio``; and ``kind`` = ``inserted, from
            the answer position``: the mass the position predicting the answer puts on all
            inserted positions together, beside its uniform share.
        future_share: ``model``, ``site`` (k, v), ``kind``: ``future_share`` (mean),
            ``total_norm`` (mean gradient norm at those positions), ``n``.
        probes: ``model``, ``layer`` (the residual stream entering it; ``n_layers``: the
            final one), ``where`` (``inserted`` or ``answer position``), ``target``
            (``partial`` or ``answer``), ``accuracy`` (held-out, mean over positions),
            ``baseline`` (majority, same examples).
        patching: ``model``, ``layers`` (``all`` or one layer): ``accuracy`` with the
            inserted positions' K/V from another example, ``clean_accuracy``,
            ``follows_donor`` (output = the donor's answer, where the answers differ).
        settings: the runs' configurations and sizes.
    """

    accuracy: pd.DataFrame
    attention: pd.DataFrame
    future_share: pd.DataFrame
    probes: pd.DataFrame
    patching: pd.DataFrame
    settings: dict

    MADE_BY: ClassVar[str] = "interp controls pauses --out DIR"
    SAVED: ClassVar[dict] = {"patching": "pause_patching.csv", "accuracy": "pause_accuracy.csv",
                             "attention": "pause_attention.csv",
                             "future_share": "pause_future_share.csv",
                             "probes": "pause_probes.csv", "settings": "pause_settings.json"}

    def figures(self) -> list[Figure]:
        from ..figures import controls as f

        return [Figure("pause_patching", f.pause_patching,
                       "Held-out accuracy with the inserted positions' keys and values taken "
                       "from another example: the pause-trained model falls to chance, the "
                       "untrained-pause control does not move."),
                Figure("pause_probes", f.pause_probes,
                       "Linear probes by layer at the inserted positions (partial result, "
                       "answer) and at the answer position, beside the majority baseline.")]


def _inserted(batch: TaskBatch) -> Tensor:
    """``[pos]`` indices of the inserted positions, the same in every example of ``batch``."""
    rows = [[p for p, r in enumerate(roles) if r in INSERTED] for roles in batch.roles]
    if not rows[0]:
        raise InterpError("the sequences have no pause or filler positions",
                          "give the run trained with pauses or fillers (pauses > 0)")
    if any(r != rows[0] for r in rows):
        raise InterpError("inserted positions differ between examples",
                          "use a fixed-length task (parity, 3sum, 2sum_transform)")
    return torch.tensor(rows[0])


@torch.no_grad()
def patch_inserted_kv(model, batch: TaskBatch, layers: Sequence[int], *,
                      donor: Sequence[int] | None = None,
                      sites: Sequence[str] = ("k", "v"),
                      positions: Sequence[int] | None = None,
                      random_seed: int | None = None) -> Float[Tensor, "batch pos d_vocab"]:
    """The logits with the inserted positions' keys and values at ``layers`` replaced by those
    of another example of the batch (``donor[b]``; default the next one, ``b + 1``).
    ``sites`` picks keys (``k``), values (``v``) or both; ``positions`` patches those
    positions instead of the inserted ones.

    The donor's K/V come from its own clean forward pass. With ``donor[b] = b`` the logits are
    the clean ones exactly; at layer 0 a pause's K/V depend only on its token and position, so
    patching them changes nothing there either: only later layers can carry computation.

    With ``random_seed`` the patch is the **equal-norm null**: each patched vector (per
    example, position and head) moves by a random direction (seeded) with the norm the donor
    would have moved it by, ``x + ‖x_donor − x‖·r/‖r‖``, so an effect of the donor's content
    can be told from an effect of any change of that size.
    """
    pos = _inserted(batch) if positions is None else torch.as_tensor(list(positions))
    gen = None if random_seed is None else torch.Generator().manual_seed(random_seed)
    n = len(batch)
    src = torch.as_tensor(donor if donor is not None else np.roll(np.arange(n), -1))
    if src.shape != (n,):
        raise InterpError(f"donor has {tuple(src.shape)} entries for a batch of {n}",
                          "give one donor index per example")
    site_hooks = {"k": hooks.k, "v": hooks.v}
    if not sites or any(s not in site_hooks for s in sites):
        raise InterpError(f"sites {tuple(sites)} are not keys and values",
                          "give a non-empty subset of ('k', 'v')")
    names = [site_hooks[s](layer) for layer in layers for s in sites]
    seen: dict[str, Tensor] = {}

    def keep(name: str):
        def hook_fn(t: Tensor, hook) -> Tensor:
            seen[name] = t.clone()
            return t
        return hook_fn

    def put(name: str):
        def hook_fn(t: Tensor, hook) -> Tensor:
            t = t.clone()
            new = seen[name][src][:, pos].to(t.dtype)
            if gen is not None:
                r = torch.randn(new.shape, generator=gen, dtype=torch.float64).to(new)
                size = (new - t[:, pos]).norm(dim=-1, keepdim=True)
                new = t[:, pos] + size * r / r.norm(dim=-1, keepdim=True)
            t[:, pos] = new
            return t
        return hook_fn

    with model.hooks(fwd_hooks=[(n_, keep(n_)) for n_ in names]):
        model(batch.tokens)
    with model.hooks(fwd_hooks=[(n_, put(n_)) for n_ in names]):
        return model(batch.tokens)


def _answer_accuracy(logits: Tensor, batch: TaskBatch, answers: Tensor | None = None) -> Tensor:
    """Per example: every answer token right (against ``answers``, default the batch's)."""
    targets = batch.targets if answers is None else answers
    right = (logits.argmax(-1) == targets) | ~batch.loss_mask
    return right.all(-1)


def _patching(label: str, model, batch: TaskBatch, n_layers: int) -> list[dict]:
    clean = _answer_accuracy(model(batch.tokens), batch)
    donor = np.roll(np.arange(len(batch)), -1)
    donor_targets = torch.where(batch.loss_mask, batch.targets[donor], batch.targets)
    differ = (batch.targets != donor_targets).any(-1)
    rows = []
    for layers in [list(range(n_layers))] + [[layer] for layer in range(n_layers)]:
        logits = patch_inserted_kv(model, batch, layers, donor=donor.tolist())
        follows = _answer_accuracy(logits, batch, donor_targets)[differ]
        rows.append(dict(model=label, layers="all" if len(layers) > 1 else str(layers[0]),
                         accuracy=float(_answer_accuracy(logits, batch).float().mean()),
                         clean_accuracy=float(clean.float().mean()),
                         follows_donor=float(follows.float().mean()), n=len(batch)))
    return rows


def _kind(roles: pd.Series) -> pd.Series:
    return roles.where(~roles.isin(INSERTED), "inserted")


def _attention(label: str, model, batch: TaskBatch, n: int) -> pd.DataFrame:
    from ..sinks import registers, uniform_attention

    reg = registers(model, list(batch.sequences[:n]), verbose=False)
    t = reg.table.dropna(subset=["attn_received"])
    n_pos = int(reg.table["position"].max()) + 1
    t = t.assign(uniform=uniform_attention(n_pos)[t["position"].to_numpy()],
                 kind=_kind(t["role"]))
    g = t.groupby(["layer", "kind"])[["attn_received", "uniform"]].mean().reset_index()
    g["attn_ratio"] = g["attn_received"] / g["uniform"]
    return pd.concat([g, _answer_attention(model, batch, n)], ignore_index=True).assign(
        model=label)


def _answer_attention(model, batch: TaskBatch, n: int) -> pd.DataFrame:
    """The attention mass the position that predicts the answer puts on the inserted
    positions, per layer (mean over heads and examples), beside the uniform share."""
    if not any(r in INSERTED for r in batch.roles[0]):
        return pd.DataFrame()
    pos = _inserted(batch)
    q = int(batch.loss_mask[0].nonzero()[-1])
    n_layers = int(model.cfg.n_layers)
    seen: dict[int, Tensor] = {}

    def keeper(layer: int):
        def keep(t: Tensor, hook) -> Tensor:
            seen[layer] = t[:, :, q].detach()
            return t
        return keep

    with torch.no_grad(), model.hooks(fwd_hooks=[(hooks.pattern(layer), keeper(layer))
                                                 for layer in range(n_layers)]):
        model(batch.tokens[:n])
    uniform = len(pos) / (q + 1)
    return pd.DataFrame([dict(layer=layer, kind="inserted, from the answer position",
                              attn_received=float(seen[layer][..., pos].sum(-1).mean()),
                              uniform=uniform,
                              attn_ratio=float(seen[layer][..., pos].sum(-1).mean()) / uniform)
                         for layer in range(n_layers)])


def _future_share(label: str, model, seqs) -> pd.DataFrame:
    from ..gradients import future_gradients

    fg = future_gradients(model, list(seqs), sites=("k", "v"), verbose=False)
    t = fg.table.assign(kind=_kind(fg.table["role"]))
    g = t.groupby(["site", "kind"]).agg(future_share=("future_share", "mean"),
                                        total_norm=("total_norm", "mean"),
                                        n=("future_share", "size")).reset_index()
    return g.assign(model=label)


def _probe_accuracy(X: Float[Tensor, "unit n feature"], y: Tensor) -> tuple[float, float]:
    """Held-out accuracy of ridge probes on ±1 labels (one per unit; last quarter held out,
    the penalty chosen on the third quarter), mean over units; and the majority baseline."""
    n = X.shape[1]
    train, val, test = torch.arange(n // 2), torch.arange(n // 2, 3 * n // 4), torch.arange(3 * n // 4, n)
    Y = (2.0 * y - 1.0)[..., None, None]  # [unit, n, 1, 1]
    fit = fit_ridge(X, Y, train, val, [1e-4, 1e-3, 1e-2, 1e-1, 1.0], torch.device("cpu"))
    pred = ridge_outputs(X[:, test], fit.W, fit.b, torch.device("cpu"))[..., 0, 0] > 0
    acc = (pred == y[:, test].bool()).float().mean()
    p1 = y[:, train].float().mean(1, keepdim=True)
    base = torch.where(p1 >= 0.5, y[:, test].float(), 1 - y[:, test].float()).mean()
    return float(acc), float(base)


def _cot_targets(task: Task, batch: TaskBatch, pos: Tensor) -> Tensor:
    """``[unit, n]``: at each inserted position, the chain-of-thought token that position is
    trained to emit in the chain-of-thought version of the sequence (the partial result), as
    0/1; the last inserted position emits the answer."""
    words = [task.vocab.decode(t) for t in batch.tokens]
    out = []
    for w, seq in zip(words, batch.sequences, strict=True):
        start = seq.roles.index(next(r for r in seq.roles if r in INSERTED))
        chain = list(task.cot(w[:start])) + list(task.answer(w[:start]))
        out.append([chain[i + 1] for i in range(len(pos))])
    flat = sorted({c for row in out for c in row})
    if len(flat) > 2:
        raise InterpError(f"the partial results take {len(flat)} values; probes here read "
                          "two-valued results", "use parity, or read them with interp.train_probes")
    return torch.tensor([[flat.index(c) for c in row] for row in out]).T


def _probes(label: str, model, task: Task, batch: TaskBatch) -> list[dict]:
    resid = residuals(model, task, batch)
    answer_pos = int(batch.loss_mask[0].nonzero()[-1])
    answers = batch.targets[:, answer_pos]
    classes = sorted(set(answers.tolist()))
    y_answer = torch.tensor([classes.index(a) for a in answers.tolist()])
    rows = []
    has_inserted = any(r in INSERTED for r in batch.roles[0])
    pos = _inserted(batch) if has_inserted else None
    partial = _cot_targets(task, batch, pos) if has_inserted and task.n_cot else None
    for layer, h in enumerate(resid):
        h = h.double()
        acc, base = _probe_accuracy(h[:, answer_pos][None], y_answer[None])
        rows.append(dict(model=label, layer=layer, where="answer position", target="answer",
                         accuracy=acc, baseline=base))
        if pos is None:
            continue
        X = h[:, pos].transpose(0, 1)  # [unit, n, d_model]
        acc, base = _probe_accuracy(X, y_answer[None].expand(len(pos), -1))
        rows.append(dict(model=label, layer=layer, where="inserted", target="answer",
                         accuracy=acc, baseline=base))
        if partial is not None:
            acc, base = _probe_accuracy(X, partial)
            rows.append(dict(model=label, layer=layer, where="inserted", target="partial",
                             accuracy=acc, baseline=base))
    return rows


def pause_instruments(pause_run: ToyResult, none_run: ToyResult, *, n_examples: int = 512,
                      n_attention: int = 64, n_gradient: int = 16,
                      seed: int = _PROBE_SEED) -> PauseInstruments:
    """Every instrument on the pause-trained model, the no-pause model, and the no-pause model
    with pauses inserted but untrained (see the module docstring).

    Args:
        pause_run: a run trained with pauses or fillers (e.g. ``filler_cot`` of
            :func:`pause_control`); it is evaluated on sequences with fillers (no chain).
        none_run: the same task and model size trained without; its context must hold the
            pause run's sequences (:func:`pause_control` makes it so).
        n_examples: held-out examples for accuracy, patching and probes (probes fit on half,
            choose the penalty on a quarter and score on the last quarter).
        n_attention: examples for the attention-received statistics.
        n_gradient: examples for the gradient decomposition (two backward passes each).
        seed: seeds the held-out examples (disjoint from training's stream).

    Raises:
        InterpError: a pause run without inserted positions, runs of different tasks, or a
            no-pause model whose context cannot hold the pause run's sequences.
    """
    if not pause_run.config.pauses:
        raise InterpError("pause_run was trained without pauses or fillers",
                          "give the run trained with them first, the no-pause run second")
    if none_run.config.pauses:
        raise InterpError(f"none_run was trained with {none_run.config.pauses} pauses",
                          "give the run trained without pauses as none_run")
    if (pause_run.config.task, pause_run.config.task_options) != (
            none_run.config.task, none_run.config.task_options):
        raise InterpError("the two runs are of different tasks "
                          f"({pause_run.config.task} {pause_run.config.task_options} vs "
                          f"{none_run.config.task} {none_run.config.task_options})",
                          "compare runs of one task, e.g. from one pause_control grid")
    paused = pause_run.config.make_task(evaluation=True)
    plain = none_run.config.make_task(evaluation=True)
    pb, nb = paused.batch(n_examples, seed), plain.batch(n_examples, seed)
    n_ctx = int(none_run.model.cfg.n_ctx)
    if pb.tokens.shape[1] > n_ctx:
        raise InterpError(f"the no-pause model's context ({n_ctx}) cannot hold the paused "
                          f"sequences ({pb.tokens.shape[1]} tokens)",
                          "train it with TrainConfig.n_ctx >= that (pause_control does)")
    models = {"pause-trained": (pause_run.model, paused, pb),
              "no pauses": (none_run.model, plain, nb),
              "pauses untrained": (none_run.model, paused, pb)}
    acc, att, share, probes, patch = [], [], [], [], []
    n_layers = int(pause_run.model.cfg.n_layers)
    for label, (model, task, batch) in models.items():
        model.eval()
        ev = evaluate(model, task, batch)
        acc.append(dict(model=label, accuracy=ev["accuracy"],
                        majority_accuracy=ev["majority_accuracy"], n=len(batch)))
        att.append(_attention(label, model, batch, n_attention))
        share.append(_future_share(label, model, batch.sequences[:n_gradient]))
        probes += _probes(label, model, task, batch)
        if task.pauses:
            patch += _patching(label, model, batch, n_layers)
    settings = dict(pause_run=pause_run.config.to_dict(), none_run=none_run.config.to_dict(),
                    n_examples=n_examples, n_attention=n_attention, n_gradient=n_gradient,
                    seed=seed)
    first = ["model"]
    return PauseInstruments(
        accuracy=pd.DataFrame(acc),
        attention=_first(pd.concat(att, ignore_index=True), first),
        future_share=_first(pd.concat(share, ignore_index=True), first),
        probes=pd.DataFrame(probes), patching=pd.DataFrame(patch), settings=settings)


def _first(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[cols + [c for c in df.columns if c not in cols]]


def load_pause_instruments(out: str | os.PathLike) -> PauseInstruments:
    """The :class:`PauseInstruments` saved in ``out``."""
    return PauseInstruments.load(Path(out))
