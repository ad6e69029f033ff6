"""Pause training of a real LM (Goyal et al. 2024): fine-tune with ``<pause>`` tokens inserted
at random, their own losses masked, so the model learns to use the extra positions.

**What is trained.** A low-rank adapter (LoRA, Hu et al. 2021) on every attention and MLP
projection (``W x`` becomes ``W x + (α / r) · B A x`` with ``A: [r, d_in]`` random and
``B: [d_out, r]`` zero at the start, so the first step starts from the base model), plus the new
``<pause>`` embedding row (initialised to the mean embedding by :func:`interp.add_pause_token`)
and, with ``countdown``, a learned countdown embedding: the k-th pause of a run of n gets
``c[min(n − k, C − 1)]`` added to its embedding ("pauses left after this one"), so the model
knows when the run ends. The base weights stay frozen; with a tied unembedding the pause row is
also the pause logit's row (kept equal to the trained row, no gradient through it).

**Data.** The corpus is cut into windows of ``n_tokens`` tokens (BOS first); documents are
split into training and held-out ones (every ``1 / holdout``-th document, by position). The
training windows are shuffled once with ``seed``; step s reads windows ``s·B … s·B + B − 1``
(no window is seen twice) and inserts pauses with ``PausePolicy(rate, n, n_max)`` seeded by
``(seed, s, b)``. So the data at a step depend on the step only, and a resumed run is the
uninterrupted one.

**Loss.** The mean next-token cross-entropy over the loss mask of :mod:`interp.core.pauses`: no
position is asked to predict a pause, and the last pause of a run predicts the next real token.
Every real token is the target of exactly one position with or without pauses, so "loss on real
tokens" is comparable between the two.

**Optimiser.** AdamW with the warm-up/cosine schedule of :func:`interp.training.toy.lr_at`, gradient
clipping, and the checkpoint format of :mod:`interp.training.toy` (parameters and AdamW moments in one
safetensors file, then ``state.json`` written atomically).

**Files** (``out``): ``adapter.safetensors`` (``lora.<layer>_<module>_A|B``, ``pause_row``,
``countdown``; the trained weights alone), ``adapter_config.json`` (the base model, rank, α,
targets, pause token id: what :func:`interp.load_model` needs), ``checkpoint.safetensors``
(weights + AdamW moments) and ``state.json`` (step, config, history) for resuming, and at the
end ``history.csv``.

**Loading.** ``interp.load_model(out)`` loads the base named in ``adapter_config.json``, adds
the ``<pause>`` token, and merges the adapter into the weights (``W += (α / r) · B A``), so the
result is an ordinary bridge on which every instrument runs unchanged;
``interp.load_model("smollm2-135m", adapter=out)`` does the same and checks that the base
matches.

Example:
    >>> cfg = interp.training.pause.PauseTrainConfig()          # the defaults: 400 steps
    >>> result = interp.pause_train(cfg, out="results/pause_ckpt")
    >>> model = interp.load_model("results/pause_ckpt")
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._types import Bool, Float, Int, Tensor
from ..core import model as core_model
from ..core.io import atomic_save_tensors, atomic_write_csv, atomic_write_json, dataclass_from_dict
from ..core.loss import token_losses
from ..core.model import Bridge
from ..core.pauses import PausedSequence, PausePolicy, insert_pauses, pad_batch
from ..errors import InterpError, refuse_renamed
from ..models.adapter import (
    ADAPTER_CONFIG,
    ADAPTER_FILE,
    LORA_TARGETS,
    PauseAdapter,
    base_key,
    base_name,
    countdown_index,
    is_adapter_dir,
    load_adapter,
    read_adapter_config,
)
from ._pause_sites import lm_readout_batch, site_batch, site_loss, training_sites
from .learned_pauses import cost_ramp
from .toy import cosine_lr, load_training_tensors, save_training_tensors
from .toy._loop import check_resume, clear_run, read_checkpoint_state

# The adapter and its files live in interp.models.adapter (load_model reads them); its names
# stay importable from here, where pause training has always exported them.
__all__ = [
    "ADAPTER_CONFIG",
    "LORA_TARGETS",
    "PauseAdapter",
    "PauseTrainConfig",
    "PauseTrainResult",
    "countdown_index",
    "is_adapter_dir",
    "load_adapter",
    "pause_train",
    "read_adapter_config",
    "real_token_loss",
    "split_windows",
]


@dataclass
class PauseTrainConfig:
    """One pause-training run.

    Attributes:
        base: the model to fine-tune: a name for :func:`interp.load_model` or a
            :class:`interp.TinyConfig` as a dict (tests).
        corpus: a corpus for :func:`interp.load_corpus` (``None``: the bundled one).
        n_tokens: window length in tokens, BOS included, before pauses are inserted.
        pause_rate: probability of a pause run before each content token, in [0, 1).
        pause_n: fewest pauses per run.
        pause_n_max: most pauses per run (uniform between ``pause_n`` and this; ``None``:
            always ``pause_n``).
        countdown: size C of the learned countdown embedding (0: none); see the module
            docstring.
        rank: LoRA rank r.
        alpha: LoRA scale α (the update is ``(α / r) · B A``).
        targets: projections that get a LoRA, among :data:`LORA_TARGETS`.
        steps: optimiser steps.
        batch_size: windows per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay (LoRA matrices only).
        warmup: linear warm-up steps.
        min_lr_ratio: the cosine schedule ends at ``min_lr_ratio · lr``.
        grad_clip: clip the global gradient norm (0: no clipping).
        holdout: fraction of documents held out for evaluation.
        eval_windows: held-out windows evaluated every ``eval_every`` steps.
        eval_every: evaluate and checkpoint every this many steps.
        seed: seeds the adapter's initialisation, the window order and the pause positions.
        learned: train learned pause requests instead of random pauses: the model decides
            how many pauses to take before each next token, each costing ``lam``
            (:mod:`interp.training.learned_pauses_lm`); ``pause_rate``, ``pause_n`` and
            ``pause_n_max`` are then unused.
        lam: the cost λ of one pause in nats of next-token loss (``learned`` only).
        max_pauses: the cap K on pauses before one token (``learned`` only).
        sites: decision sites per training window (``learned`` only).
        explore, ramp_start, ramp_end: the exploration weight β and the cost curriculum of
            :class:`interp.training.learned_pauses.LearnedPauseConfig` (``learned`` only):
            pauses are free and β·KL(P(stop) ‖ uniform) is added until ``ramp_start``
            (a fraction of the steps), then λ rises and β falls linearly until ``ramp_end``.
    """

    base: str | dict = "smollm2-135m"
    corpus: str | None = None
    n_tokens: int = 64
    pause_rate: float = 0.1
    pause_n: int = 1
    pause_n_max: int | None = 3
    countdown: int = 0
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = LORA_TARGETS
    steps: int = 400
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 5
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    holdout: float = 0.1
    eval_windows: int = 8
    eval_every: int = 20
    seed: int = 0
    learned: bool = False
    lam: float = 0.0
    max_pauses: int = 4
    sites: int = 4
    explore: float = 0.1
    ramp_start: float = 0.5
    ramp_end: float = 0.7

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise InterpError(f"pause cost lam={self.lam} is negative",
                              "give a cost per pause >= 0 (0: pauses are free)")
        if self.max_pauses < 1:
            raise InterpError(f"max_pauses={self.max_pauses}: a cap of {self.max_pauses} pauses "
                              "leaves the model nothing to decide",
                              "give max_pauses >= 1, or train without --learned")
        if not 0.0 <= self.ramp_start <= self.ramp_end <= 1.0 or self.explore < 0:
            raise InterpError(f"PauseTrainConfig needs 0 <= ramp_start <= ramp_end <= 1 and "
                              f"explore >= 0, got ramp_start={self.ramp_start}, ramp_end="
                              f"{self.ramp_end}, explore={self.explore}",
                              "give the fractions of the steps where the cost starts and "
                              "finishes ramping up (0, 0: full cost from the start)")
        if not 0.0 <= self.pause_rate < 1.0:
            raise InterpError(f"pause_rate={self.pause_rate} is outside [0, 1)",
                              "use a probability such as 0.1 (0 trains without pauses)")
        for name in ("n_tokens", "pause_n", "rank", "steps", "batch_size", "eval_windows",
                     "eval_every", "sites"):
            if getattr(self, name) < 1:
                raise InterpError(f"PauseTrainConfig.{name} must be >= 1, got "
                                  f"{getattr(self, name)}", f"use {name} >= 1")
        if self.pause_n_max is not None and self.pause_n_max < self.pause_n:
            raise InterpError(f"pause_n_max={self.pause_n_max} is below pause_n={self.pause_n}",
                              "use pause_n_max >= pause_n, or None for a fixed count")
        if self.countdown < 0 or self.warmup < 0:
            raise InterpError("PauseTrainConfig.countdown and warmup must be >= 0",
                              "use countdown >= 0 and warmup >= 0 (0: none)")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.grad_clip >= 0
                and self.weight_decay >= 0 and self.alpha > 0):
            raise InterpError("PauseTrainConfig needs lr > 0, alpha > 0, 0 <= min_lr_ratio <= 1, "
                              "grad_clip >= 0 and weight_decay >= 0",
                              f"change the value out of range (lr={self.lr}, alpha={self.alpha}, "
                              f"min_lr_ratio={self.min_lr_ratio}, grad_clip={self.grad_clip}, "
                              f"weight_decay={self.weight_decay})")
        if not 0.0 < self.holdout < 1.0:
            raise InterpError(f"holdout={self.holdout} is outside (0, 1)", "use e.g. 0.1")
        self.targets = tuple(self.targets)
        bad = sorted(set(self.targets) - set(LORA_TARGETS))
        if bad or not self.targets:
            raise InterpError(f"unknown LoRA target(s) {bad or '(none given)'}",
                              f"choose among: {', '.join(LORA_TARGETS)}")

    #: what :meth:`learned_run` changes: a sweep of three λ on SmolLM2 in ~30 min of CPU
    LEARNED_DEFAULTS = dict(steps=40, n_tokens=32, batch_size=2, sites=4, eval_windows=16,
                            eval_every=20, lr=5e-3, explore=1.0)

    @classmethod
    def learned_run(cls, **overrides: Any) -> PauseTrainConfig:
        """A learned-pause run (``learned=True``) with the defaults of
        ``interp pause-train --learned``: :attr:`LEARNED_DEFAULTS` (short runs, so that one
        adapter per λ fits a CPU budget; exploration β = 1, which the runs need to take
        any pause at all), then ``overrides``."""
        return cls(**{**cls.LEARNED_DEFAULTS, "learned": True, **overrides})

    def policy(self, seed: int) -> PausePolicy:
        """The random insertion policy of one training window."""
        return PausePolicy(rate=self.pause_rate, n=self.pause_n, n_max=self.pause_n_max,
                           seed=seed)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PauseTrainConfig:
        """Build from a dict (``state.json``), naming any unknown field."""
        return dataclass_from_dict(cls, d)


# -- data and loss ---------------------------------------------------------------------------

def split_windows(model: Bridge, config: PauseTrainConfig) -> tuple[list[PausedSequence], list[PausedSequence]]:
    """Training and held-out windows of the corpus (split by document; see the module
    docstring); the training ones shuffled with ``config.seed``."""
    from ..core.corpora import load_corpus, windows

    docs = load_corpus(config.corpus)
    every = max(int(round(1 / config.holdout)), 2)
    held = [d for i, d in enumerate(docs) if i % every == every - 1]
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    if not held:
        raise InterpError(f"the corpus has {len(docs)} documents, too few to hold some out",
                          "use a corpus with more documents or a larger holdout")
    tr = [w.seq for w in windows(model, train, config.n_tokens)]
    ev = [w.seq for w in windows(model, held, config.n_tokens, max_windows=config.eval_windows)]
    order = np.random.default_rng(config.seed).permutation(len(tr))
    return [tr[i] for i in order], ev


def real_token_loss(model: Bridge, seqs: Sequence[PausedSequence], *, batch_size: int = 4,
                    pad_id: int = 0) -> Float[Tensor, " batch"]:
    """Mean next-token loss over each sequence's loss mask (real targets only), one value per
    sequence, computed with gradients when enabled."""
    out = []
    for i in range(0, len(seqs), batch_size):
        tokens, _, _, mask = pad_batch(list(seqs[i:i + batch_size]), pad_id)
        tokens, mask = tokens.to(core_model.device(model)), mask.to(core_model.device(model))
        losses = token_losses(model(tokens), tokens, mask)
        out.append(losses.sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(out)


def _sites(config: PauseTrainConfig, seqs: Sequence[PausedSequence], seed: tuple[int, ...]
           ) -> list[list[int]]:
    """``config.sites`` decision sites per window, window b seeded by ``(*seed, b)``."""
    return training_sites(config.sites, seqs, [hash_seed(*seed, b) for b in range(len(seqs))])


def _paused(config: PauseTrainConfig, seqs: Sequence[PausedSequence], pause_id: int,
            seed: tuple[int, ...]) -> list[PausedSequence]:
    """``seqs`` with pauses inserted at random, window b seeded by ``(*seed, b)``."""
    if config.pause_rate == 0:
        return list(seqs)
    return [insert_pauses(s, config.policy(hash_seed(*seed, b)), pause_id)
            for b, s in enumerate(seqs)]


def hash_seed(*parts: int) -> int:
    """One integer seed from several (stable across runs, unlike ``hash``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# -- training ---------------------------------------------------------------------------------

@dataclass
class PauseTrainResult:
    """A pause-training run.

    Attributes:
        config: the run's configuration.
        model: the bridge with the adapter attached by hooks (eval mode).
        adapter: the :class:`PauseAdapter`.
        history: one row per evaluation: ``step``, ``lr``, ``train_loss``,
            ``eval_loss_pauses``, ``eval_loss_plain``, ``elapsed_s``, ``tokens``; with
            ``learned``, the loss on held-out sites after the model's own pause count, the
            loss there without pauses, and ``mean_pauses`` (the count's mean).
        out: the output folder (``None`` when kept in memory).
    """

    config: PauseTrainConfig
    model: Any
    adapter: PauseAdapter
    history: pd.DataFrame
    out: Path | None = None
    timings: dict = field(default_factory=dict)


HISTORY_COLUMNS = ["step", "lr", "train_loss", "eval_loss_pauses", "eval_loss_plain",
                   "elapsed_s", "tokens", "mean_pauses"]


def _load_base(config: PauseTrainConfig, device):
    from ..models import TinyConfig, load_model

    base = TinyConfig.from_dict(config.base) if isinstance(config.base, dict) else config.base
    return load_model(base, device=device)


def pause_train(config: PauseTrainConfig, out: str | os.PathLike | None = None, *,
                model=None, train_windows: Sequence[PausedSequence] | None = None,
                eval_windows: Sequence[PausedSequence] | None = None, fresh: bool = False,
                stop_after: int | None = None, device: str | None = None,
                verbose: bool = True, **old) -> PauseTrainResult:
    """Pause-train ``config.base`` (see the module docstring).

    Args:
        config: the run.
        out: folder for the adapter, checkpoint and history; ``None`` keeps it in memory.
        model: the base model already loaded (must be ``config.base``; it is modified).
        train_windows, eval_windows: token windows to use instead of the corpus (models
            without a tokenizer); the training ones are used in the order given.
        fresh: start over even if ``out`` holds a checkpoint (``--fresh``); by default it is
            continued. ``resume=`` of earlier releases raises, naming this.
        stop_after: stop after this step (checkpointed there when it is an evaluation step),
            as an interruption would; the schedule still runs to ``config.steps``.
        device: ``None`` or ``"auto"``: CUDA when present.
        verbose: progress bar.

    Returns:
        A :class:`PauseTrainResult`.

    Raises:
        InterpError: too few windows for ``steps × batch_size``; a checkpoint in ``out`` from
            another configuration or base model.
    """
    refuse_renamed("pause_train", old, {"resume": ("fresh", operator.not_)})
    out_dir = Path(out) if out is not None else None
    state = None
    if out_dir is not None and fresh and out_dir.is_dir():
        clear_run(out_dir, PAUSE_FILES)
    if out_dir is not None and not fresh and (out_dir / "state.json").is_file():
        state = (read_checkpoint_state(out_dir / "checkpoint.safetensors")
                 if (out_dir / "checkpoint.safetensors").is_file() else None)
        state = state or json.loads((out_dir / "state.json").read_text())
        _check_resume(out_dir, state, config)
    model = model if model is not None else _load_base(config, device)
    for p in model.parameters():
        p.requires_grad_(False)
    adapter = PauseAdapter(model, rank=config.rank, alpha=config.alpha, targets=config.targets,
                           countdown=config.countdown, seed=config.seed, pause_logit=config.learned)
    pid = adapter.pause_id
    if train_windows is None or eval_windows is None:
        tr, ev = split_windows(model, config)
        train_windows = tr if train_windows is None else train_windows
        eval_windows = ev if eval_windows is None else eval_windows
    need = config.steps * config.batch_size
    if len(train_windows) < need:
        raise InterpError(
            f"the corpus gives {len(train_windows)} training windows of {config.n_tokens} tokens, "
            f"fewer than steps × batch_size = {config.steps} × {config.batch_size} = {need} "
            "(no window is used twice)",
            "use fewer --steps, a smaller --batch-size or --n-tokens, or a larger --corpus")
    eval_plain = list(eval_windows)
    eval_paused = _paused(config, eval_plain, pid, (config.seed, 10**9))
    if config.learned:
        eval_sites = site_batch(eval_plain, _sites(config, eval_plain, (config.seed, 10**9)), pid,
                                config.max_pauses, _pad_id(model))

    lora = [p for k, p in adapter.lora.items()]
    named = dict(adapter.named_parameters())
    rows = [p for p in (adapter.pause_row, adapter.countdown, adapter.pause_out) if p.requires_grad]
    opt = torch.optim.AdamW(
        [dict(params=lora, weight_decay=config.weight_decay),
         dict(params=rows, weight_decay=0.0)],
        lr=config.lr, betas=(0.9, 0.98))
    trainable = {k: p for k, p in named.items() if p.requires_grad}
    start, history, elapsed = 0, [], 0.0
    if state is not None:
        start, history, elapsed = state["step"], state["history"], state["elapsed_s"]
        load_training_tensors(out_dir / "checkpoint.safetensors", trainable, opt, start)
        adapter.sync_pause_row()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / ADAPTER_CONFIG, adapter.config(config.base, base_key(model)))

    adapter.attach()
    model.train()
    pad = _pad_id(model)
    losses: list[float] = []
    n_tok = 0
    t0 = time.perf_counter() - elapsed
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    bar = tqdm(range(start, end), initial=start, total=config.steps,
               disable=not verbose, desc="pause-train")
    for step in bar:
        lr = cosine_lr(step, lr=config.lr, warmup=config.warmup, steps=config.steps,
                       min_lr_ratio=config.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = train_windows[step * config.batch_size:(step + 1) * config.batch_size]
        if config.learned:
            sites = site_batch(batch, _sites(config, batch, (config.seed, step)), pid,
                               config.max_pauses, pad)
            loss, _ = site_loss(model, sites, pid, config.lam, explore=config.explore,
                                ramp=cost_ramp(config, step))
            tokens = sites.tokens
        else:
            seqs = _paused(config, batch, pid, (config.seed, step))
            tokens, _, _, mask = pad_batch(seqs, pad)
            loss = _batch_loss(model, tokens, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(trainable.values()), config.grad_clip)
        opt.step()
        adapter.sync_pause_row()
        losses.append(float(loss.detach()))
        n_tok += int(tokens.numel())
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            row = dict(step=done, lr=lr, train_loss=float(np.mean(losses)),
                       **(_eval_learned(model, eval_sites, config, pid) if config.learned
                          else _eval(model, eval_paused, eval_plain, pad)),
                       elapsed_s=time.perf_counter() - t0, tokens=done * config.batch_size
                       * config.n_tokens)
            history.append(row)
            losses.clear()
            bar.set_postfix(loss=f"{row['eval_loss_pauses']:.3f}")
            if out_dir is not None:
                _save(out_dir, adapter, trainable, opt, config, done, history, row["elapsed_s"])
    bar.close()
    model.eval()
    hist = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    if out_dir is not None:
        atomic_write_csv(out_dir / "history.csv", hist)
    return PauseTrainResult(config=config, model=model, adapter=adapter, history=hist,
                            out=out_dir)


#: what pause_train writes in its folder, the resume marker first (``--fresh`` removes them in
#: this order before the new adapter_config.json is written, so a kill part-way never leaves
#: a new config beside old adapter weights)
PAUSE_FILES = ("state.json", "checkpoint.safetensors", ADAPTER_CONFIG, ADAPTER_FILE,
               "history.csv")


def _pad_id(model: Bridge) -> int:
    tok = getattr(model, "tokenizer", None)
    pad = None if tok is None else tok.pad_token_id
    return 0 if pad is None else int(pad)


def _batch_loss(model: Bridge, tokens: Int[Tensor, "batch pos"],
                mask: Bool[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """Mean next-token loss over every position the mask keeps (the whole batch at once)."""
    tokens, mask = tokens.to(core_model.device(model)), mask.to(core_model.device(model))
    return token_losses(model(tokens), tokens, mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def _eval(model: Bridge, paused: list[PausedSequence], plain: list[PausedSequence],
          pad: int) -> dict[str, float]:
    was = model.training
    model.eval()
    res = dict(eval_loss_pauses=float(real_token_loss(model, paused, pad_id=pad).mean()),
               eval_loss_plain=float(real_token_loss(model, plain, pad_id=pad).mean()))
    model.train(was)
    return res


@torch.no_grad()
def _eval_learned(model: Bridge, sites, config: PauseTrainConfig, pid: int) -> dict[str, float]:
    """Held-out sites of a learned-pause run: the loss after the model's own (greedy)
    pause count, the loss without pauses, and the mean count."""
    r = lm_readout_batch(model, sites, config.max_pauses, pid)
    return dict(eval_loss_pauses=r.loss_at(r.stop), eval_loss_plain=float(r.loss[:, 0].mean()),
                mean_pauses=r.mean_pauses)


def _save(out: Path, adapter: PauseAdapter, trainable: dict, opt, config: PauseTrainConfig,
          step: int, history: list[dict], elapsed: float) -> None:
    # The adapter file first, then the full checkpoint holding the state (step, history) in
    # its metadata, then state.json, its readable copy: a run killed at any point resumes from
    # a checkpoint and the step it belongs to.
    state = dict(step=step, config=config.to_dict(), history=history, elapsed_s=elapsed)
    atomic_save_tensors(out / ADAPTER_FILE, adapter.tensors())
    save_training_tensors(out / "checkpoint.safetensors", trainable, opt, state)
    atomic_write_json(out / "state.json", state)


def _check_resume(out: Path, state: dict, config: PauseTrainConfig) -> None:
    saved = dict(state["config"])
    if base_name(saved.get("base")) != base_name(config.base):
        raise InterpError(f"{out} holds a pause-training checkpoint of another base model "
                          f"({base_name(saved.get('base'))}, not {base_name(config.base)})",
                          "use another --out folder, or --fresh to start over")
    check_resume(out, state, config.to_dict(), what="pause-training run")
