"""Placeholder: greedy generation with KV-cache recording (in progress)."""


def generate(*args, **kwargs):
    raise NotImplementedError


class Generation:
    """In progress."""
