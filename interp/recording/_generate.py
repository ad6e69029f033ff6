"""Greedy generation through the bridge, recording what each decode step writes to the KV cache.

Why a loop of our own. ``TransformerBridge.generate``, ``hf_generate`` and Hugging Face
``generate`` with a cache do fire the bridge's hooks on every step (checked: ``hook_k`` sees the
prompt once, then one position per step), but they return only tokens: which step wrote which
position, each step's logits and the cache it read are not exposed, and the last generated
token is never fed back. So each step here is one bridge forward,
``model(new_tokens, past_key_values=cache, return_type="logits_and_cache")``: the prefill step
processes the prompt (and any forced pauses), every later step one new token, and the hooks
on ``hook_k``/``hook_v`` (and any other site) see exactly the activations written for the new
positions. Greedy decoding: the next token is ``argmax`` of the last logits (the tests check
the tokens equal ``model.generate(..., do_sample=False)``).

Models without a KV cache (TransformerLens-native ones) are run uncached: each step recomputes
the whole sequence and keeps only the new position. ``use_cache=False`` forces that path on any
model; it is the reference that the cached path is tested against (same tokens, logits and K/V
to float tolerance).

**Self-requested pauses** (``max_pauses``): the model may emit ``<pause>`` itself. A generated
``<pause>`` gets role ``pause`` (so ``roles=("pause",)`` records exactly the K/V written at the
positions where the model chose to pause) and does not count towards ``max_new_tokens``; once
``max_pauses`` pauses have been generated, the ``<pause>`` logit is excluded from the argmax,
so the model must answer. :attr:`Generation.n_pauses` counts them.

Every token in the result has been fed to the model, the last generated one included, so the
recording has one row per position and ``logits[i]`` is the model's output at position
``prompt_len - 1 + i`` (the prediction of the token after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core import model as core_model
from ..core.model import Bridge, check_context, pause_id
from ..core.pauses import PausedSequence, make_sequence, tokenize
from ..core.sites import resolve_layers
from ..errors import InterpError
from ._capture import BatchCapture
from ._record import base_meta, token_strings
from ._sites import check_roles, plan_sites
from ._store import Recording, shard_name

GENERATION_SITES = ("k", "v")


@dataclass
class Generation:
    """The result of :func:`generate`.

    Attributes:
        tokens: every position, prompt + forced pauses + generated, ``[pos]``.
        roles: ``prompt`` (and ``bos``), ``pause``, ``generated`` per position.
        logits: ``logits[i]`` is the output at position ``prompt_len - 1 + i``; the first
            row comes from the prefill step, each later row from one decode step.
        steps: the decode step that processed each position (0 = prefill).
        recording: the recorded sites, one row per position (index column ``step`` added);
            ``None`` with ``record=False``.
        cache_reads: with ``read_cache=True``, for each decode step ``s >= 1`` the cache it
            read: ``{"k": [layer, kv_head, pos, d_head], "v": ...}`` over the recorded layers,
            keys as the model caches them (after RoPE for Llama-style models).
        text: the generated tokens decoded (``None`` without a tokenizer).
    """

    tokens: Int[Tensor, " pos"]
    roles: tuple[str, ...]
    logits: Float[Tensor, "step d_vocab"]
    steps: Int[Tensor, " pos"]
    recording: Recording | None
    cache_reads: list[dict[str, Tensor]] | None
    text: str | None

    @property
    def n_pauses(self) -> int:
        """Pauses the model requested itself (generated ``<pause>`` tokens; forced pauses of
        ``pauses_before_answer`` are in the prompt and not counted)."""
        return sum(r == "pause" and s > 0 for r, s in zip(self.roles, self.steps.tolist(),
                                                           strict=True))

    def to_pandas(self, tokenizer=None) -> pd.DataFrame:
        """One row per position: position, token, token_str (with a tokenizer), role, step."""
        ids = self.tokens.tolist()
        df = pd.DataFrame(dict(position=range(len(ids)), token=ids, role=list(self.roles),
                               step=self.steps.numpy()))
        if tokenizer is not None:
            df.insert(2, "token_str", token_strings(tokenizer, ids))
        return df


def _prompt_sequence(model: Bridge, prompt, pauses: int) -> PausedSequence:
    if isinstance(prompt, str):
        seq = tokenize(model, prompt)
        seq = make_sequence(seq.tokens, [r if r == "bos" else "prompt" for r in seq.roles])
    elif isinstance(prompt, PausedSequence):
        seq = prompt
    elif isinstance(prompt, Tensor | Sequence):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        seq = make_sequence(ids, ["prompt"] * len(ids))
    else:
        raise InterpError(f"cannot generate from a prompt of type {type(prompt).__name__}",
                          "pass a text, token ids or a PausedSequence")
    if pauses < 0:
        raise InterpError(f"pauses_before_answer={pauses} is negative", "use 0 or more")
    if pauses:
        pid = pause_id(model, required=True)
        seq = PausedSequence(
            tokens=torch.cat([seq.tokens, torch.full((pauses,), pid, dtype=torch.long)]),
            roles=tuple(seq.roles) + ("pause",) * pauses,
            original_position=torch.cat([seq.original_position,
                                         torch.full((pauses,), -1, dtype=torch.long)]),
            loss_mask=torch.cat([seq.loss_mask, torch.zeros(pauses, dtype=torch.bool)]),
            loss_on=seq.loss_on,
        )
    return seq


def _read_cache(past, layers: Sequence[int]) -> dict[str, Tensor]:
    """The cache's keys and values for ``layers`` (batch row 0), copied to the CPU."""
    kv = [core_model.cache_kv(past, layer) for layer in layers]
    held = {layer: int(k.shape[-2]) for layer, (k, _) in zip(layers, kv, strict=True)}
    if len(set(held.values())) > 1:
        raise InterpError(
            f"read_cache: the KV cache holds different numbers of positions per layer {held} "
            "(sliding-window layers keep only their last window), so the reads cannot be "
            "stacked", "pass layers= with layers of one kind (all global or all sliding), or "
            "record k and v instead (record=('k', 'v'))")
    return {"k": torch.stack([k[0] for k, _ in kv]).cpu(),
            "v": torch.stack([v[0] for _, v in kv]).cpu()}


def generate(
    model: Bridge,
    prompt,
    max_new_tokens: int = 32,
    *,
    pauses_before_answer: int = 0,
    max_pauses: int | None = None,
    record: bool | Sequence[str] = True,
    layers: Sequence[int] | int | None = None,
    roles: Sequence[str] | None = None,
    read_cache: bool = False,
    use_cache: bool | None = None,
    stop_at_eos: bool = True,
    dtype: torch.dtype | None = None,
) -> Generation:
    """Greedy decoding that records the K/V each step writes (see the module docstring).

    Args:
        model: a ``TransformerBridge``.
        prompt: a text (tokenized with an explicit BOS; its tokens get role ``prompt``), token
            ids, or a ``PausedSequence`` (roles kept).
        max_new_tokens: tokens to generate (fewer if EOS comes first with ``stop_at_eos``).
        pauses_before_answer: ``<pause>`` tokens appended after the prompt before the model
            answers (needs ``interp.add_pause_token(model)``).
        max_pauses: let the model request its own pauses, at most this many (see the module
            docstring); ``None``: a generated ``<pause>`` is an ordinary token.
        record: ``True`` records ``k`` and ``v``; a list of sites records those; ``False``
            nothing.
        layers: layers to record (``None``: all).
        roles: roles of the positions to keep in the recording (``None``: all).
        read_cache: also keep, for every decode step, the cache contents it read.
        use_cache: run incrementally over the KV cache (default: when the model has one).
        stop_at_eos: stop after generating the tokenizer's EOS token.
        dtype: storage dtype of the recording (default: the model's).

    Returns:
        A :class:`Generation`.

    Raises:
        InterpError: too long for the context, unknown site or layer, ``use_cache=True`` or
            ``read_cache=True`` on a model without a KV cache, ``max_pauses`` below 1 or a
            model without a ``<pause>`` token.
    """
    if max_pauses is not None and max_pauses < 1:
        raise InterpError(f"max_pauses={max_pauses}: a cap of {max_pauses} pauses lets the model "
                          "request none", "give max_pauses >= 1, or max_pauses=None to generate "
                          "without self-requested pauses")
    pid = pause_id(model, required=True) if max_pauses is not None else None
    seq = _prompt_sequence(model, prompt, pauses_before_answer)
    if max_new_tokens < 0:
        raise InterpError(f"max_new_tokens={max_new_tokens} is negative", "use 0 or more")
    total = len(seq) + max_new_tokens + (max_pauses or 0)
    check_context(model, total)
    sites = GENERATION_SITES if record is True else (() if record is False else tuple(record))
    plans = plan_sites(model, sites) if sites else []
    layers = resolve_layers(model, layers)
    roles_kept = check_roles(roles)
    cached = core_model.supports_cache(model) if use_cache is None else use_cache
    if (cached or read_cache) and not core_model.supports_cache(model):
        raise InterpError(
            "this model has no KV cache (TransformerLens-native models recompute every step)",
            "call generate(..., use_cache=None, read_cache=False), or use a Hugging Face model",
        )
    if read_cache and not cached:
        raise InterpError("read_cache=True needs use_cache=True", "drop use_cache=False")
    dtype = dtype or core_model.dtype(model)
    device = core_model.device(model)
    eos = model.tokenizer.eos_token_id if (stop_at_eos and model.tokenizer is not None) else None

    tokens, roles = seq.tokens.tolist(), list(seq.roles)
    steps: list[int] = []
    logits_out, buffers, reads = [], [], []
    past, start, step, n_pauses = None, 0, 0, 0
    with torch.no_grad():
        while True:
            n_new = len(tokens) - start
            at = torch.arange(start, len(tokens))
            # The cached forward sees only the new tokens; the uncached one the whole sequence.
            inp = torch.tensor(tokens[start:] if cached else tokens, device=device)[None]
            where = torch.arange(n_new) if cached else at
            cap = BatchCapture(model, plans, layers, torch.zeros(n_new, dtype=torch.long,
                                                                 device=device),
                               where.to(device), total, dtype)
            if read_cache and past is not None:
                reads.append(_read_cache(past, layers))
            with model.hooks(fwd_hooks=cap.fwd_hooks()):
                if cached:
                    logits, past = model(inp, return_type="logits_and_cache",
                                         past_key_values=past)
                    core_model.check_cache_grew(past, len(tokens))
                else:
                    logits = model(inp)
            cap.check_fired()
            logits_out.append(logits[0, -1].detach().cpu())
            buffers.append(cap.buffers)
            steps += [step] * n_new
            n_generated = len(tokens) - len(seq) - n_pauses
            if n_generated == max_new_tokens or (eos is not None and n_generated
                                                  and tokens[-1] == eos):
                break
            last = logits[0, -1]
            if pid is not None and n_pauses == max_pauses:
                last = last.clone()
                last[pid] = -torch.inf  # the cap is reached: the model must answer
            tokens.append(int(last.argmax()))
            paused = pid is not None and tokens[-1] == pid
            n_pauses += paused
            roles.append("pause" if paused else "generated")
            start, step = len(tokens) - 1, step + 1

    all_tokens = torch.tensor(tokens)
    orig = _original_positions(seq, roles)
    recording = None
    if plans:
        recording = _as_recording(model, plans, layers, roles_kept, dtype, buffers, all_tokens,
                                  roles, orig, steps)
    tok = model.tokenizer
    gen_ids = [t for t, r in zip(tokens[len(seq):], roles[len(seq):], strict=True)
               if r == "generated"]
    return Generation(
        tokens=all_tokens,
        roles=tuple(roles),
        logits=torch.stack(logits_out),
        steps=torch.tensor(steps),
        recording=recording,
        cache_reads=reads if read_cache else None,
        text=None if tok is None else tok.decode(gen_ids),
    )


def _original_positions(seq: PausedSequence, roles: Sequence[str]) -> Tensor:
    """Prompt positions keep theirs; generated tokens continue the uninserted numbering, and
    self-requested pauses get -1 like inserted ones."""
    orig = seq.original_position.tolist()
    nxt = (max(orig) + 1) if orig else 0
    for role in roles[len(orig):]:
        orig.append(-1 if role == "pause" else nxt)
        nxt += role != "pause"
    return torch.tensor(orig)


def _as_recording(model: Bridge, plans, layers, keep_roles, dtype, buffers, tokens, roles, orig,
                  steps) -> Recording:
    """One in-memory shard holding the positions whose role is in ``keep_roles``."""
    keep = torch.tensor([r in keep_roles for r in roles])
    tensors = {p.site: torch.cat([b[p.site] for b in buffers])[keep] for p in plans}
    ids = tokens.tolist()
    index = pd.DataFrame(dict(
        sequence=0, document="generation", window=0, position=range(len(ids)),
        original_position=orig.numpy(), token=ids, token_str=token_strings(model.tokenizer, ids),
        role=roles, step=steps,
    ))[keep.numpy()]
    config = dict(sites=[p.site for p in plans], layers=list(layers), roles=list(keep_roles),
                  inputs="generation")
    meta = base_meta(model, plans, layers, keep_roles, dtype, config)
    meta["shards"] = [dict(name=shard_name(0), rows=len(index), sequences=[0, 1], files={})]
    meta["complete"] = True
    return Recording(meta, [tensors], index)
