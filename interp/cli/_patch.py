"""``interp patch``: attribution patching (AtP, AtP*) checked against activation patching."""

from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_write_csv
from ._common import add_model_args, model_from_args, parse_int_list

METRICS = ("logit_diff", "loss", "target")


def register(sub) -> None:
    p = sub.add_parser(
        "patch", help="attribution patching of K, V, head outputs and residual stream",
        description="Estimate the effect of patching each node (layer, head, position) from the "
        "clean to the corrupt prompt with one backward pass (AtP), optionally with the AtP* "
        "QK fix, and with --verify check it against real activation patching. Metrics: "
        "logit_diff (--answer vs --wrong at the last position), loss (summed loss of --answer "
        "appended to both prompts), target (each next-token loss of the clean text: "
        "target-resolved). Writes DIR/attribution.csv, DIR/comparison.csv with --verify, and "
        "HTML figures.")
    add_model_args(p)
    p.add_argument("--clean", required=True, help="the clean prompt")
    p.add_argument("--corrupt", required=True, help="the corrupted prompt (same token count)")
    p.add_argument("--metric", default="logit_diff", choices=METRICS)
    p.add_argument("--answer", default=None, help="the correct answer token(s), e.g. ' Paris'")
    p.add_argument("--wrong", default=None, help="the wrong answer token for logit_diff")
    p.add_argument("--sites", default="k,v,z,resid_post",
                   help="comma-separated among k, v, z, resid_pre, resid_mid, resid_post")
    p.add_argument("--layers", default=None, help="e.g. 0,5,10-12 (default: all)")
    p.add_argument("--all-heads", action="store_true",
                   help="patch all heads of a site together (one node per layer and position)")
    p.add_argument("--qk-fix", action="store_true", help="add the AtP* estimate for keys")
    p.add_argument("--verify", action="store_true",
                   help="also run activation patching over the same nodes (one forward each)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from ..errors import InterpError
    from ..figures._export import export_figures
    from ..patching import answer_loss, attribution_patch, compare_patching, logit_diff

    if args.clean == args.corrupt:
        raise InterpError("--clean and --corrupt are the same prompt, so every patching effect is "
                          "zero and there is nothing to attribute",
                          "give a corrupt prompt that differs from the clean one where it matters, "
                          "e.g. another name or number")
    model = model_from_args(args)
    clean, corrupt = args.clean, args.corrupt
    metric = None
    if args.metric == "logit_diff":
        if args.answer is None or args.wrong is None:
            raise InterpError("--metric logit_diff needs --answer and --wrong",
                              "e.g. --answer ' Paris' --wrong ' Rome'")
        metric = logit_diff(model, args.answer, args.wrong)
    elif args.metric == "loss":
        if args.answer is None:
            raise InterpError("--metric loss needs --answer", "e.g. --answer ' Paris'")
        ids = model.tokenizer(args.answer, add_special_tokens=False)["input_ids"]
        clean, corrupt = clean + args.answer, corrupt + args.answer
        metric = answer_loss(ids)
    sites = [s for s in args.sites.split(",") if s]
    result = attribution_patch(
        model, clean, corrupt, metric, sites=sites, layers=parse_int_list(args.layers, "layers"),
        per_head=not args.all_heads, qk_fix=args.qk_fix, target_resolved=args.metric == "target",
        verify=args.verify)
    out = Path(args.out)
    result.to_csv(out / "attribution.csv")
    if args.verify:
        stats = compare_patching(result)
        if args.qk_fix:
            star = compare_patching(result, estimate="atp_star", by=None)
            stats = pd.concat([stats.assign(estimate="atp"), star.assign(estimate="atp_star")],
                              ignore_index=True)
        atomic_write_csv(out / "comparison.csv", stats)
        print(stats.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    export_figures([result], out)  # after every table, so a figure's failure loses no result
    print(f"clean metric {result.meta['clean_metric']:.4g}; wrote {out}/")
    return 0
