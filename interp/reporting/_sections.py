"""The report's sections: each computes its tables into its own folder and returns its key
numbers. Sections are independent, so one that fails (or whose module is missing) leaves a
labelled gap and the others still run; figures are drawn afterwards from the saved tables
(:mod:`._registry`), exactly as ``interp figures`` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.pauses import PausedSequence, PausePolicy, add_pause_token, insert_pauses, make_sequence
from ..errors import InterpError
from ._config import ReportConfig

__all__ = ["SECTION_SPECS", "Context", "Section"]


class Context:
    """What sections share: the config, the model (loaded on first use) and the windows."""

    def __init__(self, config: ReportConfig, model=None, verbose: bool = True):
        self.config = config
        self._model = model
        self.verbose = verbose
        self._windows: list[PausedSequence] | None = None
        self._docs = None

    @property
    def model(self):
        if self._model is None:
            from ..models import load_model

            self._model = load_model(self.config.model)
        return self._model

    @property
    def has_tokenizer(self) -> bool:
        return getattr(self.model, "tokenizer", None) is not None

    def docs(self):
        if self._docs is None:
            from ..core.corpora import load_corpus

            self._docs = load_corpus(self.config.corpus)
        return self._docs

    def plain_windows(self, n_tokens: int, max_windows: int) -> list[PausedSequence]:
        """Windows without pauses: the token rows given, or corpus windows (BOS first)."""
        cfg = self.config
        if cfg.tokens is not None:
            return [make_sequence(row[:n_tokens]) for row in cfg.tokens[:max_windows].cpu()]
        if not self.has_tokenizer:
            raise InterpError("this model has no tokenizer, so it cannot read a corpus",
                              "pass ReportConfig(tokens=...) with token-id windows")
        from ..core.corpora import windows

        return [w.seq for w in windows(self.model, self.docs(), n_tokens, max_windows=max_windows)]

    def windows(self) -> list[PausedSequence]:
        """The analysis windows, with pauses inserted at ``pause_rate`` (seeded per window)."""
        if self._windows is None:
            cfg = self.config
            base = self.plain_windows(cfg.n_tokens, cfg.max_windows)
            if cfg.pause_rate > 0:
                pid = add_pause_token(self.model)
                base = [insert_pauses(s, PausePolicy(rate=cfg.pause_rate, seed=cfg.seed + i), pid)
                        for i, s in enumerate(base)]
            self._windows = base
        return self._windows

    def long_text(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` tokens (default: the eviction length) of the longest corpus
        document (BOS first), or of the token rows joined end to end."""
        cfg = self.config
        n = n or cfg.eviction_tokens
        if cfg.tokens is not None:
            return cfg.tokens.reshape(-1)[:n].cpu()
        from ..core.pauses import tokenize

        doc = max(self.docs(), key=lambda d: len(d.text))
        return tokenize(self.model, doc.text).tokens[:n]


@dataclass(frozen=True)
class Section:
    """One part of the report.

    Attributes:
        name: folder name and anchor.
        title: heading.
        intro: what the section measures, in a sentence or two (HTML allowed).
        keys: the :class:`ReportConfig` fields its results depend on (cache key).
        run: ``(context, folder) -> key numbers``; writes its tables into ``folder``.
        command: the stand-alone command that computes the same (named in gaps).
        key: name prefixes of the numbers that go to the report's "Key numbers" table
            (empty: the first four).
    """

    name: str
    title: str
    intro: str
    keys: tuple[str, ...]
    run: Callable[[Context, Path], dict]
    command: str
    key: tuple[str, ...] = ()

    def key_numbers(self, numbers: dict) -> dict:
        if not self.key:
            return dict(list(numbers.items())[:4])
        return {k: v for k, v in numbers.items() if k.startswith(self.key)}


def _fmt(x: float, digits: int = 3) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def _run_registers(ctx: Context, out: Path) -> dict:
    from .. import sinks

    cfg = ctx.config
    text = ctx.long_text()
    window = min(cfg.eviction_window, max(len(text) - max(cfg.sinks) - 2, 1))
    seqs = ctx.windows()
    reg = sinks.registers(ctx.model, seqs, ratio=cfg.ratio, verbose=ctx.verbose)
    reg.save(out)
    ab = sinks.ablate_massive(ctx.model, seqs[: cfg.ablation_windows], reg.massive,
                              verbose=ctx.verbose)
    ab.save(out / "ablations")
    ev = sinks.cache_eviction(ctx.model, text, eviction_window=window, sinks=cfg.sinks,
                              verbose=ctx.verbose)
    ev.save(out / "eviction")
    roles = reg.by_role().set_index("role")
    first = reg.massive.first_appearance()
    pos = reg.by_position()
    sink = pos[pos["position"] == 0].iloc[0]
    regular = roles.loc["regular"]
    numbers = {
        "first-position attention / uniform": _fmt(sink["attn_received"] / sink["uniform"]),
        "regular attention / uniform": _fmt(regular["attn_ratio"]),
        "residual norm, first position / regular": _fmt(sink["resid_norm"] / regular["resid_norm"], 1),
        "massive (position, dim) pairs": int(len(first)),
        "largest massive activation": _fmt(first["max_abs"].max(), 1) if len(first) else None,
        "layer where it emerges": reg.massive.emergence_layer(),
        "Δloss, massive zeroed": _fmt(ab.delta("massive", "zero")),
        "Δloss, massive set to mean": _fmt(ab.delta("massive", "mean")),
        "Δloss, sink K/V zeroed": _fmt(ab.delta("sink_kv", "zero")),
        "Δloss, sink K/V set to mean": _fmt(ab.delta("sink_kv", "mean")),
        "perplexity, full attention": _fmt(ev.perplexity(None), 2),
    }
    for s in cfg.sinks:
        label = "window only" if s == 0 else f"{s} sink{'s' if s > 1 else ''} + window"
        numbers[f"perplexity, {label} ({window})"] = _fmt(ev.perplexity(s), 2)
    if "pause" in roles.index:
        numbers["pause attention / uniform"] = _fmt(roles.loc["pause", "attn_ratio"])
        numbers["pause residual norm / regular"] = _fmt(
            roles.loc["pause", "resid_norm"] / roles.loc["regular", "resid_norm"])
    return numbers


def _run_gradients(ctx: Context, out: Path) -> dict:
    import pandas as pd

    from ..core.model import device
    from ..gradients import LengthSweep, by_distance, future_gradients
    from ..gradients._detach import DEFAULT_BLOCK
    from ..gradients._memory import fits

    cfg = ctx.config
    seqs = ctx.windows()[: cfg.gradient_windows]
    seqs = [_truncate(s, cfg.gradient_tokens) for s in seqs]
    fg = future_gradients(ctx.model, seqs, sites=("k", "v", "resid_post"), batch_size=1,
                          verbose=ctx.verbose)
    fg.save(out)
    bd = by_distance(ctx.model, seqs, cfg.max_distance, sites=("k", "v"),
                     verbose=ctx.verbose)
    bd.save(out)
    s = fg.summary().set_index("site")
    numbers = {}
    for site in s.index:
        numbers[f"mean future share, {site}"] = _fmt(s.loc[site, "future_share"])
        numbers[f"first-position future share, {site}"] = _fmt(s.loc[site, "first_position_share"])
    role = fg.by_role()
    pause = role[(role.role == "pause") & (role.site == "k")]
    if len(pause):
        numbers["mean future share at pauses, k"] = _fmt(pause["future_share"].iloc[0])
    # long context: one window per length; naive counting predicts the share grows with N
    text = ctx.long_text(max(cfg.long_context_tokens, default=0))
    rows = [fg.by_position().assign(n_tokens=cfg.gradient_tokens)]
    for n in cfg.long_context_tokens:
        if n > min(len(text), int(ctx.model.cfg.n_ctx)):
            continue
        if not fits(ctx.model, 1, n, DEFAULT_BLOCK, device(ctx.model)):
            numbers[f"long context N={n}"] = ("skipped: its estimated memory exceeds what is "
                                              "available (interp.gradients._memory)")
            continue
        long = future_gradients(ctx.model, text[None, :n], sites=("k", "v"),
                                verbose=ctx.verbose)
        rows.append(long.by_position().assign(n_tokens=n))
        s = long.summary().set_index("site")
        for site in s.index:
            numbers[f"mean future share, {site}, one window of N={n}"] = _fmt(
                s.loc[site, "future_share"])
    if len(rows) > 1:
        LengthSweep(pd.concat(rows, ignore_index=True)).save(out)
    return numbers


def _truncate(seq: PausedSequence, n: int) -> PausedSequence:
    """The first ``n`` positions of a sequence, with its roles and its loss mask."""
    if len(seq) <= n:
        return seq
    mask = seq.loss_mask[:n].clone()
    mask[-1] = False  # its target was cut off
    return PausedSequence(tokens=seq.tokens[:n], roles=seq.roles[:n],
                          original_position=seq.original_position[:n], loss_mask=mask,
                          loss_on=seq.loss_on)


def _run_probes(ctx: Context, out: Path) -> dict:
    from ..probes import train_probes

    cfg = ctx.config
    if not ctx.has_tokenizer:
        raise InterpError("the probe section reads a corpus through the model's tokenizer, "
                          "and this model has none",
                          "train probes from a recording: `interp record` then `interp probe "
                          "train` with data.recording")
    n_layers = ctx.model.cfg.n_layers
    layers = sorted(set(range(0, n_layers, cfg.probe_layer_stride)) | {n_layers - 1})
    spec = dict(
        name="report-lookahead", method="future_lens",
        description="Future Lens for the report: the token at t + k from resid_post at t, "
        "decoded through the model's own head.",
        model=dict(name=cfg.model if isinstance(cfg.model, str) else "smollm2-135m"),
        data=dict(corpus=cfg.corpus or "pydoc", n_tokens=cfg.probe_tokens,
                  max_windows=cfg.probe_windows, windows_per_doc=2, batch_size=16),
        inputs=dict(layers=layers, sites=["resid_post"], roles=["regular"]),
        target=dict(kind="token", offsets=list(cfg.offsets)),
        train=dict(seed=cfg.seed),
        future_lens=dict(eval_positions=cfg.probe_eval_positions, save_weights=False),
    )
    res = train_probes(spec, out, model=ctx.model, fresh=True, verbose=ctx.verbose)
    numbers = {"headline": res.headline()}
    for _, r in res.summary().iterrows():
        k = int(r["offset"])
        numbers[f"offset {k}: best layer"] = int(r["layer"])
        numbers[f"offset {k}: top-1 agreement with the model"] = _fmt(r["agreement_top1"])
        numbers[f"offset {k}: bigram agreement"] = _fmt(r["bigram_agreement"])
        numbers[f"offset {k}: true-token accuracy"] = _fmt(r["accuracy"])
        numbers[f"offset {k}: bigram accuracy"] = _fmt(r["bigram_accuracy"])
    return numbers


def _run_patching(ctx: Context, out: Path) -> dict:
    from ..patching import attribution_patch, compare_patching, logit_diff

    cfg = ctx.config
    model = ctx.model
    if ctx.has_tokenizer:
        clean, corrupt = cfg.clean, cfg.corrupt
        correct, wrong = cfg.correct, cfg.wrong
    else:  # token ids: corrupt one token in the middle of the first window
        clean = ctx.plain_windows(cfg.n_tokens, 1)[0].tokens[:12]
        corrupt = clean.clone()
        corrupt[len(clean) // 2] = (corrupt[len(clean) // 2] + 1) % model.cfg.d_vocab
        correct = cfg.correct if isinstance(cfg.correct, int) else 1
        wrong = cfg.wrong if isinstance(cfg.wrong, int) else 2
    metric = logit_diff(model, correct, wrong)
    layers = list(range(0, model.cfg.n_layers, cfg.patch_layers))
    att = attribution_patch(model, clean, corrupt, metric, sites=("k", "v", "resid_post"),
                            layers=layers, per_head=False, verify=True, verbose=ctx.verbose)
    att.save(out)
    cmp = compare_patching(att).set_index("group")
    numbers = {"metric": f"logit({correct!r}) − logit({wrong!r})",
               "metric, clean": _fmt(att.meta.get("clean_metric")),
               "metric, corrupt": _fmt(att.meta.get("corrupt_metric"))}
    for group, row in cmp.iterrows():
        numbers[f"Spearman(AtP, activation patching), {group}"] = _fmt(row["spearman"])
    return numbers


def _run_tokens(ctx: Context, out: Path) -> dict:
    """The four token views of one example prompt, each saved as ``<name>.view.json`` (the
    report embeds it) and as a standalone ``<name>.html``."""
    import numpy as np

    from ..core.pauses import tokenize
    from ..figures import tokens as tv
    from ..gradients import by_distance, future_gradients
    from ..probes import future_lens
    from ..probes._spec import FutureLensSpec
    from ..recording import RECORDABLE_ROLES, record

    cfg, model = ctx.config, ctx.model
    if ctx.has_tokenizer:
        seq = tokenize(model, cfg.example_prompt)
    elif cfg.tokens is not None:
        seq = make_sequence(cfg.tokens[0].cpu())
    else:
        raise InterpError("the token views read a prompt through the model's tokenizer, and "
                          "this model has none", "pass ReportConfig(tokens=...) with token ids")
    if cfg.pause_rate > 0:
        seq = insert_pauses(seq, PausePolicy(rate=cfg.pause_rate, seed=cfg.seed),
                            add_pause_token(model))
    n_layers = int(model.cfg.n_layers)
    layers = sorted({int(x) for x in np.linspace(0, n_layers - 1, 4).round()})
    quiet = dict(verbose=False)
    fg = future_gradients(model, seq, sites=("k", "v", "resid_post"), **quiet)
    bd = by_distance(model, seq, cfg.max_distance, sites=("k",), layers=layers, pairs=True,
                     **quiet)
    rec = record(model, seq, sites=("pattern",), layers=layers, roles=RECORDABLE_ROLES, **quiet)
    lens = future_lens(model, ctx.plain_windows(cfg.probe_tokens, cfg.probe_windows),
                       layers=layers[1:] or layers, offsets=cfg.offsets, seed=cfg.seed,
                       config=FutureLensSpec(eval_positions=cfg.probe_eval_positions))
    views = {
        "1_future_share": tv.future_share_view(fg, layers=layers),
        "2_who_reads_me": tv.who_reads_me_view(bd),
        "3_attention": tv.attention_view(rec),
        "4_lens": tv.lens_view(model, lens, seq),
    }
    for name, view in views.items():
        view.save_json(out / f"{name}.view.json")
        view.save(out / f"{name}.html")
    k = fg.table[(fg.table.site == "k") & (fg.table.position > 0) & (fg.table.total_norm > 0)]
    numbers = {"example prompt: tokens": len(seq.tokens),
               "example prompt: mean future share of the key": _fmt(k.future_share.mean())}
    for s in views["4_lens"].data["series"]:
        agree = [a for a in s["agree"] if a is not None]
        numbers[f"example prompt: lens agrees with the model, {s['label']}"] = (
            _fmt(float(np.mean(agree))) if agree else None)
    return numbers


def _run_toy(ctx: Context, out: Path) -> dict:
    from ..training.toy import ToyComparison

    src = ctx.config.toy_dir
    if src is None:
        raise InterpError("no toy comparison given",
                          "run `interp toy compare --out DIR` and pass `interp report --toy DIR`")
    comp = ToyComparison.load(src)
    comp.save(out)
    g = comp.runs.groupby(["task", "mode", "pauses", "insert"])["value"].mean()
    return {f"{t} · {m} · {p} pauses" + ("" if i in ("none", "pause") else f" ({i})"): _fmt(v)
            for (t, m, p, i), v in g.items()}


def _run_pause_training(ctx: Context, out: Path) -> dict:
    from ..training.pause import is_adapter_dir
    from .pause_compare import PauseComparison, compare_checkpoint

    src = ctx.config.pause_dir
    how = ("train one with `interp pause-train --out DIR` (see `interp pause-train --help`), "
           "then pass `interp report --pause-dir DIR`")
    if src is None:
        raise InterpError("no pause-training checkpoint or comparison given", how)
    src = Path(src)
    if (src / "pause_losses.csv").is_file():
        comp = PauseComparison.load(src)
    elif is_adapter_dir(src):
        n_layers = ctx.model.cfg.n_layers
        comp = compare_checkpoint(src, max_windows=min(ctx.config.max_windows, 4), seeds=(0, 1),
                                  layers=list(range(0, n_layers, 3)), gradient_windows=1,
                                  lens_windows=128, lens_layers=[*range(0, n_layers, 6), n_layers - 1],
                                  verbose=ctx.verbose)
    else:
        raise InterpError(f"{src} holds neither a pause-training checkpoint nor a comparison", how)
    comp.save(out)
    numbers = {f"pause loss · {r.model} · {r.condition}": _fmt(r.loss)
               for r in comp.loss_summary().itertuples()}
    adaptive = comp.adaptive_summary()
    if adaptive is not None:
        numbers.update({f"pause Δloss after pauses · {r.model} · {r.placement}":
                        _fmt(r.delta_following) for r in adaptive.itertuples()})
    lens = comp.tables.get("future_lens")
    if lens is not None and not lens.empty:
        best = lens.loc[lens.groupby(["model", "role", "offset"])["agreement_top1"].idxmax()]
        numbers.update({f"pause Future Lens · {r.model} · {r.role} · offset {int(r.offset)}":
                        f"{r.agreement_top1:.3f} at layer {int(r.layer)} (bigram {r.bigram_agreement:.3f})"
                        for r in best.itertuples()})
    return numbers


SECTION_SPECS: tuple[Section, ...] = (
    Section("registers", "Registers and attention sinks",
            "Which positions soak up attention or carry global state: attention received and "
            "norms by position and role (pauses inserted at random), massive activations "
            "(Sun et al. 2024) with zero- vs mean-ablation, and KV-cache eviction "
            "(StreamingLLM, Xiao et al. 2023).",
            ("n_tokens", "max_windows", "pause_rate", "seed", "ratio", "ablation_windows",
             "eviction_tokens", "eviction_window", "sinks"),
            _run_registers, "interp sinks --corpus pydoc --eviction-window 64 --out DIR",
            key=("first-position attention", "Δloss, massive", "perplexity", "pause attention")),
    Section("gradients", "Future-loss gradient decomposition",
            "How much of the gradient at each position's keys, values and residual stream "
            "comes from later tokens' losses (future share), and from how far ahead.",
            ("n_tokens", "max_windows", "pause_rate", "seed", "gradient_windows",
             "gradient_tokens", "max_distance", "long_context_tokens"),
            _run_gradients, "interp gradients --corpus pydoc --by-distance 16 --out DIR"),
    Section("probes", "Lookahead: Future Lens",
            "From the residual stream at position t, a linear map to the model's own final "
            "state at t + k − 1, read through its final norm and unembedding over the full "
            "vocabulary (Future Lens, Pal et al. 2023): how often it names the token the model "
            "will predict for t + k, against bigram and trigram baselines at the same distance, "
            "on held-out documents. k ≥ 2 is lookahead.",
            ("probe_layer_stride", "probe_windows", "probe_tokens", "offsets", "seed",
             "probe_eval_positions"),
            _run_probes, "interp probe train probes/lookahead.toml",
            key=("headline", "offset 2:")),
    Section("patching", "Attribution patching example",
            "A clean/corrupted prompt pair: the gradient estimate of every node's patching "
            "effect (AtP) checked against real activation patching.",
            ("clean", "corrupt", "correct", "wrong", "n_tokens", "patch_layers"),
            _run_patching, "interp patch --clean TEXT --corrupt TEXT --verify --out DIR",
            key=("metric, ", "Spearman(AtP, activation patching), all")),
    Section("tokens", "One prompt, token by token",
            "The example prompt read token by token (hover and click them): the future share "
            "of each position's gradient, which later losses draw on each position's key, "
            "attention by head with sinks and pauses marked, and the Future Lens's guesses "
            "beside the model's own. Each view also sits beside this report as a standalone "
            "page.",
            ("example_prompt", "pause_rate", "seed", "max_distance", "probe_windows",
             "probe_tokens", "offsets", "probe_eval_positions"),
            _run_tokens, "interp.figures.tokens (see the notebook 01_quickstart)",
            key=("example prompt: mean",)),
    Section("toy", "Toy tasks",
            "Tiny models trained on synthetic tasks, vanilla vs myopic, with and without "
            "pauses (from a finished `interp toy compare`).",
            ("toy_dir",), _run_toy, "interp toy compare --out DIR, then interp report --toy DIR"),
    Section("pause_training", "Pause training: base vs pause-trained",
            "SmolLM2 fine-tuned with random &lt;pause&gt; tokens (Goyal et al. 2024; LoRA + pause "
            "embedding), against its base: loss on real tokens with and without pauses, "
            "attention and norms at pauses, the future share of their K/V gradient, the Future "
            "Lens read at pauses, the KV cache with forced pauses, and entropy-triggered vs "
            "random pauses.",
            ("pause_dir",), _run_pause_training,
            "interp pause-train --out CKPT, then interp report --pause-dir CKPT",
            key=("pause loss", "pause Δloss")),
)
