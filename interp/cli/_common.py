"""Options shared by several subcommands, so they are spelled and parsed once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..core.pauses import PausePolicy
from ..errors import InterpError


class _Renamed(argparse.Action):
    """An old spelling of an option: giving it exits (status 2) with a message naming the new
    one, so a script written for an earlier release fails loudly instead of being misread."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0,
                         default=argparse.SUPPRESS, help=f"renamed: use {new}")
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed: use {self.new}")


#: old option spellings and their replacements (one spelling per concept across commands)
RENAMED = {
    "--no-resume": "--fresh",
    "--overwrite": "--fresh",
    "--n-windows": "--max-windows",
    "--windows": "--max-windows",
    "--format": "--formats",
}


def add_renamed(p: argparse.ArgumentParser, old: str, new: str | None = None) -> None:
    """Accept ``old`` only to fail with an error naming ``new`` (see :data:`RENAMED`)."""
    p.add_argument(old, action=_Renamed, new=new or RENAMED[old])


def add_formats_arg(p: argparse.ArgumentParser, default: str, what: str) -> None:
    """``--formats png,pdf``: the figure formats a command writes (the old ``--format`` fails
    with an error naming it)."""
    p.add_argument("--formats", default=default,
                   help=f"{what}: any of html, png, svg, pdf, comma-separated (default {default})")
    add_renamed(p, "--format")


def parse_formats(s: str) -> tuple[str, ...]:
    """``"png,pdf"`` -> ``("png", "pdf")``, each checked (a Chrome for static formats);
    ``"none"`` -> ``()``."""
    from ..figures._export import check_format

    if s == "none":
        return ()
    return tuple(dict.fromkeys(check_format(f) for f in s.split(",") if f.strip()))


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="bundled name, .gguf path, local HF directory or Hub name "
                   "(default: smollm2-135m)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    p.add_argument("--n-devices", type=int, default=None, metavar="N",
                   help="split the model's layers over N GPUs (under torchrun: N per process)")


def add_input_args(p: argparse.ArgumentParser, n_tokens: int = 128) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", help="a text to analyse")
    g.add_argument("--corpus", help="'pydoc' (bundled), a text file, folder, .jsonl or hf:NAME")
    p.add_argument("--field", default="text", help="JSONL/dataset field holding the text")
    p.add_argument("--n-tokens", type=int, default=n_tokens, help="window length in tokens")
    p.add_argument("--max-windows", type=int, default=None, help="stop after this many windows")


def add_pause_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pause-every", type=int, default=None, metavar="K",
                   help="insert pauses after every K tokens")
    p.add_argument("--pauses-per-insert", type=int, default=1, metavar="N",
                   help="pauses inserted at each place (with --pause-every or --pause-rate)")
    add_renamed(p, "--pauses", "--pauses-per-insert")
    p.add_argument("--pause-rate", type=float, default=0.0, help="insert pauses at random with this rate")
    p.add_argument("--pauses-before-answer", type=int, default=0, metavar="N",
                   help="insert N pauses before each answer span")
    p.add_argument("--filler", default=None, help="insert this existing token instead of <pause>")
    p.add_argument("--seed", type=int, default=0, help="seed for random pause insertion")


def check_args(args) -> None:
    """Check the options many commands share before any work starts, so a bad ``--out``,
    ``--device`` or ``--max-windows`` fails at once instead of after the model loaded or the
    whole computation ran. ``main`` calls it for every command."""
    max_windows = getattr(args, "max_windows", None)
    if max_windows is not None and max_windows < 1:
        raise InterpError(f"--max-windows {max_windows} asks for no windows",
                          "give --max-windows N with N >= 1, or leave it out")
    if getattr(args, "n_tokens", None) is not None and args.n_tokens < 2:
        raise InterpError(f"--n-tokens {args.n_tokens} leaves no room for text after the BOS token",
                          "give --n-tokens 2 or more")
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    if getattr(args, "out", None) is not None:
        check_out_dir(args.out)


def check_device(device: str) -> None:
    """Refuse a device torch does not know or this machine does not have."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InterpError(f"--device {device!r} is not a device name",
                          "give cpu, cuda, cuda:N or mps, or leave --device out") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InterpError(f"--device {device} asks for CUDA, but this machine has no CUDA GPU "
                              "(torch.cuda.is_available() is False)",
                              "pass --device cpu, or leave --device out (CUDA when present)")
        if dev.index is not None and dev.index >= n:
            raise InterpError(f"--device {device} asks for GPU {dev.index}, but this machine has {n}",
                              f"give cuda:0 .. cuda:{n - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InterpError(f"--device {device} asks for Apple MPS, which this machine does not have",
                          "pass --device cpu, or leave --device out")


def check_out_dir(out: str | os.PathLike) -> None:
    """Refuse an output folder that cannot be created or written: one that is a file, lies
    under a file, or whose nearest existing folder is read-only. Nothing is created."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InterpError(f"--out {path} is a file, not a folder",
                          "give a folder (new or existing) for the results")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InterpError(f"--out {path} lies under {existing}, which is a file",
                          "give a folder path whose parents are folders")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InterpError(f"--out {path} cannot be written: {existing} is read-only for you",
                          "give a folder you can write to, or change its permissions")


def model_from_args(args):
    from ..core.distributed import rank_info
    from ..models import load_model

    info = rank_info()  # under torchrun: starts the process group; each process its own GPU
    device = args.device or (str(info.device) if info.distributed else None)
    return load_model(args.model, device=device, dtype=getattr(torch, args.dtype),
                      n_devices=getattr(args, "n_devices", None))


def policy_from_args(args, model=None) -> PausePolicy:
    filler = None
    if args.filler is not None:
        if model is None or model.tokenizer is None:
            raise InterpError("--filler needs a model with a tokenizer",
                              "load a Hugging Face model (--model NAME or DIR), or leave out --filler to "
                              "insert <pause> tokens")
        ids = model.tokenizer(args.filler, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise InterpError(f"--filler {args.filler!r} is {len(ids)} tokens", "give one token, e.g. '.'")
        filler = ids[0]
    return PausePolicy(every=args.pause_every, n=args.pauses_per_insert, rate=args.pause_rate,
                       before_answer=args.pauses_before_answer, filler=filler, seed=args.seed)


def parse_int_list(s: str | None, name: str) -> list[int] | None:
    """``"0,2,5-7"`` -> ``[0, 2, 5, 6, 7]``; ``"0,-1"`` -> ``[0, -1]`` (a layer counted from
    the end); ``None``/``"all"`` -> ``None``."""
    import re

    if s is None or s == "all":
        return None
    out: list[int] = []
    for part in s.split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if m is None:
            raise InterpError(f"--{name} {s!r} is not a list of integers",
                              f"e.g. --{name} 0,2,5-7 (or -1 for the last layer)")
        a, b = int(m[1]), m[2]
        out += [a] if b is None else list(range(a, int(b) + 1))
    return out


def parse_float_list(s: str, name: str) -> list[float]:
    """``"0,0.05,0.2"`` -> ``[0.0, 0.05, 0.2]``."""
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise InterpError(f"--{name} {s!r} is not a list of numbers",
                          f"e.g. --{name} 0,0.05,0.2") from None
