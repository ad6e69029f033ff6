"""Registers and attention sinks: which positions soak up attention or carry global state.

Four measurements, each returning a result with a tidy ``.to_pandas()`` table:

* :func:`registers` — per window, layer and position: the **attention received**
  ``a_l(j) = mean_{h, i > j} A_l[h, i, j]`` (the mean over heads and over the later queries of
  the attention pattern; ``NaN`` at the last position, which no query follows), the
  **residual-stream norm** ``‖h_l(j)‖`` (``resid_post`` of block l) and the **value norm**
  (the mean over KV heads of ``‖v_l(j, g)‖``), with the role of every position; per head, the
  attention received by each role. Under uniform attention query i gives ``1/(i+1)`` to every
  key, so ``uniform(j) = mean_{i > j} 1/(i+1)`` is the no-sink baseline to compare with.
* :func:`massive_activations` — Sun et al. (2024): entries ``h_l(j)[d]`` of the residual stream
  whose magnitude exceeds ``ratio`` times the median magnitude of that layer's activations
  (over all positions and dimensions of the window), where each (position, dimension) first
  appears, and the per-layer top-1/2/3 magnitudes against the median.
* :func:`ablate_massive` — the change in next-token loss when the massive activations are set to
  zero versus to their mean value (at the layer where they first appear), and when the sink
  position's keys and values are set to zero versus to the mean over the other positions (at
  every layer). Zero-ablation damage far above mean-ablation damage marks a bias-like sink:
  the value is constant and needed, not informative.
* :func:`cache_eviction` — StreamingLLM (Xiao et al. 2023): perplexity on a long text when each
  query sees only a recent window of W keys, versus the window plus the first S ("sink")
  tokens, versus full attention.

How eviction is simulated: every query keeps its own absolute (RoPE) position, and the
attention pattern of every layer is restricted to the kept keys and renormalised — exactly the
softmax over the kept keys. This is what a real KV cache does when it stores keys already
rotated and drops the evicted entries without re-rotating the rest: each cached K/V was itself
computed when its position was the newest, under its own window. StreamingLLM additionally
re-numbers the positions inside the cache, which matters only beyond the pretraining context;
:func:`cache_eviction` refuses texts longer than the model's context, so both agree on which
keys are seen and differ only in the sink-to-query RoPE distance (absolute here).

Example:
    >>> docs = interp.load_corpus()
    >>> reg = interp.registers(model, docs, n_tokens=128, max_windows=4)
    >>> reg.by_role()                 # attention received and norms: bos vs regular vs pause
    >>> abl = interp.ablate_massive(model, docs, reg.massive, n_tokens=128, max_windows=4)
    >>> ev = interp.cache_eviction(model, long_tokens, window=64, sinks=(0, 1, 4))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from . import hooks
from ._io import atomic_write_csv, atomic_write_json
from .core import model as core_model
from .core.inputs import as_sequence, as_sequences
from .core.model import Bridge
from .core.result import Figure, check_files
from .core.sites import resolve_layer, resolve_layers
from .errors import InterpError
from .models import check_context
from .pauses import PausedSequence

__all__ = [
    "AblationResult",
    "EvictionResult",
    "MassiveActivations",
    "RegisterResult",
    "ablate_massive",
    "cache_eviction",
    "massive_activations",
    "registers",
    "uniform_attention",
]

REGISTER_COLUMNS = ("sequence", "layer", "position", "role", "token", "attn_received",
                    "resid_norm", "value_norm")
MASSIVE_COLUMNS = ("sequence", "layer", "position", "role", "token", "dim", "value",
                   "ratio_to_median")
LAYER_STAT_COLUMNS = ("sequence", "layer", "median", "top1", "top2", "top3")


# ----------------------------------------------------------------------------- inputs


def _token_strings(model: Bridge, tokens: Sequence[int]) -> list[str]:
    """The decoded string of each token id (the id itself without a tokenizer)."""
    tok = getattr(model, "tokenizer", None)
    decoded = {t: str(t) if tok is None else tok.decode([t]) for t in set(tokens)}
    return [decoded[t] for t in tokens]


def _check_sequence(model: Bridge, seq: PausedSequence) -> None:
    if len(seq) < 2:
        raise InterpError("a sequence of length 1 has no later queries to attend to it",
                          "give sequences of at least 2 tokens")
    check_context(model, len(seq))


# ----------------------------------------------------------------------------- statistics


def uniform_attention(n: int) -> Float[np.ndarray, " pos"]:
    """Attention received under uniform causal attention: ``mean_{i > j} 1/(i+1)``; NaN at j = n-1."""
    inv = 1.0 / np.arange(1, n + 1)
    tail = np.cumsum(inv[::-1])[::-1]  # tail[j] = sum_{i >= j} 1/(i+1)
    later = np.arange(n - 1, -1, -1, dtype=float)  # queries after j
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(later > 0, (tail - inv) / later, np.nan)


def _received(pattern: Float[Tensor, "head_index q_pos k_pos"]) -> Float[Tensor, "head_index k_pos"]:
    """Per head, the mean attention key j receives from the queries after it (NaN for the last)."""
    n = pattern.shape[-1]
    later = torch.arange(n - 1, -1, -1, device=pattern.device, dtype=pattern.dtype)
    return pattern.tril(-1).sum(dim=1) / later  # 0/0 = NaN at the last key


def _massive_mask(
    h: Float[Tensor, "pos d_model"], ratio: float
) -> tuple[Bool[Tensor, "pos d_model"], Float[Tensor, ""]]:
    """Entries whose magnitude exceeds ``ratio`` times the median magnitude of the layer."""
    med = h.abs().median()
    return h.abs() > ratio * med, med


def _current(df: pd.DataFrame) -> pd.DataFrame:
    """A table saved by an earlier release with today's column names (``window`` was the
    input's running number, now ``sequence``; an ablation's ``target`` is now ``component``,
    since ``target`` names a loss position in patching tables)."""
    return df.rename(columns={k: v for k, v in (("window", "sequence"), ("target", "component"))
                              if k in df.columns and v not in df.columns})


@dataclass
class MassiveActivations:
    """Massive activations found in the residual stream (``resid_post``).

    Attributes:
        table: one row per massive entry: sequence, layer, position, role, token, dim, value,
            ratio_to_median.
        layer_stats: per sequence and layer: the median magnitude and the top-1/2/3 magnitudes
            (Sun et al. 2024, Fig. 1).
        ratio: the threshold, as a multiple of the layer median.
    """

    table: pd.DataFrame
    layer_stats: pd.DataFrame
    ratio: float

    FILES: ClassVar[tuple[str, ...]] = ("massive.csv", "massive_layers.csv", "massive.json")
    MADE_BY: ClassVar[str] = "interp registers --out DIR"

    def __post_init__(self) -> None:
        missing = set(MASSIVE_COLUMNS) - set(self.table.columns)
        missing |= set(LAYER_STAT_COLUMNS) - set(self.layer_stats.columns)
        if missing:
            raise InterpError(f"massive-activation tables lack column(s) {sorted(missing)}",
                              "make them with interp.massive_activations() or `interp registers`")

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def dims(self) -> list[int]:
        """The massive dimensions, most frequent first."""
        return [int(d) for d in self.table["dim"].value_counts().index]

    def first_appearance(self) -> pd.DataFrame:
        """For each (position, dim): the first layer where it is massive, its value there,
        the number of windows and layers where it is massive, and its largest magnitude."""
        if self.table.empty:
            return pd.DataFrame(columns=["position", "role", "dim", "first_layer", "value",
                                         "n_windows", "n_layers", "max_abs"])
        t = self.table.assign(abs_value=self.table["value"].abs())
        first = t.sort_values("layer").groupby(["position", "dim"], as_index=False).first()
        agg = t.groupby(["position", "dim"]).agg(
            n_windows=("sequence", "nunique"), n_layers=("layer", "nunique"),
            max_abs=("abs_value", "max")).reset_index()
        out = first.rename(columns={"layer": "first_layer"})[
            ["position", "role", "dim", "first_layer", "value"]].merge(agg, on=["position", "dim"])
        return out.sort_values(["first_layer", "max_abs"], ascending=[True, False],
                               ignore_index=True)

    @property
    def first_layer(self) -> int | None:
        """The earliest layer with any massive activation (``None`` when there is none)."""
        return None if self.table.empty else int(self.table["layer"].min())

    def emergence_layer(self) -> int | None:
        """The layer where the largest massive activation emerges: the first layer at which
        its (position, dim) entry reaches half of its largest magnitude. On SmolLM2 moderate
        spikes appear from layer 1 and the dominant one (about 25,000 at the first token)
        abruptly at layer 11, so this is 11, not :attr:`first_layer`."""
        if self.table.empty:
            return None
        t = self.table.assign(abs_value=self.table["value"].abs())
        top = t.loc[t["abs_value"].idxmax()]
        same = t[(t["position"] == top["position"]) & (t["dim"] == top["dim"])]
        return int(same.loc[same["abs_value"] >= top["abs_value"] / 2, "layer"].min())

    def mean_values(self, layer: int) -> dict[int, float]:
        """Per massive dimension at ``layer``, the mean of its massive entries over windows and
        positions (the mean-ablation value of Sun et al.)."""
        t = self.table[self.table["layer"] == layer]
        return {int(d): float(v) for d, v in t.groupby("dim")["value"].mean().items()}

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(out / "massive.csv", self.table)
        atomic_write_csv(out / "massive_layers.csv", self.layer_stats)
        atomic_write_json(out / "massive.json", dict(ratio=self.ratio))
        return out

    @classmethod
    def load(cls, out: str | Path) -> MassiveActivations:
        out = check_files(cls, out)
        meta = json.loads((out / "massive.json").read_text())
        return cls(_current(pd.read_csv(out / "massive.csv")),
                   _current(pd.read_csv(out / "massive_layers.csv")), ratio=float(meta["ratio"]))

    def figures(self) -> list[Figure]:
        from .figures import registers as f

        return [Figure("massive_by_layer", f.massive_by_layer,
                       "The largest residual activations per layer against the median (Sun et "
                       "al. 2024): a few dimensions jump by orders of magnitude at one layer "
                       "and stay.")]


@dataclass
class RegisterResult:
    """Attention received and norms per window, layer and position (see module docstring).

    Attributes:
        table: sequence (the input's running number), layer, position, role, token,
            token_str, attn_received, resid_norm, value_norm (one row per sequence, layer and
            position).
        heads: layer, head, role, attn_received: per head, the mean attention received by the
            positions of each role.
        massive: the massive activations found in the same forward passes.
        settings: what was run (model, number of windows, ratio...).
    """

    table: pd.DataFrame
    heads: pd.DataFrame
    massive: MassiveActivations
    settings: dict = field(default_factory=dict)

    FILES: ClassVar[tuple[str, ...]] = ("registers.csv", "registers_heads.csv",
                                        *MassiveActivations.FILES)
    MADE_BY: ClassVar[str] = "interp registers --out DIR"

    def __post_init__(self) -> None:
        missing = set(REGISTER_COLUMNS) - set(self.table.columns)
        if missing:
            raise InterpError(f"the register table lacks column(s) {sorted(missing)}",
                              "make it with interp.registers() or `interp registers`")

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def by_position(self, layers: Sequence[int] | None = None) -> pd.DataFrame:
        """Mean over windows (and the given layers, default all) per position and role, with
        the uniform-attention baseline and a token string where all windows agree."""
        t = self.table if layers is None else self.table[self.table["layer"].isin(layers)]
        g = t.groupby(["position", "role"], as_index=False)
        out = g[["attn_received", "resid_norm", "value_norm"]].mean()
        out["n"] = g.size()["size"].to_numpy()
        if "token_str" in t.columns:
            first = g["token_str"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else "(varies)")
            out["token_str"] = first["token_str"].to_numpy()
        n = int(self.table["position"].max()) + 1
        out["uniform"] = uniform_attention(n)[out["position"].to_numpy()]
        return out

    def by_role(self) -> pd.DataFrame:
        """Mean over layers, windows and positions per role: is a pause register-like?

        ``attn_ratio`` is the attention received over the uniform baseline at the same
        positions, so early positions are not favoured merely by having more later queries.
        """
        t = self.table.dropna(subset=["attn_received"])
        n = int(self.table["position"].max()) + 1
        t = t.assign(uniform=uniform_attention(n)[t["position"].to_numpy()])
        g = t.groupby("role")
        out = g[["attn_received", "uniform", "resid_norm", "value_norm"]].mean()
        out["attn_ratio"] = out["attn_received"] / out["uniform"]
        out["n_positions"] = g["position"].size() // max(t["layer"].nunique(), 1)
        return out.reset_index()

    def save(self, out: str | Path) -> Path:
        """Write ``registers.csv``, ``registers_heads.csv``, ``massive*.csv`` and settings."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(out / "registers.csv", self.table)
        atomic_write_csv(out / "registers_heads.csv", self.heads)
        self.massive.save(out)
        atomic_write_json(out / "registers.json", self.settings)
        return out

    def figures(self) -> list[Figure]:
        from .figures import registers as f

        return [
            Figure("attention_received", f.attention_received,
                   "Attention each position receives (mean over heads, later queries, windows "
                   "and layers) against uniform attention: the first token is a sink far above "
                   "it."),
            Figure("norms_by_position", f.norms_by_position,
                   "Residual-stream and value norms at the middle layer: the sink has a huge "
                   "residual norm but a small value vector, so attending to it adds little."),
            Figure("attention_heatmap", f.register_heatmap,
                   "Attention received over layers and positions: in which layers the sink "
                   "forms."),
            Figure("sink_heads", f.sink_heads,
                   "Attention the first (BOS) position receives, per layer and query head: "
                   "which heads park their attention on the sink."),
        ]

    @classmethod
    def load(cls, out: str | Path) -> RegisterResult:
        """Read what :meth:`save` wrote (no model needed; a missing ``registers_heads.csv``
        or ``registers.json``, from older releases, reads as empty)."""
        out = Path(out)
        if not (out / "registers.csv").is_file():
            raise InterpError(f"{out} has no registers.csv", f"give the --out folder of `{cls.MADE_BY}`")
        settings_path = out / "registers.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        heads_path = out / "registers_heads.csv"
        heads = pd.read_csv(heads_path) if heads_path.is_file() else pd.DataFrame(
            columns=["layer", "head", "role", "attn_received"])
        return cls(_current(pd.read_csv(out / "registers.csv", keep_default_na=False,
                                        na_values=[""])),
                   _current(heads), MassiveActivations.load(out), settings)


def _value_norm(v: Float[Tensor, "pos kv_head d_head"]) -> Float[Tensor, " pos"]:
    return v.norm(dim=-1).mean(-1)


def _keeper(store: dict, key: tuple[str, int], reduce):
    """A forward hook that stores ``reduce(x[0])`` (batch of one) and leaves ``x`` unchanged."""
    def hook(x, hook):
        store[key] = reduce(x[0].detach())
    return hook


def _scan(model: Bridge, seqs: list[PausedSequence], layers: list[int], ratio: float,
          want_attention: bool, verbose: bool) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """One forward pass per sequence, reducing every hooked tensor in its hook (bounded memory)."""
    rows, head_rows, massive_rows, stat_rows = [], [], [], []
    dev = core_model.device(model)
    for w, seq in enumerate(tqdm(seqs, desc="registers", disable=not verbose)):
        _check_sequence(model, seq)
        n = len(seq)
        got: dict[tuple[str, int], Tensor] = {}
        fwd = []
        for layer in layers:
            fwd.append((hooks.resid(layer, "post"), _keeper(got, ("resid", layer), torch.clone)))
            if want_attention:
                fwd.append((hooks.pattern(layer), _keeper(got, ("received", layer), _received)))
                fwd.append((hooks.v(layer), _keeper(got, ("value", layer), _value_norm)))
        with torch.no_grad():
            model.run_with_hooks(seq.tokens[None].to(dev), fwd_hooks=fwd)
        toks = seq.tokens.tolist()
        for layer in layers:
            h = got[("resid", layer)]
            mask, med = _massive_mask(h, ratio)
            top = h.abs().flatten().topk(min(3, h.numel())).values.tolist() + [np.nan] * 2
            stat_rows.append(dict(sequence=w, layer=layer, median=float(med), top1=top[0],
                                  top2=top[1], top3=top[2]))
            for p, d in mask.nonzero().tolist():
                massive_rows.append(dict(sequence=w, layer=layer, position=p, role=seq.roles[p],
                                         token=toks[p], dim=d, value=float(h[p, d]),
                                         ratio_to_median=float(h[p, d].abs() / med)))
            if not want_attention:
                continue
            recv = got[("received", layer)]  # [head, pos]
            attn = recv.mean(0).tolist()
            rnorm = h.norm(dim=-1).tolist()
            vnorm = got[("value", layer)].tolist()
            for p in range(n):
                rows.append(dict(sequence=w, layer=layer, position=p, role=seq.roles[p],
                                 token=toks[p], attn_received=attn[p], resid_norm=rnorm[p],
                                 value_norm=vnorm[p]))
            roles = np.array(seq.roles)
            rec = recv.cpu().numpy()
            for role in dict.fromkeys(seq.roles):
                cols = np.nonzero(roles == role)[0]
                cols = cols[cols < n - 1]  # the last position has no later query
                if len(cols):
                    for head, value in enumerate(rec[:, cols].mean(1)):
                        head_rows.append(dict(sequence=w, layer=layer, head=head, role=role,
                                              attn_received=float(value)))
    return rows, head_rows, massive_rows, stat_rows


def _massive_from_rows(massive_rows, stat_rows, ratio) -> MassiveActivations:
    table = pd.DataFrame(massive_rows, columns=list(MASSIVE_COLUMNS))
    return MassiveActivations(table, pd.DataFrame(stat_rows, columns=list(LAYER_STAT_COLUMNS)),
                              ratio=ratio)


def registers(
    model: Bridge,
    inputs,
    *,
    layers: Sequence[int] | None = None,
    ratio: float = 100.0,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> RegisterResult:
    """Attention received, residual and value norms per layer and position, and massive
    activations, from one forward pass per sequence.

    Args:
        model: a ``TransformerBridge``.
        inputs: anything :func:`interp.core.inputs.as_sequences` reads: texts, token ids,
            :class:`~interp.PausedSequence` s (roles are kept, so pauses show as ``pause``),
            corpus documents or windows. Sequences may differ in length.
        layers: layers to analyse (default all).
        ratio: a residual entry is massive when ``|h| > ratio * median|h|`` of its layer.
        n_tokens: window length when ``inputs`` are corpus documents.
        max_windows: at most this many windows of corpus documents.
        verbose: show a progress bar.

    Returns:
        A :class:`RegisterResult`; its ``massive`` field holds the :class:`MassiveActivations`.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    if ratio <= 1:
        raise InterpError(f"ratio={ratio} would flag ordinary activations", "use ratio > 1 (e.g. 100)")
    layer_list = list(resolve_layers(model, layers))
    rows, head_rows, massive_rows, stat_rows = _scan(model, seqs, layer_list, ratio, True, verbose)
    table = pd.DataFrame(rows, columns=list(REGISTER_COLUMNS))
    table.insert(5, "token_str", _token_strings(model, table["token"].tolist()))
    heads = (pd.DataFrame(head_rows).groupby(["layer", "head", "role"], as_index=False)
             ["attn_received"].mean())
    settings = dict(n_sequences=len(seqs), lengths=[len(s) for s in seqs],
                    layers=layer_list, ratio=ratio, model=str(model.cfg.model_name))
    return RegisterResult(table, heads, _massive_from_rows(massive_rows, stat_rows, ratio),
                          settings)


def massive_activations(
    model: Bridge,
    inputs,
    *,
    ratio: float = 100.0,
    layers: Sequence[int] | None = None,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> MassiveActivations:
    """Find massive activations (Sun et al. 2024) in the residual stream.

    An entry ``h_l(j)[d]`` of ``resid_post`` at layer l is massive when
    ``|h_l(j)[d]| > ratio * median_{j', d'} |h_l(j')[d']|`` (median over the whole window at that
    layer). Sun et al. use a ratio of about 1000 together with an absolute floor of 100 on 7B
    models; smaller models have smaller spikes, hence the default of 100.

    Args:
        model: a ``TransformerBridge``.
        inputs: texts, token ids, sequences, corpus documents or windows, as for
            :func:`registers` (``n_tokens`` and ``max_windows`` cut documents into windows).
        ratio: the threshold as a multiple of the layer median.
        layers: layers to scan (default all).
        verbose: show a progress bar.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    _, _, massive_rows, stat_rows = _scan(model, seqs, list(resolve_layers(model, layers)), ratio, False,
                                         verbose)
    return _massive_from_rows(massive_rows, stat_rows, ratio)


# ----------------------------------------------------------------------------- ablations


def _upcast(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """Half-precision logits to float32 for the loss; float32/float64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _loss(model: Bridge, seq: PausedSequence, fwd_hooks: list) -> tuple[float, int]:
    """Summed next-token loss over the loss mask, and the number of targets."""
    dev = core_model.device(model)
    with torch.no_grad():
        logits = model.run_with_hooks(seq.tokens[None].to(dev), fwd_hooks=fwd_hooks)[0]
    mask = seq.loss_mask[:-1].to(dev)
    nll = F.cross_entropy(_upcast(logits[:-1]), seq.tokens[1:].to(dev), reduction="none")
    return float(nll[mask].sum()), int(mask.sum())


@dataclass
class AblationResult:
    """Change in next-token loss under zero- and mean-ablation (Sun et al. 2024).

    Attributes:
        table: component (``massive`` or ``sink_kv``: what is ablated), method (``none``,
            ``zero``, ``mean``), loss (mean next-token cross-entropy over the loss mask),
            delta_loss (vs ``none``), perplexity, n_targets, and a description of what was
            ablated (``ablated``).
    """

    table: pd.DataFrame

    FILES: ClassVar[tuple[str, ...]] = ("ablations.csv",)
    MADE_BY: ClassVar[str] = "interp registers --out DIR (without --no-ablate)"

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def delta(self, component: str, method: str) -> float:
        """The loss change when ``component`` (``massive`` or ``sink_kv``) is ablated by
        ``method`` (``zero`` or ``mean``); NaN when that condition was not run."""
        row = self.table[(self.table["component"] == component) & (self.table["method"] == method)]
        return float(row["delta_loss"].iloc[0]) if len(row) else float("nan")

    def save(self, out: str | Path) -> Path:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_csv(Path(out) / "ablations.csv", self.table)
        return Path(out)

    @classmethod
    def load(cls, out: str | Path) -> AblationResult:
        return cls(_current(pd.read_csv(check_files(cls, out) / "ablations.csv")))

    def figures(self) -> list[Figure]:
        from .figures import registers as f

        return [Figure("ablation_bars", f.ablation_bars,
                       "Loss increase when the massive activations or the sink's K/V are zeroed "
                       "versus set to their mean: zero ≫ mean marks a constant, bias-like role.")]


def ablate_massive(
    model: Bridge,
    inputs,
    massive: MassiveActivations | None = None,
    *,
    layer: int | None = None,
    ratio: float = 100.0,
    sink_position: int = 0,
    n_tokens: int = 128,
    max_windows: int | None = None,
    verbose: bool = True,
) -> AblationResult:
    """Zero- versus mean-ablation of the massive activations and of the sink position's K/V.

    * ``massive``: in ``resid_post`` of ``layer`` (default: where the largest massive
      activation emerges, :meth:`MassiveActivations.emergence_layer`), every entry of a massive
      dimension that is massive in the sequence at hand (``|h| > ratio * median``) is set to 0
      (``zero``) or to that dimension's mean over the massive entries found at that layer
      (``mean``; Sun et al. 2024). The layers after it recompute everything downstream.
    * ``sink_kv``: at every layer, the key and value of ``sink_position`` (before RoPE, which is
      the identity at position 0) are set to 0 (``zero``) or to their mean over the sequence's
      other positions (``mean``). A mean over sequences at the same position would change
      nothing: position 0 always holds BOS, so its K/V are the same in every sequence.

    A mean-ablation of the BOS entries is, for the same reason, close to a no-op: that is the
    point of the comparison (a constant, bias-like activation), not a flaw of it.

    The loss is the mean next-token cross-entropy over the loss masks of all sequences.

    Args:
        model: a ``TransformerBridge``.
        inputs: texts, token ids, sequences, corpus documents or windows, as for
            :func:`registers` (``n_tokens`` and ``max_windows`` cut documents into windows).
        massive: massive activations found on these (or similar) inputs; found here if ``None``.
        layer: where to ablate the massive activations (see above).
        ratio: threshold for massive entries when ``massive`` is ``None``.
        sink_position: the sink whose K/V are ablated.
        verbose: show a progress bar.
    """
    seqs = as_sequences(model, inputs, n_tokens=n_tokens, max_windows=max_windows)
    if massive is None:
        massive = massive_activations(model, seqs, ratio=ratio, verbose=verbose)
    if any(len(s) <= sink_position + 1 for s in seqs):
        raise InterpError(f"sink_position={sink_position} leaves no later target in some sequence",
                          "use longer sequences or a smaller sink_position")
    layer = massive.emergence_layer() if layer is None else resolve_layer(model, layer)
    means = massive.mean_values(layer) if layer is not None else {}
    conditions: list[tuple[str, str, str]] = [("none", "none", "no ablation")]
    if means:
        desc = f"massive entries of dims {sorted(means)[:8]} at layer {layer} (resid_post)"
        conditions += [("massive", "zero", desc), ("massive", "mean", desc)]
    kv_desc = f"K and V at position {sink_position}, all layers"
    conditions += [("sink_kv", "zero", kv_desc), ("sink_kv", "mean", kv_desc)]
    dims = torch.tensor(sorted(means), dtype=torch.long)
    mean_row = torch.tensor([means[d] for d in sorted(means)])

    def massive_hook(method: str):
        def hook(x, hook):
            h = x[0]
            mask, _ = _massive_mask(h, massive.ratio)
            sel = torch.zeros_like(mask)
            sel[:, dims] = mask[:, dims]
            fill = torch.zeros_like(h)
            if method == "mean":
                fill[:, dims] = mean_row.to(h)
            return torch.where(sel, fill, h)[None]
        return hook

    def kv_hook(method: str):
        def hook(x, hook):
            x = x.clone()
            others = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
            others[sink_position] = False
            x[:, sink_position] = 0 if method == "zero" else x[:, others].mean(1)
            return x
        return hook

    rows = []
    bar = tqdm(total=len(conditions) * len(seqs), desc="ablations", disable=not verbose)
    for target, method, desc in conditions:
        if target == "massive":
            fwd = [(hooks.resid(layer, "post"), massive_hook(method))]
        elif target == "sink_kv":
            fwd = [(name(k), kv_hook(method)) for k in range(model.cfg.n_layers)
                   for name in (hooks.k, hooks.v)]
        else:
            fwd = []
        loss, count = 0.0, 0
        for seq in seqs:
            s, c = _loss(model, seq, fwd)
            loss, count = loss + s, count + c
            bar.update()
        rows.append(dict(component=target, method=method, loss=loss / max(count, 1),
                         n_targets=count, ablated=desc))
    bar.close()
    table = pd.DataFrame(rows)
    table["delta_loss"] = table["loss"] - table.loc[table["method"] == "none", "loss"].iloc[0]
    table["perplexity"] = np.exp(table["loss"])
    return AblationResult(table[["component", "method", "loss", "delta_loss", "perplexity",
                                 "n_targets", "ablated"]])


# ----------------------------------------------------------------------------- eviction


def eviction_mask(n: int, window: int, n_sinks: int, device=None) -> Bool[Tensor, "q_pos k_pos"]:
    """Keys each query keeps: the ``window`` most recent (itself included) and the first
    ``n_sinks``; ``window >= n`` gives full causal attention."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    return (j <= i) & ((i - j < window) | (j < n_sinks))


@dataclass
class EvictionResult:
    """Perplexity with the first tokens evicted from the KV cache or kept (StreamingLLM).

    Attributes:
        table: condition (``full``, ``window``, ``sinks+window``), n_sinks, window, nll (mean
            over the scored positions), perplexity, n_scored.
        per_position: position, condition, n_sinks, nll: the loss of every scored position.
        settings: n_tokens, window, the first scored position, and how eviction was simulated.
    """

    table: pd.DataFrame
    per_position: pd.DataFrame
    settings: dict = field(default_factory=dict)

    FILES: ClassVar[tuple[str, ...]] = ("eviction.csv", "eviction_positions.csv")
    MADE_BY: ClassVar[str] = "interp registers --eviction-window W --out DIR"

    def to_pandas(self) -> pd.DataFrame:
        return self.table.copy()

    def perplexity(self, n_sinks: int | None) -> float:
        """Perplexity with ``n_sinks`` sink tokens kept; ``None`` for full attention."""
        t = self.table
        row = t[t["condition"] == "full"] if n_sinks is None else t[
            (t["condition"] != "full") & (t["n_sinks"] == n_sinks)]
        return float(row["perplexity"].iloc[0])

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(out / "eviction.csv", self.table)
        atomic_write_csv(out / "eviction_positions.csv", self.per_position)
        atomic_write_json(out / "eviction.json", self.settings)
        return out

    def figures(self) -> list[Figure]:
        from .figures import registers as f

        return [Figure("eviction_perplexity", f.eviction_perplexity,
                       "Perplexity with a sliding KV window: evicting the first tokens blows it "
                       "up; keeping them as sinks (StreamingLLM) recovers most of full "
                       "attention.")]

    @classmethod
    def load(cls, out: str | Path) -> EvictionResult:
        out = check_files(cls, out)
        settings_path = out / "eviction.json"
        return cls(pd.read_csv(out / "eviction.csv"), pd.read_csv(out / "eviction_positions.csv"),
                   json.loads(settings_path.read_text()) if settings_path.is_file() else {})


def cache_eviction(
    model: Bridge,
    tokens: Int[Tensor, " pos"] | PausedSequence | str,
    *,
    window: int = 64,
    sinks: Sequence[int] = (0, 1, 4),
    verbose: bool = True,
) -> EvictionResult:
    """Perplexity on a long text with a sliding KV window, with and without sink tokens.

    For each ``S`` in ``sinks`` every query at position i attends to the keys in
    ``(i - window, i]`` plus the first ``S`` positions (``S = 0``: window only, i.e. the first
    tokens evicted); ``full`` is ordinary causal attention. Each layer's attention pattern is
    restricted to the kept keys and renormalised (see the module docstring for why this equals
    a real KV cache with evicted entries). Only positions ``i >= max(sinks) + window`` are
    scored, where eviction has happened under every condition, so all conditions are compared
    on the same targets.

    Args:
        model: a ``TransformerBridge``.
        tokens: the text, or its token ids (BOS first, if the model expects one), or its
            :class:`~interp.PausedSequence`.
        window: recent keys kept per query (the query's own key included).
        sinks: numbers of initial tokens kept; include 0 for the evicted condition.
        verbose: show a progress bar.

    Raises:
        InterpError: a text not longer than ``max(sinks) + window`` (nothing would be evicted),
            a text longer than the model's context, or a window below 1.
    """
    seq = as_sequence(model, tokens, what="the text to evict from")
    n = len(seq)
    sinks = sorted(set(int(s) for s in sinks))
    if window < 1 or (sinks and sinks[0] < 0):
        raise InterpError(f"window={window}, sinks={sinks}", "use window >= 1 and sinks >= 0")
    start = (sinks[-1] if sinks else 0) + window
    if n <= start + 1:
        raise InterpError(
            f"the text has {n} tokens, not more than the eviction window plus sinks "
            f"({window} + {start - window}), so no token would be evicted",
            f"give a text longer than {start + 1} tokens (e.g. --eviction-tokens 1024 from a "
            f"corpus) or a smaller window (now {window})",
        )
    check_context(model, n)
    dev = core_model.device(model)
    ids = seq.tokens.to(dev)
    scored = torch.arange(start, n - 1, device=dev)
    scored = scored[seq.loss_mask[start:n - 1].to(dev)]

    def restrict(keep: Bool[Tensor, "q_pos k_pos"]):
        def hook(pattern, hook):
            p = pattern * keep
            return p / p.sum(-1, keepdim=True)
        return hook

    conditions = [("full", None)] + [("window" if s == 0 else "sinks+window", s) for s in sinks]
    rows, pos_rows = [], []
    for name, s in tqdm(conditions, desc="eviction", disable=not verbose):
        fwd = []
        if s is not None:
            keep = eviction_mask(n, window, s, device=dev)
            fwd = [(hooks.pattern(layer), restrict(keep)) for layer in range(model.cfg.n_layers)]
        with torch.no_grad():
            logits = model.run_with_hooks(ids[None], fwd_hooks=fwd)[0]
        nll = F.cross_entropy(_upcast(logits[scored]), ids[scored + 1], reduction="none")
        mean = float(nll.mean())
        rows.append(dict(condition=name, n_sinks=-1 if s is None else s, window=window,
                         nll=mean, perplexity=float(np.exp(mean)), n_scored=int(len(scored))))
        pos_rows += [dict(position=int(p), condition=name, n_sinks=-1 if s is None else s,
                          nll=float(v)) for p, v in zip(scored.tolist(), nll.tolist(), strict=True)]
    settings = dict(n_tokens=n, window=window, sinks=sinks, first_scored=start,
                    method="attention restricted to kept keys and renormalised; absolute RoPE "
                    "positions kept (a KV cache of pre-rotated keys with entries evicted)")
    return EvictionResult(pd.DataFrame(rows), pd.DataFrame(pos_rows), settings)
