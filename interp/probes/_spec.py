"""Probe specs: a TOML file parsed into :class:`ProbeSpec`, validated with errors that name
the bad field and list the valid ones.

A spec has one table per concern::

    name = "lookahead"
    [model]            # what to run: a bundled/HF name, or a [model.tiny] table (TinyConfig)
    [data]             # where positions come from: a corpus cut into windows, or a recording
    [inputs]           # what a probe reads: layers, sites (resid_pre/mid/post, k, v), roles
    [target]           # what it predicts: token at offset k, hidden state, a label column
    [train]            # how: splits, weight decay, early stopping, seeds
    method = "future_lens"   # instead of the default "classifier" probes, with
    [future_lens]      # ridge penalties, evaluation size, learned prompts (FutureLensSpec)

Command-line overrides use dotted keys with TOML values: ``--set target.offsets=[1,2]``,
``--set data.max_windows=50``, ``--set model.name=smollm2-135m``. Checks that need the model or
the data (a layer out of range, an offset longer than the window, a role that matches no
position, a misaligned label table, too few examples per class) run when the probes are trained,
and name the spec field too.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.pauses import ROLES, PausePolicy
from ..core.sites import RESID
from ..errors import InterpError
from ..models import TinyConfig

__all__ = [
    "DataSpec",
    "FutureLensSpec",
    "InputSpec",
    "METHODS",
    "ModelSpec",
    "ProbeSpec",
    "SITES",
    "TARGET_KINDS",
    "TargetSpec",
    "TrainSpec",
]

#: the sites a probe reads (see :mod:`interp.core.sites`)
SITES = (*RESID, "k", "v")
TARGET_KINDS = ("token", "hidden", "label", "continuous", "answer")
DTYPES = ("float32", "float64", "bfloat16", "float16")


def _fail(field_name: str, problem: str, fix: str) -> InterpError:
    return InterpError(f"probe spec field {field_name}: {problem}", fix)


@dataclass
class ModelSpec:
    """The model whose activations are probed.

    Attributes:
        name: passed to :func:`interp.load_model` (bundled name, ``.gguf`` path, local
            directory or Hub name). Ignored when ``tiny`` is given.
        tiny: fields of :class:`interp.TinyConfig` (the ``[model.tiny]`` table): a tiny native
            model. It has no tokenizer, so it reads ``data.recording`` or ``data.task``.
        toy: a folder written by ``interp toy train`` (:func:`interp.training.toy.load_toy`): a
            trained toy model, whose own task is the default ``data.task``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``...
        dtype: parameter dtype of the model.
        add_pause: add a ``<pause>`` token to the model (needed when ``data.pauses`` inserts
            pauses rather than a filler token).
    """

    name: str = "smollm2-135m"
    tiny: TinyConfig | None = None
    toy: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    add_pause: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise _fail("model.dtype", f"unknown dtype {self.dtype!r}", f"choose one of: {', '.join(DTYPES)}")


@dataclass
class DataSpec:
    """Where the probed positions come from.

    Attributes:
        corpus: ``"pydoc"`` (bundled), a text file, folder, ``.jsonl`` or ``hf:NAME``
            (see :func:`interp.load_corpus`). Each document is a split group.
        recording: a directory written by :func:`interp.record`; used instead of running the
            model on ``corpus``. Each recorded sequence's group is its document/prompt id.
        field: JSONL/dataset field holding the text.
        n_tokens: window length in tokens (BOS included).
        max_windows: stop after this many windows in all.
        windows_per_doc: at most this many windows per document, so that many documents
            (split groups) are covered; ``0`` means no limit.
        batch_size: windows per forward pass while collecting activations.
        pauses: fields of :class:`interp.PausePolicy` (the ``[data.pauses]`` table): insert
            pauses into every window, so probes can read pause positions.
        task: a synthetic task instead of a corpus (the ``[data.task]`` table): ``name`` and
            the options of :func:`interp.training.tasks.get_task` (pauses included). Each example is
            its own split group (split by prompt).
        n_examples: how many task examples (seeded by ``train.seed``).
    """

    corpus: str = "pydoc"
    recording: str | None = None
    field: str = "text"
    n_tokens: int = 64
    max_windows: int = 200
    windows_per_doc: int = 4
    batch_size: int = 16
    pauses: PausePolicy | None = None
    task: dict[str, Any] | None = None
    n_examples: int = 256

    def __post_init__(self) -> None:
        if self.task is not None and not isinstance(self.task.get("name"), str):
            raise _fail("data.task", "the table needs a name", 'e.g. [data.task] name = "parity"')
        for name in ("n_tokens", "max_windows", "batch_size", "n_examples"):
            if getattr(self, name) < 1:
                raise _fail(f"data.{name}", f"must be >= 1, got {getattr(self, name)}", f"set data.{name} to 1 or more")
        if self.n_tokens < 3:
            raise _fail("data.n_tokens", f"{self.n_tokens} leaves no room for a target", "use n_tokens >= 3")
        if self.windows_per_doc < 0:
            raise _fail("data.windows_per_doc", "must be >= 0 (0: no limit)", "use 0 or more")


@dataclass
class InputSpec:
    """What a probe reads.

    Attributes:
        layers: block indices, or ``"all"``.
        sites: any of ``resid_pre``, ``resid_mid``, ``resid_post`` (``[d_model]`` per position)
            and ``k``, ``v`` (one probe per KV head, ``[d_head]`` each, before RoPE).
        roles: position roles to read at (see :data:`interp.ROLES`); metrics are reported per
            role and for all of them together (role ``"all"``).
    """

    layers: list[int] | str = "all"
    sites: list[str] = field(default_factory=lambda: ["resid_post"])
    roles: list[str] = field(default_factory=lambda: ["regular"])

    def __post_init__(self) -> None:
        if isinstance(self.layers, str):
            if self.layers != "all":
                raise _fail("inputs.layers", f"{self.layers!r} is not a list", 'give a list such as [0, 5, 10] or "all"')
        elif not self.layers or not all(isinstance(x, int) for x in self.layers):
            raise _fail("inputs.layers", f"{self.layers!r} is not a non-empty list of integers", 'e.g. [0, 5, 10] or "all"')
        if not self.sites:
            raise _fail("inputs.sites", "no site given", f"choose from: {', '.join(SITES)}")
        for s in self.sites:
            if s not in SITES:
                raise _fail("inputs.sites", f"unknown site {s!r}", f"choose from: {', '.join(SITES)}")
        if not self.roles:
            raise _fail("inputs.roles", "no role given", f"choose from: {', '.join(ROLES)}")
        for r in self.roles:
            if r not in ROLES:
                raise _fail("inputs.roles", f"unknown role {r!r}", f"choose from: {', '.join(ROLES)}")


@dataclass
class TargetSpec:
    """What a probe predicts.

    Attributes:
        kind: ``"token"`` (the token at offset k, softmax), ``"hidden"`` (the hidden state at
            offset k, ridge regression, R²), ``"label"`` (a class label column of
            ``table``, softmax), ``"continuous"`` (a numeric column of ``table``, ridge, R²)
            or ``"answer"`` (the answer of the synthetic-task example the position belongs to,
            softmax; needs ``data.task`` or ``model.toy``).
        offsets: the k of "position i + k" for ``token``/``hidden`` targets (k >= 1; offsets
            count tokens of the text, skipping inserted pauses).
        vocab: for ``token`` targets, keep the ``vocab`` most frequent training targets and map
            the rest to one "other" class; ``0`` keeps every token seen in training.
        hidden_layer: for ``hidden`` targets, the layer whose ``resid_post`` is predicted
            (default: the probe's own layer).
        table: for ``label``/``continuous`` targets, a CSV file with columns ``sequence`` and
            ``position`` (which sequence and position a row labels; ``window`` for the
            sequence in earlier releases is still read), ``token`` (the token id there,
            checked against the data, so a table made for other windows is refused) and
            the ``column``.
        column: the label column of ``table``.
    """

    kind: str = "token"
    offsets: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    vocab: int = 0
    hidden_layer: int | None = None
    table: str | None = None
    column: str = "label"

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise _fail("target.kind", f"unknown kind {self.kind!r}", f"choose from: {', '.join(TARGET_KINDS)}")
        if self.kind in ("token", "hidden"):
            if not self.offsets or any(not isinstance(k, int) or k < 1 for k in self.offsets):
                raise _fail("target.offsets", f"{self.offsets!r} must be a non-empty list of integers >= 1", "e.g. [1, 2, 3, 4]")
            self.offsets = sorted(set(self.offsets))
        else:
            if self.table is None and self.kind != "answer":
                raise _fail("target.table", f"kind={self.kind!r} needs a label table", "set target.table to a CSV file")
            self.offsets = [0]
        if self.vocab < 0:
            raise _fail("target.vocab", f"must be >= 0, got {self.vocab}", "0 keeps the full vocabulary")


@dataclass
class TrainSpec:
    """How probes are fitted and evaluated.

    Attributes:
        seed: seeds the split, the control task, initialisation and minibatch order.
        val_fraction, test_fraction: fractions of split groups (documents/prompts) held out
            for early stopping and for the reported test metrics.
        weight_decay: L2 penalty λ in ``mean CE + λ ||W||²`` (softmax probes).
        lr: Adam learning rate (features are standardised, so one rate suits every layer).
        max_epochs: at most this many passes over the training data.
        patience: a (layer, offset) cell stops after this many epochs without a better
            validation cross-entropy; its best weights are kept.
        batch_size: examples per Adam step (all layers and offsets at once).
        ridge_alphas: candidate ridge penalties (per standardised feature, times n); the one
            with the best validation R² is kept per cell.
        control: also train the control task and report selectivity (Hewitt & Liang 2019).
        min_per_class: every class must have at least this many training examples; for
            ``token`` targets rarer tokens go to "other" instead.
        device: where probes train: ``"auto"`` (CUDA when present), ``"cpu"``...
    """

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    weight_decay: float = 1e-4
    lr: float = 3e-3
    max_epochs: int = 30
    patience: int = 3
    batch_size: int = 512
    ridge_alphas: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0])
    control: bool = True
    min_per_class: int = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise _fail(f"train.{name}", f"must be in (0, 1), got {v}", "use a fraction such as 0.1")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise _fail("train.val_fraction", "val_fraction + test_fraction leave no training data", "make their sum < 1")
        for name in ("max_epochs", "patience", "batch_size", "min_per_class"):
            if getattr(self, name) < 1:
                raise _fail(f"train.{name}", f"must be >= 1, got {getattr(self, name)}", f"set train.{name} to 1 or more")
        if self.weight_decay < 0 or self.lr <= 0:
            raise _fail("train.weight_decay", "weight_decay must be >= 0 and lr > 0",
                        f"use weight_decay >= 0 (now {self.weight_decay}) and lr > 0 (now {self.lr})")
        if not self.ridge_alphas or any(a <= 0 for a in self.ridge_alphas):
            raise _fail("train.ridge_alphas", f"{self.ridge_alphas!r} must be positive numbers",
                        "give a list of numbers > 0, e.g. [0.1, 1.0, 10.0]")


@dataclass
class FutureLensSpec:
    """Settings of a Future Lens run (the ``[future_lens]`` table of a probe spec).

    Attributes:
        alphas: candidate relative ridge penalties α (each dimension penalised by α times its
            own variance: ridge on standardised features); the best on the validation
            documents is kept per (layer, offset), and the grid extends itself by up to six
            decades past an end that wins (``alpha_at_edge`` in the results' metadata lists
            the cells still at an end).
        eval_positions: held-out positions decoded for the metrics (a seeded sample of the
            test documents' positions; each costs one full-vocabulary decode per layer and
            offset).
        prompt_layers: layers at which a learned prompt is trained (empty: none; it costs a
            forward and backward pass through the model per step).
        prompt_offsets: offsets a prompt is trained for (empty: every offset ≥ 2).
        prompt_length: soft-prompt positions (initialised from the embeddings of the first
            training window's first tokens).
        prompt_steps: Adam steps per prompt.
        prompt_lr: Adam learning rate of the prompt.
        prompt_batch: examples per step.
        prompt_examples: training positions kept for the prompts (a seeded sample).
        save_weights: write the linear maps (``lens.safetensors``, 4 · L · K · d² bytes).
    """

    alphas: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    eval_positions: int = 2000
    prompt_layers: list[int] = field(default_factory=list)
    prompt_offsets: list[int] = field(default_factory=list)
    prompt_length: int = 4
    prompt_steps: int = 100
    prompt_lr: float = 0.01
    prompt_batch: int = 16
    prompt_examples: int = 2048
    save_weights: bool = True

    def __post_init__(self) -> None:
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise InterpError(f"probe spec field future_lens.alphas: {self.alphas!r} must be positive numbers",
                              "e.g. [1e-4, 1e-3, 1e-2, 1e-1, 1.0]")
        for name in ("eval_positions", "prompt_length", "prompt_steps", "prompt_batch", "prompt_examples"):
            if getattr(self, name) < 1:
                raise InterpError(f"probe spec field future_lens.{name}: must be >= 1, got {getattr(self, name)}",
                                  f"set future_lens.{name} to 1 or more")
        if self.prompt_lr <= 0:
            raise InterpError(f"probe spec field future_lens.prompt_lr: must be > 0, got {self.prompt_lr}",
                              "set a positive learning rate, e.g. future_lens.prompt_lr=0.01")
        if any(k < 1 for k in self.prompt_offsets):
            raise InterpError(f"probe spec field future_lens.prompt_offsets: {self.prompt_offsets!r} must be >= 1",
                              "give offsets of 1 (the next token) or more")


METHODS = ("classifier", "future_lens")

_SECTIONS = {"model": ModelSpec, "data": DataSpec, "inputs": InputSpec, "target": TargetSpec, "train": TrainSpec,
             "future_lens": FutureLensSpec}


@dataclass
class ProbeSpec:
    """A complete probe experiment: model, data, inputs, target and training.

    Build one from TOML with :meth:`from_toml`, from a dict with :meth:`from_dict`, or in
    Python (every section has defaults, so ``ProbeSpec(name="x")`` is the bundled-model
    lookahead experiment). :meth:`with_overrides` applies ``key=value`` strings.

    Attributes:
        name: the experiment's name (the default output folder is ``results/probes/<name>``).
        description: free text, copied into the artifacts.
        method: ``"classifier"`` (softmax/ridge probes trained on the targets, with baselines
            and a control task) or ``"future_lens"`` (Pal et al. 2023: a ridge map to the
            model's own final state, decoded through its unembedding over the full
            vocabulary, and optionally a learned prompt; see :func:`interp.probes.future_lens`).
        model, data, inputs, target, train: the sections (see their classes).
        future_lens: settings of the ``future_lens`` method (:class:`FutureLensSpec`).
    """

    name: str = "probe"
    description: str = ""
    method: str = "classifier"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    inputs: InputSpec = field(default_factory=InputSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    future_lens: FutureLensSpec = field(default_factory=FutureLensSpec)

    @property
    def uses_task(self) -> bool:
        """Whether positions come from a synthetic task (``data.task`` or a toy model's)."""
        return self.data.recording is None and (self.data.task is not None or self.model.toy is not None)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise _fail("method", f"unknown method {self.method!r}", f"choose from: {', '.join(METHODS)}")
        if self.method == "future_lens":
            self._check_future_lens()
        if self.data.recording is None and not self.uses_task and self.model.tiny is not None:
            raise _fail(
                "model.tiny", "a tiny native model has no tokenizer, so it cannot read data.corpus",
                "set data.recording (a recording made with this model) or data.task (a synthetic task)",
            )
        if self.target.kind == "answer" and not self.uses_task:
            raise _fail("target.kind", "'answer' targets need a synthetic task",
                        "set [data.task] (name and options) or model.toy")
        if self.target.kind == "token" and self.data.recording is None and not self.uses_task:
            longest = max(self.target.offsets)
            if longest >= self.data.n_tokens - 1:
                raise _fail(
                    "target.offsets", f"offset {longest} leaves no position with a target in a "
                    f"window of data.n_tokens={self.data.n_tokens}",
                    f"use offsets below {self.data.n_tokens - 2} or longer windows",
                )

    def _check_future_lens(self) -> None:
        """The fields the Future Lens method cannot honour, named."""
        if self.target.kind != "token":
            raise _fail("target.kind", f"method 'future_lens' predicts tokens, not {self.target.kind!r}",
                        'set target.kind = "token", or method = "classifier" for labels')
        if self.inputs.sites != ["resid_post"]:
            raise _fail("inputs.sites", f"method 'future_lens' reads the residual stream after each block, "
                        f"not {self.inputs.sites}", 'set inputs.sites = ["resid_post"]')
        if self.data.recording is not None:
            raise _fail("data.recording", "method 'future_lens' streams the model over a corpus",
                        "drop data.recording (give data.corpus)")
        bad = [x for x in self.future_lens.prompt_layers
               if isinstance(self.inputs.layers, list) and x not in self.inputs.layers]
        if bad:
            raise _fail("future_lens.prompt_layers", f"layer(s) {bad} are not in inputs.layers",
                        "choose prompt layers among inputs.layers")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeSpec:
        """Build from a nested dict (a parsed TOML file), naming unknown fields."""
        return _build(cls, d, "")

    @classmethod
    def from_toml(cls, path: str | Path, overrides: list[str] | None = None) -> ProbeSpec:
        """Read a TOML spec and apply ``key=value`` overrides (see :meth:`with_overrides`)."""
        path = Path(path)
        if not path.is_file():
            raise InterpError(f"probe spec {str(path)!r} not found", "give the path of a .toml file, e.g. probes/tiny.toml")
        try:
            d = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise InterpError(f"{path} is not valid TOML ({e})",
                              "correct the TOML at the line and column given (syntax: https://toml.io)") from None
        if not d:  # an empty (or all-comment) file would silently run the full default experiment
            raise InterpError(f"probe spec {path} is empty: it sets no field",
                              "write the experiment into it (at least name and [data]); "
                              "probes/tiny.toml is a complete example to copy")
        _apply_overrides(d, overrides or [])
        return cls.from_dict(d)

    def with_overrides(self, overrides: list[str]) -> ProbeSpec:
        """A copy with ``key=value`` overrides applied; keys are dotted (``train.seed=1``) and
        values are TOML (``[1, 2]``, ``"text"``, ``true``), or bare strings."""
        d = self.to_dict()
        _apply_overrides(d, overrides)
        return ProbeSpec.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (``None`` fields left out, as TOML has no null)."""
        return _drop_none(dataclasses.asdict(self))

    def to_toml(self) -> str:
        """The spec as TOML text (round-trips through :meth:`from_dict`)."""
        return _dump_toml(self.to_dict())

    def fingerprint(self) -> str:
        """A stable JSON string of the fields that change results (used by resume)."""
        d = self.to_dict()
        d.pop("description", None)
        d["train"].pop("device", None)
        d["model"].pop("device", None)
        return json.dumps(d, sort_keys=True)


# Sub-tables that become objects: (class, field) -> (builder class, whether it is a spec section)
_TABLES = {
    (ModelSpec, "tiny"): TinyConfig,
    (DataSpec, "pauses"): PausePolicy,
}


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a (simple) field annotation."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin in (list, tuple):
        inner = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """TOML integers where floats are expected, lists where tuples are."""
    if hint is float or (typing.get_origin(hint) in (types.UnionType, typing.Union) and float in typing.get_args(hint)):
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    origin = typing.get_origin(hint)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        inner = typing.get_args(hint)[0]
        return origin(_coerce(v, inner) for v in value)
    return value


def _build(cls, d: dict[str, Any], where: str):
    """Build a dataclass from a TOML table, naming unknown fields and values of the wrong type."""
    label = where or "(top level)"
    if not isinstance(d, dict):
        raise _fail(label, f"expected a table, got {d!r}", "write it as a TOML table: key = value lines under a [section] header")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        table = f"[{where}]" if where else "the top level"
        raise InterpError(
            f"unknown probe spec field {', '.join(f'{where}.{k}' if where else k for k in unknown)}",
            f"valid fields in {table}: {', '.join(names)}",
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in d.items():
        name = f"{where}.{key}" if where else key
        sub = _SECTIONS.get(key) if cls is ProbeSpec else _TABLES.get((cls, key))
        if sub is not None and isinstance(value, dict):
            kwargs[key] = _build(sub, value, name)
            continue
        value = _coerce(value, hints[key])
        if not _type_ok(value, hints[key]):
            raise _fail(name, f"{value!r} is not of type {_type_name(hints[key])}",
                        f"give a value of type {_type_name(hints[key])} (TOML: strings quoted, lists in [])")
        kwargs[key] = value
    return cls(**kwargs)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string such as model.name=smollm2-135m


def _apply_overrides(d: dict[str, Any], overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise InterpError(f"--set {item!r} is not key=value", "e.g. --set train.seed=1 or --set target.offsets=[1,2]")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InterpError(f"--set {key}: {p} is not a table",
                                  f"set {p} itself (--set {p}=VALUE), or a key inside a table")
        node[parts[-1]] = _parse_value(value.strip())


def _drop_none(x):
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_drop_none(v) for v in x]
    return x


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _dump_toml(d: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for specs: scalars and lists first, then sub-tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}.{k}" if prefix else k
            lines += ["", f"[{name}]", _dump_toml(v, name)]
    return "\n".join(line for line in lines if line is not None).strip("\n") + "\n"
