"""The settings of a report, as one documented dataclass (the CLI builds it from its flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass

from .._types import Int, Tensor
from ..errors import InterpError, check_choice
from ..models import DEFAULT_MODEL, TinyConfig

__all__ = ["SECTIONS", "ReportConfig"]

SECTIONS = ("registers", "gradients", "probes", "patching", "tokens", "toy", "pause_training")
DEFAULT_SECTIONS = SECTIONS[:5]


@dataclass
class ReportConfig:
    """What ``interp report`` runs. The defaults are the main job (a few minutes on 2 cores).

    Attributes:
        model: a model name for :func:`interp.load_model` (default: the bundled SmolLM2) or a
            :class:`interp.TinyConfig`.
        corpus: a corpus for :func:`interp.load_corpus` (``None``: the bundled one).
        tokens: token-id windows ``[batch, pos]`` to analyse instead of a corpus: for models
            without a tokenizer, such as tiny native models. The eviction text is these rows
            joined end to end.
        n_tokens: window length in tokens (BOS included) for the register analysis.
        max_windows: corpus windows for the register analysis (``--max-windows``;
            ``n_windows`` in earlier releases, which now raises).
        pause_rate: probability of inserting a ``<pause>`` before each content token
            (seeded), so pause positions can be compared with regular ones; 0 inserts none.
        seed: seed for the pause insertion.
        ratio: massive-activation threshold, a multiple of the layer median.
        ablation_windows: how many of the windows the zero/mean ablations run on (each
            condition is one forward pass per window).
        eviction_tokens: length of the KV-eviction text (the longest corpus document's start).
        eviction_window: recent keys each query keeps in the eviction test.
        sinks: numbers of initial tokens kept in the eviction test (0: evicted).
        gradient_windows: windows for the future-gradient decomposition.
        gradient_tokens: their length in tokens.
        max_distance: the largest distance t − i for gradients by distance (on the same
            windows; a small one is cheap on a model with a KV cache).
        long_context_tokens: lengths of the long windows (one each, from the longest
            document) on which the decomposition of k and v is also run, to read the future
            share against position at long context (``()``: none; lengths beyond the
            model's context or the text, or whose estimated memory exceeds what is
            available, are skipped). The forward runs in chunks and the backward in blocks, so
            memory grows about linearly (docs/concepts/long-context.md: 3.9 GiB measured
            at N = 8192 on SmolLM2); add 8192 with ``--long-context 1024,2048,4096,8192``
            (its attention's compute still grows with N²: 8 minutes on a quiet 2-core
            machine, more than the rest of the report).
        probe_layer_stride: every ``probe_layer_stride``-th layer (and the last) gets a
            lookahead probe (``probe_layers`` in earlier releases; that keyword now raises).
        probe_windows: corpus windows for the probes (``probe_tokens`` tokens each).
        probe_tokens: probe window length.
        offsets: probe offsets k (token at i + k).
        probe_eval_positions: held-out positions the Future Lens decodes per layer and offset.
        patch_layers: every ``patch_layers``-th layer is patched (activation patching runs
            one forward per node, so this bounds its cost).
        example_prompt: the prompt the token views read (section ``tokens``), with pauses
            inserted at ``pause_rate``; models without a tokenizer read the first row of
            ``tokens`` instead.
        clean, corrupt: the attribution-patching pair (same token length).
        correct, wrong: the answer tokens of the logit-difference metric; token ids for
            models without a tokenizer.
        toy_dir: a finished ``interp toy compare --out DIR`` whose figures join the report.
        pause_dir: base vs pause-trained: a finished ``interp pause-compare --out DIR`` (its
            tables join the report), or an ``interp pause-train --out DIR`` checkpoint
            (compared here on small settings: up to 4 held-out windows, two seeds, every
            third layer; several minutes on 2 CPU cores).
        formats: static figure files written beside the report (``png``, ``svg``, ``pdf``,
            ``html``); the report itself is always self-contained HTML.
        sections: which sections to run (default all but ``toy``, which joins when
            ``toy_dir`` is given; it draws that comparison and trains nothing; and
            ``pause_training``, which joins when ``pause_dir`` is given).
    """

    model: str | TinyConfig = DEFAULT_MODEL
    corpus: str | None = None
    tokens: Int[Tensor, "batch pos"] | None = None
    n_tokens: int = 128
    max_windows: int = 8
    pause_rate: float = 0.1
    seed: int = 0
    ratio: float = 100.0
    ablation_windows: int = 4
    eviction_tokens: int = 512
    eviction_window: int = 64
    sinks: tuple[int, ...] = (0, 1, 4)
    gradient_windows: int = 4
    gradient_tokens: int = 64
    max_distance: int = 16
    long_context_tokens: tuple[int, ...] = (1024, 2048, 4096)
    probe_layer_stride: int = 3
    probe_windows: int = 96
    probe_tokens: int = 32
    offsets: tuple[int, ...] = (1, 2, 3)
    probe_eval_positions: int = 600
    patch_layers: int = 2
    example_prompt: str = ("The capital of France is Paris. The capital of Italy is Rome. "
                           "Water boils at one hundred degrees, and ice melts at zero.")
    clean: str = "The capital of France is"
    corrupt: str = "The capital of Italy is"
    correct: str | int = " Paris"
    wrong: str | int = " Rome"
    toy_dir: str | None = None
    pause_dir: str | None = None
    formats: tuple[str, ...] = ("png",)
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    probe_layers: InitVar[int | None] = None
    n_windows: InitVar[int | None] = None

    def __post_init__(self, probe_layers: int | None, n_windows: int | None) -> None:
        if probe_layers is not None:
            raise InterpError("ReportConfig.probe_layers was renamed probe_layer_stride (it is a "
                              "stride: every n-th layer gets a probe)",
                              f"pass probe_layer_stride={probe_layers}")
        if n_windows is not None:
            raise InterpError("ReportConfig.n_windows was renamed max_windows (as --max-windows)",
                              f"pass max_windows={n_windows}")
        for name in ("n_tokens", "max_windows", "ablation_windows", "eviction_window", "gradient_windows",
                     "gradient_tokens", "probe_layer_stride", "probe_windows", "probe_tokens", "probe_eval_positions",
                     "patch_layers"):
            if getattr(self, name) < 1:
                raise InterpError(f"ReportConfig.{name} must be >= 1, got {getattr(self, name)}",
                                  f"use {name} >= 1")
        if self.n_tokens < 3:
            raise InterpError(f"ReportConfig.n_tokens={self.n_tokens}", "use n_tokens >= 3")
        if not 0.0 <= self.pause_rate < 1.0:
            raise InterpError(f"ReportConfig.pause_rate={self.pause_rate}", "use a rate in [0, 1)")
        if self.ratio <= 1:
            raise InterpError(f"ReportConfig.ratio={self.ratio}", "use ratio > 1 (e.g. 100)")
        if any(s < 0 for s in self.sinks) or not self.sinks:
            raise InterpError(f"ReportConfig.sinks={self.sinks}", "give sink counts >= 0, e.g. (0, 1, 4)")
        if any(k < 1 for k in self.offsets) or not self.offsets:
            raise InterpError(f"ReportConfig.offsets={self.offsets}", "give offsets >= 1")
        for s in self.sections:
            check_choice("report section", s, SECTIONS)
        if self.tokens is not None and self.tokens.shape[-1] < 3:
            raise InterpError("ReportConfig.tokens windows are shorter than 3 tokens",
                              "give windows of at least 3 tokens")
        self.sinks = tuple(int(s) for s in self.sinks)
        self.offsets = tuple(int(k) for k in self.offsets)
        if any(n < 3 for n in self.long_context_tokens):
            raise InterpError(f"ReportConfig.long_context_tokens={self.long_context_tokens}",
                              "give lengths >= 3, e.g. (1024, 2048), or () for none")
        self.long_context_tokens = tuple(int(n) for n in self.long_context_tokens)
        self.formats = tuple(f.lower() for f in self.formats)
        self.sections = tuple(self.sections)
        if self.toy_dir is not None and "toy" not in self.sections:
            self.sections += ("toy",)
        if self.pause_dir is not None and "pause_training" not in self.sections:
            self.sections += ("pause_training",)

    def settings(self, *names: str) -> dict:
        """The named fields as JSON-friendly values (the model, and the input, always
        included): what a cached section is checked against."""
        d = {n: getattr(self, n) for n in ("model", "corpus", "tokens", *names)}
        if isinstance(d["model"], TinyConfig):
            d["model"] = dataclasses.asdict(d["model"])
        if d["tokens"] is not None:
            d["tokens"] = d["tokens"].tolist()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
