"""``interp report``: the main job, one self-contained HTML report."""

from __future__ import annotations

from ._common import add_formats_arg, add_renamed


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="the main job: one HTML report of registers, gradients, probes, patching",
        description="On the bundled model and corpus (pauses inserted at random, rate 0.1): "
        "register and sink analysis, the future-loss gradient decomposition, fast lookahead "
        "probes and an attribution-patching example, written as one self-contained "
        "report.html (works offline) plus every table and figure. Finished sections are "
        "reused on a rerun unless --fresh. A few minutes on 2 idle CPU cores.")
    p.add_argument("--model", default="smollm2-135m",
                   help="bundled name, .gguf path, local HF directory or Hub name "
                   "(default: smollm2-135m)")
    p.add_argument("--corpus", default=None,
                   help="'pydoc' (bundled, default), a text file, folder, .jsonl or hf:NAME")
    p.add_argument("--out", default="results/report", help="output folder (default results/report)")
    p.add_argument("--fresh", action="store_true", help="recompute every section")
    p.add_argument("--pause-rate", type=float, default=0.1,
                   help="insert a <pause> before each token with this probability (default 0.1)")
    p.add_argument("--max-windows", type=int, default=8,
                   help="corpus windows for the registers (default 8)")
    add_renamed(p, "--n-windows")
    p.add_argument("--n-tokens", type=int, default=128, help="window length in tokens")
    p.add_argument("--toy", default=None, metavar="DIR",
                   help="include a finished `interp toy compare --out DIR`")
    add_renamed(p, "--pauses", "--pause-dir")
    p.add_argument("--pause-dir", default=None, metavar="DIR",
                   help="include base vs pause-trained: an `interp pause-compare --out DIR` "
                   "folder, or an `interp pause-train --out DIR` checkpoint (compared on small "
                   "settings)")
    p.add_argument("--sections", default=None,
                   help="comma-separated subset of: registers, gradients, probes, patching, "
                   "tokens (default all), toy (joins by itself with --toy)")
    p.add_argument("--example-prompt", default=None, metavar="TEXT",
                   help="the prompt the token views read (section tokens; default: a few "
                   "sentences about capitals and water)")
    add_formats_arg(p, "png", "figure files to write beside the report ('none': only the "
                    "self-contained report.html)")
    p.add_argument("--long-context", default="1024,2048", metavar="N,N",
                   help="window lengths for the long-context future share in the gradient "
                   "section, one window each (default 1024,2048: about 3 min and 10 GiB on 2 CPU cores; "
                   "'none' to skip)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..reporting import ReportConfig, report
    from ..reporting._config import DEFAULT_SECTIONS
    from ._common import parse_formats, parse_int_list

    formats = parse_formats(args.formats)
    sections = DEFAULT_SECTIONS if args.sections is None else tuple(
        s.strip() for s in args.sections.split(",") if s.strip())
    config = ReportConfig(model=args.model, corpus=args.corpus, pause_rate=args.pause_rate,
                          max_windows=args.max_windows, n_tokens=args.n_tokens, toy_dir=args.toy,
                          pause_dir=args.pause_dir,
                          formats=formats, sections=sections,
                          example_prompt=args.example_prompt or ReportConfig.example_prompt,
                          long_context_tokens=() if args.long_context == "none" else
                          tuple(parse_int_list(args.long_context, "long-context") or ()))
    path = report(config, args.out, fresh=args.fresh, verbose=not args.quiet)
    print(f"open {path}")
    return 0
