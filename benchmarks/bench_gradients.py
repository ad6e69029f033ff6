"""Benchmark: the future-loss decomposition and attribution patching on the bundled model.

Measured side by side in one run (ratios are what count on a shared machine):

1. decomposition (total + self backward passes, all layers, sites k, v, resid_post) against
   one forward + backward pass, at N tokens (default 256);
2. brute force (one backward pass per target ℓ_t, reading the gradient at position t) against
   the decomposition; the brute force is timed on ``--brute-targets`` targets and
   extrapolated to all N − 1;
3. distance-resolved gradients: the prefix method (a forward per chunk of targets on the
   prefix that ends at its last target, or on the window that starts max-distance tokens
   before its first target over a KV cache of the rest; one backward per target over it) and
   the batched VJPs over the same prefixes, against the reference loop (one forward, one
   backward per target through the whole graph), at each of ``--n-distance`` (default
   128,512) and each of ``--max-distances`` (default ``all,16``: every distance, and the
   report's 16); beyond ``--loop-full-max`` tokens the loop is timed on ``--loop-targets``
   targets and extrapolated (its cost per target does not depend on the target);
4. attribution patching against the full activation-patching sweep over (layer, position) of
   K and V (all heads of a site patched together), on a clean/corrupt pair: speed and
   agreement (Spearman, Pearson, top-10 overlap), with AtP* for keys;
5. the mean future share of the K/V gradient at N = 64 and N;
6. long context (``--parts long``): the decomposition (sites k, v) on one window of each of
   ``--n-long`` tokens (default 512,1024,2048,4096,8192), each in a fresh process, with its
   wall time, peak resident memory (``ru_maxrss``: the whole process, weights included) and
   the future share against position; then a table of each against N = 512 (the first N),
   and the peak-RSS ratio per doubling. ``--block`` sets the attention block (``dense``: the
   dense path, to compare). ``--parts long-distance`` does the same for :func:`by_distance`
   (sites k, v) with the first of ``--max-distances`` and ``--chunk-size``;
7. ``--parts memory-model``: the estimated peak memory (:mod:`interp.gradients._memory`) for
   SmolLM2, a 1B and an 8B Llama-type model, the table of docs/concepts/long-context.md.

    OMP_NUM_THREADS=2 python benchmarks/bench_gradients.py [--n 256] [--n-distance 128,512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

import interp
from interp.core.loss import token_losses
from interp.core.sites import hook_name as site_hook
from interp.gradients import by_distance, future_gradients
from interp.gradients._batches import activation_gradients_only
from interp.gradients._detach import DEFAULT_BLOCK
from interp.patching import activation_patch, attribution_patch, compare_patching, logit_diff


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _window(model, n: int, index: int = 0):
    docs = interp.load_corpus()
    return [w.seq for w in interp.windows(model, docs, n, max_windows=index + 1)][index]


def forward_backward(model, seq) -> None:
    tokens = seq.tokens[None]
    with activation_gradients_only(model):
        token_losses(model(tokens), tokens, seq.loss_mask[None]).sum().backward()


def brute_force(model, seq, targets: list[int], sites, layers) -> None:
    """One backward pass per target, reading ∂ℓ_t/∂x_t at every site (what the decomposition
    gets from one pass)."""
    tokens = seq.tokens[None]
    keep = {}

    def reader(key):
        def hook(t, hook):
            t.register_hook(lambda g: keep.__setitem__(key, g[:, int(current[0])]))
            return t

        return hook

    current = [0]
    fwd = [(site_hook(s, layer), reader((s, layer))) for layer in layers for s in sites]
    with activation_gradients_only(model):
        for t in targets:
            current[0] = t
            with model.hooks(fwd_hooks=fwd):
                token_losses(model(tokens), tokens, seq.loss_mask[None])[0, t].backward()


def _row(name: str, size: str, slow: float, fast: float, ratio: float, goal: str) -> None:
    # printed as soon as measured: on a busy machine the whole run is long
    print(f"{name:<86} {size:>6} {slow:8.2f} {fast:8.2f} {ratio:7.2f} {goal}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-distance", default="128,512")
    ap.add_argument("--loop-full-max", type=int, default=128)
    ap.add_argument("--loop-targets", type=int, default=12)
    ap.add_argument("--distance-methods", default="prefix,prefix-batched",
                    help="by_distance methods timed against the loop")
    ap.add_argument("--chunk-size", type=int, default=16, help="targets per prefix forward")
    ap.add_argument("--max-distances", default="all,16",
                    help="max distances to time: 'all' (every distance) and numbers (16: the "
                         "report's)")
    ap.add_argument("--batched-max", type=int, default=10**9,
                    help="beyond this N time only prefix-batched (the faster one)")
    ap.add_argument("--n-long", default="512,1024,2048,4096,8192")
    ap.add_argument("--block", default=str(DEFAULT_BLOCK),
                    help="attention block of the long-context runs ('dense': block_size=None)")
    ap.add_argument("--brute-targets", type=int, default=8)
    ap.add_argument("--windows-64", type=int, default=8, help="windows for the N = 64 share")
    ap.add_argument("--parts", default="decomposition,distance,patching,share",
                    help="comma-separated subset of the measurements to run")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.parts == "memory-model":  # no model needed
        _memory_model()
        return
    model = interp.load_model(device="cpu")
    layers = list(range(model.cfg.n_layers))
    sites = ("k", "v", "resid_post")
    print(f"SmolLM2-135M, CPU, torch threads {torch.get_num_threads()}")
    print(f"\n{'measurement':<86} {'size':>6} {'slow s':>8} {'fast s':>8} {'ratio':>7} goal")

    fg = None
    if "decomposition" in parts:
        seq = _window(model, args.n)
        t_fb, _ = _timed(lambda: forward_backward(model, seq), repeat=2)
        t_dec, fg = _timed(lambda: future_gradients(model, seq, sites=sites, verbose=False), repeat=2)
        _row("decomposition / forward+backward", f"N={args.n}", t_dec, t_fb, t_dec / t_fb, "<= 2.5")
        targets = list(range(0, args.n - 1, max(1, (args.n - 1) // args.brute_targets)))
        t_sub, _ = _timed(lambda: brute_force(model, seq, targets, sites, layers))
        t_brute = t_sub / len(targets) * (args.n - 1)
        _row(f"brute force / decomposition (brute timed on {len(targets)} targets, extrapolated)",
             f"N={args.n}", t_brute, t_dec, t_brute / t_dec, ">= 50")

    if "distance" in parts:
        for n in map(int, args.n_distance.split(",")):
            _distance(model, n, args)

    block = None if args.block == "dense" else int(args.block)
    if "long-one" in parts:  # one length in this process, so ru_maxrss is its own peak
        _long_one(model, int(args.n_long), block)
        return
    if "long-distance-one" in parts:
        _long_distance_one(model, int(args.n_long), block, args.max_distances.split(",")[0],
                           args.chunk_size)
        return
    for part in ("long", "long-distance"):
        if part not in parts:
            continue
        runs = []
        for n in args.n_long.split(","):
            out = subprocess.run([sys.executable, __file__, "--parts", f"{part}-one", "--n-long",
                                  n, "--block", args.block, "--max-distances",
                                  args.max_distances, "--chunk-size", str(args.chunk_size)],
                                 check=True, capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-2], flush=True)
            runs.append(json.loads(out.strip().splitlines()[-1]))
        _long_table(runs, args.block)

    if "patching" in parts:
        _patching(model)

    if "share" in parts:
        if fg is None:
            fg = future_gradients(model, _window(model, args.n), sites=("k", "v"), verbose=False)
        fg64 = future_gradients(model, interp.load_corpus(), sites=("k", "v"), n_tokens=64,
                                max_windows=args.windows_64, verbose=False)
        print("\nmean future share of the K/V gradient (all layers and heads; first position and "
              "zero-gradient positions left out):")
        for name, res in ((f"N=64 ({args.windows_64} windows)", fg64),
                          (f"N={args.n} (1 window)", fg)):
            s = res.summary().set_index("site")
            print(f"  {name:<22} k {s.loc['k', 'future_share']:.3f} (pooled "
                  f"{s.loc['k', 'pooled_future_share']:.3f}), v {s.loc['v', 'future_share']:.3f} "
                  f"(pooled {s.loc['v', 'pooled_future_share']:.3f}), first position k "
                  f"{s.loc['k', 'first_position_share']:.3f}")


def _distance(model, n: int, args) -> None:
    """The by-distance methods against the reference loop at N = n (all layers, k and v), for
    each max distance (``all``: every distance; a number: the distances up to it, which lets a
    model with a KV cache run each chunk on a window). The loop's cost does not depend on the
    max distance (it computes every term), so it is timed once."""
    seq = _window(model, n)
    kw = dict(sites=("k", "v"), verbose=False)
    methods = [m for m in args.distance_methods.split(",") if m]
    if n > args.batched_max and len(methods) > 1:
        methods = [m for m in methods if m != "prefix"]  # the slower of the two on the CPU
    bd_loop = None
    if n <= args.loop_full_max:
        t_loop, bd_loop = _timed(lambda: by_distance(model, seq, n, method="loop", **kw))
        note = "loop timed in full"
    else:  # keep a few targets in the loss: the loop costs the same per target
        targets = list(range(1, n - 1, (n - 2) // args.loop_targets))[:args.loop_targets]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[targets] = True
        t_sub, _ = _timed(lambda: by_distance(model, seq.tokens, n, loss_mask=mask,
                                              method="loop", **kw))
        t_loop = t_sub / len(targets) * int(seq.loss_mask.sum())
        note = f"loop timed on {len(targets)} targets, extrapolated"
    for dist in args.max_distances.split(","):
        d = n if dist == "all" else int(dist)
        for m in methods:
            t, res = _timed(lambda m=m, d=d: by_distance(model, seq, d, method=m,
                                                         chunk_size=args.chunk_size, **kw))
            if bd_loop is not None:  # the rows up to distance d are the same in both tables
                on = ["layer", "site", "distance"]
                both = res.table.merge(bd_loop.table, on=on, suffixes=("", "_loop"))
                err = float(((both.grad_norm - both.grad_norm_loop).abs()
                             / both.grad_norm_loop.abs()).max())
                assert len(both) == len(res.table), "distances missing from the loop's table"
                print(f"  N={n}, max distance {dist}: {m} vs loop, max relative difference of "
                      f"grad_norm {err:.1e} ({len(both)} rows)")
            _row(f"by distance: loop / {m}, max distance {dist}, chunk {args.chunk_size} ({note})",
                 f"N={n}", t_loop, t, t_loop / t, ">= 3")
            bound = _work(model, n, d, args.chunk_size, "loop") / _work(model, n, d,
                                                                          args.chunk_size, m)
            print(f"  N={n}, max distance {dist}: estimated multiply-adds, loop / {m}: "
                  f"{bound:.2f} (the ratio a method doing only that work at the loop's speed "
                  "per multiply-add would reach)", flush=True)


def _work(model, n: int, max_distance: int, chunk: int, method: str) -> float:
    """Estimated multiply-adds of a by-distance run on one window of n tokens (every position
    but the last a target), to set the measured ratio beside the bound the method can reach.

    Counted: the blocks' linear layers (P per position), attention scores and mixing
    (2 · n_heads · d_head per (query, key) pair and layer), the unembedding (V · d_model per
    position read). A backward of activations only costs the forward for a linear layer and
    twice it for attention. The loop: one forward and, per target, one backward over all n
    positions. The chunked methods: one forward and backward (the total gradient), then per
    chunk of targets a forward over its prefix, or its window when max_distance < n (the
    bundled model has a KV cache), and one backward per target over it.
    """
    cfg = model.cfg
    p = sum(w.numel() for w in model.blocks.parameters() if w.ndim == 2)
    att = 2 * cfg.n_heads * cfg.d_head * cfg.n_layers
    unembed = cfg.d_vocab * cfg.d_model

    def span(s: int, e: int, read: int, attn: float = 1.0) -> float:  # positions s .. e - 1
        pairs = (e * (e + 1) - s * (s + 1)) / 2  # each attends to every key at or before it
        return p * (e - s) + attn * att * pairs + unembed * read

    targets = list(range(n - 1))
    if method == "loop":
        return span(0, n, n) + len(targets) * span(0, n, n, attn=2.0)
    total = span(0, n, n) + span(0, n, n, attn=2.0)
    for c in range(0, len(targets), chunk):
        ch = targets[c:c + chunk]
        start = max(0, ch[0] - max_distance)
        end = ch[-1] + 1
        total += span(start, end, len(ch)) + len(ch) * span(start, end, len(ch), attn=2.0)
    return total


def _long_table(runs: list[dict], block: str) -> None:
    """Peak RSS and time per N, each as a ratio to the first N, and RSS per doubling."""
    print(f"\nlong context, attention block {block} (ratios to N={runs[0]['n']}; "
          "goal: RSS per doubling <= 1.3 from N=2048 on, N=8192 within 24 GiB)")
    print(f"{'N':>6} {'peak RSS GiB':>13} {'RSS ratio':>10} {'per doubling':>13} {'time s':>8} "
          f"{'time ratio':>11} {'ms/token':>9}")
    for i, r in enumerate(runs):
        step = f"{r['rss'] / runs[i - 1]['rss']:.2f}" if i else "-"
        print(f"{r['n']:>6} {r['rss']:>13.2f} {r['rss'] / runs[0]['rss']:>10.2f} {step:>13} "
              f"{r['t']:>8.1f} {r['t'] / runs[0]['t']:>11.2f} {1e3 * r['t'] / r['n']:>9.1f}")


def _long_one(model, n: int, block: int | None) -> None:
    """The decomposition on one window of n tokens: time, peak RSS, share against position."""
    seq = _window(model, n)
    t, fg = _timed(lambda: future_gradients(model, seq, sites=("k", "v"), block_size=block,
                                            verbose=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    s = fg.summary().set_index("site")
    pos = fg.by_position()
    pos = pos[pos.site == "k"]
    bins = [1, n // 8, n // 4, n // 2, 3 * n // 4, n - 1]
    shares = [pos[(pos.position >= a) & (pos.position < b)].future_share.mean()
              for a, b in zip(bins[:-1], bins[1:], strict=True)]
    print(f"long context N={n}: {t:.1f} s, peak RSS {rss:.2f} GiB; mean future share k "
          f"{s.loc['k', 'future_share']:.3f}, v {s.loc['v', 'future_share']:.3f}; k by position "
          + ", ".join(f"[{a},{b}) {x:.3f}" for a, b, x in zip(bins[:-1], bins[1:], shares,
                                                               strict=True)), flush=True)
    print(json.dumps(dict(n=n, t=t, rss=rss)), flush=True)


def _long_distance_one(model, n: int, block: int | None, dist: str, chunk: int) -> None:
    """by_distance (sites k, v) on one window of n tokens, keeping distances up to ``dist``
    (``all``: every one): time, peak RSS, the share at distances 0 and 1."""
    seq = _window(model, n)
    t, bd = _timed(lambda: by_distance(model, seq, n if dist == "all" else int(dist),
                                       sites=("k", "v"), block_size=block, chunk_size=chunk,
                                       verbose=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    k = bd.table[bd.table.site == "k"].groupby("distance").share.sum() / model.cfg.n_layers
    print(f"by distance N={n}, max distance {dist}, chunk {chunk}: {t:.1f} s, peak RSS "
          f"{rss:.2f} GiB; mean share of k over layers at d = 0, 1: {k[0]:.3f}, {k[1]:.3f}",
          flush=True)
    print(json.dumps(dict(n=n, t=t, rss=rss)), flush=True)


def _memory_model() -> None:
    """The estimated peak (GiB, weights included, one window, block 512) of the decomposition
    for SmolLM2, a 1B and an 8B Llama-type model (docs/concepts/long-context.md's table)."""
    from interp.gradients._memory import GIB, Shape, estimate_bytes

    shapes = {  # n_layers, d_model, d_mlp, n_heads, d_vocab, n_params, d_kv
        "SmolLM2-135M": (30, 576, 1536, 9, 49152, 134_515_008, 3 * 64),
        "Llama-3.2-1B": (16, 2048, 8192, 32, 128256, 1_235_814_400, 8 * 64),
        "Llama-3.1-8B": (32, 4096, 14336, 32, 128256, 8_030_261_248, 8 * 128),
    }
    print(f"{'model':<14} {'dtype':<5} {'N=2048':>7} {'N=8192':>7} {'N=32768':>8} "
          f"{'dense N=8192':>13}")
    for name, (n_l, d, d_mlp, h, v, p, d_kv) in shapes.items():
        for dtype, elem in (("fp32", 4), ("bf16", 2)):
            shape = Shape(n_l, d, d_mlp, h, v, p, elem, d_kv)
            gib = [estimate_bytes(shape, 1, n, DEFAULT_BLOCK) / GIB for n in (2048, 8192, 32768)]
            dense = estimate_bytes(shape, 1, 8192, None) / GIB
            print(f"{name:<14} {dtype:<5} {gib[0]:>7.1f} {gib[1]:>7.1f} {gib[2]:>8.1f} "
                  f"{dense:>13.1f}")


def _patching(model) -> None:
    """AtP (and AtP* on keys) against the activation-patching sweep over (layer, position)."""
    clean, corrupt = ("When Mary and John went to the store, John gave a drink to",
                      "When Mary and John went to the store, Mary gave a drink to")
    metric = logit_diff(model, " Mary", " John")
    pk = dict(sites=("k", "v"), per_head=False, verbose=False)
    t_atp, atp = _timed(lambda: attribution_patch(model, clean, corrupt, metric, qk_fix=True, **pk))
    t_act, act = _timed(lambda: activation_patch(model, clean, corrupt, metric, **pk))
    t_one, _ = _timed(lambda: activation_patch(model, clean, corrupt, metric, batch_size=1, **pk))
    _row("activation patching, one forward per node / 16 nodes per forward (the default)",
         f"N={len(interp.tokenize(model, clean))}", t_one, t_act, t_one / t_act, "> 1")
    _row(f"activation-patching sweep / AtP ({len(act.table)} (layer, position) nodes of K, V)",
         f"N={len(interp.tokenize(model, clean))}", t_act, t_atp, t_act / t_atp, ">= 50")
    on = ["layer", "site", "head", "position"]
    merged = atp.table.merge(act.table[on + ["activation_patch"]], on=on)
    print(f"\nAtP vs activation patching, IOI-style pair ({clean!r} / ...{corrupt[-20:]!r}), "
          "metric logit(' Mary') − logit(' John'):")
    print(compare_patching(merged).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("AtP* (QK fix) on keys:")
    print(compare_patching(merged[merged.site == "k"], estimate="atp_star", by=None)
          .to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    worst = merged.assign(err=(merged.atp - merged.activation_patch).abs()).nlargest(5, "err")
    print("largest AtP errors:")
    print(worst[on + ["token_str", "atp", "atp_star", "activation_patch"]]
          .to_string(index=False, float_format=lambda x: f"{x:.4f}"))

if __name__ == "__main__":
    main()
