"""Is what the Future Lens reads *used*? Two interventions on a real model, each with a null
control of the same kind, by layer, beside the lens readout.

The Future Lens (:func:`interp.probes.future_lens`) reads token t + k from the residual
stream h_t^l after block l. A readout is correlational: the information may be there without
the model ever using it (recent work finds exactly that in small models). Two causal tests:

**Transplant** (Pal et al. 2023, whose transplant this adapts to a same-position swap). Three
windows from three different documents: a *source* A, a *target* B and a *null donor* C. The
target and the null donor keep their own tokens before t and take the source's tokens from t
on, so all three share tokens t .. t + K − 1 (K the largest offset) and differ only in their
earlier context::

    source  a_0 … a_{t-1}  a_t a_{t+1}        target  b_0 … b_{t-1}  a_t a_{t+1}
    null    c_0 … c_{t-1}  a_t a_{t+1}

The residual stream after block l at position t of the target is replaced by the source's
(or, for the null, by the null donor's), and the model's prediction at t + k − 1 (of token
t + k) is read. Among the rows where the target's own top-1 there differs from the source's
(``movable``), **follow** = the patched top-1 equals the source's top-1. The null donor's state
carries the same token t but a random other context, so its follow rate is the base rate of
landing on the source's token by any disturbance at t; the **causal effect** is the paired
difference, follow(source) − follow(null) ± its standard error. ``dlogp`` is the change of the
log-probability of the source's top-1 token, over all rows. Offset 1 (the prediction at t
itself) is the positive control: after the last block the patched logits at t *are* the
source's, exactly; offset 2 there is the known null: no later block reads position t, so the
prediction at t + 1 cannot move.

**Steering** along the lens direction. For layer l and offset k the direction that the lens
says raises token y at t + k is the gradient, at the source's own state, of the lens's
log-probability of y: d = ∇_h log softmax(unembed(ln_final(h W_k + b_k)))_y, with y the true
token t + k. The source's h_t^l is moved by ε·‖h_t^l‖ along d/‖d‖ and the model's change of
log p(y) at t + k − 1 is measured, against moves of the same norm along random directions
(``n_random`` Gaussian draws per row, averaged); the effect is the paired difference ± its
standard error.

**Speed.** Every intervention changes positions ≥ t only, so the context before t is run once
per window and its keys and values reused (the model's own KV cache); each intervention then
runs K positions. The cached step is checked against the full forward on every batch (clean
logits at t .. t + K − 1); a model without a cache (native TransformerLens models) or a
mismatch falls back to full forwards, recorded in ``settings["kv_cache"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._types import Float, Int, Tensor
from ..core import hooks
from ..core.corpora import Document, Window, load_corpus, windows
from ..core.model import Bridge
from ..core.result import Figure, SavedResult
from ..core.sites import resolve_layers
from ..errors import InterpError
from ..probes import FutureLensResults, FutureLensSpec, future_lens
from ..probes._data import ProbeSequence
from ..probes._future_lens import decoder

__all__ = ["FutureLensCausal", "TargetRun", "default_layers", "future_lens_causal",
           "lens_directions", "load_future_lens_causal"]

_SEED = 5_000_011


def default_layers(n_layers: int, count: int = 8) -> list[int]:
    """About ``count`` layers evenly spaced from the first to the last."""
    return sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, min(count, n_layers))})


class TargetRun:
    """One batch of windows, run clean once, then re-run from position t under interventions.

    The clean forward keeps the logits at t .. t + K − 1, the residual stream after each of
    ``layers`` at t, and (where the model has one) the KV cache of the positions before t.
    :meth:`run` applies hooks to the positions t .. t + K − 1 only: with the cache it feeds
    just those K tokens; without, the whole window.

    Args:
        model: the bridge.
        tokens: ``[batch, t + K]`` windows.
        t: the intervened position.
        layers: layers whose ``resid_post`` at t is kept.
    """

    def __init__(self, model: Bridge, tokens: Int[Tensor, "batch pos"], t: int, layers: Sequence[int]):
        self.model, self.t = model, t
        self.K = tokens.shape[1] - t
        self.tokens = tokens.to(next(model.parameters()).device)
        states: dict[int, Tensor] = {}

        def keep(layer: int):
            def fn(x: Tensor, hook) -> Tensor:
                states[layer] = x[:, t].detach().clone()
                return x
            return fn

        fwd = [(hooks.resid(layer, "post"), keep(layer)) for layer in layers]
        with torch.no_grad(), model.hooks(fwd_hooks=fwd + [self._narrow()]):
            out = model(self.tokens, return_type="logits_and_cache")
        self.logits: Float[Tensor, "batch offset vocab"] = out[0].detach()
        self.states = states
        self.cache = out[1]
        if self.cache is not None:
            self.cache.crop(-self.K)
            step = self.run([])
            if self._agrees(step):
                # interventions are compared with the clean run of the same path, so that
                # the cached and full paths' rounding (float32: ~1e-6) is not an effect
                self.logits = step
            else:
                self.cache = None  # the cached step is not the model's own: full forwards

    def _narrow(self):
        """Unembed only the last K positions (the rest is never read)."""
        K = self.K
        return (hooks.UNEMBED_IN, lambda x, hook: x[:, -K:])

    def _agrees(self, logits: Tensor) -> bool:
        scale = float(self.logits.abs().max()) + 1.0
        return bool((logits - self.logits).abs().max() <= 1e-4 * scale)

    @property
    def at_t(self) -> int:
        """The index of position t in the tensors the hooks of :meth:`run` see."""
        return 0 if self.cache is not None else self.t

    def run(self, fwd_hooks: list[tuple[str, Callable]]) -> Float[Tensor, "batch offset vocab"]:
        """Logits at t .. t + K − 1 with ``fwd_hooks`` (position t at index :attr:`at_t`)."""
        with torch.no_grad(), self.model.hooks(fwd_hooks=list(fwd_hooks) + [self._narrow()]):
            if self.cache is None:
                return self.model(self.tokens)
            logits = self.model(self.tokens[:, self.t:], past_key_values=self.cache)
            self.cache.crop(-self.K)
            return logits

    def replaced(self, layer: int, state: Float[Tensor, "batch d_model"]) -> Tensor:
        """Logits with the residual stream after block ``layer`` at t replaced by ``state``."""
        i = self.at_t

        def put(x: Tensor, hook) -> Tensor:
            x = x.clone()
            x[:, i] = state.to(x.dtype)
            return x

        return self.run([(hooks.resid(layer, "post"), put)])

    def moved(self, layer: int, move: Float[Tensor, "batch d_model"]) -> Tensor:
        """Logits with ``move`` added to the residual stream after block ``layer`` at t."""
        i = self.at_t

        def add(x: Tensor, hook) -> Tensor:
            x = x.clone()
            x[:, i] = x[:, i] + move.to(x.dtype)
            return x

        return self.run([(hooks.resid(layer, "post"), add)])


def lens_directions(model: Bridge, W: Float[Tensor, "d_model d_model"], b: Float[Tensor, " d_model"],
                    h: Float[Tensor, "batch d_model"], y: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_model"]:
    """Per row, the unit direction in which the lens's log-probability of ``y`` rises fastest
    at ``h``: ∇_h log softmax(unembed(ln_final(h W + b)))_y, normalised (zero stays zero)."""
    dec = decoder(model)
    with torch.enable_grad():
        x = h.detach().clone().requires_grad_(True)
        lp = _logp(dec(x @ W.to(x) + b.to(x)))
        (g,) = torch.autograd.grad(lp.gather(1, y[:, None].to(lp.device)).sum(), [x])
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)


@dataclass
class FutureLensCausal(SavedResult):
    """The causal test of the Future Lens (module docstring).

    Attributes:
        summary: one row per (``layer``, ``offset``): the lens readout on held-out documents
            (``lens_accuracy`` true token top-1, ``lens_agreement`` with the model's own top-1,
            ``bigram_accuracy``, ``trigram_accuracy``), the transplant (``n_movable``,
            ``follow_source``, ``follow_null``, ``follow_effect`` ± ``follow_effect_se``,
            ``dlogp_source``, ``dlogp_null``) and steering (``steer_lens``, ``steer_random``
            mean Δ log p(y), ``steer_effect`` ± ``steer_effect_se``, ``steer_random_abs``
            the mean |Δ| of a random move: its typical size).
        rows: per (row, layer, offset): ``movable``, ``follow_source``, ``follow_null``,
            ``dlogp_source``, ``dlogp_null``, ``steer_lens``, ``steer_random`` (the mean over
            the draws) and ``steer_random_abs`` (the mean |Δ| over the draws).
        contexts: per row, the documents and the token ids (space-separated) of the source,
            target and null windows.
        settings: position, offsets, layers, epsilon, draws, seed, lens metadata, kv_cache.
    """

    summary: pd.DataFrame
    rows: pd.DataFrame
    contexts: pd.DataFrame
    settings: dict

    MADE_BY: ClassVar[str] = "interp controls futurelens --out DIR"
    SAVED: ClassVar[dict] = {"summary": "future_lens_causal.csv",
                             "rows": "future_lens_causal_rows.csv",
                             "contexts": "future_lens_causal_contexts.csv",
                             "settings": "future_lens_causal_settings.json"}

    def figures(self) -> list[Figure]:
        from ..figures import controls as f

        return [Figure("future_lens_causal", f.future_lens_causal,
                       "Future Lens, read and used: by layer, the lens's top-1 accuracy on the "
                       "token at t + k, how often transplanting h_t^l makes the prediction "
                       "follow the source's (minus a null donor's), and the change of log p(y) "
                       "when steering along the lens direction (minus a random direction of "
                       "the same norm); offset 1 is the positive control.")]


def load_future_lens_causal(out: str | os.PathLike) -> FutureLensCausal:
    """The :class:`FutureLensCausal` saved in ``out``."""
    return FutureLensCausal.load(Path(out))


def _logp(logits: Tensor) -> Tensor:
    """Log-probabilities in float64 (the differences measured are small beside the logits)."""
    return torch.log_softmax(logits.double(), -1)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _split_windows(model: Bridge, docs, test_fraction: float, lens_tokens: int, row_tokens: int,
                   seed: int) -> tuple[list[Window], list[Window]]:
    """The lens's windows and the causal rows' windows, from disjoint documents (a seeded
    ``test_fraction`` of them, at least 3, for the rows). ``docs``: documents (cut here into
    windows of ``lens_tokens`` and of ``row_tokens``) or windows already cut (used as they are
    for the lens, their first ``row_tokens`` tokens for the rows)."""
    docs = list(load_corpus() if docs is None else docs)
    given = bool(docs) and all(isinstance(d, Window) for d in docs)
    ids = list(dict.fromkeys(d.doc_id if given else d.id for d in docs))
    rng = np.random.default_rng(seed)
    test = {ids[int(i)] for i in rng.permutation(len(ids))[:max(3, int(round(test_fraction * len(ids))))]}
    if given:
        lens_ws = [w for w in docs if w.doc_id not in test]
        test_ws = [w for w in docs if w.doc_id in test and len(w.seq) >= row_tokens]
    else:
        lens_ws = [w for d in docs if d.id not in test for w in _safe_windows(model, d, lens_tokens, 8)]
        test_ws = [w for d in docs if d.id in test for w in _safe_windows(model, d, row_tokens, 16)]
    return lens_ws, test_ws


def _sample_rows(ws: list[Window], n_tokens: int, n_rows: int, seed: int) -> tuple[list, list, list]:
    """Source, target and null windows: each source window once, target and null windows
    drawn from two other documents."""
    by_doc: dict[str, list] = {}
    for w in ws:
        by_doc.setdefault(w.doc_id, []).append(w)
    if len(by_doc) < 3:
        raise InterpError(f"the causal test needs windows of {n_tokens} tokens from at least 3 "
                          f"documents; the test documents give {len(by_doc)}",
                          "use a larger corpus, a smaller position, or a larger test_fraction")
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(ws))[:n_rows]
    ids = list(by_doc)
    src, tgt, null = [], [], []
    for i in order:
        a = ws[int(i)]
        others = [d for d in ids if d != a.doc_id]
        db, dc = rng.choice(len(others), 2, replace=False)
        pick = [by_doc[others[int(j)]] for j in (db, dc)]
        src.append(a)
        tgt.append(pick[0][int(rng.integers(len(pick[0])))])
        null.append(pick[1][int(rng.integers(len(pick[1])))])
    return src, tgt, null


def future_lens_causal(
    model: Bridge,
    docs: Sequence[Document] | Sequence[Window] | None = None,
    *,
    layers: Sequence[int] | str | None = None,
    offsets: Sequence[int] = (1, 2),
    position: int = 30,
    n_rows: int = 192,
    epsilon: float = 0.25,
    n_random: int = 3,
    test_fraction: float = 0.3,
    lens_tokens: int = 128,
    lens_windows: int = 240,
    lens_positions: int = 1000,
    lens: FutureLensResults | None = None,
    batch_size: int = 32,
    seed: int = _SEED,
    verbose: bool = False,
) -> FutureLensCausal:
    """Fit the Future Lens and test causally whether the model uses what it reads.

    The documents are split: ``test_fraction`` of them give the causal rows, the rest the
    lens (:func:`interp.probes.future_lens`, with its own held-out documents for the readout),
    so no causal row was seen by the lens.

    Args:
        model: a bridge with an unembedding.
        docs: the corpus (default the bundled one), or windows already cut from it (each
            with its document id; at least ``position + max(offsets) + 1`` tokens for a row).
        layers: layers tested (``"all"``, indices, or default 8 from first to last).
        offsets: k ≥ 1; the prediction at t + k − 1 is read (1: the positive control).
        position: the intervened position t (windows hold t + max(offsets) + 1 tokens).
        n_rows: source windows (one causal row each).
        epsilon: steering norm as a fraction of ‖h_t^l‖.
        n_random: random directions per row for the steering null.
        test_fraction: fraction of documents kept for the causal rows.
        lens_tokens, lens_windows, lens_positions: the lens's windows (length and number) and
            held-out positions decoded for its readout.
        lens: an already fitted lens (with its maps) to use instead; its layers and offsets
            must include the tested ones, and its documents may overlap the causal rows.
        batch_size: rows per forward pass.
        seed: the document split, the rows and the random directions.
        verbose: progress bars.

    Raises:
        InterpError: a layer or position outside the model, an offset below 1, ε < 0,
            n_random or n_rows < 1, a lens without the layers, offsets or maps asked for,
            too few documents.
    """
    n_layers = int(model.cfg.n_layers)
    layers = list(resolve_layers(model, default_layers(n_layers) if layers is None else layers,
                                 what="layers"))
    offsets = sorted(set(int(k) for k in offsets))
    if not offsets or offsets[0] < 1:
        raise InterpError(f"offsets {offsets} must be 1 or more (k = 1: the next token)",
                          "give offsets such as (1, 2)")
    K = offsets[-1]
    n_ctx = int(model.cfg.n_ctx)
    if not 1 <= position or position + K + 1 > n_ctx:
        raise InterpError(f"position {position} with offsets up to {K} needs windows of "
                          f"{position + K + 1} tokens; the model holds {n_ctx}",
                          f"give a position in 1..{n_ctx - K - 1}")
    if epsilon < 0:
        raise InterpError(f"epsilon {epsilon} is negative", "give a steering size of 0 or more, e.g. 0.25")
    for name, v in (("n_random", n_random), ("n_rows", n_rows), ("batch_size", batch_size)):
        if v < 1:
            raise InterpError(f"{name} {v} must be 1 or more", f"give {name} >= 1")
    if not 0 < test_fraction < 1:
        raise InterpError(f"test_fraction {test_fraction} must be between 0 and 1", "e.g. 0.3")
    if lens is not None:
        _check_lens(lens, layers, offsets)
    lens_ws, test_ws = _split_windows(model, docs, test_fraction, lens_tokens, position + K + 1, seed)
    if lens is None:
        seqs = [ProbeSequence(w.doc_id, w.seq) for w in lens_ws][:lens_windows]
        if not seqs:
            raise InterpError(f"no lens document holds {lens_tokens} tokens",
                              "give smaller lens_tokens or a corpus with longer documents")
        lens = future_lens(model, seqs, layers=layers, offsets=offsets, seed=seed, verbose=verbose,
                           config=FutureLensSpec(eval_positions=lens_positions, prompt_layers=[]))
    src, tgt, null = _sample_rows(test_ws, position + K + 1, n_rows, seed)
    t = position
    fitted = [int(x) for x in lens.meta["layers"]]
    lens_offsets = [int(x) for x in lens.meta["offsets"]]
    W, bias = lens.tensors["W"], lens.tensors["b"]
    gen = torch.Generator().manual_seed(seed)

    def tokens_of(ws, prefix_from=None):
        rows = []
        for i, w in enumerate(ws):
            x = w.seq.tokens[:t + K].clone()
            if prefix_from is not None:  # this window's context, then the source's tokens
                x[t:] = prefix_from[i].seq.tokens[t:t + K]
            rows.append(x)
        return torch.stack(rows)

    src_tok, tgt_tok, null_tok = tokens_of(src), tokens_of(tgt, src), tokens_of(null, src)
    truth = torch.stack([w.seq.tokens[t + 1:t + K + 1] for w in src])  # token t + k, k = 1..K
    out_rows = []
    kv = True
    bar = tqdm(total=len(src) * len(layers), desc="future lens causal", disable=not verbose)
    for b0 in range(0, len(src), batch_size):
        sl = slice(b0, b0 + batch_size)
        S, T, N = (TargetRun(model, x[sl], t, layers) for x in (src_tok, tgt_tok, null_tok))
        kv &= S.cache is not None and T.cache is not None
        idx = torch.tensor([k - 1 for k in offsets])
        src_top = S.logits.argmax(-1)[:, idx].cpu()  # [b, offsets]
        tgt_lp = _logp(T.logits)[:, idx].cpu()
        src_lp = _logp(S.logits)[:, idx].cpu()
        y = truth[sl][:, idx]
        y_lp_clean = src_lp.gather(2, y[..., None])[..., 0]
        movable = tgt_lp.argmax(-1) != src_top
        for layer in layers:
            res = {}
            for donor, run in (("source", S), ("null", N)):
                lp = _logp(T.replaced(layer, run.states[layer]))[:, idx].cpu()
                res[f"follow_{donor}"] = lp.argmax(-1) == src_top
                res[f"dlogp_{donor}"] = (lp.gather(2, src_top[..., None]) - tgt_lp.gather(2, src_top[..., None]))[..., 0]
            h = S.states[layer]
            norm = epsilon * h.norm(dim=-1, keepdim=True)
            li = fitted.index(layer)
            steer = torch.zeros(y.shape, dtype=torch.float64)
            for j, k in enumerate(offsets):
                ki = lens_offsets.index(k)
                d = lens_directions(model, W[li, ki], bias[li, ki], h, y[:, j])
                lp = _logp(S.moved(layer, norm * d))[:, k - 1].cpu()
                steer[:, j] = lp.gather(1, y[:, j:j + 1])[:, 0] - y_lp_clean[:, j]
            rand, rand_abs = (torch.zeros(y.shape, dtype=torch.float64) for _ in range(2))
            for _ in range(n_random):
                r = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(h)
                lp = _logp(S.moved(layer, norm * r / r.norm(dim=-1, keepdim=True)))[:, idx].cpu()
                change = lp.gather(2, y[..., None])[..., 0] - y_lp_clean
                rand += change / n_random
                rand_abs += change.abs() / n_random
            for r_i in range(y.shape[0]):
                for j, k in enumerate(offsets):
                    out_rows.append(dict(
                        row=b0 + r_i, layer=layer, offset=k, movable=bool(movable[r_i, j]),
                        **{name: (bool(v[r_i, j]) if v.dtype == torch.bool else float(v[r_i, j]))
                           for name, v in res.items()},
                        steer_lens=float(steer[r_i, j]), steer_random=float(rand[r_i, j]),
                        steer_random_abs=float(rand_abs[r_i, j])))
            bar.update(y.shape[0])
    bar.close()
    rows = pd.DataFrame(out_rows)
    contexts = pd.DataFrame(dict(
        row=range(len(src)), source_doc=[w.doc_id for w in src], target_doc=[w.doc_id for w in tgt],
        null_doc=[w.doc_id for w in null],
        **{f"{name}_tokens": [" ".join(map(str, r.tolist())) for r in x]
           for name, x in (("source", src_tok), ("target", tgt_tok), ("null", null_tok))}))
    settings = dict(position=t, offsets=offsets, layers=layers, epsilon=epsilon, n_random=n_random,
                    n_rows=len(src), seed=seed, test_fraction=test_fraction, kv_cache=kv,
                    lens=dict(layers=fitted, offsets=lens_offsets, n_train=lens.meta.get("n_train"),
                              n_test=lens.meta.get("n_test")))
    return FutureLensCausal(_summarise(rows, lens), rows, contexts, settings)


def _safe_windows(model: Bridge, doc: Document, n_tokens: int, most: int) -> list[Window]:
    try:
        return list(windows(model, [doc], n_tokens, max_windows=most))
    except InterpError:
        return []  # a document shorter than one window


def _check_lens(lens: FutureLensResults, layers: list[int], offsets: list[int]) -> None:
    if "W" not in lens.tensors:
        raise InterpError("the lens has no fitted maps (tensors W, b)",
                          "fit it with save_weights = true, or leave lens out to fit one")
    miss_l = [x for x in layers if x not in [int(v) for v in lens.meta["layers"]]]
    miss_k = [k for k in offsets if k not in [int(v) for v in lens.meta["offsets"]]]
    if miss_l or miss_k:
        raise InterpError(f"the lens was not fitted at layers {miss_l} / offsets {miss_k}",
                          f"test only its layers {lens.meta['layers']} and offsets {lens.meta['offsets']}, "
                          "or leave lens out to fit one")


def _summarise(rows: pd.DataFrame, lens: FutureLensResults) -> pd.DataFrame:
    read = lens.table[lens.table.method == "linear"].set_index(["layer", "offset"])
    out = []
    for (layer, k), g in rows.groupby(["layer", "offset"], sort=True):
        m = g[g.movable]
        diff = (m.follow_source.astype(float) - m.follow_null.astype(float)).to_numpy()
        steer = (g.steer_lens - g.steer_random).to_numpy()
        r = read.loc[(layer, k)]
        out.append(dict(
            layer=int(layer), offset=int(k), n=len(g), lens_accuracy=float(r.accuracy),
            lens_agreement=float(r.agreement_top1), bigram_accuracy=float(r.bigram_accuracy),
            trigram_accuracy=float(r.trigram_accuracy), n_movable=len(m),
            follow_source=float(m.follow_source.mean()) if len(m) else float("nan"),
            follow_null=float(m.follow_null.mean()) if len(m) else float("nan"),
            follow_effect=float(diff.mean()) if len(m) else float("nan"), follow_effect_se=_se(diff),
            dlogp_source=float(g.dlogp_source.mean()), dlogp_null=float(g.dlogp_null.mean()),
            steer_lens=float(g.steer_lens.mean()), steer_random=float(g.steer_random.mean()),
            steer_effect=float(steer.mean()), steer_effect_se=_se(steer),
            steer_random_abs=float(g.steer_random_abs.mean())))
    return pd.DataFrame(out)
