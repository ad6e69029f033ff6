"""``interp controls``: positive controls, where the phenomenon is known to be there.

``interp controls pauses --out runs/ctl`` trains the pause control (16-bit parity, 2 layers:
answering at once versus 16 fillers trained with the unary-count chain-of-thought mixture,
3 seeds), then runs every instrument on the pause-trained model, the no-pause model, and the
no-pause model with fillers inserted but untrained. ``--lengths 8,12,16,24`` and
``--conditions none,pause,filler,filler_cot`` give the accuracy-against-length curves.
``interp controls lookahead --out runs/ctl`` trains the ``precache`` task vanilla and myopic
and compares them: future share of the K/V gradient, a probe for sin(ω·x_t), and patching
along the probe's direction. ``interp controls planning --out runs/ctl`` trains the ``rhyme``
task (3 seeds) and reads the rhyme plan at the separator: probes by layer, and patching the
separator's residual stream from an example of another rhyme class, trained vs untrained.
``interp controls all`` runs all three (the default run fits in 30 minutes on 2 CPU cores; see
``benchmarks/bench_controls.py``). Finished runs are resumed.
``interp controls futurelens --out runs/ctl`` asks whether the real model (the bundled
SmolLM2 by default) uses what the Future Lens reads at offset 2: it fits the lens and, by
layer, transplants h_t^l from another context and steers along the lens direction, each
against a null of the same kind (about 10 minutes on 2 CPU cores; not part of ``all``, which
trains toy models only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InterpError
from ._common import add_formats_arg, add_model_args, model_from_args, parse_formats, parse_int_list


def register(sub) -> None:
    p = sub.add_parser("controls", help="positive controls: pauses that compute, pre-caching, planning, "
                       "Future Lens causal test", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="controls_command", metavar="{pauses,lookahead,planning,all,futurelens}")
    for name, helptext in (("pauses", "the pause control and every instrument on it"),
                           ("lookahead", "pre-caching, vanilla vs myopic"),
                           ("planning", "a rhyme plan at the separator: probes and patching"),
                           ("all", "every toy control (pauses, lookahead, planning)"),
                           ("futurelens", "is what the Future Lens reads used? transplant and "
                            "steering against nulls, by layer, on a real model")):
        c = sp.add_parser(name, help=helptext, description=helptext)
        c.add_argument("--out", required=True, help="output folder (runs are resumed)")
        if name == "futurelens":
            _futurelens_args(c)
        if name in ("pauses", "planning", "all"):
            c.add_argument("--seeds", default="0,1,2", help="seeds (default 0,1,2)")
        if name in ("planning", "all"):
            c.add_argument("--planning-steps", type=int, default=None,
                           help="training steps per rhyme run (default the task's, 400)")
        if name in ("pauses", "all"):
            c.add_argument("--lengths", default=None,
                           help="parity lengths in bits, e.g. 8,16 (default 16)")
            c.add_argument("--conditions", default="none,filler_cot",
                           help="among none, pause, filler, filler_cot (default none,filler_cot)")
            c.add_argument("--steps", type=int, default=None,
                           help="training steps per pause-control run (default 1000)")
            c.add_argument("--instrument-length", type=int, default=None, metavar="N",
                           help="the length whose seed-0 runs get the instruments "
                           "(default the longest)")
        if name in ("lookahead", "all"):
            c.add_argument("--lookahead-steps", type=int, default=None,
                           help="training steps per precache run (default the task's, 800)")
        c.add_argument("--quiet", action="store_true", help="no progress bars")
        add_formats_arg(c, "html,png", "figure files")
        c.set_defaults(func=run_controls, which=name)
    p.set_defaults(func=lambda args: _usage(p))


def _futurelens_args(c: argparse.ArgumentParser) -> None:
    add_model_args(c)
    c.add_argument("--corpus", default=None,
                   help="'pydoc' (bundled, default), a text file, folder, .jsonl or hf:NAME")
    c.add_argument("--layers", default=None,
                   help="layers tested, e.g. 0,10,20,29, or all (default 8 from first to last)")
    c.add_argument("--offsets", default="1,2",
                   help="offsets k read at t + k - 1 (default 1,2; 1 is the positive control)")
    c.add_argument("--position", type=int, default=30, help="the intervened position t (default 30)")
    c.add_argument("--rows", type=int, default=192, help="source windows, one row each (default 192)")
    c.add_argument("--epsilon", type=float, default=0.25,
                   help="steering norm as a fraction of ||h_t^l|| (default 0.25)")
    c.add_argument("--random", type=int, default=3,
                   help="random directions per row for the steering null (default 3)")
    c.add_argument("--lens-windows", type=int, default=240,
                   help="windows the lens is fitted on (default 240)")
    c.add_argument("--lens-tokens", type=int, default=128,
                   help="tokens per lens window (default 128)")
    c.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default 32)")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def run_controls(args) -> int:
    from ..figures._export import export_figures

    out = Path(args.out)
    formats = parse_formats(args.formats)
    if args.which == "futurelens":
        _futurelens(args, out / "futurelens", formats)
    if args.which in ("pauses", "all"):
        _pauses(args, out / "pauses", formats)
    if args.which in ("lookahead", "all"):
        from ..controls import lookahead_control, lookahead_runs

        steps = {} if args.lookahead_steps is None else dict(steps=args.lookahead_steps)
        vanilla, myopic = lookahead_runs(out / "lookahead" / "runs", verbose=not args.quiet,
                                         **steps)
        res = lookahead_control(vanilla, myopic)
        res.save(out / "lookahead")
        export_figures([res], out / "lookahead", formats=formats)
        _show("lookahead", res, ("loss", "future_share", "probes"))
        p = res.patching
        print(p[p["offset"] <= res.settings["k"] + 2].pivot_table(
            index="offset", columns=["model", "direction"], values="slope").to_string(
            float_format=lambda v: f"{v:.3f}"))
    if args.which in ("planning", "all"):
        _planning(args, out / "planning", formats)
    print(f"-> {out}")
    return 0


def _planning(args, out: Path, formats) -> None:
    from ..controls import planning_control, planning_runs
    from ..figures._export import export_figures

    steps = {} if args.planning_steps is None else dict(steps=args.planning_steps)
    seeds = parse_int_list(args.seeds, "seeds") or [0]
    runs = planning_runs(out / "runs", seeds=seeds, verbose=not args.quiet, **steps)
    res = planning_control(runs)
    res.save(out)
    export_figures([res], out, formats=formats)
    _show("planning", res, ("generation",))
    for name, table, value in (("probes at the separator", res.probes, "accuracy"),
                               ("patching: final word in the donor's class", res.patching,
                                "follows_donor"),
                               ("the same, line 2 given (teacher forcing)", res.patching,
                                "follows_donor_given_line")):
        keys = [c for c in ("model", "target", "place", "intervention") if c in table]
        print(f"-- {name} (mean over seeds)")
        print(table.pivot_table(index="layer", columns=keys, values=value).to_string(
            float_format=lambda v: f"{v:.3f}"))


def _futurelens(args, out: Path, formats) -> None:
    from ..controls import future_lens_causal
    from ..core.corpora import load_corpus
    from ..figures._export import export_figures

    layers = "all" if args.layers == "all" else parse_int_list(args.layers, "layers")
    offsets = parse_int_list(args.offsets, "offsets") or [1, 2]
    # the counts need no model: refuse them before it loads (future_lens_causal checks the rest)
    for name in ("rows", "random", "batch_size", "lens_windows", "lens_tokens"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise InterpError(f"{flag} {getattr(args, name)} must be 1 or more", f"give {flag} N with N >= 1")
    if args.epsilon < 0:
        raise InterpError(f"--epsilon {args.epsilon} is negative", "give a steering size of 0 or more, e.g. 0.25")
    model = model_from_args(args)
    res = future_lens_causal(model, load_corpus(args.corpus), layers=layers, offsets=offsets,
                             position=args.position, n_rows=args.rows, epsilon=args.epsilon,
                             n_random=args.random, lens_windows=args.lens_windows,
                             lens_tokens=args.lens_tokens, batch_size=args.batch_size,
                             verbose=not args.quiet)
    res.save(out)
    export_figures([res], out, formats=formats)
    cols = ["layer", "offset", "lens_accuracy", "bigram_accuracy", "n_movable", "follow_source",
            "follow_null", "follow_effect", "follow_effect_se", "steer_lens", "steer_random",
            "steer_effect", "steer_effect_se"]
    print("== Future Lens: read vs used ==")
    print(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _pauses(args, out: Path, formats) -> None:
    import dataclasses

    from ..controls import control_run, pause_control, pause_control_config, pause_instruments
    from ..figures._export import export_figures, export_many
    from ..figures.controls import control_lengths
    from ..training.toy import load_toy

    conditions = [c for c in args.conditions.split(",") if c]
    if "none" not in conditions or len(conditions) < 2:
        raise InterpError(f"--conditions {args.conditions!r} needs 'none' and at least one "
                          "condition with inserted tokens", "e.g. --conditions none,filler_cot")
    base = pause_control_config()
    if args.steps is not None:
        base = dataclasses.replace(base, steps=args.steps)
    lengths = parse_int_list(args.lengths, "lengths") if args.lengths else [16]
    seeds = parse_int_list(args.seeds, "seeds") or [0]
    length = args.instrument_length or max(lengths)
    if length not in lengths:
        raise InterpError(f"--instrument-length {length} is not among --lengths {lengths}",
                          "give one of the trained lengths")
    comp = pause_control(base, lengths=lengths, conditions=conditions, seeds=seeds, out=out,
                         verbose=not args.quiet)
    for fmt in formats:
        export_many([(control_lengths(comp), out / "control_lengths")], fmt)
    summary = comp.runs.groupby(["length", "insert"], sort=False)["value"].agg(
        ["mean", "std", "min", "max", "count"])
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    inserted = "filler_cot" if "filler_cot" in conditions else next(
        c for c in conditions if c != "none")
    res = pause_instruments(load_toy(control_run(out, length, inserted, seeds[0])),
                            load_toy(control_run(out, length, "none", seeds[0])))
    res.save(out)
    export_figures([res], out, formats=formats)
    _show("pause instruments", res, ("accuracy", "patching", "probes", "attention",
                                     "future_share"))


def _show(title: str, res, tables) -> None:
    print(f"== {title} ==")
    for name in tables:
        print(f"-- {name}")
        print(getattr(res, name).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
