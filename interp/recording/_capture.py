"""Capture selected positions of selected sites in one forward pass.

Forward hooks gather the selected ``(row, position)`` pairs from each hooked activation as it
is produced, ``act[rows, positions]``, and copy them into preallocated buffers; the full
``[batch, pos, ...]`` activation is never kept. So memory grows with the number of selected
positions, not with sequence length × everything. The forward is abandoned once the deepest
recorded block's output exists (a last hook raises a private exception), so later blocks and
the unembedding, about a fifth of SmolLM2's compute, are never run.

Pattern rows. Hooks see ``[batch, head_index, q_pos, k_pos]``; the row of each selected query
position is kept, ``[head_index, k_pos]`` with ``k_pos`` the (padded) batch length. Entries
with ``k_pos > position`` are exactly zero under the causal mask, and right padding only adds
more such zeros, so rows from sequences of different lengths are stored zero-padded on the
right to one width without losing anything: row ``i`` is valid on ``k_pos <= position[i]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core import hooks
from ..core.model import Bridge, n_kv_heads
from ..core.model import rotary as native_rotary
from ..errors import InterpError
from ._sites import SitePlan


def trailing_shape(model: Bridge, site: str, width: int) -> tuple[int, ...]:
    """Shape stored per (position, layer) for ``site``; ``width`` is the pattern row length."""
    cfg = model.cfg
    if site.startswith("resid"):
        return (int(cfg.d_model),)
    if site in ("k", "v", "rot_k"):
        return (n_kv_heads(model), int(cfg.d_head))
    if site == "pattern":
        return (int(cfg.n_heads), width)
    return (int(cfg.n_heads), int(cfg.d_head))


def rope_at(
    model, layer: int, x: Float[Tensor, "n head d_head"], positions: Int[Tensor, " n"]
) -> Float[Tensor, "n head d_head"]:
    """Rotate per-position head vectors with the native attention's own rotary.

    ``apply_rope`` takes ``[batch, head, seq, d_head]`` and position ids ``[batch, seq]``; each
    selected vector is treated as a batch row of length 1 at its own position.
    """
    rotary = native_rotary(model, layer)
    x4 = x[:, :, None, :]
    rotated, _ = rotary.apply_rope(x4, x4, position_ids=positions[:, None])
    return rotated[:, :, 0, :]


class BatchCapture:
    """Buffers and hooks for one batch.

    Args:
        model: the bridge.
        plans: the sites and how to capture them.
        layers: recorded layers (sorted).
        rows, positions: the selected positions, ``[n]`` each (on the model's device).
        width: the batch's padded length (pattern row width).
        dtype: storage dtype of the buffers (on the CPU).
    """

    def __init__(
        self,
        model,
        plans: Sequence[SitePlan],
        layers: Sequence[int],
        rows: Int[Tensor, " n"],
        positions: Int[Tensor, " n"],
        width: int,
        dtype: torch.dtype,
    ):
        self.model, self.plans, self.layers = model, list(plans), list(layers)
        self.rows, self.positions = rows, positions
        n = int(rows.shape[0])
        self.fired: set[tuple[str, int]] = set()
        self.buffers: dict[str, Tensor] = {
            p.site: torch.empty((n, len(self.layers), *trailing_shape(model, p.site, width)),
                                dtype=dtype)
            for p in self.plans
        }

    def fwd_hooks(self) -> list:
        """``(hook name, fn)`` pairs for ``model.run_with_hooks`` / ``model.hooks``."""
        out = []
        for plan in self.plans:
            for slot, layer in enumerate(self.layers):
                out.append((plan.hook_name(layer), self._hook(plan, slot, layer)))
        return out

    def _hook(self, plan: SitePlan, slot: int, layer: int):
        buf = self.buffers[plan.site]

        def fn(act: Tensor, hook) -> None:
            if plan.site == "pattern":
                sel = act[self.rows, :, self.positions, :]  # [n, head, k_pos]
            else:
                sel = act[self.rows, self.positions]
            if plan.native_rope:
                sel = rope_at(self.model, layer, sel, self.positions)
            buf[:, slot, ..., : sel.shape[-1]].copy_(sel)
            self.fired.add((plan.site, layer))
            if plan.site == "pattern" and sel.shape[-1] < buf.shape[-1]:
                buf[:, slot, ..., sel.shape[-1]:].zero_()

        return fn

    def check_fired(self) -> None:
        """Raise when a hook never fired: its buffer would hold uninitialised memory."""
        for plan in self.plans:
            for layer in self.layers:
                if (plan.site, layer) not in self.fired and plan.site in ("rot_q", "rot_k"):
                    raise InterpError(
                        f"the hook {plan.hook_name(layer)!r} (site {plan.site!r}) did not fire: "
                        "this bridge rotates q and k without passing them through its rot "
                        "hooks (GPT-NeoX, Phi-3 and GPT-J do; docs/families.md)",
                        f"record {plan.site[-1]!r} (before the rotation) instead; "
                        "interp.core.attention.rotated_qkv rotates captured q and k with the "
                        "model's own rotary where the bridge shows its cos/sin tables",
                    )
                if (plan.site, layer) not in self.fired:
                    raise InterpError(
                        f"the hook {plan.hook_name(layer)!r} (site {plan.site!r}) did not fire "
                        "on this model",
                        "this model does not pass that activation through the bridge's hooks "
                        "(e.g. attention patterns without eager attention); drop the site",
                    )

    def run(self, tokens: Int[Tensor, "batch pos"]) -> None:
        """One forward pass that fills the buffers, stopping after the deepest layer."""

        def stop(act: Tensor, hook) -> None:
            raise _StopForward

        # Registered last, so it runs after any recording hook on the same point.
        last = (hooks.resid(max(self.layers), "post"), stop)
        try:
            with torch.no_grad(), self.model.hooks(fwd_hooks=[*self.fwd_hooks(), last]):
                self.model(tokens, return_type=None)
        except _StopForward:
            pass
        self.check_fired()


class _StopForward(Exception):
    """Raised by the last hook of :meth:`BatchCapture.run`: nothing later is needed."""
