"""Future-loss gradient decomposition: how much of the gradient at each position's keys,
values and residual stream comes from the losses of *later* tokens, and from how far ahead.

With L = Σ_t ℓ_t the next-token losses summed over positions, the gradient at an activation
x_i (key, value, residual stream) of position i splits as

    ∂L/∂x_i = ∂ℓ_i/∂x_i + Σ_{t>i} ∂ℓ_t/∂x_i
              "self"       "future"

Under a causal mask every path from x_i to its own loss ℓ_i stays in column i, so the self
term for every position, layer and head comes from *one* backward pass through a forward in
which each query reads the other positions' keys and values detached
(:func:`detached_attention`); future = total − self. Two backward passes instead of N.
:func:`by_distance` resolves the future term by how far ahead the loss lies, d = t − i, with
batched vector-Jacobian products.

* :func:`future_gradients` -> :class:`FutureGradients` (self/future/total norms, future share)
* :func:`by_distance` -> :class:`ByDistance` (‖∂ℓ_{i+d}/∂x_i‖ by distance d)
* :func:`detached_attention` — the detached forward, also used for myopic training

Example:
    >>> fg = interp.future_gradients(model, interp.load_corpus(), n_tokens=64, max_windows=8)
    >>> fg.summary()            # mean future share per site, first position apart
    >>> bd = interp.by_distance(model, "The cat sat on the mat.", max_distance=8)
"""

from ._decompose import CONVENTIONS, FutureGradients, LengthSweep, future_gradients
from ._detach import detached_attention
from ._distance import ByDistance, by_distance

__all__ = [
    "CONVENTIONS",
    "ByDistance",
    "FutureGradients",
    "LengthSweep",
    "by_distance",
    "detached_attention",
    "future_gradients",
]
