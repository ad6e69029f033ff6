"""``interp probe``: train linear probes from a TOML spec, evaluate and show a finished run."""

from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_write_csv

SHOW_COLUMNS = ["offset", "layer", "accuracy", "top5", "xent", "baseline_majority", "baseline_unigram",
                "baseline_bigram", "control_accuracy", "selectivity"]
SHOW_COLUMNS_R2 = ["offset", "layer", "r2", "baseline_majority", "baseline_bigram"]


def register(sub) -> None:
    p = sub.add_parser(
        "probe", help="train, evaluate and show linear probes (lookahead, pause content)",
        description="Linear probes over every layer and offset at once, with majority, unigram and "
        "bigram baselines and a control task. Specs are TOML files (see probes/*.toml).",
    )
    ps = p.add_subparsers(dest="probe_command", metavar="ACTION")
    t = ps.add_parser("train", help="train the probes a spec describes",
                      description="Train every probe of SPEC (all layers and offsets in one pass) and "
                      "write metrics.csv, the probes (safetensors + probes.json), spec.toml and "
                      "its figures (probe_accuracy.html) to --out. An interrupted run resumes where it stopped.")
    t.add_argument("spec", help="a TOML spec, e.g. probes/lookahead.toml")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field (dotted key, TOML value), e.g. --set target.offsets=[1,2] "
                   "--set data.max_windows=50; repeatable")
    t.add_argument("--out", default=None, help="output directory (default: results/probes/<spec name>)")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)
    e = ps.add_parser("eval", help="measure the saved probes of a run again",
                      description="Re-collect the data of a finished run, apply its saved probes and "
                      "write eval.csv next to metrics.csv (equal when nothing changed).")
    e.add_argument("dir", help="output directory of `interp probe train`")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=run_eval)
    s = ps.add_parser("show", help="summarise a finished run",
                      description="Print, per offset, the best layer's test metrics next to the baselines.")
    s.add_argument("dir", help="output directory of `interp probe train`")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.add_argument("--role", default="all", help="a position role, or 'all' (default)")
    s.add_argument("--site", default=None, help="input site (default: the spec's first)")
    s.add_argument("--all-layers", action="store_true", help="print every layer, not only the best")
    s.set_defaults(func=run_show)
    def no_action(args) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_action)


def run_train(args) -> int:
    from ..probes import ProbeSpec, train_probes

    spec = ProbeSpec.from_toml(args.spec, args.overrides)
    out = Path(args.out) if args.out else Path("results") / "probes" / spec.name
    res = train_probes(spec, out, fresh=args.fresh, verbose=not args.quiet)
    if spec.method == "future_lens":
        print(_lens_table(res))
        print(f"wrote {out}/future_lens.csv and {', '.join(f.name + '.html' for f in res.figures())}")
        return 0
    print(_table(res, "test", "all", None, False))
    print(f"wrote {out}/metrics.csv, {out}/probes/, {out}/probe_accuracy.html")
    return 0


def run_eval(args) -> int:
    from ..errors import InterpError
    from ..probes import evaluate_probes

    if (Path(args.dir) / "future_lens.csv").is_file():
        raise InterpError(f"{args.dir} is a Future Lens run; `probe eval` re-measures classifier probes",
                          "rerun `interp probe train SPEC --fresh` to measure it again")
    res = evaluate_probes(args.dir, verbose=not args.quiet)
    path = Path(args.dir) / "eval.csv"
    atomic_write_csv(path, res.to_pandas())
    print(_table(res, "test", "all", None, False))
    print(f"wrote {path}")
    return 0


def run_show(args) -> int:
    from ..probes import load_future_lens, load_probes

    if (Path(args.dir) / "future_lens.csv").is_file():
        print(_lens_table(load_future_lens(args.dir), all_layers=args.all_layers))
        return 0
    res = load_probes(args.dir)
    print(f"{res.spec.name}: {res.spec.description}".rstrip(": "))
    print(_table(res, args.split, args.role, args.site, args.all_layers))
    for f in res.figures():
        if (fig := Path(args.dir) / f"{f.name}.html").is_file():
            print(f"figure: {fig}")
    return 0


def _table(res, split: str, role: str, site: str | None, all_layers: bool) -> str:
    regression = res.description["kind"] == "ridge"
    cols = SHOW_COLUMNS_R2 if regression else SHOW_COLUMNS
    if all_layers:
        m = res.to_pandas()
        site = site or res.spec.inputs.sites[0]
        m = m[(m.split == split) & (m.role == role) & (m.site == site)]
        if m["head"].max() >= 0:  # K/V sites: the best head per layer
            key = "r2" if regression else "accuracy"
            m = m.loc[m.groupby(["offset", "layer"])[key].idxmax()]
        table = m.sort_values(["offset", "layer"])
    else:
        table = res.summary(split=split, role=role, site=site)
        cols = cols[:2] + ["head"] + cols[2:] if table["head"].max() >= 0 else cols
    header = f"{'best layer per offset' if not all_layers else 'all layers'} ({split} split, role {role})"
    return header + "\n" + table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")


LENS_COLUMNS = ["method", "offset", "layer", "n", "agreement_top1", "agreement_top5", "accuracy", "model_accuracy",
                "bigram_agreement", "trigram_agreement", "bigram_accuracy", "trigram_accuracy"]


def _lens_table(res, all_layers: bool = False) -> str:
    """Per method and offset the best layer by top-1 agreement (or every layer), and the headline."""
    table = res.to_pandas().sort_values(["method", "offset", "layer"]) if all_layers else res.summary()
    header = "Future Lens, test documents: " + ("all layers" if all_layers else "best layer per method and offset")
    return "\n".join([header, table[LENS_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}"),
                      res.headline()])
