"""``interp toy``: train tiny models on synthetic tasks, and compare pauses and myopic training.

``interp toy train --task parity --pauses 4 --out runs/p4`` writes ``metrics.json``,
``history.csv``, ``checkpoint.safetensors`` and ``state.json`` (rerun to resume).
``interp toy compare --task parity --pauses 0,4 --modes vanilla --seeds 0,1,2 --out runs/cmp``
trains the grid and writes ``compare.csv`` (one row per run), ``summary.csv`` (mean and spread
over seeds), ``histories.csv`` and the figures ``compare.{html,png}`` and ``curves.{html,png}``.
``interp toy compare --task 3sum --conditions none,filler,filler_cot --out runs/fillers``
compares answering at once, after filler tokens, and after fillers trained with the parallel
chain-of-thought mixture (Pfau et al. 2024), as many fillers as the task's chain has tokens.
Options not given take the task's defaults (:data:`interp.training.toy.DEFAULTS`).
``interp toy learned-pauses --out runs/lp`` trains a model that requests its own pauses on
parity of variable length, each pause costing λ (given to the model as an urgency input), and
writes ``frontier.csv`` (accuracy against mean pauses for each λ, beside the same budget at
fixed counts, at random and by the entropy trigger), ``difficulty.csv`` (pauses against
length), the instruments at the pauses it took at the smallest λ (``self_pause_attention.csv``,
``self_pause_gradients.csv``, ``self_pause_probes.csv``, ``patching.csv``, each beside its null
and positive control: :func:`interp.controls.self_pause_instruments`) and the figures
``pause_frontier``, ``pause_difficulty`` and ``self_pause_{patching,probes,attention}`` (rerun: reuses
the model, or continues its training from the last checkpoint; ``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InterpError
from ._common import add_formats_arg, add_renamed, parse_float_list, parse_formats, parse_int_list

# TrainConfig fields settable from the command line: flag -> (field, type)
_TRAIN_FLAGS = {
    "--steps": ("steps", int), "--batch-size": ("batch_size", int), "--lr": ("lr", float),
    "--warmup": ("warmup", int), "--eval-every": ("eval_every", int),
    "--eval-size": ("eval_size", int), "--n-layers": ("n_layers", int),
    "--d-model": ("d_model", int), "--n-heads": ("n_heads", int), "--d-mlp": ("d_mlp", int),
    "--target": ("target", float),
}


def _add_common(p: argparse.ArgumentParser) -> None:
    from ..training.tasks import PLACEMENTS

    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option, e.g. --option n_bits=16 (repeatable)")
    p.add_argument("--placement", default=None, choices=PLACEMENTS,
                   help="where pauses go (default: before_answer)")
    for flag, (name, typ) in _TRAIN_FLAGS.items():
        p.add_argument(flag, dest=name, type=typ, default=None,
                       help=f"TrainConfig.{name} (default: the task's)")
    p.add_argument("--positional", default=None, choices=["rotary", "standard"])
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA if present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub) -> None:
    from ..training.tasks import TASKS

    p = sub.add_parser("toy", help="train tiny models on synthetic tasks (pauses, myopic)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    toy = p.add_subparsers(dest="toy_command", metavar="{train,compare,learned-pauses}")

    t = toy.add_parser("train", help="train one tiny model",
                       description="Train one tiny native model on a synthetic task; writes "
                       "metrics.json, history.csv and a resumable checkpoint to --out.")
    t.add_argument("--task", required=True, choices=list(TASKS))
    t.add_argument("--pauses", type=int, default=0, help="pauses per example (default 0)")
    t.add_argument("--filler", action="store_true", help="insert '.' fillers instead of <pause>")
    t.add_argument("--cot-mixture", type=float, default=0.0, metavar="F",
                   help="fraction of training examples whose fillers are replaced by the "
                   "task's parallel chain of thought (parity, 3sum, 2sum_transform; needs --filler "
                   "and --pauses equal to the chain's length)")
    t.add_argument("--myopic", action="store_true",
                   help="myopic training: past keys and values detached (Wu et al. 2024)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--fresh", action="store_true", help="start over even if --out has a checkpoint")
    add_renamed(t, "--no-resume")
    _add_common(t)
    t.set_defaults(func=run_train)

    c = toy.add_parser("compare", help="train a grid (task × pauses × mode × seeds) and compare",
                       description="Train every combination and write compare.csv, summary.csv, "
                       "histories.csv and the figures compare.{html,png}, curves.{html,png}.")
    c.add_argument("--task", required=True, help="task name(s), comma-separated: "
                   + ", ".join(TASKS))
    c.add_argument("--pauses", default=None, help="pause counts, e.g. 0,4 (default 0)")
    c.add_argument("--inserts", default=None,
                   help="pause, filler and/or filler_cot, e.g. pause,filler (default pause)")
    c.add_argument("--conditions", default=None,
                   help="instead of --pauses/--inserts: none, pause, filler and/or filler_cot "
                   "(fillers with the parallel chain-of-thought mixture), all with --fillers "
                   "tokens, e.g. none,filler,filler_cot")
    c.add_argument("--fillers", type=int, default=None, metavar="N",
                   help="with --conditions: tokens inserted before the answer (default: the "
                   "task's chain-of-thought length)")
    c.add_argument("--cot-mixture", type=float, default=0.5, metavar="F",
                   help="fraction of training examples carrying the chain of thought in the "
                   "filler_cot condition (default 0.5)")
    c.add_argument("--modes", default="vanilla,myopic", help="vanilla and/or myopic")
    c.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0-2")
    c.add_argument("--out", required=True, help="output folder")
    add_formats_arg(c, "html,png", "figure files")
    _add_common(c)
    c.set_defaults(func=run_compare)

    from ..training.learned_pauses import LearnedPauseConfig

    d = LearnedPauseConfig()
    lp = toy.add_parser("learned-pauses", help="train a model that requests its own pauses, "
                        "each costing λ, and measure the accuracy-vs-pauses frontier",
                        description="Train on parity of n_min..n_max bits with the halting "
                        "objective (docs/concepts/learned-pauses.md) and sweep the urgency λ.")
    lp.add_argument("--n-min", type=int, default=d.n_min, help=f"shortest string ({d.n_min})")
    lp.add_argument("--n-max", type=int, default=d.n_max, help=f"longest string ({d.n_max})")
    lp.add_argument("--max-pauses", type=int, default=None, help="cap K (default: n-max)")
    lp.add_argument("--lam-max", type=float, default=d.lam_max,
                    help=f"largest pause cost trained; the range is [0, this] ({d.lam_max})")
    lp.add_argument("--lams", default="0,0.05,0.1,0.2,0.35,0.5",
                    help="urgency values to measure, comma-separated, within [0, --lam-max]")
    lp.add_argument("--steps", type=int, default=d.steps, help=f"training steps ({d.steps})")
    lp.add_argument("--cot-mixture", type=float, default=d.cot_mixture, metavar="F",
                    help=f"fraction of examples with the chain of thought ({d.cot_mixture})")
    lp.add_argument("--pause-chain", type=float, default=d.pause_chain, metavar="W",
                    help="weight of the chain read at the pauses themselves: after k pauses the "
                    f"F/T logits report [count of ones >= k + 1] ({d.pause_chain}; 0: off)")
    lp.add_argument("--align", action=argparse.BooleanOptionalAction, default=d.align,
                    help="right-align the bits behind fillers, so '=' and the k-th pause sit at "
                    f"the same position for every length ({d.align})")
    lp.add_argument("--explore", type=float, default=d.explore, metavar="BETA",
                    help=f"weight of the exploration term at the start ({d.explore})")
    lp.add_argument("--ramp-start", type=float, default=d.ramp_start, metavar="F",
                    help=f"fraction of the steps where the pause cost starts ({d.ramp_start})")
    lp.add_argument("--ramp-end", type=float, default=d.ramp_end, metavar="F",
                    help="... and where it reaches λ and the exploration ends "
                    f"({d.ramp_end})")
    lp.add_argument("--answer-after-n", action="store_true",
                    help="train the answers only after k >= n pauses, the decision against "
                    "them detached (LearnedPauseConfig.answer_after_n)")
    lp.add_argument("--positional", default=d.positional, choices=["rotary", "standard"],
                    help=f"position encoding ({d.positional})")
    lp.add_argument("--d-model", type=int, default=d.d_model)
    lp.add_argument("--n-layers", type=int, default=d.n_layers)
    lp.add_argument("--d-mlp", type=int, default=d.d_mlp, help=f"MLP width ({d.d_mlp})")
    lp.add_argument("--eval-size", type=int, default=1024, help="held-out examples (1024)")
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--device", default=None, help="cpu, cuda (default: CUDA if present)")
    lp.add_argument("--out", required=True, help="output folder")
    add_formats_arg(lp, "html,png", "figure files")
    lp.add_argument("--fresh", action="store_true",
                    help="train from scratch even if --out holds a run (by default a finished "
                    "run is reused and one stopped part-way is continued)")
    lp.add_argument("--quiet", action="store_true", help="no progress lines")
    lp.set_defaults(func=run_learned_pauses)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _config(args, task: str, **fixed):
    from ..training.toy import default_config

    opts = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise InterpError(f"--option {item!r} is not KEY=VALUE", "e.g. --option n_bits=16")
        opts[key] = _parse_value(value)
    overrides = {name: getattr(args, name) for name, _ in _TRAIN_FLAGS.values()
                 if getattr(args, name) is not None}
    for name in ("placement", "positional", "device"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cfg = default_config(task, task_options=opts, **overrides, **fixed)
    cfg.make_task()  # validate the task options now, not mid-grid
    return cfg


def run_train(args) -> int:
    from ..training.toy import train_toy

    cfg = _config(args, args.task, pauses=args.pauses, filler=args.filler, myopic=args.myopic,
                  cot_mixture=args.cot_mixture, seed=args.seed)
    res = train_toy(cfg, args.out, fresh=args.fresh, verbose=not args.quiet)
    m = res.metrics
    print(f"{cfg.task} {cfg.mode} pauses={cfg.pauses}: {m['metric']} {m[m['metric']]:.4f} "
          f"(baseline {m['baseline']:.4f}), {m['tokens_per_second']:.0f} tokens/s -> {args.out}")
    return 0


def run_compare(args) -> int:
    from ..figures._export import export_figures
    from ..training.toy import compare_toy, condition_grid, grid

    tasks = [t for t in args.task.split(",") if t]
    seeds = parse_int_list(args.seeds, "seeds") or [0]
    modes = args.modes.split(",")
    if args.conditions is not None and (args.pauses is not None or args.inserts is not None):
        raise InterpError("--conditions was given with --pauses or --inserts",
                          "give either --conditions (with --fillers) or --pauses/--inserts")
    configs = []
    for task in tasks:
        if args.conditions is not None:
            configs += condition_grid(_config(args, task), args.conditions.split(","),
                                      seeds=seeds, fillers=args.fillers,
                                      cot_mixture=args.cot_mixture, modes=modes)
        else:
            configs += grid(_config(args, task), seeds=seeds, modes=modes,
                            pauses=parse_int_list(args.pauses or "0", "pauses") or [0],
                            inserts=(args.inserts or "pause").split(","),
                            cot_mixture=args.cot_mixture)
    comp = compare_toy(configs, args.out, verbose=not args.quiet)
    out = Path(args.out)
    export_figures([comp], out, formats=parse_formats(args.formats))
    print(comp.summary().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> {out}")
    return 0


def run_learned_pauses(args) -> int:
    import pandas as pd

    from ..controls import self_pause_instruments
    from ..figures import learned_pauses as figs
    from ..figures._export import export_figures
    from ..figures._style import export
    from ..training.learned_pauses import LearnedPauseConfig, learned_pause_study

    lams = parse_float_list(args.lams, "lams")
    cfg = LearnedPauseConfig(n_min=args.n_min, n_max=args.n_max, max_pauses=args.max_pauses,
                             lam_max=args.lam_max, steps=args.steps, cot_mixture=args.cot_mixture,
                             answer_after_n=args.answer_after_n, positional=args.positional,
                             pause_chain=args.pause_chain, align=args.align,
                             explore=args.explore, ramp_start=args.ramp_start,
                             ramp_end=args.ramp_end,
                             d_model=args.d_model, n_layers=args.n_layers, d_mlp=args.d_mlp,
                             seed=args.seed,
                             device=args.device)
    formats = parse_formats(args.formats)
    run, frontier, difficulty = learned_pause_study(cfg, lams, args.out,
                                                    n_examples=args.eval_size,
                                                    fresh=args.fresh, verbose=not args.quiet)
    out = Path(args.out)
    by_ones = pd.read_csv(out / "difficulty_ones.csv")
    inst = self_pause_instruments(run, min(lams), n_examples=args.eval_size)
    inst.save(out)
    export_figures([inst], out, formats=formats)
    for name, fig in [("pause_frontier", figs.pause_frontier(frontier)),
                      ("pause_difficulty", figs.pause_difficulty(difficulty, by_ones))]:
        for fmt in formats:
            export(fig, out / f"{name}.{fmt}")
    fmt2 = dict(index=False, float_format=lambda v: f"{v:.3f}")
    print(frontier.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(difficulty.pivot(index="n_bits", columns="lam", values="mean_pauses").to_string(
        float_format=lambda v: f"{v:.2f}"))
    print(by_ones.pivot(index="ones", columns="lam", values="mean_pauses").to_string(
        float_format=lambda v: f"{v:.2f}"))
    print(f"Instruments at the self-requested pauses (λ = {min(lams):g}, "
          f"{inst.settings['mean_pauses']:.2f} pauses per answer):")
    patch = inst.patching[inst.patching["layers"] == "all"]
    print(patch.groupby("patch", sort=False)[["clean_accuracy", "patched_accuracy",
                                              "follows_donor"]].mean().to_string(
        float_format=lambda v: f"{v:.3f}"))
    print(inst.attention.to_string(**fmt2))
    print(inst.probes.query("layer == layer.max()").to_string(**fmt2))
    print(f"-> {out}")
    return 0
