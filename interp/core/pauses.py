"""``<pause>`` tokens, insertion policies and position roles.

Every position of a sequence has a **role**:

* ``bos``: the beginning-of-sequence token, prepended explicitly (never silently);
* ``regular``: an ordinary token of the text;
* ``pause``: an inserted ``<pause>`` token;
* ``filler``: an inserted existing token (such as ``"."``) used as a pause (Pfau et al. 2024);
* ``prompt`` / ``answer``: the two parts of a task example;
* ``generated``: a token the model produced;
* ``pad``: right padding added to batch sequences of unequal length (never attended to by
  earlier positions under the causal mask, and never in a loss).

**Loss mask convention.** ``loss_mask[t]`` says whether the next-token loss ℓ_t (position t
predicting token t + 1) counts. No position is asked to predict an inserted token: ℓ_t is
masked whenever token t + 1 is a pause or filler, and the last position has no target. So
every pause output is masked except the last pause of a run, which predicts the next real
token (Goyal et al. 2023). With ``loss_on="answer"`` only targets with role ``answer`` count.

Example:
    >>> pause_id = interp.add_pause_token(model)            # embedding row = mean embedding
    >>> seq = interp.tokenize(model, "The cat sat on the mat.")
    >>> paused = interp.insert_pauses(seq, interp.PausePolicy(every=3, n=2), pause_id)
    >>> paused.roles[:6]
    ('bos', 'regular', 'regular', 'regular', 'pause', 'pause')
    >>> torch.equal(paused.remove_pauses().tokens, seq.tokens)
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..errors import InterpError, check_choice
from . import model as core_model
from .model import Bridge

__all__ = [
    "INSERTED_ROLES",
    "PAUSE_TOKEN",
    "ROLES",
    "PausePolicy",
    "PausedSequence",
    "adaptive_pauses",
    "add_pause_token",
    "insert_pauses",
    "make_sequence",
    "next_token_entropy",
    "pad_batch",
    "tokenize",
]

ROLES = ("bos", "regular", "pause", "filler", "prompt", "answer", "generated", "pad")
INSERTED_ROLES = ("pause", "filler")
PAUSE_TOKEN = "<pause>"
LOSS_ON = ("all", "answer")


@dataclass(frozen=True)
class PausedSequence:
    """Tokens with a role per position, the map back to the original text, and a loss mask.

    Attributes:
        tokens: token ids the model sees, ``[pos]``.
        roles: one role (see module docstring) per position.
        original_position: for each position, its index in the sequence before insertion;
            ``-1`` for inserted pause/filler (and pad) positions.
        loss_mask: ``loss_mask[t]`` is True when ℓ_t (predicting token t + 1) counts.
        loss_on: ``"all"`` or ``"answer"``: which targets the loss mask keeps.
    """

    tokens: Int[Tensor, " pos"]
    roles: tuple[str, ...]
    original_position: Int[Tensor, " pos"]
    loss_mask: Bool[Tensor, " pos"]
    loss_on: str = "all"

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if not (len(self.roles) == self.original_position.shape[0] == self.loss_mask.shape[0] == n):
            raise InterpError(
                "tokens, roles, original_position and loss_mask must have one entry per position",
                "build sequences with interp.make_sequence(tokens) and interp.insert_pauses, "
                "which keep the four aligned",
            )
        bad = set(self.roles) - set(ROLES)
        if bad:
            raise InterpError(f"unknown role(s) {sorted(bad)}", f"valid roles: {', '.join(ROLES)}")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def role_mask(self, *roles: str) -> Bool[Tensor, " pos"]:
        """Boolean mask of the positions whose role is one of ``roles``."""
        for r in roles:
            check_choice("role", r, ROLES)
        return torch.tensor([r in roles for r in self.roles], dtype=torch.bool)

    def remove_pauses(self) -> PausedSequence:
        """The sequence with every inserted (pause/filler/pad) position removed."""
        keep = self.original_position >= 0
        roles = tuple(r for r, k in zip(self.roles, keep.tolist(), strict=True) if k)
        tokens = self.tokens[keep]
        return PausedSequence(
            tokens=tokens,
            roles=roles,
            original_position=torch.arange(len(roles)),
            loss_mask=_loss_mask(roles, self.loss_on),
            loss_on=self.loss_on,
        )

    def to_pandas(self, tokenizer=None):
        """One row per position: position, original_position, token, token_str, role, loss."""
        import pandas as pd

        toks = self.tokens.tolist()
        df = pd.DataFrame(
            dict(
                position=np.arange(len(toks)),
                original_position=self.original_position.numpy(),
                token=toks,
                role=list(self.roles),
                in_loss=self.loss_mask.numpy(),
            )
        )
        if tokenizer is not None:
            df.insert(3, "token_str", [tokenizer.decode([t]) for t in toks])
        return df


def _loss_mask(roles: Sequence[str], loss_on: str) -> Tensor:
    check_choice("loss_on", loss_on, LOSS_ON)
    n = len(roles)
    mask = torch.zeros(n, dtype=torch.bool)
    for t in range(n - 1):
        target = roles[t + 1]
        if target in INSERTED_ROLES or target == "pad" or roles[t] == "pad":
            continue
        mask[t] = target == "answer" if loss_on == "answer" else target != "bos"
    return mask


def make_sequence(
    tokens: Sequence[int] | Tensor,
    roles: Sequence[str] | None = None,
    *,
    loss_on: str = "all",
) -> PausedSequence:
    """A sequence with no insertions; roles default to ``regular`` everywhere."""
    tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    roles = tuple(roles) if roles is not None else ("regular",) * len(tokens)
    if len(roles) != len(tokens):
        raise InterpError(f"{len(roles)} roles for {len(tokens)} tokens", "give one role per token")
    if len(tokens) == 0:
        raise InterpError("empty token sequence", "give at least one token")
    return PausedSequence(
        tokens=tokens,
        roles=roles,
        original_position=torch.arange(len(tokens)),
        loss_mask=_loss_mask(roles, loss_on),
        loss_on=loss_on,
    )


def tokenize(model_or_tokenizer, text: str, *, bos: bool = True, loss_on: str = "all") -> PausedSequence:
    """Tokenize ``text`` with an explicit BOS.

    Unlike ``TransformerBridge.to_tokens``, which prepends BOS implicitly, this prepends it
    only when ``bos=True`` and refuses text whose tokenization already starts with it, so a
    position index never shifts silently (TransformerLens PR #1625).
    """
    tok = getattr(model_or_tokenizer, "tokenizer", model_or_tokenizer)
    if tok is None:
        raise InterpError("this model has no tokenizer", "pass token ids to make_sequence()")
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise InterpError("the text tokenizes to no tokens", "give a non-empty text")
    roles = ["regular"] * len(ids)
    if bos:
        bos_id = tok.bos_token_id
        if bos_id is None:
            raise InterpError("the tokenizer has no BOS token", "call tokenize(..., bos=False)")
        if ids[0] == bos_id:
            raise InterpError(
                "the text already begins with the BOS token, and bos=True would add a second",
                "remove it from the text or call tokenize(..., bos=False)",
            )
        ids = [bos_id] + ids
        roles = ["bos"] + roles
    return make_sequence(ids, roles, loss_on=loss_on)


@dataclass(frozen=True)
class PausePolicy:
    """Where to insert pauses. Rules combine; with every field at its default nothing is inserted.

    Attributes:
        every: insert ``n`` pauses after every ``every`` content tokens (not after the last).
        n: pauses inserted at each insertion point.
        before_answer: insert this many pauses before each answer span.
        after_prompt: insert this many pauses right after each prompt span.
        rate: insert ``n`` pauses before each content token with this probability (seeded).
        n_max: with ``rate``, draw each run's length uniformly from ``n``..``n_max`` (seeded)
            instead of always ``n``.
        entropy_top: adaptive pauses (the "System 1/2 switch"): insert ``n`` pauses before the
            tokens the model is least sure of, i.e. before token t + 1 for the fraction
            ``entropy_top`` of content positions t with the highest next-token entropy.
            Needs the entropies (:func:`adaptive_pauses` computes them with one forward).
        positions: insert ``n`` pauses before each of these original positions.
        filler: insert this existing token id instead of ``<pause>`` (role ``filler``).
        seed: seed for ``rate``.
        loss_on: ``"all"`` targets or only ``"answer"`` targets (see module docstring).
    """

    every: int | None = None
    n: int = 1
    before_answer: int = 0
    after_prompt: int = 0
    rate: float = 0.0
    n_max: int | None = None
    entropy_top: float = 0.0
    positions: tuple[int, ...] = field(default_factory=tuple)
    filler: int | None = None
    seed: int = 0
    loss_on: str = "all"

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise InterpError(f"PausePolicy.every must be >= 1, got {self.every}",
                              "use every >= 1, or None for no periodic pauses")
        if self.n < 0 or self.before_answer < 0 or self.after_prompt < 0:
            raise InterpError("PausePolicy.n, before_answer and after_prompt must be >= 0",
                              "use counts >= 0 (0: no pauses there)")
        if not 0.0 <= self.rate < 1.0:
            raise InterpError(f"PausePolicy.rate must be in [0, 1), got {self.rate}",
                              "use a rate in [0, 1), e.g. 0.1")
        if self.n_max is not None and self.n_max < self.n:
            raise InterpError(f"PausePolicy.n_max={self.n_max} is below n={self.n}",
                              "use n_max >= n, or None for always n")
        if not 0.0 <= self.entropy_top <= 1.0:
            raise InterpError(f"PausePolicy.entropy_top must be in [0, 1], got {self.entropy_top}",
                              "give the fraction of positions that get pauses, e.g. 0.1")
        check_choice("loss_on", self.loss_on, LOSS_ON)
        object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))

    @property
    def inserts_anything(self) -> bool:
        return bool(
            (self.n and (self.every or self.rate or self.positions or self.entropy_top))
            or self.before_answer
            or self.after_prompt
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def insert_pauses(
    seq: PausedSequence | Sequence[int] | Tensor,
    policy: PausePolicy,
    pause_id: int | None = None,
    roles: Sequence[str] | None = None,
    entropy: Float[Tensor, " pos"] | None = None,
) -> PausedSequence:
    """Insert pause (or filler) tokens according to ``policy``.

    Args:
        seq: a :class:`PausedSequence` without insertions, or token ids (then ``roles``).
        policy: where and how many.
        pause_id: the ``<pause>`` id (from :func:`add_pause_token`); not needed with
            ``policy.filler``.
        roles: roles of ``seq`` when it is plain token ids.
        entropy: for ``policy.entropy_top``: the model's next-token entropy at every position
            of ``seq`` (``entropy[t]`` is that of the prediction of token t + 1).

    Returns:
        The new sequence; ``result.remove_pauses().tokens`` equals the input tokens.
    """
    if not isinstance(seq, PausedSequence):
        seq = make_sequence(seq, roles, loss_on=policy.loss_on)
    elif seq.loss_on != policy.loss_on:
        seq = dataclasses.replace(seq, loss_on=policy.loss_on)
    if (seq.original_position < 0).any():
        raise InterpError("this sequence already has inserted pauses", "insert into the original")
    insert_id = policy.filler if policy.filler is not None else pause_id
    if insert_id is None and policy.inserts_anything:
        raise InterpError(
            "no pause token id given", "call interp.add_pause_token(model) and pass its id"
        )
    inserted_role = "filler" if policy.filler is not None else "pause"
    n = len(seq)
    before = np.zeros(n + 1, dtype=np.int64)  # pauses inserted before original position p
    content = [p for p, r in enumerate(seq.roles) if r not in ("bos", "pad")]
    if policy.every:
        for c, p in enumerate(content[:-1], start=1):
            if c % policy.every == 0:
                before[p + 1] += policy.n
    if policy.rate:
        rng = np.random.default_rng(policy.seed)
        draws = rng.random(len(content))
        # the run lengths come from the same stream after the draws, so n_max=None leaves
        # the positions (and every earlier result) unchanged
        lengths = (rng.integers(policy.n, policy.n_max + 1, len(content))
                   if policy.n_max is not None else np.full(len(content), policy.n))
        for p, d, k in zip(content[1:], draws[1:], lengths[1:], strict=True):
            if d < policy.rate:
                before[p] += k
    if policy.entropy_top:
        if entropy is None or entropy.shape[0] != n:
            raise InterpError(
                "PausePolicy.entropy_top needs the next-token entropy at every position",
                "call interp.pauses.adaptive_pauses(model, seq, policy), or pass entropy=[pos]")
        eligible = content[1:]
        k = int(round(policy.entropy_top * len(eligible)))
        if k:
            scores = entropy.detach().float().cpu()[torch.tensor(eligible) - 1]
            for i in torch.argsort(scores, descending=True, stable=True)[:k].tolist():
                before[eligible[i]] += policy.n
    for p in policy.positions:
        if not 0 <= p <= n:
            raise InterpError(f"pause position {p} is outside the sequence (0..{n})",
                              f"give positions from 0 to {n}")
        before[p] += policy.n
    for p in range(n):
        prev = seq.roles[p - 1] if p else None
        if policy.before_answer and seq.roles[p] == "answer" and prev != "answer":
            before[p] += policy.before_answer
        if policy.after_prompt and prev == "prompt" and seq.roles[p] != "prompt":
            before[p] += policy.after_prompt
    if policy.after_prompt and seq.roles[-1] == "prompt":
        before[n] += policy.after_prompt

    tokens: list[int] = []
    new_roles: list[str] = []
    orig: list[int] = []
    old = seq.tokens.tolist()
    for p in range(n + 1):
        k = int(before[p])
        tokens += [int(insert_id)] * k
        new_roles += [inserted_role] * k
        orig += [-1] * k
        if p < n:
            tokens.append(old[p])
            new_roles.append(seq.roles[p])
            orig.append(p)
    return PausedSequence(
        tokens=torch.tensor(tokens, dtype=torch.long),
        roles=tuple(new_roles),
        original_position=torch.tensor(orig, dtype=torch.long),
        loss_mask=_loss_mask(new_roles, policy.loss_on),
        loss_on=policy.loss_on,
    )


def pad_batch(seqs: Sequence[PausedSequence], pad_id: int = 0) -> tuple[
    Int[Tensor, "batch pos"], list[tuple[str, ...]], Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]
]:
    """Right-pad sequences to one length (role ``pad``, out of every loss).

    Under a causal mask right padding changes nothing at earlier positions.

    Returns:
        tokens, roles per sequence, original positions, loss mask.
    """
    if not seqs:
        raise InterpError("no sequences to batch", "pass at least one sequence")
    n = max(len(s) for s in seqs)
    toks = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    orig = torch.full((len(seqs), n), -1, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.bool)
    roles = []
    for b, s in enumerate(seqs):
        m = len(s)
        toks[b, :m] = s.tokens
        orig[b, :m] = s.original_position
        mask[b, :m] = s.loss_mask
        roles.append(tuple(s.roles) + ("pad",) * (n - m))
    return toks, roles, orig, mask


INITS = ("mean", "copy", "random")


@torch.no_grad()
def add_pause_token(
    model: Bridge,
    *,
    init: str = "mean",
    copy_from: int | str | None = None,
    seed: int = 0,
    token: str = PAUSE_TOKEN,
) -> int:
    """Add a ``<pause>`` token to the model's embedding and unembedding (and tokenizer).

    Args:
        model: a ``TransformerBridge``.
        init: ``"mean"`` (mean of all rows), ``"copy"`` (rows of ``copy_from``) or
            ``"random"`` (normal with the rows' std, seeded).
        copy_from: token id or string to copy with ``init="copy"``.
        seed: seed for ``init="random"``.
        token: the string of the new token.

    Returns:
        The new token id (kept on the model, :func:`interp.core.model.pause_id`). Calling again on the same
        model returns the same id.

    Raises:
        InterpError: ``token`` already in the vocabulary with another meaning.
    """
    check_choice("pause init", init, INITS)
    if core_model.pause_id(model) is not None:
        return core_model.pause_id(model)
    tok = model.tokenizer
    if tok is not None and token in tok.get_vocab():
        raise InterpError(
            f"{token!r} is already in the vocabulary (id {tok.get_vocab()[token]}) with another "
            "meaning",
            "pass add_pause_token(model, token='<interp_pause>') or another unused string",
        )
    emb = core_model.embedding(model)
    unemb = core_model.unembedding(model)
    W_E = emb.weight
    new_id = W_E.shape[0]
    tied = unemb.weight is W_E
    W_U = unemb.weight  # [d_vocab, d_model] as an nn.Linear
    if init == "copy":
        if copy_from is None:
            raise InterpError("init='copy' needs copy_from", "pass copy_from=<token id or string>")
        src = copy_from
        if isinstance(src, str):
            if tok is None:
                raise InterpError("copy_from as a string needs a tokenizer", "pass a token id")
            ids = tok(src, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise InterpError(f"copy_from={src!r} is {len(ids)} tokens", "give a single token")
            src = ids[0]
        e_row, u_row = W_E[src].clone(), W_U[src].clone()
    elif init == "mean":
        e_row, u_row = W_E.mean(0), W_U.mean(0)
    else:
        g = torch.Generator().manual_seed(seed)
        e_row = torch.randn(W_E.shape[1], generator=g).to(W_E) * W_E.std()
        u_row = torch.randn(W_U.shape[1], generator=g).to(W_U) * W_U.std()
    emb.weight = torch.nn.Parameter(torch.cat([W_E, e_row[None]]), requires_grad=W_E.requires_grad)
    emb.num_embeddings = new_id + 1
    if tied:
        unemb.weight = emb.weight
    else:
        unemb.weight = torch.nn.Parameter(torch.cat([W_U, u_row[None]]), requires_grad=W_U.requires_grad)
    if getattr(unemb, "bias", None) is not None:
        b = unemb.bias
        unemb.bias = torch.nn.Parameter(torch.cat([b, b.mean()[None]]), requires_grad=b.requires_grad)
    unemb.out_features = new_id + 1
    core_model.set_vocab_size(model, new_id + 1)
    if tok is not None:
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(token, special=True, normalized=False)])
        got = tok.convert_tokens_to_ids(token)
        if got != new_id:
            raise InterpError(
                f"the tokenizer gave {token!r} id {got} but the embedding row is {new_id}",
                "the tokenizer and the model's vocabulary sizes differ; load them together",
            )
    core_model.set_pause_id(model, new_id)
    return new_id


@torch.no_grad()
def next_token_entropy(model: Bridge, seq: PausedSequence) -> Float[Tensor, " pos"]:
    """The entropy H_t = −Σ_v p_t(v) log p_t(v) of the model's next-token distribution at every
    position of ``seq`` (one forward pass, in nats)."""
    logits = model(seq.tokens[None].to(core_model.device(model)))[0].float()
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1).cpu()


def adaptive_pauses(model: Bridge, seq: PausedSequence, policy: PausePolicy,
                    pause_token: int | None = None) -> PausedSequence:
    """Insert pauses where ``model`` is unsure: :func:`insert_pauses` with the next-token
    entropies of ``seq`` under ``model`` (see ``PausePolicy.entropy_top``).

    Args:
        model: a bridge; with ``pause_token=None`` it needs :func:`add_pause_token`.
        seq: a sequence without insertions.
        policy: with ``entropy_top > 0`` (its other rules apply too).
        pause_token: the pause id (default: the model's).
    """
    if not policy.entropy_top:
        raise InterpError("adaptive_pauses needs PausePolicy(entropy_top=...) > 0",
                          "set entropy_top to the fraction of positions that get pauses")
    pid = core_model.pause_id(model, required=True) if pause_token is None and policy.filler is None else pause_token
    return insert_pauses(seq, policy, pid, entropy=next_token_entropy(model, seq))
