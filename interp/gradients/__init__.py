"""Future-loss gradient decomposition (placeholder during development)."""

from ._detach import detached_attention

__all__ = ["detached_attention"]
