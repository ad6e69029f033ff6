"""``interp sinks`` (also ``interp registers``, its earlier name): attention sinks, norms,
massive activations, ablations, KV eviction."""

from __future__ import annotations

from pathlib import Path

from ._common import (
    add_input_args,
    add_model_args,
    add_pause_args,
    model_from_args,
    parse_int_list,
    policy_from_args,
)


def register(sub) -> None:
    p = sub.add_parser(
        "sinks", aliases=["registers"],
        help="attention sinks, norms and massive activations by position",
        description="Per layer and position: attention received (mean over heads and later "
        "queries), residual-stream and value norms, by role; massive activations (Sun et al. "
        "2024) with zero- vs mean-ablation; and, with --eviction-window, perplexity when the "
        "first tokens are evicted from the KV cache (StreamingLLM). Writes DIR/registers.csv, "
        "DIR/registers_heads.csv, DIR/massive.csv, DIR/massive_layers.csv, DIR/ablations.csv, "
        "DIR/eviction.csv and figures (HTML).")
    add_model_args(p)
    add_input_args(p, n_tokens=128)
    add_pause_args(p)
    p.add_argument("--ratio", type=float, default=100.0,
                   help="massive when |h| > RATIO x the layer's median |h| (default 100)")
    p.add_argument("--no-ablate", action="store_true", help="skip the zero/mean ablations")
    p.add_argument("--eviction-window", type=int, default=None, metavar="W",
                   help="also measure KV-cache eviction with a recent window of W keys")
    p.add_argument("--eviction-tokens", type=int, default=1024, metavar="N",
                   help="length of the eviction text (the --text, or the longest corpus "
                   "document), in tokens (default 1024)")
    p.add_argument("--sinks", default="0,1,4", help="sink counts kept in the eviction test")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import sinks
    from ..core.corpora import load_corpus, windows
    from ..core.pauses import add_pause_token, insert_pauses, tokenize
    from ..errors import InterpError
    from ..figures._export import export_figures

    model = model_from_args(args)
    policy = policy_from_args(args, model)
    if args.text is not None:
        base = [tokenize(model, args.text)]
        long_text = args.text
    else:
        docs = load_corpus(args.corpus, field=args.field)
        base = [w.seq for w in windows(model, docs, args.n_tokens,
                                       max_windows=args.max_windows or 8)]
        long_text = max(docs, key=lambda d: len(d.text)).text
    if args.eviction_window is not None:  # check before the long work, not after it
        n_sinks = parse_int_list(args.sinks, "sinks") or [0]
        ids = tokenize(model, long_text).tokens[: args.eviction_tokens]
        if len(ids) <= args.eviction_window + max(n_sinks) + 1:
            raise InterpError(
                f"the eviction text has {len(ids)} tokens, not more than the eviction window "
                f"({args.eviction_window}) plus {max(n_sinks)} sinks",
                "give a longer --text, use --corpus, or a smaller --eviction-window")
    # before a <pause> token is added: its row in the unembedding would take probability
    # from every real token and raise the perplexity of a text that has no pauses
    evicted = (sinks.cache_eviction(model, ids, eviction_window=args.eviction_window,
                                    sinks=n_sinks) if args.eviction_window is not None else None)
    if policy.inserts_anything:
        pid = add_pause_token(model) if policy.filler is None else None
        base = [insert_pauses(s, policy, pid) for s in base]
    out = Path(args.out)
    res = sinks.registers(model, base, ratio=args.ratio)
    res.save(out)
    results = [res, res.massive]
    if not args.no_ablate:
        results.append(sinks.ablate_massive(model, base, res.massive))
    if evicted is not None:
        results.append(evicted)
    for r in results[2:]:
        r.save(out)
    figures = export_figures(results, out)
    written = list(dict.fromkeys(name for r in results for name in r.FILES if name.endswith(".csv")))
    summary = res.by_role()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {', '.join(written)} and {len(figures)} figures to {out}")
    return 0
