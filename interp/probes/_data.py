"""Collecting probe examples: activations at selected positions, their targets, and splits.

One *example* is one position i of one sequence whose role is selected. Its features are the
activations at every requested (layer, site[, KV head]) — a *unit* — so that all units can be
stacked into one ``[unit, n, feature]`` tensor per site and trained at once. Its targets are

* ``token``: the token at original index ``a(i) + k`` for each offset k, where ``a(i)`` is the
  original (pause-free) index of position i, or of the last text token before it when i is an
  inserted pause. Only positions with ``a(i) + max(k)`` inside the sequence are kept, so every
  offset is evaluated on the same positions;
* ``hidden``: the ``resid_post`` at the position of original index ``a(i) + k``;
* ``label``/``continuous``: a column of a table with one row per labelled (sequence, position).

Activations are streamed: forward hooks (named by :mod:`interp.core.hooks`) copy only the selected
rows of each batch, and the forward pass stops after the deepest layer needed.

Splits are by *group* (document or prompt): a seeded permutation of the sorted group ids is cut
into train / val / test, so no group (and no sequence) is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ..core import hooks
from ..core.corpora import load_corpus, windows
from ..core.model import Bridge, n_kv_heads
from ..core.pauses import PausedSequence, add_pause_token, insert_pauses, pad_batch
from ..core.sites import hook_name, resolve_layer
from ..errors import InterpError
from ._spec import ProbeSpec

__all__ = ["ProbeData", "ProbeSequence", "SPLITS", "collect", "load_sequences", "read_label_table", "split_groups"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ProbeSequence:
    """One probed sequence: its tokens and roles, its split group (document or prompt), and,
    for a synthetic-task example, its answer words."""

    group: str
    seq: PausedSequence
    answer: str | None = None


@dataclass
class ProbeData:
    """Examples ready for probing (rows are examples, in sequence order).

    Attributes:
        features: per site, ``[unit, n, feature]`` activations (float32, CPU).
        units: per site, the ``(layer, head)`` of each unit (``head = -1`` for the residual).
        tokens: the token at each example's position (input of the bigram/control baselines).
        targets: ``token``: the target token ids ``[n, offset]``; ``label``: class ids
            ``[n, 1]``; ``None`` for regression targets.
        values: regression targets ``[target layer, n, offset, feature]`` (``hidden``: one per
            target layer; ``continuous``: ``[1, n, 1, 1]``), else ``None``.
        roles: role of each example.
        groups: split group (document / prompt id) of each example.
        window, position: which sequence and position each example is.
        value_layers: for ``hidden`` targets, the layer of each leading entry of ``values``.
        label_names: for ``label`` targets, the label of each class id (sorted label values).
        split: ``"train"``, ``"val"`` or ``"test"`` per example (set by the trainer).
    """

    features: dict[str, Float[Tensor, "unit n feature"]]
    units: dict[str, list[tuple[int, int]]]
    tokens: Int[Tensor, " n"]
    targets: Int[Tensor, "n offset"] | None
    values: Float[Tensor, "target_unit n offset out"] | None
    roles: np.ndarray
    groups: np.ndarray
    window: np.ndarray
    position: np.ndarray
    label_names: list[str] | None = None
    value_layers: list[int] = field(default_factory=list)
    split: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])


def _task_sequences(spec: ProbeSpec, model: Bridge) -> list[ProbeSequence]:
    """``data.n_examples`` examples of the spec's synthetic task, one split group each."""
    if spec.data.task is not None:
        from ..training.tasks import get_task

        opts = dict(spec.data.task)
        task = get_task(opts.pop("name"), **opts)
    else:
        from ..training.toy import load_toy

        task = load_toy(spec.model.toy).task
    if task.d_vocab > model.cfg.d_vocab:
        raise InterpError(
            f"probe spec field data.task: the task has {task.d_vocab} tokens but the model only {model.cfg.d_vocab}",
            "use a model trained on this task (model.toy) or a larger model.tiny.d_vocab",
        )
    out = []
    for i, seq in enumerate(task.examples(spec.data.n_examples, seed=spec.train.seed)):
        answer = [int(t) for t, r in zip(seq.tokens.tolist(), seq.roles, strict=True) if r == "answer"]
        out.append(ProbeSequence(f"prompt{i}", seq, " ".join(task.vocab.decode(answer))))
    return out


def load_sequences(spec: ProbeSpec, model: Bridge) -> list[ProbeSequence]:
    """The sequences a spec probes: synthetic-task examples, or corpus windows (with pauses
    inserted when asked).

    Windows are taken in document order, at most ``data.windows_per_doc`` per document, so that
    many documents (split groups) are covered.
    """
    if spec.uses_task:
        return _task_sequences(spec, model)
    d = spec.data
    docs = load_corpus(d.corpus, field=d.field)
    per_doc = d.windows_per_doc or None
    pid = None
    if d.pauses is not None and d.pauses.filler is None and d.pauses.inserts_anything:
        if not spec.model.add_pause:
            raise InterpError(
                "probe spec field data.pauses inserts <pause> tokens but model.add_pause is false",
                "set model.add_pause = true (or give data.pauses.filler, an existing token id)",
            )
    if spec.model.add_pause:
        pid = add_pause_token(model)
    seqs: list[ProbeSequence] = []
    for doc in docs:
        try:
            got = list(windows(model, [doc], d.n_tokens, max_windows=per_doc))
        except InterpError:
            continue  # a document shorter than one window
        for w in got:
            seq = w.seq if d.pauses is None else insert_pauses(w.seq, d.pauses, pid)
            seqs.append(ProbeSequence(w.doc_id, seq))
            if len(seqs) >= d.max_windows:
                return seqs
    if not seqs:
        raise InterpError(
            f"probe spec field data.n_tokens: no document of {d.corpus!r} is {d.n_tokens} tokens long",
            "use a smaller data.n_tokens or a corpus with longer documents",
        )
    return seqs


def split_groups(groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign every example to a split by its group, never splitting a group.

    The sorted unique groups are permuted with ``seed``; the first ``round(test_fraction · G)``
    (at least one) are test, the next ``round(val_fraction · G)`` (at least one) validation,
    the rest training.
    """
    uniq = np.array(sorted(set(groups.tolist())), dtype=object)
    g = len(uniq)
    n_test = max(1, round(test_fraction * g))
    n_val = max(1, round(val_fraction * g))
    if g - n_test - n_val < 1:
        raise InterpError(
            f"only {g} split group(s) (documents/prompts), too few for train, val and test splits",
            "use more documents (data.max_windows, data.windows_per_doc) or sequences",
        )
    order = np.random.default_rng(seed).permutation(g)
    which = np.empty(g, dtype=object)
    which[order[:n_test]] = "test"
    which[order[n_test:n_test + n_val]] = "val"
    which[order[n_test + n_val:]] = "train"
    lookup = dict(zip(uniq.tolist(), which.tolist(), strict=True))
    return np.array([lookup[x] for x in groups.tolist()], dtype=object)


class _StopForward(Exception):
    """Raised by a hook after the deepest needed layer, so the rest of the model is skipped."""


def _anchors(seq: PausedSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Original index of each position (of the last text token before it, for inserted ones),
    the original tokens, and the position of each original index."""
    orig = seq.original_position.numpy()
    anchor = np.maximum.accumulate(np.where(orig >= 0, orig, -1))
    text_pos = np.flatnonzero(orig >= 0)
    return anchor, seq.tokens.numpy()[text_pos], text_pos


def _select(spec: ProbeSpec, seqs: list[ProbeSequence], table) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sequence, the selected positions and (for offset targets) the target positions
    ``[n_sel, offset]`` in the same sequence."""
    t = spec.target
    out = []
    for w, s in enumerate(seqs):
        roles = np.array(s.seq.roles, dtype=object)
        keep = np.isin(roles, spec.inputs.roles)
        anchor, _, text_pos = _anchors(s.seq)
        if t.kind in ("token", "hidden"):
            keep &= anchor + max(t.offsets) < len(text_pos)
            pos = np.flatnonzero(keep)
            tgt = text_pos[anchor[pos][:, None] + np.array(t.offsets)[None, :]]
        elif t.kind == "answer":
            pos = np.flatnonzero(keep)
            tgt = pos[:, None]
        else:
            rows = table.get(w, np.array([], dtype=np.int64))
            pos = rows[keep[rows]] if len(rows) else rows
            tgt = pos[:, None]
        out.append((pos, tgt))
    return out


def read_label_table(spec: ProbeSpec, n_sequences: int):
    """The label table ``target.table``: a CSV with ``sequence`` (the sequence's running
    number; ``window`` in earlier releases, still read), ``position`` and the label column (and
    ``token``, the token id there), checked for columns, sequence range and duplicates.
    ``token`` is required: without it a table made for other windows of the same count and
    length would be accepted and its labels attached to the wrong tokens."""
    import pandas as pd

    t = spec.target
    path = Path(t.table)
    if not path.is_file():
        raise InterpError(f"probe spec field target.table: {str(path)!r} not found", "give a CSV file")
    df = pd.read_csv(path)
    if "window" in df.columns and "sequence" not in df.columns:
        df = df.rename(columns={"window": "sequence"})
    missing = [c for c in ("sequence", "position", "token", t.column) if c not in df.columns]
    if missing:
        raise InterpError(
            f"probe spec field target.table: {path} has no column(s) {', '.join(missing)}",
            f"it has: {', '.join(map(str, df.columns))}; give sequence, position, token (the "
            "token id there, which checks that the table was made for these sequences) and "
            "target.column",
        )
    bad = (df["sequence"] < 0) | (df["sequence"] >= n_sequences) | (df["position"] < 0)
    if bad.any():
        r = df[bad].iloc[0]
        raise _misaligned(f"row sequence={r['sequence']}, position={r['position']} is outside the {n_sequences} sequences")
    if df.duplicated(["sequence", "position"]).any():
        raise InterpError("probe spec field target.table: a (sequence, position) appears twice", "give one label per position")
    return df.sort_values(["sequence", "position"], kind="stable").reset_index(drop=True)


def _misaligned(detail: str) -> InterpError:
    return InterpError(
        f"probe spec field target.table: the label table does not align with the positions: {detail}",
        "make the table from the same data (same corpus or recording, n_tokens and pauses)",
    )


def _read_table(spec: ProbeSpec, seqs: list[ProbeSequence]):
    """The label table checked against the sequences: ``({sequence: positions}, table)``."""
    df = read_label_table(spec, len(seqs))
    lengths = np.array([len(s.seq) for s in seqs])
    w, p = df["sequence"].to_numpy(), df["position"].to_numpy()
    out = np.flatnonzero(p >= lengths[w])
    if len(out):
        raise _misaligned(f"row sequence={w[out[0]]}, position={p[out[0]]} is past the end of a "
                          f"{lengths[w[out[0]]]}-token sequence")
    actual = np.array([int(seqs[a].seq.tokens[b]) for a, b in zip(w, p, strict=True)])
    wrong = np.flatnonzero(actual != df["token"].to_numpy())
    if len(wrong):
        i = wrong[0]
        raise _misaligned(f"{len(wrong)} row(s) name a token other than the one there (first: sequence="
                          f"{w[i]}, position={p[i]}: table {df['token'].iloc[i]}, data {actual[i]})")
    index = {int(k): g["position"].to_numpy() for k, g in df.groupby("sequence")}
    return index, df


@torch.no_grad()
def collect(spec: ProbeSpec, model: Bridge, seqs: list[ProbeSequence], sites: list[str], layers: list[int],
            *, verbose: bool = False) -> ProbeData:
    """Run the model over ``seqs`` and keep the activations and targets of selected positions.

    Args:
        spec: the probe spec (roles, targets, batch size).
        model: a ``TransformerBridge``.
        seqs: the sequences (from :func:`load_sequences`).
        sites: the input sites to keep (a subset of ``spec.inputs.sites``: finished ones are
            not collected again on resume).
        layers: the layers to keep.
        verbose: show a progress bar.

    Raises:
        InterpError: a role selection that matches no position; a misaligned label table.
    """
    t = spec.target
    table_index, table = _read_table(spec, seqs) if t.kind in ("label", "continuous") else ({}, None)
    sel = _select(spec, seqs, table_index)
    n = sum(len(p) for p, _ in sel)
    if n == 0:
        present = sorted({r for s in seqs for r in s.seq.roles})
        raise InterpError(
            f"probe spec field inputs.roles: the role selection {spec.inputs.roles} matches no position "
            f"with a target (roles present: {', '.join(present)})",
            "select roles that occur in the data, or use smaller target.offsets",
        )
    n_kv = n_kv_heads(model)
    units = {s: [(layer, h) for layer in layers for h in ((-1,) if s.startswith("resid_") else range(n_kv))]
             for s in sites}
    hidden_layers = sorted({resolve_layer(model, t.hidden_layer)} if t.hidden_layer is not None else set(layers)) if t.kind == "hidden" else []
    wanted: dict[str, tuple[str, int]] = {hook_name(s, layer): (s, layer) for s in sites for layer in layers}
    for layer in hidden_layers:
        wanted.setdefault(hooks.resid(layer, "post"), ("_hidden", layer))
    deepest = max(layer for _, layer in wanted.values())
    last_hook = hooks.resid(deepest, "post")

    features = {s: None for s in sites}
    values = None
    offset_of_unit = {s: {u: i for i, u in enumerate(units[s])} for s in sites}
    device = next(model.parameters()).device
    rows = 0
    bs = spec.data.batch_size
    bar = tqdm(range(0, len(seqs), bs), desc="collecting activations", disable=not verbose)
    for b0 in bar:
        batch = seqs[b0:b0 + bs]
        bsel = sel[b0:b0 + bs]
        m = sum(len(p) for p, _ in bsel)
        if m == 0:
            continue
        toks, _, _, _ = pad_batch([s.seq for s in batch])
        b_idx = torch.tensor(np.concatenate([np.full(len(p), i) for i, (p, _) in enumerate(bsel)]))
        p_idx = torch.tensor(np.concatenate([p for p, _ in bsel]))
        tgt_idx = torch.tensor(np.concatenate([tg for _, tg in bsel]))
        cache: dict[str, Tensor] = {}
        # The bridge reports aliases as hook.name, so each hook is told the name it was given.
        fwd = [(name, partial(_grab, cache=cache, name=name, stop=name == last_hook))
               for name in set(wanted) | {last_hook}]
        try:
            model.run_with_hooks(toks.to(device), fwd_hooks=fwd)
        except _StopForward:
            pass
        by_name = cache
        for name, (site, layer) in wanted.items():
            x = by_name[name]
            if site == "_hidden":
                continue
            rows_x = x[b_idx.to(x.device), p_idx.to(x.device)].float().cpu()  # [m, d] or [m, kv, d_head]
            if features[site] is None:
                width = rows_x.shape[-1]
                features[site] = torch.empty(len(units[site]), n, width)
            if site.startswith("resid_"):
                features[site][offset_of_unit[site][(layer, -1)], rows:rows + m] = rows_x
            else:
                for h in range(n_kv):
                    features[site][offset_of_unit[site][(layer, h)], rows:rows + m] = rows_x[:, h]
        if t.kind == "hidden":
            hs = [by_name[hooks.resid(layer, "post")] for layer in hidden_layers]
            stacked = torch.stack([h[b_idx.to(h.device)[:, None], tgt_idx.to(h.device)] for h in hs]).float().cpu()
            if values is None:
                values = torch.empty(len(hidden_layers), n, len(t.offsets), stacked.shape[-1])
            values[:, rows:rows + m] = stacked
        rows += m

    roles = np.concatenate([np.array(s.seq.roles, dtype=object)[p] for s, (p, _) in zip(seqs, sel, strict=True)])
    groups = np.concatenate([np.full(len(p), s.group, dtype=object) for s, (p, _) in zip(seqs, sel, strict=True)])
    window = np.concatenate([np.full(len(p), w) for w, (p, _) in enumerate(sel)])
    position = np.concatenate([p for p, _ in sel])
    tokens = torch.tensor(np.concatenate([s.seq.tokens.numpy()[p] for s, (p, _) in zip(seqs, sel, strict=True)]))
    targets = None
    if t.kind == "token":
        targets = torch.tensor(np.concatenate([s.seq.tokens.numpy()[tg] for s, (_, tg) in zip(seqs, sel, strict=True)]))
    elif t.kind == "answer":
        answers = np.concatenate([np.full(len(p), s.answer, dtype=object) for s, (p, _) in zip(seqs, sel, strict=True)])
        label_names, codes = np.unique(answers.astype(str), return_inverse=True)
        targets = torch.tensor(codes.astype(np.int64))[:, None]
    elif t.kind in ("label", "continuous"):
        key = table.set_index(["sequence", "position"])[t.column]
        col = key.loc[list(zip(window.tolist(), position.tolist(), strict=True))].to_numpy()
        if t.kind == "continuous":
            values = torch.tensor(col.astype(np.float64), dtype=torch.float32)[None, :, None, None]
        else:
            label_names, codes = np.unique(col.astype(str), return_inverse=True)
            targets = torch.tensor(codes.astype(np.int64))[:, None]
    return ProbeData(features=features, units=units, tokens=tokens, targets=targets, values=values,
                     roles=roles, groups=groups, window=window, position=position,
                     label_names=label_names.tolist() if t.kind in ("label", "answer") else None,
                     value_layers=hidden_layers)


def _grab(x: Tensor, hook, *, cache: dict[str, Tensor], name: str, stop: bool) -> None:
    cache[name] = x
    if stop:
        raise _StopForward
