"""The pause adapter and its file format: what :func:`interp.training.pause.pause_train` writes
and :func:`interp.load_model` reads back.

**What it is.** A low-rank adapter (LoRA, Hu et al. 2021) on attention and MLP projections
(``W x`` becomes ``W x + (α / r) · B A x`` with ``A: [r, d_in]`` random and ``B: [d_out, r]``
zero at the start), the ``<pause>`` embedding row and, with ``countdown``, a learned countdown
embedding: the k-th pause of a run of n gets ``c[min(n − k, C − 1)]`` added to its embedding.
It is attached by PyTorch forward hooks, so TransformerLens hooks see the adapted activations.
With ``pause_logit`` (learned pause requests) the ``<pause>`` logit is trained too: its
unembedding row is the pause row itself when the model ties its embeddings (a hook lets the
gradient through the tied row), else a row of its own, ``pause_out``.

**Files.** ``adapter.safetensors`` (``lora.<layer>_<module>_A|B``, ``pause_row``,
``countdown``, ``pause_out``: the trained weights alone) and ``adapter_config.json`` (the base model, rank, α,
targets, pause token id).

**Loading.** :func:`load_adapter` merges the adapter into the weights (``W += (α / r) · B A``),
so the result is an ordinary bridge on which every instrument runs unchanged. It lives with the
loaders, below training, because :func:`interp.load_model` reads these folders.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from .._types import Int, Tensor
from ..core import model as core_model
from ..core.model import Bridge
from ..core.pauses import add_pause_token
from ..errors import InterpError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_FILE",
    "ADAPTER_FORMAT",
    "LORA_TARGETS",
    "PauseAdapter",
    "base_key",
    "base_name",
    "countdown_index",
    "is_adapter_dir",
    "load_adapter",
    "read_adapter_config",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILE = "adapter.safetensors"
ADAPTER_FORMAT = "interp-pause-adapter-1"
#: The projections a LoRA can target, by their TransformerLens bridge names.
LORA_TARGETS = ("q", "k", "v", "o", "gate", "in", "out")
_ATTN = ("q", "k", "v", "o")


def countdown_index(tokens: Int[Tensor, "batch pos"], pause_id: int,
                    size: int) -> Int[Tensor, "batch pos"]:
    """For each pause, how many pauses of its run follow it, clipped to ``size − 1``; −1 at
    every other position. The k-th pause of a run of n gets n − k."""
    is_pause = tokens == pause_id
    out = torch.full_like(tokens, -1)
    left = torch.zeros(tokens.shape[0], dtype=tokens.dtype, device=tokens.device)
    for p in range(tokens.shape[1] - 1, -1, -1):
        here = is_pause[:, p]
        out[:, p] = torch.where(here, left.clamp(max=size - 1), out[:, p])
        left = torch.where(here, left + 1, torch.zeros_like(left))
    return out


def base_key(model: Bridge) -> dict:
    """What identifies a base model for an adapter: its name and shape (the vocabulary
    without the ``<pause>`` token)."""
    cfg = model.cfg
    extra = 1 if core_model.pause_id(model) is not None else 0
    return dict(model_name=str(cfg.model_name), n_layers=int(cfg.n_layers),
                d_model=int(cfg.d_model), n_heads=int(cfg.n_heads),
                d_vocab=int(cfg.d_vocab) - extra)


def base_name(base: str | dict) -> str:
    """The base model as one string (a config dict as sorted JSON), to compare and to name."""
    return json.dumps(base, sort_keys=True) if isinstance(base, dict) else str(base)


class PauseAdapter(torch.nn.Module):
    """LoRA matrices, the pause row and the countdown embedding, attached to a bridge by
    PyTorch forward hooks on its projections and its embedding (nothing in the bridge is
    replaced, so TransformerLens hooks see the adapted activations).

    Args:
        model: the bridge; gets a ``<pause>`` token if it has none.
        rank, alpha, targets, countdown: see :class:`interp.training.pause.PauseTrainConfig`.
        seed: seeds the A matrices (Kaiming-uniform, as in ``nn.Linear``).
        pause_logit: train the ``<pause>`` unembedding row (see the module docstring).
    """

    def __init__(self, model: Bridge, *, rank: int, alpha: float, targets: Sequence[str],
                 countdown: int = 0, seed: int = 0, pause_logit: bool = False):
        super().__init__()
        self.pause_id = add_pause_token(model)
        self.scale = alpha / rank
        self.rank, self.alpha, self.targets, self.countdown_size = rank, alpha, tuple(targets), countdown
        self._linears: dict[str, torch.nn.Linear] = {}
        g = torch.Generator().manual_seed(seed)
        emb = core_model.embedding(model)
        # kept out of the module tree: the adapter's parameters are its own weights only
        object.__setattr__(self, "_embedding", emb)
        param = emb.weight
        self.lora = torch.nn.ParameterDict()
        for layer in range(int(model.cfg.n_layers)):
            for t in self.targets:
                lin = core_model.projection(model, layer, t, attn=t in _ATTN)
                if not isinstance(lin, torch.nn.Linear):
                    raise InterpError(f"layer {layer} has no linear projection {t!r} for a LoRA",
                                      f"choose targets among those this model has (tried {t!r})")
                key = f"{layer}_{t}"
                a = torch.empty(rank, lin.in_features)
                bound = 1 / math.sqrt(lin.in_features)
                a.uniform_(-bound, bound, generator=g)
                self.lora[f"{key}_A"] = torch.nn.Parameter(a.to(param))
                self.lora[f"{key}_B"] = torch.nn.Parameter(param.new_zeros(lin.out_features, rank))
                self._linears[key] = lin
        self.pause_row = torch.nn.Parameter(param[self.pause_id].detach().clone())
        self.countdown = torch.nn.Parameter(param.new_zeros(max(countdown, 1), param.shape[1]),
                                            requires_grad=countdown > 0)
        unemb = core_model.unembedding(model)
        object.__setattr__(self, "_unembedding", unemb)
        self.pause_logit = pause_logit
        self.tied = unemb.weight is param
        # an untied model's <pause> unembedding row, trained on its own (a tied one uses
        # pause_row for both)
        self.pause_out = torch.nn.Parameter(unemb.weight[self.pause_id].detach().clone(),
                                            requires_grad=pause_logit and not self.tied)
        self._handles: list = []

    def tensors(self) -> dict[str, Tensor]:
        """The trained weights by their file names (see the module docstring)."""
        out = {f"lora.{k}": p.detach().contiguous() for k, p in self.lora.items()}
        out["pause_row"] = self.pause_row.detach().contiguous()
        if self.countdown_size:
            out["countdown"] = self.countdown.detach().contiguous()
        if self.pause_logit and not self.tied:
            out["pause_out"] = self.pause_out.detach().contiguous()
        return out

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for k, p in self.lora.items():
                p.copy_(tensors[f"lora.{k}"])
            self.pause_row.copy_(tensors["pause_row"])
            if self.countdown_size:
                self.countdown.copy_(tensors["countdown"])
            if self.pause_logit and not self.tied:
                self.pause_out.copy_(tensors["pause_out"])
            self.sync_pause_row()

    @torch.no_grad()
    def sync_pause_row(self) -> None:
        """Copy the trained pause row into the embedding matrix (and so, when tied, into the
        unembedding), and an untied trained ``pause_out`` into the unembedding, so that the
        frozen model and the hooked one agree."""
        self._embedding.weight[self.pause_id] = self.pause_row
        if self.pause_logit and not self.tied:
            self._unembedding.weight[self.pause_id] = self.pause_out

    def _unembed_hook(self, module, inputs, output):
        # the frozen weight already holds the row's value (sync_pause_row); adding
        # x · (row − row.detach()) = 0 changes no logit but lets the gradient reach the row
        row = self.pause_row if self.tied else self.pause_out
        x = inputs[0]
        delta = x @ (row - row.detach()).to(x.dtype)
        idx = torch.tensor([self.pause_id], device=output.device)
        return output.index_add(-1, idx, delta[..., None].to(output.dtype))

    def _lora_hook(self, key: str):
        a, b = self.lora[f"{key}_A"], self.lora[f"{key}_B"]

        def hook(module, inputs, output):
            return output + (inputs[0] @ a.T @ b.T) * self.scale

        return hook

    def _embed_hook(self, module, inputs, output):
        ids = inputs[0]
        is_pause = (ids == self.pause_id)[..., None]
        out = torch.where(is_pause, self.pause_row.to(output.dtype), output)
        if self.countdown_size:
            idx = countdown_index(ids, self.pause_id, self.countdown_size)
            out = out + torch.where(idx[..., None] >= 0, self.countdown[idx.clamp(min=0)], 0.0)
        return out

    def attach(self, *, lora: bool = True) -> PauseAdapter:
        """Register the hooks (the LoRA ones only with ``lora``); :meth:`detach` removes them."""
        self.detach()
        self._handles.append(self._embedding.register_forward_hook(self._embed_hook))
        if self.pause_logit:
            self._handles.append(self._unembedding.register_forward_hook(self._unembed_hook))
        if lora:
            for key, lin in self._linears.items():
                self._handles.append(lin.register_forward_hook(self._lora_hook(key)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``(α / r) · B A`` to every adapted weight and the pause row to the embedding;
        afterwards only the countdown (if any) still needs the embedding hook."""
        self.detach()
        for key, lin in self._linears.items():
            lin.weight += (self.lora[f"{key}_B"] @ self.lora[f"{key}_A"]) * self.scale
        self.sync_pause_row()
        if self.countdown_size:
            self._handles.append(self._embedding.register_forward_hook(self._embed_hook))

    def config(self, base: str | dict, base_key: dict) -> dict:
        return dict(format=ADAPTER_FORMAT, base=base, base_key=base_key, rank=self.rank,
                    alpha=self.alpha, targets=list(self.targets), countdown=self.countdown_size,
                    pause_id=self.pause_id, pause_logit=self.pause_logit)


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by :func:`interp.training.pause.pause_train`."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_adapter_config(path: str | os.PathLike) -> dict:
    """The ``adapter_config.json`` of a pause-training folder, checked."""
    path = Path(path)
    if not is_adapter_dir(path) or not (path / ADAPTER_FILE).is_file():
        raise InterpError(f"{path} holds no pause adapter ({ADAPTER_CONFIG} + {ADAPTER_FILE})",
                          "point at a folder written by `interp pause-train --out DIR`")
    cfg = json.loads((path / ADAPTER_CONFIG).read_text())
    if cfg.get("format") != ADAPTER_FORMAT:
        raise InterpError(f"{path / ADAPTER_CONFIG} has format {cfg.get('format')!r}, not "
                          f"{ADAPTER_FORMAT!r}", "retrain with this version of interp")
    return cfg


def load_adapter(model: Bridge, path: str | os.PathLike, *, base: str | dict | None = None):
    """Merge the adapter in ``path`` into ``model`` (see the module docstring).

    Args:
        model: the base model, freshly loaded (it gets the ``<pause>`` token).
        path: a folder written by :func:`interp.training.pause.pause_train`.
        base: the name ``model`` was loaded from, checked against the adapter's base.

    Returns:
        ``model``, adapted in place (``model.interp_adapter`` holds the :class:`PauseAdapter`).

    Raises:
        InterpError: no adapter in ``path``, or an adapter trained on another base model.
    """
    cfg = read_adapter_config(path)
    key = base_key(model)
    if key != cfg["base_key"]:
        raise InterpError(
            f"the adapter in {path} was trained on another base model, "
            f"{base_name(cfg['base'])} ({cfg['base_key']}), not on this one "
            f"({base_name(base) if base is not None else '?'}, {key})",
            f"load it with interp.load_model({str(path)!r}), which loads its own base model")
    if core_model.pause_id(model) not in (None, cfg["pause_id"]):
        raise InterpError("this model already has a different <pause> token",
                          "load a fresh base model for the adapter")
    adapter = PauseAdapter(model, rank=cfg["rank"], alpha=cfg["alpha"], targets=cfg["targets"],
                           countdown=cfg["countdown"], pause_logit=cfg.get("pause_logit", False))
    if adapter.pause_id != cfg["pause_id"]:
        raise InterpError(f"the <pause> id is {adapter.pause_id} here but {cfg['pause_id']} in "
                          "the adapter", "load the adapter into the base model it was trained on")
    adapter.load_tensors(load_file(str(Path(path) / ADAPTER_FILE)))
    adapter.merge()
    for p in adapter.parameters():
        p.requires_grad_(False)
    model.interp_adapter = adapter
    return model
