"""The lookahead control: pre-caching (Wu, Morris & Levine 2024), vanilla versus myopic.

On the ``precache`` regression, y_n = Σ_{i=1..k} sin(ω·x_{n−i}), the target at n never needs
sin(ω·x_n), yet the next k targets all do. A vanilla model computes it at n and reads it
later (pre-caching); a myopic model, whose gradient from later losses never reaches earlier
positions' keys and values, has no reason to. Three instruments should tell them apart:

* **future share of the K/V gradient** ⟨g_future, g_total⟩ / ‖g_total‖², per layer and site,
  with the self term from the detached forward (:func:`interp.gradients.detached_attention`);
* **a probe** at position t for sin(ω·x_t) by layer (closed-form ridge, held-out R²), beside
  x_t itself, which both models must carry;
* **patching that feature**: at one position t, the residual stream entering ``layer`` is
  moved along the direction that *encodes* s = sin(ω·x_t), the regression pattern
  a = Cov(h, s) / Var(s) (h ≈ h̄ + a·s; Haufe et al. 2014: a probe's weights are a filter,
  not the encoding, and moving along them mostly moves noise directions), by δ = −2·s_t, as if
  the feature had flipped sign: h_t ← h_t + δ·a. The response of the prediction at t + i,
  per offset i, is summarised as the slope Σ Δŷ_{t+i}·δ / Σ δ² (1: the prediction moves
  exactly as if sin(ω·x_t) had changed by δ, which it must for 1 ≤ i ≤ k if the model reads
  the cached feature; 0: no use). The null moves h_t along a random direction of the same
  norm.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch

from .._types import Float, Tensor
from ..core import hooks
from ..core.result import Figure, SavedResult
from ..errors import InterpError
from ..probes._fit import fit_ridge, ridge_outputs
from ..training.tasks import Task, TaskBatch
from ..training.toy import evaluate, forward, training_loss
from ..training.toy._loop import ToyResult
from ._common import residuals

__all__ = ["LookaheadControl", "encoding_direction", "kv_future_share", "load_lookahead",
           "lookahead_control", "lookahead_runs", "precache_probe"]

_SEED = 3_000_017
_ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def _check(run: ToyResult, mode: str) -> None:
    if run.task.name != "precache":
        raise InterpError(f"the lookahead control reads the precache task; the {mode} run is "
                          f"{run.task.name!r}",
                          "train both runs with task='precache' (vanilla and myopic)")
    if run.config.mode != mode:
        raise InterpError(f"the {mode} run was trained {run.config.mode}",
                          "give the vanilla run first and the myopic run second")


def kv_future_share(model, task: Task, batch: TaskBatch) -> pd.DataFrame:
    """Per layer and site (k, v): the mean over positions 1..N−2 of the future share of the
    K/V gradient of the training loss, ⟨g_total − g_self, g_total⟩ / ‖g_total‖².

    The total gradient comes from an ordinary backward pass, the self term from the myopic
    one (:func:`interp.training.toy.training_loss` with ``myopic=True``): the same decomposition as
    :func:`interp.future_gradients`, for a real-valued loss.
    """
    grads: dict[bool, dict[tuple[str, int], Tensor]] = {}
    sites = {"k": hooks.k, "v": hooks.v}
    for myopic in (False, True):
        store: dict[tuple[str, int], Tensor] = {}

        def capture(key, store=store):
            def hook_fn(t: Tensor, hook) -> Tensor:
                # put this view on the live path and read its gradient
                t.register_hook(lambda g: store.__setitem__(key, g))
                return t
            return hook_fn

        fwd = [(name(layer), capture((site, layer))) for layer in range(model.cfg.n_layers)
               for site, name in sites.items()]
        with model.hooks(fwd_hooks=fwd):
            loss = training_loss(model, task, batch, myopic=myopic)
        loss.backward()
        grads[myopic] = store
        model.zero_grad(set_to_none=True)
    rows = []
    for (site, layer), total in grads[False].items():
        total = total.double()
        future = total - grads[True][(site, layer)].double()
        share = (future * total).sum((0, 2, 3)) / total.pow(2).sum((0, 2, 3))
        rows.append(dict(layer=layer, site=site, future_share=float(share[1:-1].mean())))
    return pd.DataFrame(rows)


def precache_probe(h: Float[Tensor, "batch pos d_model"], y: Float[Tensor, "batch pos"],
                   positions: slice) -> tuple[float, Tensor, Tensor]:
    """A ridge probe reading ``y[:, t]`` from ``h[:, t]`` over ``positions``, fit on the first
    half of the sequences (penalty chosen on the third quarter), scored on the last quarter.

    Returns:
        Held-out R², and the probe's raw-space weights ``[d_model]`` and bias.
    """
    X = h[:, positions].double()
    n = X.shape[0]
    flat = X.reshape(1, -1, X.shape[-1])
    Y = y[:, positions].double().reshape(1, -1, 1, 1)
    per = X.shape[1]

    def rows(a: int, b: int) -> Tensor:
        return torch.arange(a * per, b * per)

    train, val, test = rows(0, n // 2), rows(n // 2, 3 * n // 4), rows(3 * n // 4, n)
    fit = fit_ridge(flat, Y, train, val, _ALPHAS, torch.device("cpu"))
    pred = ridge_outputs(flat[:, test], fit.W, fit.b, torch.device("cpu"))[0, :, 0, 0].double()
    yt = Y[0, test, 0, 0]
    r2 = 1 - (yt - pred).pow(2).sum() / (yt - yt.mean()).pow(2).sum()
    return float(r2), fit.W[0, :, 0, 0].double(), fit.b[0, 0, 0].double()


@dataclass
class LookaheadControl(SavedResult):
    """The lookahead control, vanilla beside myopic.

    Attributes:
        loss: ``model``, ``normalised_loss`` (1 = predicting 0).
        future_share: ``model``, ``layer``, ``site``, ``future_share``.
        probes: ``model``, ``layer`` (residual entering it; ``n_layers``: the final one),
            ``target`` (``sin(w*x_t)`` or ``x_t``), ``r2`` (held-out).
        patching: ``model``, ``direction`` (``feature`` or ``random``), ``offset`` i (the
            prediction at t + i), ``slope`` (Σ Δŷ·δ / Σ δ²), ``mean_abs_change``,
            ``move_norm_ratio`` (mean ‖δ·a‖ over mean ‖h_t‖).
        settings: the runs and the patched layer and position.
    """

    loss: pd.DataFrame
    future_share: pd.DataFrame
    probes: pd.DataFrame
    patching: pd.DataFrame
    settings: dict

    MADE_BY: ClassVar[str] = "interp controls lookahead --out DIR"
    SAVED: ClassVar[dict] = {"patching": "lookahead_patching.csv",
                             "loss": "lookahead_loss.csv",
                             "future_share": "lookahead_future_share.csv",
                             "probes": "lookahead_probes.csv",
                             "settings": "lookahead_settings.json"}

    def figures(self) -> list[Figure]:
        from ..figures import controls as f

        return [Figure("lookahead_patching", f.lookahead_patching,
                       "Moving the residual stream at position t along the direction encoding "
                       "sin(ω·x_t): the vanilla model's predictions at t+1..t+k follow (slope "
                       "near 1), the myopic model's and a random direction's do not.")]


def encoding_direction(h: Float[Tensor, "batch pos d_model"], s: Float[Tensor, "batch pos"],
                       positions: slice) -> Float[Tensor, " d_model"]:
    """The pattern a = Cov(h, s) / Var(s) over the examples and ``positions``: the change of
    the residual stream per unit of the feature s (least squares of h on s and a constant)."""
    X = h[:, positions].double().reshape(-1, h.shape[-1])
    y = s[:, positions].double().reshape(-1)
    yc = y - y.mean()
    return (X - X.mean(0)).T @ yc / yc.pow(2).sum()


def _patch_slopes(label: str, model, task: Task, batch: TaskBatch, layer: int, t: int,
                  a: Tensor, offsets: int, seed: int) -> list[dict]:
    h = residuals(model, task, batch)[layer][:, t].double()
    delta = -2.0 * torch.sin(task.freq * batch.inputs[:, t]).double()  # flip the feature
    gen = torch.Generator().manual_seed(seed)
    rand = torch.randn(h.shape, generator=gen, dtype=torch.float64)
    moves = {"feature": delta[:, None] * a[None],
             "random": rand / rand.norm(dim=-1, keepdim=True)
             * (delta.abs() * a.norm())[:, None]}
    ratio = float((delta.abs() * a.norm()).mean() / h.norm(dim=-1).mean())
    with torch.no_grad():
        base = forward(model, task, batch).double()
    rows = []
    for direction, move in moves.items():
        def add(x: Tensor, hook, move=move) -> Tensor:
            x = x.clone()
            x[:, t] += move.to(x.dtype)
            return x

        with torch.no_grad(), model.hooks(fwd_hooks=[(hooks.resid(layer, "pre"), add)]):
            change = forward(model, task, batch).double() - base
        for i in range(0, offsets + 1):
            if t + i >= change.shape[1]:
                break
            d = change[:, t + i]
            rows.append(dict(model=label, direction=direction, offset=i,
                             slope=float((d * delta).sum() / delta.pow(2).sum()),
                             mean_abs_change=float(d.abs().mean()), move_norm_ratio=ratio))
    return rows


def lookahead_control(vanilla: ToyResult, myopic: ToyResult, *, n_examples: int = 256,
                      layer: int = 1, position: int | None = None, offsets: int | None = None,
                      seed: int = _SEED) -> LookaheadControl:
    """Every lookahead instrument on a vanilla and a myopic ``precache`` run.

    Args:
        vanilla: a ``precache`` run trained normally.
        myopic: the same config trained myopically.
        n_examples: held-out sequences (probes fit on half, choose the penalty on a quarter,
            score on the last quarter; patching and gradients use all).
        layer: the residual stream entering this layer is patched (1: after the first
            block, where Wu et al. read the cached feature); probes read every layer.
        position: the patched position t (default the middle of the sequence).
        offsets: report predictions at t .. t + offsets (default k + 2).
        seed: the held-out sequences and the random direction.

    Raises:
        InterpError: runs of another task, or given in the wrong order (vanilla first), a
            layer outside the model, a position with no later positions.
    """
    _check(vanilla, "vanilla")
    _check(myopic, "myopic")
    task = vanilla.task
    n_layers = int(vanilla.model.cfg.n_layers)
    if not 0 <= layer <= n_layers:
        raise InterpError(f"layer {layer} is outside the model (0..{n_layers}, {n_layers}: "
                          "the final residual stream)", f"give a layer in 0..{n_layers}")
    length = task.length
    t = length // 2 if position is None else position
    if not 1 <= t < length - 1:
        raise InterpError(f"position {t} leaves no later position in a sequence of {length}",
                          f"give a position in 1..{length - 2}")
    offsets = task.k + 2 if offsets is None else offsets
    batch = task.batch(n_examples, seed)
    x = batch.inputs
    sin = torch.sin(task.freq * x)
    lo = min(task.k, length // 4)
    positions = slice(lo, length - 1)
    loss, shares, probes, patch = [], [], [], []
    directions: dict[str, Tensor] = {}
    for label, run in (("vanilla", vanilla), ("myopic", myopic)):
        model = run.model.eval()
        loss.append(dict(model=label, normalised_loss=evaluate(model, task, batch)
                         ["normalised_loss"]))
        shares.append(kv_future_share(model, task, batch).assign(model=label))
        for li, h in enumerate(residuals(model, task, batch)):
            for target, y in (("sin(w*x_t)", sin), ("x_t", x)):
                r2, _, _ = precache_probe(h, y, positions)
                probes.append(dict(model=label, layer=li, target=target, r2=r2))
                if li == layer and target == "sin(w*x_t)":
                    half = batch.inputs.shape[0] // 2  # the probe's training sequences
                    directions[label] = encoding_direction(h[:half], y[:half], positions)
        patch += _patch_slopes(label, model, task, batch, layer, t, directions[label],
                               offsets, seed)
    settings = dict(vanilla=vanilla.config.to_dict(), myopic=myopic.config.to_dict(),
                    n_examples=n_examples, layer=layer, position=t, seed=seed, k=task.k,
                    freq=task.freq)
    first = ["model"]
    shares_df = pd.concat(shares, ignore_index=True)
    return LookaheadControl(
        loss=pd.DataFrame(loss),
        future_share=shares_df[first + [c for c in shares_df.columns if c not in first]],
        probes=pd.DataFrame(probes), patching=pd.DataFrame(patch), settings=settings)


def lookahead_runs(out: str | os.PathLike | None = None, *, verbose: bool = True,
                   **overrides) -> tuple[ToyResult, ToyResult]:
    """Train (or resume) the vanilla and myopic ``precache`` runs of the lookahead control:
    the task's defaults (:func:`interp.training.toy.default_config`) with ``overrides``, in
    ``out/vanilla`` and ``out/myopic``."""
    import dataclasses

    from ..training.toy import default_config, train_toy

    base = default_config("precache", **overrides)
    runs = []
    for myopic in (False, True):
        cfg = dataclasses.replace(base, myopic=myopic)
        runs.append(train_toy(cfg, None if out is None else Path(out) / cfg.mode,
                              verbose=verbose))
    return runs[0], runs[1]


def load_lookahead(out: str | os.PathLike) -> LookaheadControl:
    """The :class:`LookaheadControl` saved in ``out``."""
    return LookaheadControl.load(Path(out))

