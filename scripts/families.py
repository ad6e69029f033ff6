"""The per-family parity checks, and docs/families.md generated from them.

Each family is a tiny random Hugging Face model (2 layers, d_model 64, the tests' 61-word
tokenizer) built offline from its config with ``save_pretrained`` and loaded with
``interp.load_model`` in float64. :func:`measure` runs every check against an independent
computation and returns the numbers; tests/integration/test_families.py asserts them and
checks that the committed docs/families.md is :func:`render` of them, so the table says what
the suite measured. Regenerate it with::

    python scripts/families.py            # writes docs/families.md (about a minute)

Checks (all float64, one sequence of 20 tokens, longer than the sliding windows of 8):

* ``record``: interp's recorded resid_post / k / v equal forward hooks on the plain Hugging
  Face modules (decoder layers, k/v projections), not the bridge.
* ``future_gradients``: the self term of every position, layer and site (k, v, resid_pre)
  equals a brute-force backward pass of ℓ_i alone (relative error of the norms).
* ``generate``: greedy generation with the KV cache equals recomputation without it.
* ``pattern``: the reproduced attention pattern (interp.core.attention) against the model's
  own ``hook_pattern``, and the same for a plain causal softmax of the q · k the rot hooks
  show (what AtP* computed before; it shows what the family needs).
* ``atp_star``: for every key position i the pattern AtP* builds with key i corrupted equals
  the model's own pattern when k_i is really patched (``hook_pattern`` of the patched run);
  AtP (k, v) and AtP* (k) against activation patching (Pearson), every k/v row present in both.
* ``future_lens``: offset-1 top-1 agreement from the last layer (the identity map) with the
  default ridge grid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "families.md"
N_POS = 20
WINDOW = 8
#: relative error allowed of the self term against brute force, and of recorded activations
EXACT = 1e-5


@dataclass(frozen=True)
class Family:
    """One architecture: its config and model class (names in ``transformers``), the config
    fields, what it exercises, and how its fused qkv projection splits (``None``: separate
    ``k_proj``/``v_proj``)."""

    name: str
    config: str
    model: str
    kwargs: dict
    variants: str
    fused: str | None = None
    refused: bool = False


_COMMON = dict(vocab_size=61, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, bos_token_id=1, eos_token_id=2, max_position_embeddings=256,
               initializer_range=0.1)

FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("Llama", "LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2),
           "RoPE, GQA"),
    Family("GPT-2", "GPT2Config", "GPT2LMHeadModel",
           dict(vocab_size=61, n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=1,
                eos_token_id=2, initializer_range=0.1),
           "absolute positions, fused qkv", fused="gpt2"),
    Family("GPT-NeoX", "GPTNeoXConfig", "GPTNeoXForCausalLM", dict(rotary_pct=0.25),
           "partial rotary (25%), fused qkv", fused="neox"),
    Family("Qwen2", "Qwen2Config", "Qwen2ForCausalLM",
           dict(num_key_value_heads=2, use_sliding_window=True, sliding_window=WINDOW,
                max_window_layers=1),
           f"qkv bias, GQA, global / sliding window {WINDOW}"),
    Family("Mistral", "MistralConfig", "MistralForCausalLM",
           dict(num_key_value_heads=2, sliding_window=WINDOW), f"sliding window {WINDOW}"),
    Family("Gemma-2", "Gemma2Config", "Gemma2ForCausalLM",
           dict(num_key_value_heads=2, head_dim=16, sliding_window=WINDOW,
                attn_logit_softcapping=2.0, query_pre_attn_scalar=16),
           f"soft-cap 2, sliding window {WINDOW} / global"),
    Family("Gemma-3", "Gemma3TextConfig", "Gemma3ForCausalLM",
           dict(num_key_value_heads=1, head_dim=16, sliding_window=WINDOW,
                layer_types=["sliding_attention", "full_attention"], query_pre_attn_scalar=16),
           f"QK-norm, one KV head, sliding window {WINDOW} / global"),
    Family("OLMo", "OlmoConfig", "OlmoForCausalLM", dict(num_key_value_heads=2),
           "non-parametric layer norm"),
    Family("OLMo-2", "Olmo2Config", "Olmo2ForCausalLM", dict(num_key_value_heads=2),
           "QK-norm over all heads (AtP* with heads patched together)"),
    Family("Qwen3", "Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=16),
           "per-head QK-norm"),
    Family("Phi-3", "Phi3Config", "Phi3ForCausalLM",
           dict(num_key_value_heads=2, pad_token_id=0, sliding_window=WINDOW),
           f"fused qkv with RoPE, sliding window {WINDOW}", fused="phi3"),
    Family("StableLM", "StableLmConfig", "StableLmForCausalLM",
           dict(num_key_value_heads=2, partial_rotary_factor=0.25, use_qkv_bias=True),
           "partial rotary (25%), qkv bias"),
    Family("Starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM",
           dict(num_key_value_heads=2, sliding_window=WINDOW), f"sliding window {WINDOW}"),
    Family("GPT-J", "GPTJConfig", "GPTJForCausalLM",
           dict(vocab_size=61, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=256,
                bos_token_id=1, eos_token_id=2, initializer_range=0.1),
           "interleaved rotary inside the HF module", refused=True),
]}


def build(family: Family, path: Path) -> Path:
    """Save a seeded tiny random model of ``family`` with the 61-word tokenizer in ``path``."""
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import word_tokenizer_at

    kwargs = dict(family.kwargs) if "n_embd" in family.kwargs else {**_COMMON, **family.kwargs}
    cfg = getattr(transformers, family.config)(**kwargs)
    torch.manual_seed(0)
    getattr(transformers, family.model)(cfg).eval().save_pretrained(path)
    word_tokenizer_at(path)
    return path


# ------------------------------------------------------------------------------ the checks


@dataclass
class Measured:
    """What :func:`measure` found for one family (errors are maxima over every layer, head,
    position and site; ``None`` where the check was refused)."""

    family: Family
    refusal: str | None = None
    record_err: float | None = None
    self_err: float | None = None
    generate_equal: bool | None = None
    generate_err: float | None = None
    pattern_err: float | None = None
    naive_pattern_err: float | None = None
    atp_star_pattern_err: float | None = None
    per_head_refusal: str | None = None
    atp_star_refusal: str | None = None
    kv_rows_missing: int | None = None
    atp_pearson: float | None = None
    atp_star_pearson: float | None = None
    future_lens_agreement: float | None = None
    notes: list[str] = field(default_factory=list)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _hf_layers(hf) -> torch.nn.ModuleList:
    n = hf.config.num_hidden_layers
    return next(m for m in hf.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n)


def _hf_kv(family: Family, layer_module, out: torch.Tensor, n_heads: int, n_kv: int, d: int):
    """k and v ``[batch, pos, kv_head, d_head]`` from the HF projection output ``out``."""
    b, s = out.shape[:2]
    if family.fused == "gpt2":
        _, k, v = out.split(n_heads * d, dim=-1)
    elif family.fused == "neox":  # per head [q | k | v]
        _, k, v = out.view(b, s, n_heads, 3 * d).chunk(3, dim=-1)
    elif family.fused == "phi3":
        _, k, v = out.split([n_heads * d, n_kv * d, n_kv * d], dim=-1)
    else:
        raise AssertionError(family.fused)
    return k.reshape(b, s, n_kv, d), v.reshape(b, s, n_kv, d)


def _hf_activations(family: Family, hf, tokens: torch.Tensor, n_heads: int, n_kv: int, d: int):
    """resid_post, k, v per layer from forward hooks on the plain Hugging Face modules."""
    got: dict = {}
    handles = []
    for layer, block in enumerate(_hf_layers(hf)):
        handles.append(block.register_forward_hook(
            lambda m, i, o, layer=layer: got.__setitem__(("resid_post", layer),
                                                         o[0] if isinstance(o, tuple) else o)))
        named = dict(block.named_modules())
        if family.fused is None:
            for site in ("k", "v"):
                proj = next(m for n, m in named.items() if n.endswith(f"{site}_proj"))
                handles.append(proj.register_forward_hook(
                    lambda m, i, o, site=site, layer=layer: got.__setitem__(
                        (site, layer), o.view(*o.shape[:2], n_kv, d))))
        else:
            fused = next(m for n, m in named.items()
                         if n.split(".")[-1] in ("c_attn", "query_key_value", "qkv_proj"))

            def split(m, i, o, layer=layer):
                k, v = _hf_kv(family, None, o, n_heads, n_kv, d)
                got[("k", layer)], got[("v", layer)] = k, v

            handles.append(fused.register_forward_hook(split))
    try:
        with torch.no_grad():
            hf(tokens)
    finally:
        for h in handles:
            h.remove()
    return got


def _brute_force_self(model, tokens, names: list[str]) -> dict[str, torch.Tensor]:
    """∂ℓ_t/∂x_t at each hook in ``names`` by one backward pass per target t."""
    from interp.core.loss import token_losses
    from interp.gradients._batches import activation_gradients_only

    out: dict[str, list] = {n: [] for n in names}
    grads: dict = {}

    def read(name):
        def hook(t, hook):
            t.register_hook(lambda g: grads.__setitem__(name, g))
            return t

        return hook

    ones = torch.ones_like(tokens, dtype=torch.bool)
    for t in range(tokens.shape[1]):
        with activation_gradients_only(model), model.hooks(fwd_hooks=[(n, read(n)) for n in names]):
            losses = token_losses(model(tokens), tokens, ones)
            (losses[:, t].sum() if t < losses.shape[1] else 0 * losses.sum()).backward()
        for n in names:
            out[n].append(grads[n][:, t])
    return {n: torch.stack(v, 1) for n, v in out.items()}


def _self_err(model, tokens) -> float:
    import interp
    from interp.core.sites import hook_name

    sites = ("k", "v", "resid_pre")
    fg = interp.future_gradients(model, tokens, sites=sites, verbose=False)
    names = {(s, layer): hook_name(s, layer) for s in sites for layer in range(model.cfg.n_layers)}
    brute = _brute_force_self(model, tokens, list(names.values()))
    worst = 0.0
    for (site, layer), name in names.items():
        t = fg.table[(fg.table.site == site) & (fg.table.layer == layer)]
        got = torch.tensor(t.sort_values(["sequence", "position", "head"]).self_norm.to_numpy())
        worst = max(worst, _rel(got, brute[name].norm(dim=-1).flatten()))
    return worst


def _patterns(model, tokens, patch: Callable | None = None):
    """Per layer: the model's own pattern, the reproduced one, the plain causal one (without
    window, soft-cap or the rotation no rot hook shows), the spec and the rotated q, k."""
    from interp.core import hooks
    from interp.core.attention import (
        AttentionSpec,
        attention_spec,
        expand_kv,
        qkv_hooks,
        rotated_qkv,
    )

    seen: dict = {layer: {} for layer in range(model.cfg.n_layers)}
    raw: dict = {}
    fwd = []
    for layer in seen:
        fwd += qkv_hooks(model, layer, seen[layer], pattern=True)
        # what AtP* read before: rotated q/k where the rot hooks fire, else the raw ones
        for site, fn in (("q", hooks.q), ("k", hooks.k), ("q", hooks.rot_q), ("k", hooks.rot_k)):
            if fn(layer) in model.hook_dict:
                fwd.append((fn(layer), lambda t, hook, key=(site, layer): raw.__setitem__(key, t)))
    if patch is not None:
        fwd = [patch] + fwd
    with torch.no_grad(), model.hooks(fwd_hooks=fwd):
        model(tokens)
    out = {}
    for layer, store in seen.items():
        spec = attention_spec(model, layer)
        q, k, _ = rotated_qkv(model, layer, store)
        n_heads = q.shape[2]
        dots = q.transpose(1, 2) @ expand_kv(k.transpose(1, 2), n_heads).transpose(-1, -2)
        qn, kn = raw[("q", layer)].transpose(1, 2), raw[("k", layer)].transpose(1, 2)
        naive = AttentionSpec(layer, spec.scale)
        naive_dots = qn @ expand_kv(kn, n_heads).transpose(-1, -2)
        out[layer] = (store["pattern"], spec.pattern(spec.logits(dots)),
                      naive.pattern(naive.logits(naive_dots)), spec, q, k)
    return out


def _atp_star_pattern_err(model, clean, corrupt) -> float:
    """The pattern AtP* builds for key i corrupted, against the model's own pattern with k_i
    really patched (KV head 0 of every layer, every position i)."""
    from interp.core import hooks
    from interp.core.attention import expand_kv

    clean_p = _patterns(model, clean)
    corrupt_p = _patterns(model, corrupt)
    worst = 0.0
    for layer, (_, _, _, spec, q, k) in clean_p.items():
        kc = corrupt_p[layer][5]
        n_heads = q.shape[2]
        rep = n_heads // k.shape[2]
        qh = q.transpose(1, 2)
        logits = spec.logits(qh @ expand_kv(k.transpose(1, 2), n_heads).transpose(-1, -2))
        new = spec.logits(qh @ expand_kv(kc.transpose(1, 2), n_heads).transpose(-1, -2))
        source = _capture_k(model, corrupt, layer)
        # KV head 0 alone; all heads together where the key norm spans heads (AtP* refuses
        # per-head there)
        heads = slice(None) if spec.joint_k_norm else slice(0, 1)
        readers = slice(None) if spec.joint_k_norm else slice(0, rep)
        for i in range(clean.shape[1]):
            def patch_k(t, hook, i=i, source=source, heads=heads):
                t = t.clone()
                t[:, i, heads] = source[:, i, heads]
                return t

            theirs = _patterns(model, clean, patch=(hooks.k(layer), patch_k))[layer][0]
            s = logits.clone()
            s[:, readers, :, i] = new[:, readers, :, i]  # the query heads that read them
            worst = max(worst, float((spec.pattern(s) - theirs).abs().max()))
    return worst


def _capture_k(model, tokens, layer):
    from interp.core import hooks

    got = {}
    with torch.no_grad(), model.hooks(fwd_hooks=[(hooks.k(layer),
                                                  lambda t, hook: got.__setitem__("k", t))]):
        model(tokens)
    return got["k"]


def measure(family: Family, path: Path) -> Measured:
    """Run every check on the saved model of ``family`` in ``path`` (see module docstring)."""
    import transformers

    import interp
    from interp.core.model import n_kv_heads
    from interp.patching import attribution_patch, compare_patching

    m = Measured(family)
    model = interp.load_model(path, device="cpu", dtype=torch.float64)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float64, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, 61, (1, N_POS), generator=g)
    corrupt = tokens.clone()
    corrupt[0, [4, 13]] = (corrupt[0, [4, 13]] + 17) % 58 + 3

    # recording = the plain HF modules
    n_heads, d = int(model.cfg.n_heads), int(model.cfg.d_head)
    n_kv = n_kv_heads(model)
    theirs = _hf_activations(family, hf, tokens, n_heads, n_kv, d)
    rec = interp.record(model, tokens, sites=("resid_post", "k", "v"), roles=None,
                        n_tokens=N_POS, verbose=False)
    m.record_err = max(_rel(rec.get(site, layer), theirs[(site, layer)][0])
                       for site, layer in theirs)

    try:
        m.self_err = _self_err(model, tokens)
    except interp.InterpError as e:
        m.refusal = e.problem

    # cached = uncached generation
    kw = dict(record=("k", "v"), stop_at_eos=False)
    cached = interp.generate(model, tokens[0, :6], 8, use_cache=True, **kw)
    uncached = interp.generate(model, tokens[0, :6], 8, use_cache=False, **kw)
    m.generate_equal = bool(torch.equal(cached.tokens, uncached.tokens))
    m.generate_err = max(_rel(cached.logits, uncached.logits),
                         *(_rel(cached.recording[s], uncached.recording[s]) for s in ("k", "v")))

    def metric(logits):
        return (logits[:, -1, 3] - logits[:, -1, 4]).sum()

    sites = ("k", "v")  # the sites whose head labels and attention the families change
    if m.refusal is None:
        # the reproduced pattern, the naive one, and AtP*'s patched patterns
        pats = _patterns(model, tokens)
        m.pattern_err = max(float((mine - own).abs().max()) for own, mine, *_ in pats.values())
        m.naive_pattern_err = max(float((naive - own).abs().max())
                                  for own, _, naive, *_ in pats.values())
        m.atp_star_pattern_err = _atp_star_pattern_err(model, tokens, corrupt)
        joint = any(spec.joint_k_norm for *_, spec, _, _ in pats.values())
        if joint:
            try:
                attribution_patch(model, tokens, corrupt, metric, sites=("k",), qk_fix=True,
                                  verbose=False)
            except interp.InterpError as e:
                m.per_head_refusal = e.problem
        result = attribution_patch(model, tokens, corrupt, metric, sites=sites,
                                   per_head=not joint, qk_fix=True, verify=True, verbose=False)
        k_rows = result.table[result.table.site == "k"]
        m.atp_star_pearson = float(compare_patching(k_rows, estimate="atp_star", by=None)
                                   .set_index("group").loc["all", "pearson"])
    else:  # AtP* refuses too, before its backward pass; plain AtP still runs
        try:
            attribution_patch(model, tokens, corrupt, metric, sites=("k",), qk_fix=True,
                              verbose=False)
        except interp.InterpError as e:
            m.atp_star_refusal = e.problem
        result = attribution_patch(model, tokens, corrupt, metric, sites=sites, verify=True,
                                   verbose=False)
    t = result.table
    m.kv_rows_missing = int(t[t.site.isin(["k", "v"])].activation_patch.isna().sum())
    m.atp_pearson = float(compare_patching(result, by=None).set_index("group")
                          .loc["all", "pearson"])

    from interp.probes import FutureLensSpec, future_lens

    lens_tokens = torch.randint(3, 61, (40, 24), generator=g)
    lens = future_lens(model, lens_tokens, layers=[model.cfg.n_layers - 1], offsets=[1],
                       config=FutureLensSpec(eval_positions=300))
    m.future_lens_agreement = float(lens.table.iloc[0].agreement_top1)
    return m


# ------------------------------------------------------------------------------ the table


def verdicts(m: Measured) -> dict[str, str]:
    """One word per check: ``exact``, ``refused`` (an InterpError naming why), or the value
    that fell short."""
    lens = m.future_lens_agreement
    return {
        "record": _ok(m.record_err <= EXACT),
        "future_gradients": "refused" if m.refusal else _ok(m.self_err <= EXACT),
        "generate": _ok(m.generate_equal and m.generate_err <= EXACT),
        "AtP*": "refused" if m.atp_star_refusal or m.refusal else
        _ok(m.pattern_err <= 1e-6 and m.atp_star_pattern_err <= 1e-6),
        "k/v rows": _ok(m.kv_rows_missing == 0),
        "Future Lens": "exact" if lens >= 0.99 else f"identity {lens:.2f}",
    }


def _ok(good: bool) -> str:
    return "exact" if good else "WRONG"


def _needs(m: Measured) -> str:
    """What a plain causal softmax of the q · k the rot hooks show gets wrong on this family."""
    if m.naive_pattern_err is None:
        return "—"
    return "—" if m.naive_pattern_err <= 1e-4 else f"yes ({m.naive_pattern_err:.1g})"


def render(results: list[Measured]) -> str:
    """docs/families.md from the measured results."""
    cols = ["record", "future_gradients", "generate", "AtP*", "k/v rows", "Future Lens"]
    lines = [
        "# Supported model families",
        "",
        "<!-- generated by scripts/families.py from the parity suite "
        "(tests/integration/test_families.py); do not edit by hand -->",
        "",
        "Each row is a tiny random Hugging Face model of the family (2 layers, d_model 64, "
        "float64, 20 tokens, longer than the sliding windows of 8) built offline from its "
        "config and checked by `tests/integration/test_families.py` (fast tier) against an "
        "independent computation. **exact** means:",
        "",
        "- *record*: resid_post, k and v equal forward hooks on the plain Hugging Face modules "
        f"(relative error ≤ {EXACT:g});",
        "- *future_gradients*: the self term of every position, layer and site (k, v, "
        f"resid_pre) equals a brute-force backward pass of ℓ_i alone (≤ {EXACT:g});",
        "- *generate*: KV-cached greedy generation equals recomputation without the cache;",
        "- *AtP\\**: the reproduced attention pattern is the model's own `hook_pattern` "
        "within 1e-6 (its softmax runs in float32), on the clean input and with each key "
        "really patched;",
        "- *k/v rows*: every k/v row of AtP has its activation-patching row (one head label "
        "for k/v in every table, head 0 with one KV head);",
        "- *Future Lens*: offset-1 top-1 agreement ≥ 0.99 from the last layer (the identity).",
        "",
        "**refused**: the instrument raises an `InterpError` naming the reason (listed below) "
        "instead of computing. *Plain causal wrong*: how far a plain causal softmax of the "
        "q · k the rot hooks show (what AtP\\* computed before) is from the model's pattern, "
        "i.e. whether the family needs the reproduction in `interp.core.attention` at all.",
        "",
        "| family | attention | " + " | ".join(cols) + " | plain causal wrong |",
        "|---|---|" + "---|" * (len(cols) + 1),
    ]
    for m in results:
        v = verdicts(m)
        lines.append(f"| {m.family.name} | {m.family.variants} | "
                     + " | ".join(v[c] for c in cols) + f" | {_needs(m)} |")
    refused = [(f"{m.family.name}, {what}", why) for m in results for what, why in
               (("future_gradients", m.refusal), ("AtP*", m.atp_star_refusal),
                ("AtP* per KV head", m.per_head_refusal)) if why is not None]
    if refused:
        lines += ["", "Refusals, as raised:", ""]
        lines += [f"- **{name}**: {why}" for name, why in refused]
    return "\n".join(lines) + "\n"


def measure_all(tmp: Path, names: list[str] | None = None) -> list[Measured]:
    out = []
    for name in names or list(FAMILIES):
        fam = FAMILIES[name]
        out.append(measure(fam, build(fam, tmp / name.lower())))
    return out


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DOC), help="where to write the table")
    p.add_argument("--family", action="append", help="only these families (repeatable)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = measure_all(Path(tmp), args.family)
    for m in results:
        print(m.family.name, {k: v for k, v in vars(m).items() if k not in ("family", "notes")})
    Path(args.out).write_text(render(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
