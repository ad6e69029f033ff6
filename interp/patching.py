"""Attribution patching (AtP), its AtP* QK fix, and activation patching as ground truth.

Activation patching runs the *clean* input with one activation a (a key, value or head output
of one head at one position, or the residual stream at one position) replaced by its value on
a *corrupted* input, and reports the change of a metric M. Attribution patching (Nanda 2023)
estimates every such change at once from one clean backward pass, to first order:

    AtP(a) = (a_corrupt − a_clean) · ∂M/∂a |clean

It fails where M is far from linear in a, notably for keys that change a saturated attention
pattern (Kramár et al. 2024). The **AtP* QK fix** recomputes, for a patched key, the attention
pattern of every query exactly and linearises only downstream of the pattern:

    AtP*(k_i) = Σ_q Σ_j (A'[q, j] − A[q, j]) · ∂M/∂A[q, j]

where A' is the softmax of the clean scores with column i recomputed from the corrupt key.

**Target-resolved** K/V attribution: the metric is each next-token loss ℓ_t of the clean text
in turn, giving the estimated effect of patching a site at position i on every later loss
(t ≥ i), from batched vector-Jacobian products; activation patching gets all ℓ_t from each
patched forward pass.

Conventions: ``position`` is the index in the token sequence the model saw (a prepended BOS
is position 0); ``head`` is the KV head for k/v, the query head for z, ``-1`` for the residual
stream or when heads are patched together (``per_head=False``). Effects are M(patched) −
M(clean) (the *noising* direction). TransformerLens 4's ``attribution_patch`` uses the
denoising direction, (a_clean − a_corrupt) · ∂M/∂a |corrupt: the same number with clean and
corrupt swapped.

Example:
    >>> metric = interp.patching.logit_diff(model, " Paris", " Rome")
    >>> atp = interp.attribution_patch(model, "The capital of France is",
    ...                                "The capital of Italy is", metric, verify=True)
    >>> interp.compare_patching(atp)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ._types import Float, Tensor
from .core import hooks
from .core import model as core_model
from .core.attention import attention_spec, check_pattern, expand_kv, qkv_hooks, rotated_qkv
from .core.inputs import as_sequence
from .core.loss import token_losses
from .core.model import Bridge, n_kv_heads
from .core.result import Figure, TableResult
from .core.sites import hook_name, resolve_layers, resolve_sites
from .errors import InterpError
from .gradients._batches import activation_gradients_only

__all__ = [
    "Attribution",
    "Metric",
    "activation_patch",
    "answer_loss",
    "attribution_patch",
    "compare_patching",
    "logit_diff",
]

Metric = Callable[[Tensor], Tensor]
SITES = ("k", "v", "z", "resid_pre", "resid_mid", "resid_post")


def _token_id(model: Bridge, token: int | str) -> int:
    if isinstance(token, int):
        return token
    ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InterpError(f"{token!r} is {len(ids)} tokens", "give a single-token answer, e.g. ' Paris'")
    return int(ids[0])


def logit_diff(model: Bridge, correct: int | str, wrong: int | str, position: int = -1) -> Metric:
    """M = logit[correct] − logit[wrong] at ``position`` (tokens given as ids or strings)."""
    c, w = _token_id(model, correct), _token_id(model, wrong)

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        return (logits[:, position, c] - logits[:, position, w]).sum()

    metric.__name__ = "logit_diff"
    return metric


def answer_loss(answer: Sequence[int]) -> Metric:
    """M = Σ_j −log p(answer_j | everything before it): the summed loss on the last
    ``len(answer)`` tokens of the input, which must be the answer."""
    ids = torch.as_tensor(list(answer), dtype=torch.long)
    if ids.numel() == 0:
        raise InterpError("empty answer", "give at least one answer token")

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        n = ids.numel()
        logp = torch.log_softmax(logits[:, -n - 1:-1], -1)
        return -logp.gather(-1, ids.to(logits.device)[None, :, None].expand(len(logits), -1, 1)).sum()

    metric.__name__ = "answer_loss"
    return metric


@dataclass
class Attribution(TableResult):
    """Per-node effects of patching clean → corrupt, one row per (layer, site, head, position)
    (and ``loss_position`` when target-resolved).

    Columns: ``layer``, ``site``, ``head``, ``position``, ``token_str`` (clean token, when a
    tokenizer exists), ``loss_position`` (target-resolved only: the t of the loss ℓ_t affected),
    ``atp``,
    ``atp_star`` (k rows, with the QK fix), ``activation_patch`` (when verified).

    Attributes:
        table: the rows.
        meta: metric name, sites, clean and corrupt metric values.
    """

    FILE = "attribution.csv"
    REQUIRED = frozenset({"layer", "site", "head", "position"})
    MADE_BY = "interp patch ... --out DIR"
    #: ``target`` in earlier releases (in probe metrics ``target`` is the target kind)
    RENAMED = {"target": "loss_position"}

    def compare(self, **options) -> pd.DataFrame:
        """:func:`compare_patching` of this result (``options`` are its keyword arguments);
        what :func:`interp.figures.patching.atp_scatter` reads, so figures need no import of
        this module."""
        return compare_patching(self, **options)

    def figures(self) -> list[Figure]:
        from .figures import patching as f

        figs = []
        if "activation_patch" in self.table.columns:
            figs.append(Figure("atp_scatter", f.atp_scatter,
                               "Attribution patching (a gradient estimate) against real "
                               "activation patching for every node: points on the diagonal are "
                               "estimated well; large changes that saturate the output (the "
                               "residual stream at the corrupted position) are underestimated, "
                               "attribution patching's known failure."))
        sites = list(dict.fromkeys(self.table["site"]))
        site = next((s for s in ("v", "k", "z") if s in sites), sites[0])
        figs.append(Figure("atp_heatmap", lambda r: f.atp_heatmap(r, site),
                           f"Estimated effect of patching the {site} at each layer and position "
                           "on the metric."))
        return figs


def _pair(model: Bridge, clean, corrupt) -> tuple[Tensor, Tensor]:
    device = core_model.device(model)
    a = as_sequence(model, clean, what="the clean input").tokens.reshape(1, -1).to(device)
    b = as_sequence(model, corrupt, what="the corrupt input").tokens.reshape(1, -1).to(device)
    if a.shape != b.shape:
        raise InterpError(
            f"clean and corrupt inputs tokenize to different lengths ({a.shape[1]} and "
            f"{b.shape[1]} tokens), so their activations cannot be patched position by position",
            "align them: choose corrupt words with the same number of tokens as the clean ones "
            "(check with interp.tokenize(model, text).tokens), or pad the shorter prompt with "
            "neutral tokens at the same place",
        )
    if a.shape[1] < 2:
        raise InterpError("inputs of length 1", "give at least two tokens")
    return a, b


def _heads(t: Tensor) -> Tensor:
    """[batch, pos, head, d] for per-head sites, [batch, pos, 1, d] for the residual stream."""
    return t if t.ndim == 4 else t[:, :, None]


def _capture(model: Bridge, tokens: Tensor, keys, extra: list = ()) -> tuple[dict, Tensor]:
    acts: dict = {}

    def make(key):
        def hook(t: Tensor, hook) -> None:
            acts[key] = t.detach()

        return hook

    with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name(s, layer), make((s, layer)))
                                                 for s, layer in keys] + list(extra)):
        logits = model(tokens)
    return acts, logits


def _frame(model: Bridge, tokens, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if model.tokenizer is not None and len(df):
        strs = [model.tokenizer.decode([t]) for t in tokens[0].tolist()]
        df.insert(4, "token_str", [strs[p] for p in df.position])
    return df


def _node_rows(layer, site, effect: Float[Tensor, "pos head"], per_head: bool, column: str,
               target: int | None = None) -> list[dict]:
    together = not per_head or site.startswith("resid")
    if together:
        effect = effect.sum(-1, keepdim=True)
    rows = []
    for p in range(effect.shape[0]):
        for h in range(effect.shape[1]):
            # a model with one KV head still labels its k/v rows head 0, as activation patching
            row = dict(layer=layer, site=site, head=-1 if together else h, position=p)
            if target is not None:
                row["loss_position"] = target
            row[column] = float(effect[p, h])
            rows.append(row)
    return rows


def attribution_patch(
    model: Bridge,
    clean,
    corrupt,
    metric: Metric | None = None,
    *,
    sites: str | Sequence[str] = ("k", "v", "z", "resid_post"),
    layers: Sequence[int] | None = None,
    per_head: bool = True,
    qk_fix: bool = False,
    target_resolved: bool = False,
    verify: bool = False,
    verbose: bool = True,
) -> Attribution:
    """Estimate the effect of patching each node clean → corrupt, from one backward pass.

    Args:
        model: a ``TransformerBridge``.
        clean, corrupt: texts (tokenized with a BOS), token ids or
            :class:`~interp.PausedSequence`; they must have the same number of tokens.
        metric: a function of the logits ``[batch, pos, d_vocab]`` returning a scalar, e.g.
            :func:`logit_diff` or :func:`answer_loss`. Not used when ``target_resolved``.
        sites: among ``k``, ``v`` (per KV head, before RoPE), ``z`` (per query head),
            ``resid_pre``/``resid_mid``/``resid_post``.
        layers: layers to patch (default: all).
        per_head: one node per head; ``False`` patches all heads of a site at a position at
            once (the AtP estimate is then the sum over heads).
        qk_fix: add an ``atp_star`` column for k rows (the AtP* QK fix; see module docstring).
        target_resolved: use each next-token loss ℓ_t of the clean text as the metric; rows
            gain a ``loss_position`` column (t ≥ position).
        verify: also run real activation patching over the same nodes (one forward each).
        verbose: show progress bars.

    Returns:
        An :class:`Attribution`; with ``verify``, its ``activation_patch`` column is the
        ground truth.
    """
    if metric is None and not target_resolved:
        raise InterpError("no metric given", "pass metric=interp.patching.logit_diff(...) or "
                          "target_resolved=True")
    sites = resolve_sites(sites, SITES)
    layers = resolve_layers(model, layers)
    clean_t, corrupt_t = _pair(model, clean, corrupt)
    keys = [(s, layer) for layer in layers for s in sites]
    fix_layers = [layer for layer in layers if qk_fix and "k" in sites and not target_resolved]
    specs = _attention_specs(model, fix_layers, per_head)
    corrupt_qkv: dict = {layer: {} for layer in fix_layers}
    corrupt_acts, corrupt_logits = _capture(
        model, corrupt_t, keys,
        [h for layer in fix_layers for h in qkv_hooks(model, layer, corrupt_qkv[layer], pattern=True)])
    # the corrupt q, k as the model scores them, checked against its pattern: a variant
    # interp does not reproduce is refused here, before the clean backward pass
    corrupt_qk = {layer: _scored(model, spec, corrupt_qkv[layer], "AtP* (corrupt input)")
                  for layer, spec in specs.items()}
    acts: dict = {}
    grads: dict = {}
    pattern_grads: dict = {}
    qkv: dict = {layer: {} for layer in layers}

    def make(key):
        def hook(t: Tensor, hook) -> Tensor:
            acts[key] = t
            t.register_hook(lambda g: grads.__setitem__(key, g))
            return t  # returned, so this view is the one on the live path

        return hook

    def read_pattern(layer):
        def hook(t: Tensor, hook) -> Tensor:
            qkv[layer]["pattern"] = t.detach()
            t.register_hook(lambda g: pattern_grads.__setitem__(layer, g))
            return t

        return hook

    fwd = [(hook_name(s, layer), make((s, layer))) for s, layer in keys]
    for layer in fix_layers:
        fwd += qkv_hooks(model, layer, qkv[layer]) + [(hooks.pattern(layer), read_pattern(layer))]
    rows: list[dict] = []
    with activation_gradients_only(model), model.hooks(fwd_hooks=fwd):
        logits = model(clean_t)
        if target_resolved:
            losses = token_losses(logits, clean_t, torch.ones_like(clean_t, dtype=torch.bool))
            rows = _target_resolved_atp(losses, acts, corrupt_acts, keys, per_head, verbose)
            clean_value = float(losses.detach().sum())
        else:
            value = metric(logits)
            value.backward()
            clean_value = float(value.detach())
            for site, layer in keys:
                delta = _heads(corrupt_acts[(site, layer)] - acts[(site, layer)].detach())
                effect = (delta * _heads(grads[(site, layer)])).sum(-1)[0]
                rows += _node_rows(layer, site, effect, per_head, "atp")
    table = _frame(model, clean_t, rows)
    if fix_layers:
        clean_qk = {layer: _scored(model, spec, qkv[layer], "AtP* (clean input)")
                    for layer, spec in specs.items()}
        star = _qk_fix(specs, clean_qk, corrupt_qk, pattern_grads, n_kv_heads(model), per_head)
        table = table.merge(star, on=["layer", "site", "head", "position"], how="left")
    meta = dict(metric=getattr(metric, "__name__", "ℓ_t") if not target_resolved else "ℓ_t",
                sites=list(sites), layers=list(layers), per_head=per_head,
                target_resolved=target_resolved, clean_metric=clean_value,
                corrupt_metric=(float(metric(corrupt_logits)) if metric is not None
                                and not target_resolved else None))
    result = Attribution(table, meta)
    if verify:
        truth = activation_patch(model, clean_t, corrupt_t, metric, sites=sites, layers=layers,
                                 per_head=per_head, target_resolved=target_resolved,
                                 verbose=verbose)
        on = ["layer", "site", "head", "position"] + (["loss_position"] if target_resolved else [])
        result.table = table.merge(truth.table[on + ["activation_patch"]], on=on, how="left")
    return result


def _target_resolved_atp(losses, acts, corrupt_acts, keys, per_head, verbose,
                         chunk_size: int = 16) -> list[dict]:
    """(a_corrupt − a_clean) · ∂ℓ_t/∂a for every target t, by batched VJPs over targets."""
    inputs = [acts[k] for k in keys]
    deltas = [_heads(corrupt_acts[k] - acts[k].detach()) for k in keys]
    n_pos = losses.shape[1] - 1  # the last position has no target
    rows: list[dict] = []
    for c in tqdm(range(0, n_pos, chunk_size), disable=not verbose, desc="targets"):
        chunk = list(range(c, min(c + chunk_size, n_pos)))
        onehot = torch.zeros(len(chunk), *losses.shape, dtype=losses.dtype, device=losses.device)
        onehot[torch.arange(len(chunk)), :, torch.tensor(chunk)] = 1.0
        grads = torch.autograd.grad(losses, inputs, grad_outputs=onehot, retain_graph=True,
                                    is_grads_batched=True)
        for (site, layer), g, delta in zip(keys, grads, deltas, strict=True):
            g = g if g.ndim == 5 else g[:, :, :, None]
            effect = (g * delta[None]).sum(-1)[:, 0]  # [chunk, pos, head]
            for j, t in enumerate(chunk):
                rows += [r for r in _node_rows(layer, site, effect[j], per_head, "atp", target=t)
                         if r["position"] <= t]
    return rows


_ATP_STAR_FIX = "use qk_fix=False (plain AtP) on this model, or a family listed in docs/families.md"


def _attention_specs(model: Bridge, layers, per_head: bool) -> dict:
    """Each fixed layer's attention variant, read and vetted before any forward pass."""
    specs = {layer: attention_spec(model, layer) for layer in layers}
    joint = [layer for layer, spec in specs.items() if spec.joint_k_norm]
    if per_head and joint:
        raise InterpError(
            f"AtP* per KV head: layers {joint} normalise the keys of all heads of a position "
            "together (a QK-norm over heads, as in OLMo-2), so patching one head's key moves "
            "every head's attention and the per-head QK fix would be wrong",
            "pass per_head=False (the heads of a site patched together: exact), or "
            "qk_fix=False for plain AtP per head")
    return specs


def _scored(model: Bridge, spec, seen: dict, what: str) -> tuple[Tensor, Tensor]:
    """Rotated q and KV-expanded k ``[head, pos, d_head]`` (float64) from what
    :func:`~interp.core.attention.qkv_hooks` stored, after checking that they reproduce the
    model's own pattern (a rotation no hook shows, or a mismatch, raises)."""
    q, k, _ = rotated_qkv(model, spec.layer, seen)
    q, k = (t.detach()[0].transpose(0, 1).double() for t in (q, k))
    k = expand_kv(k[None], q.shape[0])[0]
    check_pattern(spec, spec.pattern(spec.logits(q @ k.transpose(-1, -2))),
                  seen.pop("pattern")[0], what)
    return q, k


def _qk_fix(specs: dict, clean_qk: dict, corrupt_qk: dict, pattern_grads: dict, n_kv: int,
            per_head: bool) -> pd.DataFrame:
    """AtP* for keys: the exact change of every query's pattern when key i is patched,
    times ∂M/∂pattern (linear only downstream of the pattern).

    The pattern is the model's own attention reproduced by :mod:`interp.core.attention`
    (mask, soft-cap, rotation), already checked against ``hook_pattern`` on the clean and
    the corrupt input (:func:`_scored`)."""
    rows = []
    for layer, spec in specs.items():
        if layer not in pattern_grads:
            raise InterpError(f"layer {layer}: no gradient reached hook_pattern, so this "
                              "bridge's pattern is not on the live path", _ATP_STAR_FIX)
        with torch.no_grad():
            (q, k), kc = clean_qk[layer], corrupt_qk[layer][1]
            n_heads, n = q.shape[0], q.shape[1]
            logits = spec.logits(q @ k.transpose(-1, -2))  # [head, q, k]
            new_col = spec.logits(q @ kc.transpose(-1, -2))  # every key corrupt
            # unchanged keys give exactly zero: the clean pattern is recomputed the same way
            pattern = spec.pattern(logits)
            grad = pattern_grads[layer][0].double()
            effect = torch.zeros(n_heads, n, dtype=torch.float64, device=q.device)
            for i in range(n):
                s = logits.clone()
                s[:, :, i] = new_col[:, :, i]
                effect[:, i] = ((spec.pattern(s) - pattern) * grad).sum((-1, -2))
            effect = effect.reshape(n_kv, n_heads // n_kv, n).sum(1).T  # [pos, kv_head]
        rows += _node_rows(layer, "k", effect, per_head, "atp_star")
    return pd.DataFrame(rows)


def activation_patch(
    model: Bridge,
    clean,
    corrupt,
    metric: Metric | None = None,
    *,
    sites: str | Sequence[str] = ("k", "v", "z", "resid_post"),
    layers: Sequence[int] | None = None,
    per_head: bool = True,
    target_resolved: bool = False,
    batch_size: int = 16,
    verbose: bool = True,
) -> Attribution:
    """Ground truth: patch each node clean → corrupt, one forward pass per node.

    Arguments as for :func:`attribution_patch`; the ``activation_patch`` column is
    M(clean with the node patched) − M(clean), or, when ``target_resolved``, the change of
    each next-token loss ℓ_t (t ≥ position) of the clean text. ``batch_size`` nodes of one
    site and layer run side by side, each in its own copy of the clean text (the metric is
    called on one copy's logits, ``[1, pos, vocab]``, as for an unbatched forward): the same
    numbers as one forward per node, to float rounding, several times faster on a CPU.
    """
    if metric is None and not target_resolved:
        raise InterpError("no metric given", "pass a metric or target_resolved=True")
    if batch_size < 1:
        raise InterpError(f"batch_size {batch_size} < 1",
                          "use batch_size >= 1 (1 runs one forward per node)")
    sites = resolve_sites(sites, SITES)
    layers = resolve_layers(model, layers)
    clean_t, corrupt_t = _pair(model, clean, corrupt)
    keys = [(s, layer) for layer in layers for s in sites]
    corrupt_acts, _ = _capture(model, corrupt_t, keys)
    ones = torch.ones_like(clean_t, dtype=torch.bool)

    def measure(logits):
        return token_losses(logits, clean_t, ones)[0] if target_resolved else metric(logits)

    with torch.no_grad():
        base = measure(model(clean_t))
    n_pos = clean_t.shape[1]
    rows: list[dict] = []
    jobs = []
    for site, layer in keys:
        n_heads = 1 if (site.startswith("resid") or not per_head) else corrupt_acts[(site, layer)].shape[2]
        jobs += [(site, layer, h, p) for p in range(n_pos) for h in range(n_heads)]
    # nodes of one (site, layer) are patched side by side, one copy of the clean text each:
    # the copies do not interact, so each row is the single-node forward (to float rounding)
    groups = []
    for key in keys:  # one hook per forward: a group holds nodes of one (site, layer)
        mine = [job for job in jobs if job[:2] == key]
        groups += [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    bar = tqdm(total=len(jobs), disable=not verbose, desc="activation patching")
    for group in groups:
        site, layer = group[0][:2]
        source = corrupt_acts[(site, layer)]

        def patch(t: Tensor, hook, group=group, site=site, source=source) -> Tensor:
            t = t.clone()
            for j, (_, _, h, p) in enumerate(group):
                if site.startswith("resid") or not per_head:
                    t[j, p] = source[0, p]
                else:
                    t[j, p, h] = source[0, p, h]
            return t

        batch = clean_t.expand(len(group), -1)
        with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name(site, layer), patch)]):
            logits = model(batch)
        for j, (_, _, h, p) in enumerate(group):
            change = measure(logits[j:j + 1]) - base
            head = h if (per_head and not site.startswith("resid")) else -1
            if target_resolved:
                rows += [dict(layer=layer, site=site, head=head, position=p, loss_position=t,
                              activation_patch=float(change[t])) for t in range(p, n_pos - 1)]
            else:
                rows.append(dict(layer=layer, site=site, head=head, position=p,
                                 activation_patch=float(change)))
        bar.update(len(group))
    bar.close()
    return Attribution(_frame(model, clean_t, rows),
                       dict(sites=list(sites), layers=list(layers), per_head=per_head,
                            target_resolved=target_resolved))


def compare_patching(
    result: Attribution | pd.DataFrame,
    *,
    estimate: str = "atp",
    truth: str = "activation_patch",
    k: int = 10,
    by: str | None = "site",
    drop_unaffected: bool = True,
) -> pd.DataFrame:
    """Agreement of an estimate with activation patching: Spearman and Pearson correlation
    and the overlap of the top-``k`` nodes by magnitude (|top_k(est) ∩ top_k(truth)| / k).

    Every node of a site that has the estimate must have the ground truth too, and the
    reverse: a node with only one of them means the two tables were labelled differently
    when merged (e.g. one KV head called ``-1`` in one and ``0`` in the other), and is an
    error rather than a row silently left out.

    Nodes that the corruption cannot reach (positions before the first changed token, where
    both values are exactly zero) agree trivially and would inflate the rank correlation with
    ties; they are left out unless ``drop_unaffected=False``.

    Args:
        result: an :class:`Attribution` with both columns (``attribution_patch(...,
            verify=True)``), or its table.
        estimate: ``atp`` or ``atp_star``.
        truth: the ground-truth column.
        k: top-k size.
        by: also compare within groups of this column (``None``: overall only).
        drop_unaffected: leave out nodes where estimate and truth are both exactly zero.

    Returns:
        One row per group plus ``all``: n, spearman, pearson, top_k_overlap.

    Raises:
        InterpError: a missing column, or nodes with only one of the two values.
    """
    table = result.table if isinstance(result, Attribution) else result
    for col in (estimate, truth):
        if col not in table:
            raise InterpError(f"no {col!r} column to compare",
                              "run attribution_patch(..., verify=True) (and qk_fix=True for "
                              "atp_star)")
    _check_matched(table, estimate, truth)
    table = table.dropna(subset=[estimate, truth])
    if drop_unaffected:
        table = table[(table[estimate] != 0) | (table[truth] != 0)]
    groups = [("all", table)]
    if by is not None:
        groups += [(str(g), t) for g, t in table.groupby(by, sort=True)]
    rows = []
    for name, t in groups:
        x, y = t[estimate], t[truth]
        kk = min(k, len(t))
        top_x = set(x.abs().nlargest(kk).index)
        top_y = set(y.abs().nlargest(kk).index)
        rows.append(dict(group=name, n=len(t),
                         spearman=x.corr(y, method="spearman") if len(t) > 1 else np.nan,
                         pearson=x.corr(y) if len(t) > 1 else np.nan,
                         top_k_overlap=len(top_x & top_y) / kk if kk else np.nan, k=kk))
    return pd.DataFrame(rows)


def _check_matched(table: pd.DataFrame, estimate: str, truth: str) -> None:
    """Raise when a site's rows carry one of the two values but not the other."""
    has_est, has_truth = table[estimate].notna(), table[truth].notna()
    # atp_star exists only for k rows: compare within the sites that have the estimate at all
    scope = table["site"].isin(set(table.loc[has_est, "site"])) if "site" in table else True
    lost = table[scope & (has_est != has_truth)]
    if len(lost):
        where = ", ".join(f"{site} head {head}" for site, head in
                          sorted(set(zip(lost.get("site", ["?"] * len(lost)),
                                         lost.get("head", ["?"] * len(lost)), strict=True)))[:6])
        raise InterpError(
            f"{len(lost)} nodes have only one of {estimate!r} and {truth!r} ({where}): the "
            "estimate and the ground truth were labelled differently when their tables were "
            "merged, and comparing the rest would silently leave these out",
            "merge on the same (layer, site, head, position) labels, as "
            "attribution_patch(..., verify=True) does, or drop those rows yourself first")
