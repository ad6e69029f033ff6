"""Fitting many linear probes at once: batched softmax regression and batched closed-form ridge.

Every (unit, task) pair — a unit is a (layer, site, KV head), a task an offset or the control
task — is an independent convex problem. Stacking the features of all units as
``X[unit, n, feature]`` and the weights as ``W[unit, feature, task, class]`` turns all of them
into one einsum per minibatch::

    logits[u, b, t, c] = Σ_d x̃[u, b, d] · W[u, d, t, c] + b[u, t, c]
    x̃ = (x − μ_u) / σ_u                      (per-unit standardisation, training statistics)

The loss of cell (u, t) is ``mean_b CE(logits[u, b, t], y[b, t]) + λ ||W[u, :, t]||²``; its
gradient is closed form, ``x̃ᵀ (softmax − onehot) / B + 2 λ W``, so no autograd graph is built,
and Adam updates all cells in one tensor operation. After each epoch the validation
cross-entropy of every cell is measured; a cell keeps its best weights and stops (its unit is
dropped from the computation once all its tasks stopped) after ``patience`` epochs without
improvement.

Ridge regression (``hidden``/``continuous`` targets) is solved in closed form for every unit at
once through one eigendecomposition of ``X̃ᵀX̃`` per unit, which makes every penalty α in a grid
cost one matrix product: ``W_α = Q diag(1 / (s + α n)) Qᵀ X̃ᵀ Y``. The α with the best
validation R² is kept per cell.

Returned weights act on raw activations: standardisation is folded in,
``W_raw = W / σ`` and ``b_raw = b − (μ / σ) · W``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ._spec import TrainSpec

__all__ = ["RidgeFit", "SoftmaxState", "fit_ridge", "fit_softmax", "ridge_outputs", "softmax_outputs", "standardizer"]

_BETAS = (0.9, 0.999)
_EPS = 1e-8
_CHUNK = 1024


def standardizer(X: Float[Tensor, "unit n feature"], rows: Int[Tensor, " m"]) -> tuple[
    Float[Tensor, "unit feature"], Float[Tensor, "unit feature"]
]:
    """Per-unit feature mean and standard deviation over ``rows`` (σ floored at 1e-6)."""
    mu = torch.zeros(X.shape[0], X.shape[2], dtype=torch.float64)
    sq = torch.zeros_like(mu)
    for c in range(0, len(rows), _CHUNK):  # float64 sums in chunks: exact enough, small memory
        x = X[:, rows[c:c + _CHUNK]].double()
        mu += x.sum(1)
        sq += (x * x).sum(1)
    mu /= len(rows)
    var = (sq / len(rows) - mu * mu).clamp_min(0)
    return mu.float(), var.sqrt().clamp_min(1e-6).float()


@dataclass
class SoftmaxState:
    """Weights, Adam moments, and early-stopping bookkeeping for all (unit, task) cells.

    Everything is a tensor so a checkpoint is one safetensors file (see :meth:`tensors`).
    ``W``/``b`` are in standardised feature space; ``best_W``/``best_b`` are the weights at each
    cell's best validation cross-entropy ``best_val``; ``bad`` counts epochs without
    improvement; ``epoch`` and ``step`` are 0-d tensors.
    """

    W: Float[Tensor, "unit feature task cls"]
    b: Float[Tensor, "unit task cls"]
    mW: Float[Tensor, "unit feature task cls"]
    vW: Float[Tensor, "unit feature task cls"]
    mb: Float[Tensor, "unit task cls"]
    vb: Float[Tensor, "unit task cls"]
    best_W: Float[Tensor, "unit feature task cls"]
    best_b: Float[Tensor, "unit task cls"]
    best_val: Float[Tensor, "unit task"]
    best_epoch: Int[Tensor, "unit task"]
    bad: Int[Tensor, "unit task"]
    epoch: Int[Tensor, ""]
    step: Int[Tensor, ""]
    mu: Float[Tensor, "unit feature"]
    sd: Float[Tensor, "unit feature"]

    def tensors(self) -> dict[str, Tensor]:
        return {k: v.contiguous().cpu() for k, v in vars(self).items()}

    @classmethod
    def from_tensors(cls, d: dict[str, Tensor], device: torch.device) -> SoftmaxState:
        return cls(**{k: v.to(device) for k, v in d.items()})

    def done(self, patience: int) -> Bool[Tensor, "unit task"]:
        return self.bad >= patience

    def raw(self) -> tuple[Float[Tensor, "unit feature task cls"], Float[Tensor, "unit task cls"]]:
        """Best weights acting on raw activations (standardisation folded in)."""
        W = self.best_W / self.sd[:, :, None, None]
        b = self.best_b - torch.einsum("ud,udtc->utc", self.mu / self.sd, self.best_W)
        return W, b


def _init_state(X, y, n_classes, train, device) -> SoftmaxState:
    U, _, d = X.shape
    T = y.shape[1]
    mu, sd = standardizer(X, train)
    # Start from the log prior: the same optimum, reached in fewer steps.
    counts = torch.stack([torch.bincount(y[train, t], minlength=n_classes) for t in range(T)]).float()
    b = torch.log((counts + 1) / (counts.sum(1, keepdim=True) + n_classes)).expand(U, T, n_classes).clone()
    W = torch.zeros(U, d, T, n_classes)
    z = torch.zeros
    state = SoftmaxState(
        W=W, b=b, mW=z(U, d, T, n_classes), vW=z(U, d, T, n_classes), mb=z(U, T, n_classes),
        vb=z(U, T, n_classes), best_W=W.clone(), best_b=b.clone(), best_val=torch.full((U, T), math.inf),
        best_epoch=torch.zeros(U, T, dtype=torch.long), bad=torch.zeros(U, T, dtype=torch.long),
        epoch=torch.tensor(0), step=torch.tensor(0), mu=mu, sd=sd,
    )
    return SoftmaxState.from_tensors(state.tensors(), device)


def _logits(xs: Float[Tensor, "unit m feature"], W: Float[Tensor, "unit feature task cls"],
            b: Float[Tensor, "unit task cls"]) -> Float[Tensor, "unit m task cls"]:
    U, d, T, C = W.shape
    return torch.einsum("umd,udk->umk", xs, W.reshape(U, d, T * C)).view(U, -1, T, C) + b[:, None]


def _batch(X, rows, units, state, device) -> Tensor:
    # gather only the rows needed (X[units] alone would copy every example of those units)
    x = X[units.cpu()[:, None], rows[None, :]] if units is not None else X[:, rows]
    x = x.to(device)
    mu = state.mu if units is None else state.mu[units]
    sd = state.sd if units is None else state.sd[units]
    return (x - mu[:, None]) / sd[:, None]


def _val_nll(X, y, rows, state, units, device) -> Float[Tensor, "unit task"]:
    W = state.W if units is None else state.W[units]
    b = state.b if units is None else state.b[units]
    total = torch.zeros(W.shape[0], W.shape[2], device=device)
    for c in range(0, len(rows), _CHUNK):
        r = rows[c:c + _CHUNK]
        lp = torch.log_softmax(_logits(_batch(X, r, units, state, device), W, b), -1)
        yb = y[r].to(device)
        total -= lp.gather(-1, yb[None, :, :, None].expand(W.shape[0], -1, -1, 1))[..., 0].sum(1)
    return total / len(rows)


def fit_softmax(
    X: Float[Tensor, "unit n feature"],
    y: Int[Tensor, "n task"],
    n_classes: int,
    train: Int[Tensor, " n_train"],
    val: Int[Tensor, " n_val"],
    cfg: TrainSpec,
    device: torch.device,
    *,
    state: SoftmaxState | None = None,
    on_epoch: Callable[[SoftmaxState], None] | None = None,
    verbose: bool = False,
) -> SoftmaxState:
    """Train softmax-regression probes for every (unit, task) at once (see module docstring).

    Args:
        X: features of all examples (may stay on the CPU; minibatches move to ``device``).
        y: class ids per example and task.
        n_classes: size of the (shared) class space.
        train, val: example rows of the training and validation splits.
        cfg: weight decay, learning rate, epochs, patience, batch size and seed.
        device: where to compute.
        state: a checkpointed state to continue from (resume).
        on_epoch: called with the state after every epoch (checkpointing).
        verbose: show a progress bar.

    Returns:
        The final state; ``state.raw()`` gives the best weights for raw activations.
    """
    if state is None:
        state = _init_state(X, y, n_classes, train, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(int(state.epoch)):  # replay the permutations already used, for exact resume
        torch.randperm(len(train), generator=gen)
    lam = cfg.weight_decay
    b1, b2 = _BETAS
    bar = tqdm(total=cfg.max_epochs, initial=int(state.epoch), desc="training probes", disable=not verbose)
    while int(state.epoch) < cfg.max_epochs and not bool(state.done(cfg.patience).all()):
        active = (~state.done(cfg.patience)).any(1)
        units = None if bool(active.all()) else torch.nonzero(active)[:, 0]
        W = state.W if units is None else state.W[units]
        b = state.b if units is None else state.b[units]
        mW, vW = (state.mW, state.vW) if units is None else (state.mW[units], state.vW[units])
        mb, vb = (state.mb, state.vb) if units is None else (state.mb[units], state.vb[units])
        perm = train[torch.randperm(len(train), generator=gen)]
        for c in range(0, len(perm), cfg.batch_size):
            r = perm[c:c + cfg.batch_size]
            xs = _batch(X, r, units, state, device)
            p = torch.softmax(_logits(xs, W, b), -1)
            yb = y[r].to(device)
            p.scatter_add_(-1, yb[None, :, :, None].expand(p.shape[0], -1, -1, 1),
                           torch.full((p.shape[0], len(r), p.shape[2], 1), -1.0, device=device))
            p /= len(r)
            U, d, T, C = W.shape
            gW = torch.einsum("umd,umk->udk", xs, p.view(U, len(r), T * C)).view(U, d, T, C) + 2 * lam * W
            gb = p.sum(1)
            state.step += 1
            t = int(state.step)
            for param, g, m, v in ((W, gW, mW, vW), (b, gb, mb, vb)):
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2 ** t)).sqrt_().add_(_EPS)
                param.addcdiv_(m, denom, value=-cfg.lr / (1 - b1 ** t))
        if units is not None:  # write the active units back
            for full, part in ((state.W, W), (state.b, b), (state.mW, mW), (state.vW, vW), (state.mb, mb), (state.vb, vb)):
                full[units] = part
        state.epoch += 1
        nll = torch.full_like(state.best_val, math.inf)
        nll[active] = _val_nll(X, y, val, state, units, device)
        better = (nll < state.best_val - 1e-5) & ~state.done(cfg.patience)
        state.best_val = torch.where(better, nll, state.best_val)
        state.best_epoch = torch.where(better, state.epoch, state.best_epoch)
        state.bad = torch.where(better, 0, state.bad + (~state.done(cfg.patience)).long())
        state.best_W = torch.where(better[:, None, :, None], state.W, state.best_W)
        state.best_b = torch.where(better[:, :, None], state.b, state.best_b)
        bar.update(1)
        bar.set_postfix(active=int(active.sum()), val_nll=f"{float(state.best_val[torch.isfinite(state.best_val)].mean()):.3f}")
        if on_epoch is not None:
            on_epoch(state)
    bar.close()
    return state


@torch.no_grad()
def softmax_outputs(
    X: Float[Tensor, "unit n feature"],
    y: Int[Tensor, "n task"],
    W: Float[Tensor, "unit feature task cls"],
    b: Float[Tensor, "unit task cls"],
    device: torch.device,
) -> dict[str, Tensor]:
    """Per-example outputs of raw-space probes: ``correct``, ``top5`` (bool) and ``nll``,
    each ``[unit, task, n]``, and the top-1 prediction ``pred``."""
    U, _, T, C = W.shape
    out = {k: torch.empty(U, T, X.shape[1], dtype=dt) for k, dt in
           (("correct", torch.bool), ("top5", torch.bool), ("nll", torch.float32), ("pred", torch.long))}
    W, b = W.to(device), b.to(device)
    k = min(5, C)
    for c in range(0, X.shape[1], _CHUNK):
        x = X[:, c:c + _CHUNK].to(device)
        lp = torch.log_softmax(_logits(x, W, b), -1)  # [U, m, T, C]
        yb = y[c:c + _CHUNK].to(device)[None, :, :, None].expand(U, -1, -1, 1)
        top = lp.topk(k, -1).indices
        out["pred"][:, :, c:c + _CHUNK] = top[..., 0].transpose(1, 2).cpu()
        out["correct"][:, :, c:c + _CHUNK] = (top[..., :1] == yb).any(-1).transpose(1, 2).cpu()
        out["top5"][:, :, c:c + _CHUNK] = (top == yb).any(-1).transpose(1, 2).cpu()
        out["nll"][:, :, c:c + _CHUNK] = -lp.gather(-1, yb)[..., 0].transpose(1, 2).cpu()
    return out


@dataclass
class RidgeFit:
    """Closed-form ridge probes for raw activations, and the penalty chosen per cell."""

    W: Float[Tensor, "unit feature task out"]
    b: Float[Tensor, "unit task out"]
    alpha: Float[Tensor, "unit task"]


def _r2(pred: Float[Tensor, "unit m task out"], y: Float[Tensor, "unit m task out"]) -> Float[Tensor, "unit task"]:
    """Variance-weighted R² over the output dimensions: 1 − Σ(y−ŷ)² / Σ(y−ȳ)²."""
    sse = ((y - pred) ** 2).sum((1, 3))
    sst = ((y - y.mean(1, keepdim=True)) ** 2).sum((1, 3)).clamp_min(1e-12)
    return 1 - sse / sst


@torch.no_grad()
def fit_ridge(
    X: Float[Tensor, "unit n feature"],
    Y: Float[Tensor, "target_unit n task out"],
    train: Int[Tensor, " n_train"],
    val: Int[Tensor, " n_val"],
    alphas: list[float],
    device: torch.device,
) -> RidgeFit:
    """Ridge regression of ``Y[u]`` on ``X[u]`` for every unit, α chosen on ``val`` per cell.

    Solves ``min_W ||X̃W − (Y − Ȳ)||² + α n ||W||²`` on standardised features in float64
    (module docstring). ``Y`` may have a leading size of 1 (the same target for every unit).
    """
    mu, sd = standardizer(X, train)
    mu, sd = mu.to(device).double(), sd.to(device).double()
    Xt = ((X[:, train].to(device).double() - mu[:, None]) / sd[:, None])
    Xv = ((X[:, val].to(device).double() - mu[:, None]) / sd[:, None])
    U, n, d = Xt.shape
    Yt, Yv = Y[:, train].to(device).double(), Y[:, val].to(device).double()
    _, _, T, D = Yt.shape
    ybar = Yt.mean(1)  # [U', T, D]
    XtY = torch.einsum("und,unk->udk", Xt, (Yt - ybar[:, None]).reshape(Yt.shape[0], n, T * D))
    s, Q = torch.linalg.eigh(torch.einsum("und,une->ude", Xt, Xt))
    proj = torch.einsum("ude,udk->uek", Q, XtY)  # Qᵀ XᵀY
    best = torch.full((U, T), -math.inf, dtype=torch.float64, device=device)
    W_best = torch.zeros(U, d, T, D, dtype=torch.float64, device=device)
    alpha = torch.zeros(U, T, dtype=torch.float64, device=device)
    for a in alphas:
        W = torch.einsum("ude,uek->udk", Q, proj / (s + a * n)[:, :, None]).view(U, d, T, D)
        pred = torch.einsum("umd,udk->umk", Xv, W.view(U, d, T * D)).view(U, -1, T, D) + ybar[:, None]
        r2 = _r2(pred, Yv.expand(U, -1, -1, -1))
        better = r2 > best
        best = torch.where(better, r2, best)
        alpha = torch.where(better, torch.tensor(a, dtype=torch.float64, device=device), alpha)
        W_best = torch.where(better[:, None, :, None], W, W_best)
    W_raw = W_best / sd[:, :, None, None]
    b_raw = ybar.expand(U, T, D) - torch.einsum("ud,udtk->utk", mu / sd, W_best)
    return RidgeFit(W=W_raw.float().cpu(), b=b_raw.float().cpu(), alpha=alpha.float().cpu())


@torch.no_grad()
def ridge_outputs(X: Float[Tensor, "unit n feature"], W: Float[Tensor, "unit feature task out"],
                  b: Float[Tensor, "unit task out"], device: torch.device) -> Float[Tensor, "unit n task out"]:
    """Predictions ``X W + b`` of raw-space ridge probes."""
    U, d, T, D = W.shape
    out = torch.einsum("und,udk->unk", X.to(device).double(), W.to(device).double().view(U, d, T * D))
    return (out.view(U, -1, T, D) + b.to(device).double()[:, None]).float().cpu()
