"""``interp gradients``: the self / future decomposition of the K/V and residual gradients."""

from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_write_csv
from ..errors import InterpError
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
        "gradients", help="how much of the K/V gradient comes from later tokens' losses",
        description="Split the gradient of the summed next-token loss at each position's keys, "
        "values and residual stream into a self term (its own loss) and a future term (later "
        "losses), exactly, with two backward passes. Writes DIR/future_gradients.csv (one row "
        "per sequence, layer, site, head, position; conventions in future_gradients.json), "
        "DIR/summary.csv, DIR/by_distance.csv with --by-distance, and HTML figures. Without "
        "--text or --corpus, uses the bundled corpus.")
    add_model_args(p)
    add_input_args(p, n_tokens=128)
    add_pause_args(p)
    p.add_argument("--sites", default="k,v,resid_post",
                   help="comma-separated among k, v, resid_pre, resid_mid, resid_post")
    p.add_argument("--layers", default=None, help="e.g. 0,5,10-12 (default: all)")
    p.add_argument("--by-distance", type=int, default=None, metavar="D",
                   help="also resolve the gradient by distance d = t - i up to D (a small D "
                   "is cheap on a model with a KV cache: each chunk runs on a window)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per pass")
    p.add_argument("--chunk-size", type=int, default=16,
                   help="targets per forward pass on a prefix or window for --by-distance")
    p.add_argument("--method", default="auto", choices=["auto", "prefix", "prefix-batched", "loop"],
                   help="how --by-distance computes per-target gradients (default auto: "
                   "prefix-batched, the fastest measured)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.corpora import load_corpus
    from ..core.distributed import rank_info
    from ..core.pauses import add_pause_token
    from ..figures._export import export_figures
    from ..gradients import by_distance, future_gradients

    if args.by_distance is not None and args.by_distance < 0:
        raise InterpError(f"--by-distance {args.by_distance} is negative",
                          "give the largest query distance D >= 0, e.g. --by-distance 8")
    if args.corpus is not None and args.n_tokens < 3:
        raise InterpError(f"windows of --n-tokens {args.n_tokens} (the BOS and one token) have no "
                          "position with a later query, so every future share is undefined",
                          "give --n-tokens 3 or more")
    model = model_from_args(args)
    policy = policy_from_args(args, model)
    if policy.inserts_anything and policy.filler is None:
        add_pause_token(model)
    if args.text is not None:
        inputs, max_windows = args.text, None
    else:
        inputs = load_corpus(args.corpus, field=args.field)
        max_windows = args.max_windows or 4
    sites = [s for s in args.sites.split(",") if s]
    layers = parse_int_list(args.layers, "layers")
    common = dict(sites=sites, layers=layers, policy=policy, n_tokens=args.n_tokens,
                  max_windows=max_windows)
    out = Path(args.out)
    main = rank_info().is_main  # under torchrun every process computes a share; rank 0 writes
    fg = future_gradients(model, inputs, batch_size=args.batch_size, **common)
    if args.by_distance is not None:
        bd = by_distance(model, inputs, args.by_distance, chunk_size=args.chunk_size,
                         method=args.method, **common)
    if not main:
        return 0
    fg.to_csv(out / "future_gradients.csv")
    summary = fg.summary()
    atomic_write_csv(out / "summary.csv", summary)
    results = [fg]
    if args.by_distance is not None:
        bd.save(out)
        results.append(bd)
    export_figures(results, out)
    cols = ["site", "future_share", "pooled_future_share", "first_position_share", "n"]
    print(summary[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {out}/")
    return 0
