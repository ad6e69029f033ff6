"""``interp record``: record activations at selected roles to a sharded recording on disk."""

from __future__ import annotations

from ..errors import InterpError
from ._common import (
    add_input_args,
    add_model_args,
    add_pause_args,
    add_renamed,
    model_from_args,
    parse_int_list,
    policy_from_args,
)


def _names(s: str | None) -> list[str] | None:
    if s is None or s == "all":
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def register(sub) -> None:
    from ..recording import DEFAULT_ROLES, DEFAULT_SITES, RECORDABLE_ROLES, SITES

    p = sub.add_parser(
        "record", help="record residual stream, K/V and more at chosen roles to disk",
        description="Run texts or a corpus through the model and record the chosen sites at the "
        "chosen layers, only at positions whose role is selected, into sharded safetensors "
        "with a JSON sidecar and a parquet index (load with interp.load_recording(DIR)). With "
        "--generate N the text is a prompt: the model answers greedily with its KV cache "
        "(after --pauses-before-answer forced pauses) and every step's K/V is recorded.",
    )
    add_model_args(p)
    add_input_args(p)
    add_pause_args(p)
    p.add_argument("--sites", default=",".join(DEFAULT_SITES),
                   help=f"comma-separated sites, from: {', '.join(SITES)} "
                   f"(default: {','.join(DEFAULT_SITES)})")
    p.add_argument("--layers", default="all",
                   help="layers, e.g. 0,5,10-12, or 'all' (default: all)")
    p.add_argument("--roles", default=None,
                   help=f"comma-separated roles to keep, or 'all'; from: "
                   f"{', '.join(RECORDABLE_ROLES)} (default: {','.join(DEFAULT_ROLES)}; "
                   "with --generate: all)")
    p.add_argument("--generate", type=int, default=None, metavar="N",
                   help="treat --text as a prompt and generate N tokens, recording every step")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default: 8)")
    p.add_argument("--shard-mb", type=float, default=256, help="size of one shard in MiB (default: 256)")
    p.add_argument("--out", required=True, help="output directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue (or reuse) the recording of the same configuration in --out")
    g.add_argument("--fresh", action="store_true", help="replace the recording in --out")
    add_renamed(p, "--overwrite")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import interp

    from ..core.distributed import rank_info
    from ..errors import check_choice
    from ..recording import DEFAULT_ROLES
    from ..recording._sites import check_roles

    sites = _names(args.sites) or list(interp.recording.SITES)
    roles = _names(args.roles or ("all" if args.generate is not None else ",".join(DEFAULT_ROLES)))
    layers = parse_int_list(args.layers, "layers")
    if args.text is None and args.corpus is None:
        raise InterpError("nothing to record", "pass --text TEXT or --corpus CORPUS")
    if args.generate is not None and rank_info().distributed:
        raise InterpError("--generate decodes one prompt and cannot be split over processes",
                          "run it without torchrun")
    if args.generate is not None and args.text is None:
        raise InterpError("--generate needs a prompt", "pass --text PROMPT")
    if args.pauses_before_answer and args.generate is None:
        raise InterpError(
            "--pauses-before-answer needs an answer: plain text and corpora have no answer spans",
            "add --generate N to insert the pauses between the prompt and the model's answer, "
            "or use --pause-every K",
        )
    # Names are checked before the model loads, so a typo fails at once.
    check_roles(roles)
    for site in sites:
        check_choice("site", site, interp.recording.SITES)
    model = model_from_args(args)
    policy = policy_from_args(args, model)
    if policy.filler is None and (policy.inserts_anything or args.pauses_before_answer):
        interp.add_pause_token(model)
    if args.generate is not None:
        gen = interp.generate(model, args.text, args.generate,
                              pauses_before_answer=args.pauses_before_answer, record=sites,
                              layers=layers, roles=roles)
        rec = gen.recording
        rec.save(args.out, overwrite=args.fresh)
        print(f"generated: {gen.text!r}")
    else:
        if args.text is not None:
            inputs = [args.text]
        else:
            docs = interp.load_corpus(args.corpus, field=args.field)
            inputs = interp.windows(model, docs, args.n_tokens, max_windows=args.max_windows)
        rec = interp.record(
            model, inputs, sites=sites, layers=layers, roles=roles,
            policy=policy if policy.inserts_anything else None, n_tokens=args.n_tokens,
            batch_size=args.batch_size, shard_bytes=max(1, int(args.shard_mb * 2**20)),
            out=args.out, resume=args.resume, fresh=args.fresh, verbose=not args.quiet,
        )
    if not rank_info().is_main:
        return 0  # rank 0 reports the merged recording
    counts = ", ".join(f"{r}: {n}" for r, n in rec.index["role"].value_counts().items())
    print(f"recorded {len(rec)} positions ({counts}); sites {', '.join(rec.sites)}; "
          f"{len(rec.layers)} layers -> {args.out}")
    return 0
