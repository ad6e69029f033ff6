"""``interp pause-train`` and ``interp pause-compare``: pause-train a real LM (Goyal et al. 2024),
then compare it with its base on the loss and on every instrument.

``interp pause-train --out results/pause_ckpt`` fine-tunes the bundled SmolLM2 with ``<pause>``
tokens inserted at random (a LoRA adapter + the pause embedding row; see
:mod:`interp.training.pause`) and writes ``adapter.safetensors``, ``adapter_config.json``,
``checkpoint.safetensors``, ``state.json`` and ``history.csv``. Rerun the same command to
resume; ``interp.load_model("results/pause_ckpt")`` loads the result.

``interp pause-compare results/pause_ckpt --out results/pause_cmp`` writes the comparison tables
(``pause_losses.csv``, ``pause_adaptive.csv``, ``pause_registers.csv``, ``pause_massive.csv``,
``pause_future_share.csv``, ``pause_generation.csv``) and their figures; ``interp report
--pause-dir results/pause_cmp`` (or the checkpoint folder) adds them to the report.
"""

from __future__ import annotations

import argparse
import dataclasses

from ._common import add_formats_arg, add_renamed, parse_float_list, parse_formats, parse_int_list

_DESCRIPTION = __doc__


def _config_flags(p: argparse.ArgumentParser) -> None:
    from ..training.pause import PauseTrainConfig

    defaults = PauseTrainConfig()
    for f in dataclasses.fields(PauseTrainConfig):
        if f.name in ("base", "corpus", "targets", "pause_n_max", "learned"):
            continue
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        p.add_argument(flag, dest=f.name, type=type(value), default=None,
                       help=f"PauseTrainConfig.{f.name} (default {value})")
    p.add_argument("--pause-n-max", dest="pause_n_max", type=int, default=None,
                   help=f"most pauses per run (default {defaults.pause_n_max}; 0: always "
                   "--pause-n)")
    p.add_argument("--targets", default=None,
                   help=f"LoRA targets, comma-separated (default {','.join(defaults.targets)})")
    p.add_argument("--learned", action="store_true",
                   help="learned pause requests: the model decides how many pauses to take "
                   "before each token, each costing --lam (docs/concepts/learned-pauses.md); "
                   "changes the defaults of " + ", ".join(
                       f"--{k.replace('_', '-')} {v}"
                       for k, v in PauseTrainConfig.LEARNED_DEFAULTS.items()))
    p.add_argument("--lams", default=None,
                   help="with --learned: train one adapter per pause cost (OUT/lam_<λ>) and "
                   "measure the loss-vs-pauses frontier and pauses vs the base model's entropy, "
                   "e.g. 0,0.02,0.1")


def register(sub) -> None:
    p = sub.add_parser("pause-train", help="pause-train a real LM (LoRA + <pause> embedding)",
                       description=_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="base model (default: bundled SmolLM2)")
    p.add_argument("--corpus", default=None, help="corpus (default: the bundled one)")
    p.add_argument("--out", required=True, help="output folder (rerun to resume)")
    p.add_argument("--fresh", action="store_true", help="start over even if --out has a checkpoint")
    add_renamed(p, "--no-resume")
    add_formats_arg(p, "html,png", "figure files (with --lams)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA if present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _config_flags(p)
    p.set_defaults(func=run_train)

    c = sub.add_parser("pause-compare", help="base vs pause-trained on the loss and every instrument",
                       description=_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("checkpoint", help="an `interp pause-train --out` folder")
    c.add_argument("--out", required=True, help="output folder for the tables and figures")
    c.add_argument("--max-windows", type=int, default=8, help="held-out windows (default 8)")
    add_renamed(c, "--windows")
    c.add_argument("--seeds", default="0,1,2", help="random pause placements per window")
    c.add_argument("--entropy-top", type=float, default=0.1,
                   help="fraction of positions that get an entropy-triggered pause (default 0.1)")
    c.add_argument("--layers", default=None, help="layers the instruments read (default all)")
    c.add_argument("--gradient-windows", type=int, default=2, help="windows for the gradients")
    c.add_argument("--prompt", default="The capital of France is",
                   help="generation prompt (forced pauses before the answer)")
    c.add_argument("--generation-pauses", type=int, default=3, metavar="N",
                   help="forced pauses before the answer in generation (default 3)")
    add_renamed(c, "--pauses", "--generation-pauses")
    c.add_argument("--lens-windows", type=int, default=256,
                   help="corpus windows for the Future Lens at pause vs regular positions "
                        "(default 256; 0 skips it)")
    c.add_argument("--no-instruments", action="store_true",
                   help="losses and adaptive pauses only (skip registers, gradients, generation)")
    add_formats_arg(c, "html,png", "figure files")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=run_compare)


def run_train(args) -> int:
    from ..training.pause import PauseTrainConfig, pause_train

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PauseTrainConfig)
                 if getattr(args, f.name, None) is not None
                 and f.name not in ("targets", "pause_n_max", "learned")}
    if args.pause_n_max is not None:
        overrides["pause_n_max"] = args.pause_n_max or None
    if args.targets:
        overrides["targets"] = tuple(t for t in args.targets.split(",") if t)
    cfg = (PauseTrainConfig.learned_run(base=args.model, corpus=args.corpus, **overrides)
           if args.learned else PauseTrainConfig(base=args.model, corpus=args.corpus, **overrides))
    if args.lams is not None:
        return _run_learned_study(cfg, args)
    res = pause_train(cfg, args.out, fresh=args.fresh, device=args.device,
                      verbose=not args.quiet)
    last = res.history.iloc[-1]
    print(f"step {int(last['step'])}: held-out loss {last['eval_loss_plain']:.3f} without "
          f"pauses, {last['eval_loss_pauses']:.3f} with -> {args.out}")
    return 0


def _run_learned_study(cfg, args) -> int:
    from pathlib import Path

    from ..errors import InterpError
    from ..figures import learned_pauses as figs
    from ..figures._style import export
    from ..training.learned_pauses_lm import learned_pause_lm_study

    if not args.learned:
        raise InterpError("--lams sweeps the pause cost of learned pauses", "add --learned")
    lams = parse_float_list(args.lams, "lams")
    frontier, difficulty = learned_pause_lm_study(cfg, lams, args.out, device=args.device,
                                                  verbose=not args.quiet)
    out = Path(args.out)
    for name, fig in [("pause_frontier", figs.pause_frontier(frontier)),
                      ("pause_difficulty", figs.pause_difficulty(difficulty))]:
        for fmt in parse_formats(args.formats):
            export(fig, out / f"{name}.{fmt}")
    print(frontier.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(difficulty.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"-> {out}")
    return 0


def run_compare(args) -> int:
    from ..figures._export import export_figures
    from ..reporting.pause_compare import compare_checkpoint

    comp = compare_checkpoint(
        args.checkpoint, max_windows=args.max_windows, seeds=parse_int_list(args.seeds, "seeds") or [0],
        entropy_top=args.entropy_top, layers=parse_int_list(args.layers, "layers"),
        gradient_windows=args.gradient_windows, prompt=args.prompt or None, generation_pauses=args.generation_pauses,
        instruments=not args.no_instruments, lens_windows=args.lens_windows, verbose=not args.quiet)
    out = comp.save(args.out)
    export_figures([comp], out, formats=parse_formats(args.formats))
    print(comp.loss_summary().to_string(index=False))
    adaptive = comp.adaptive_summary()
    if adaptive is not None:
        print(adaptive.to_string(index=False))
    print(f"-> {out}")
    return 0
