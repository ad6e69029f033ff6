"""Token views: the prompt's own tokens, shaded by what each one computes for the future.

Every figure elsewhere in :mod:`interp.figures` aggregates (by layer, position, distance);
these read one prompt token by token, as circuitsvis's attention views and token-highlight
pages do. Each function takes a result and returns a :class:`TokenView`: a self-contained
HTML object (the script and style are inlined from ``tokens.js`` / ``tokens.css`` beside this
module; no network, no library) that displays in Jupyter (``_repr_html_``), embeds in the
report (:meth:`TokenView.html`) and saves as a standalone page (:meth:`TokenView.save`).

* :func:`future_share_view`: each token shaded by the future share of its K/V or residual
  gradient (:func:`interp.future_gradients`), a site/layer selector, hover for the self,
  future and total norms;
* :func:`who_reads_me_view`: click a token to shade the later positions whose losses draw on
  it, by the per-target gradient ‖∂ℓ_t/∂x_i‖ (:func:`interp.by_distance` with
  ``pairs=True``) or the target-resolved AtP effect (:func:`interp.attribution_patch` with
  ``target_resolved=True``); or, the other way, click a loss position to shade the earlier
  positions it draws on;
* :func:`attention_view`: attention by head from a recording of the ``pattern`` site
  (:func:`interp.record`): unclicked, each key shaded by the attention it receives, sinks in
  bold; click a query to see its pattern;
* :func:`lens_view`: the Future Lens's top-k guesses for t + 1 .. t + 3 beside the model's
  own, each token shaded by whether the lens's top-1 matches the model's.

The data go to the page once, as JSON; the page computes the shading on each selection or
click, so a 2,048-token prompt renders and responds in well under a second (checked in a
real browser by tests/integration/test_token_views_browser.py). Position roles are marked by
an underline in the project's role colours (:data:`interp.figures.ROLE_COLORS`).

Bad input (a result without per-token data for the view, a layer the result does not hold,
a prompt longer than the view's limit in :data:`MAX_TOKENS`) raises
:class:`~interp.errors.InterpError` before any HTML is written.
"""

from __future__ import annotations

import html as _html
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.attention import uniform_attention
from ..core.io import atomic_write_text
from ..errors import InterpError
from ._style import ROLE_COLORS

__all__ = [
    "MAX_TOKENS",
    "TokenView",
    "attention_view",
    "future_share_view",
    "lens_view",
    "who_reads_me_view",
]

#: The longest prompt each view accepts: beyond it the page's data (and the browser's memory)
#: grow past what stays responsive. Attention and pairs of positions grow with N².
MAX_TOKENS = {"future_share": 8192, "who_reads_me": 4096, "attention": 2048, "lens": 4096}
#: At most this many (source, target) or (query, key) entries in one page, all series together.
MAX_ENTRIES = 4_000_000


@dataclass
class TokenView:
    """A token-level interactive view: a kind, its data (sent to the page as JSON) and a title.

    Display it in Jupyter (``_repr_html_``), embed :meth:`html` in a page, or :meth:`save` it
    as a standalone file that opens offline.
    """

    kind: str
    data: dict

    def html(self) -> str:
        """An HTML fragment (a ``div``, its data and the inlined script and style): several
        fragments can share one page."""
        uid = "itv-" + uuid.uuid4().hex[:12]
        payload = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        payload = payload.replace("</", "<\\/")  # a token "</script>" must not end the block
        return (f"<style>{_asset('tokens.css')}</style>\n"
                f'<div class="itv" data-itv="{uid}"></div>\n'
                f'<script type="application/json" id="{uid}-data">{payload}</script>\n'
                f"<script>{_asset('tokens.js')}</script>\n")

    def _repr_html_(self) -> str:
        return self.html()

    def page(self) -> str:
        """A complete standalone HTML document."""
        title = _html.escape(self.data.get("title", "interp token view"))
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{title}</title></head>\n<body>\n{self.html()}</body></html>\n")

    def save(self, path: str | Path) -> Path:
        """Write :meth:`page` to ``path`` (``.html`` added when missing), atomically."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            path = path.with_suffix(".html")
        return atomic_write_text(path, self.page())

    def save_json(self, path: str | Path) -> Path:
        """Write the view's data (what :meth:`load_json` reads back), atomically."""
        return atomic_write_text(path, json.dumps(dict(kind=self.kind, data=self.data),
                                                  allow_nan=False))

    @classmethod
    def load_json(cls, path: str | Path) -> TokenView:
        """A view saved by :meth:`save_json`."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["kind"], d["data"])


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- shared checks


def _round(values, digits: int = 4) -> list:
    """Floats for JSON: ``digits`` significant digits (a smaller page), NaN as null."""
    out = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(None if not math.isfinite(v) else float(f"{v:.{digits}g}"))
    return out


def _need_columns(table: pd.DataFrame, columns: Sequence[str], what: str, fix: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InterpError(f"{what} has no per-token data for this view (no column(s) "
                          f"{', '.join(missing)})", fix)


def _one_sequence(table: pd.DataFrame, sequence: str | None, what: str) -> pd.DataFrame:
    """The rows of one sequence (the first when none is named)."""
    if "sequence" not in table.columns:
        return table
    names = list(dict.fromkeys(table["sequence"].astype(str)))
    if sequence is None:
        sequence = names[0]
    if str(sequence) not in names:
        raise InterpError(f"{what} holds no sequence {sequence!r}",
                          f"choose among: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}")
    return table[table["sequence"].astype(str) == str(sequence)]


def _pick(kind: str, have: Iterable, want: Sequence | int | str | None, what: str,
          rerun: str) -> list:
    """``want`` (default: everything held) after checking the result holds each."""
    have = list(dict.fromkeys(have))
    if want is None:
        return have
    want = [want] if isinstance(want, str | int) else list(want)
    missing = [w for w in want if w not in have]
    if missing:
        raise InterpError(f"{what} does not hold {kind} {', '.join(map(str, missing))} "
                          f"(it holds {', '.join(map(str, have))})",
                          f"choose among those, or rerun {rerun} with them")
    return want


def _sites_in_order(meta: dict, table: pd.DataFrame) -> list[str]:
    """The sites a table holds, in the order the run asked for them (``meta["sites"]``)."""
    held = set(table["site"])
    asked = [s for s in meta.get("sites", []) if s in held]
    return asked + sorted(held - set(asked))


def _check_length(view: str, n: int) -> None:
    if n > MAX_TOKENS[view]:
        raise InterpError(
            f"the prompt has {n} tokens, more than the {view} view's limit of {MAX_TOKENS[view]}",
            f"view a shorter prompt or a slice of it (the limit is interp.figures.tokens."
            f"MAX_TOKENS[{view!r}])")


def _check_entries(view: str, n: int) -> None:
    if n > MAX_ENTRIES:
        raise InterpError(f"the {view} view would send {n:,} entries to the page, more than "
                          f"{MAX_ENTRIES:,}", "select fewer layers, heads or sites, or a "
                                              "shorter prompt")


def _base(kind: str, title: str, tokens: Sequence[str], roles: Sequence[str], **extra) -> dict:
    return dict(kind=kind, title=title, tokens=[str(t) for t in tokens],
                roles=[str(r) for r in roles], role_colors=dict(ROLE_COLORS), **extra)


def _tokens_by_position(rows: pd.DataFrame, n: int) -> tuple[list[str], list[str]]:
    """Token strings and roles by position from per-position rows (``?`` / ``regular`` where
    the rows never name a position)."""
    tokens, roles = ["?"] * n, ["regular"] * n
    cols = ["position"] + [c for c in ("token_str", "token", "role") if c in rows.columns]
    first = rows[cols].drop_duplicates("position")
    for r in first.itertuples(index=False):
        p = int(r.position)
        if p >= n:
            continue
        if "token_str" in first.columns and isinstance(r.token_str, str):
            tokens[p] = r.token_str
        elif "token" in first.columns:
            tokens[p] = str(r.token)
        if "role" in first.columns:
            roles[p] = str(r.role)
    return tokens, roles


# ------------------------------------------------------------------ 1. future share by token


def future_share_view(fg, *, sequence: str | None = None, sites: Sequence[str] | None = None,
                      layers: Sequence[int] | None = None, title: str | None = None
                      ) -> TokenView:
    """The prompt with each token shaded by the future share of its gradient.

    For each site and layer (one entry of the page's selector), the K/V heads are taken
    together, as one vector per position: with per-head self, future and total gradients
    s_h, f_h, g_h, the view shows ‖s‖ = (Σ_h ‖s_h‖²)^½ (likewise ‖f‖, ‖g‖) and the future
    share Σ_h ⟨f_h, g_h⟩ / Σ_h ‖g_h‖², the share of the whole vector. Hover a token for its
    numbers; white means 0 (all self), full blue 1 (all future); the last position has no
    gradient and stays white.

    Args:
        fg: a :class:`~interp.gradients.FutureGradients` (its per-row table, not an aggregate).
        sequence: which sequence of the result (default: the first).
        sites: sites to offer (default: all the result holds).
        layers: layers to offer (default: all the result holds).
        title: the view's title.

    Raises:
        InterpError: no per-token rows, a site or layer the result does not hold, a prompt
            longer than ``MAX_TOKENS["future_share"]``.
    """
    table = getattr(fg, "table", None)
    what = "this future-gradients result"
    if not isinstance(table, pd.DataFrame):
        raise InterpError(f"future_share_view takes a FutureGradients result, not "
                          f"{type(fg).__name__}", "pass the result of interp.future_gradients")
    _need_columns(table, ["position", "layer", "site", "head", "self_norm", "future_norm",
                          "total_norm", "future_share"], what,
                  "pass the FutureGradients itself (fg), not an aggregate such as "
                  "fg.by_position()")
    t = _one_sequence(table, sequence, what)
    sites = _pick("site", _sites_in_order(fg.meta, t), sites, what,
                  "interp.future_gradients(..., sites=...)")
    layers = _pick("layer", sorted(int(x) for x in t["layer"].unique()), layers, what,
                   "interp.future_gradients(..., layers=...)")
    n = int(t["position"].max()) + 1
    _check_length("future_share", n)
    tokens, roles = _tokens_by_position(t, n)
    t = t[t.site.isin(sites) & t.layer.isin(layers)]
    g = t.assign(_sq=t.total_norm ** 2, _ss=t.self_norm ** 2, _fs=t.future_norm ** 2,
                 _dot=t.future_share.fillna(0.0) * t.total_norm ** 2)
    agg = g.groupby(["site", "layer", "position"], sort=True)[["_sq", "_ss", "_fs", "_dot"]].sum()
    series = []
    for site in sites:
        for layer in layers:
            a = agg.loc[(site, layer)].reindex(range(n))
            sq = a["_sq"].to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(sq > 0, a["_dot"].to_numpy() / sq, np.nan)
            series.append(dict(label=f"{_site_name(site)} · layer {layer}", share=_round(share),
                               self=_round(np.sqrt(a["_ss"])), future=_round(np.sqrt(a["_fs"])),
                               total=_round(np.sqrt(sq))))
    return TokenView("future_share", _base(
        "future_share", title or "Future share of the gradient, token by token", tokens, roles,
        series=series,
        note="Shading: the share of each position's gradient that comes from later tokens' "
             "losses (white 0, blue 1). Hover a token for ‖self‖, ‖future‖, ‖total‖.",
        scale="white = all self · blue = all future"))


def _site_name(site: str) -> str:
    return {"k": "key", "v": "value"}.get(site, site.replace("_", " "))


# ---------------------------------------------------------------------- 2. who reads me


def who_reads_me_view(result, *, sequence: str | None = None,
                      sites: Sequence[str] | None = None, layers: Sequence[int] | None = None,
                      title: str | None = None) -> TokenView:
    """Click a token: the later positions whose losses draw on it; or the reverse.

    From a :class:`~interp.gradients.ByDistance` computed with ``pairs=True``, the shading is
    the per-target gradient ‖∂ℓ_t/∂x_i‖ (heads together); from a target-resolved
    :class:`~interp.patching.Attribution`, it is the estimated effect on ℓ_t of patching x_i
    (summed over heads; orange raises the loss, blue lowers it). A selector switches the
    direction: from a source i to the losses t ≥ i that read it, or from a loss position t
    to the positions i ≤ t it draws on.

    Args:
        result: ``by_distance(..., pairs=True)`` or ``attribution_patch(...,
            target_resolved=True)``.
        sequence: which sequence (by_distance; default: the first).
        sites, layers: what the selector offers (default: all the result holds).
        title: the view's title.

    Raises:
        InterpError: a result without per-(position, loss position) data, a site or layer it
            does not hold, a prompt longer than ``MAX_TOKENS["who_reads_me"]``, or more than
            :data:`MAX_ENTRIES` pairs.
    """
    # Results are read by their fields (figures sit below the instruments): a ByDistance
    # carries ``pairs``; an Attribution is the table saved as attribution.csv.
    if hasattr(result, "pairs"):
        what = "this by-distance result"
        pairs = result.pairs
        if pairs is None:
            raise InterpError(f"{what} has no per-token data for this view: it holds "
                              "gradients summed by distance only",
                              "rerun interp.by_distance(..., pairs=True) to keep ‖∂ℓ_t/∂x_i‖ "
                              "for every (i, t)")
        t = _one_sequence(pairs, sequence, what)
        value, value_name, signed = "grad_norm", "‖∂ℓ_t/∂x_i‖", False
        tokens_meta = result.meta.get("tokens", {}).get(str(t["sequence"].iloc[0]))
        rerun = "interp.by_distance(..., pairs=True)"
    elif getattr(result, "FILE", None) == "attribution.csv":
        what = "this attribution result"
        if "loss_position" not in result.table.columns:
            raise InterpError(f"{what} has no per-token data for this view: it is not "
                              "target-resolved (one metric, no loss position)",
                              "rerun interp.attribution_patch(..., target_resolved=True)")
        t = result.table
        value, value_name, signed = "atp", "AtP effect on ℓ_t", True
        tokens_meta = None
        rerun = "interp.attribution_patch(..., target_resolved=True)"
    else:
        raise InterpError(f"who_reads_me_view takes a ByDistance or an Attribution, not "
                          f"{type(result).__name__}",
                          "pass interp.by_distance(..., pairs=True) or "
                          "interp.attribution_patch(..., target_resolved=True)")
    sites = _pick("site", _sites_in_order(result.meta, t), sites, what, rerun)
    layers = _pick("layer", sorted(int(x) for x in t["layer"].unique()), layers, what, rerun)
    if tokens_meta is not None:
        tokens, roles = tokens_meta["token_str"], tokens_meta["roles"]
        n = len(tokens)
    else:
        n = int(max(t["position"].max(), t["loss_position"].max())) + 1
        tokens, roles = _tokens_by_position(t, n)
    _check_length("who_reads_me", n)
    t = t[t.site.isin(sites) & t.layer.isin(layers)]
    if signed:
        agg = t.groupby(["site", "layer", "position", "loss_position"], sort=True)[value].sum()
    else:  # the norm over all heads together
        agg = np.sqrt((t.assign(_sq=t[value] ** 2)).groupby(
            ["site", "layer", "position", "loss_position"], sort=True)["_sq"].sum())
    _check_entries("who_reads_me", len(agg))
    series = []
    for site in sites:
        for layer in layers:
            a = agg.loc[(site, layer)]
            src = a.index.get_level_values("position").to_numpy()
            tgt = a.index.get_level_values("loss_position").to_numpy()
            series.append(dict(label=f"{_site_name(site)} · layer {layer}",
                               src=src.tolist(), tgt=tgt.tolist(), val=_round(a.to_numpy())))
    return TokenView("who_reads_me", _base(
        "who_reads_me", title or "Who reads me: which later losses draw on each token", tokens,
        roles, series=series, signed=signed, value_name=value_name,
        note="Click a token: the loss positions t that draw on it are shaded by "
             f"{value_name}; switch the direction to see, for a loss position, the positions "
             "it draws on. Click again to clear.",
        scale=("orange raises the loss, blue lowers it" if signed
               else "white = none · blue = the largest for the clicked token")))


# ------------------------------------------------------------------- 3. attention by head


def attention_view(rec, *, sequence: int | str | None = None,
                   layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                   floor: float = 1e-3, sink_ratio: float = 3.0, min_queries: int = 4,
                   title: str | None = None) -> TokenView:
    """Attention by head, circuitsvis-like, with roles and sinks marked.

    Unclicked, each key is shaded by the attention it receives (the mean over later queries)
    for the selected layer and head; keys receiving more than ``sink_ratio`` times what
    uniform attention over the keys each query's mask allows (sliding windows included) would
    give them, averaged over at least ``min_queries`` later queries, are sinks (bold, dotted
    underline). Click a query
    to see its attention pattern over the keys. Pauses and other roles are underlined in
    their colour.

    Args:
        rec: a :class:`~interp.recording.Recording` holding the ``pattern`` site at every
            position of the sequence (``interp.record(model, prompt, sites=("pattern",),
            roles=interp.recording.RECORDABLE_ROLES)``).
        sequence: which recorded sequence (its ``sequence`` value; default: the first).
        layers, heads: what the selector offers (default: every recorded layer, every head).
        floor: attention weights below it are not sent to the page (drawn white).
        sink_ratio: a key is a sink when it receives more than this times uniform attention.
        min_queries: keys read by fewer later queries are never called sinks (near the end,
            one query's weight is too noisy to call a key a sink).
        title: the view's title.

    Raises:
        InterpError: a recording without the ``pattern`` site or with positions missing, a
            layer or head it does not hold, a prompt longer than ``MAX_TOKENS["attention"]``.
    """
    what = "this recording"
    if not all(hasattr(rec, a) for a in ("sites", "index", "layers")):
        raise InterpError(f"attention_view takes a Recording, not {type(rec).__name__}",
                          "pass interp.record(model, prompt, sites=('pattern',), "
                          "roles=interp.recording.RECORDABLE_ROLES)")
    if "pattern" not in rec.sites:
        raise InterpError(f"{what} has no per-token data for this view: it holds no "
                          f"attention pattern (sites {', '.join(rec.sites)})",
                          "record with sites=('pattern',) (and "
                          "roles=interp.recording.RECORDABLE_ROLES)")
    index = rec.index.reset_index(drop=True)
    names = list(dict.fromkeys(index["sequence"].tolist()))
    seq = names[0] if sequence is None else sequence
    if seq not in names:
        raise InterpError(f"{what} holds no sequence {seq!r}",
                          f"choose among: {', '.join(map(str, names[:10]))}")
    rows = index[index["sequence"] == seq].sort_values("position")
    n = int(rows["position"].max()) + 1
    _check_length("attention", n)
    if len(rows) != n:
        raise InterpError(f"{what} holds {len(rows)} of the {n} positions of sequence {seq!r}, "
                          "and attention needs every query",
                          "record with roles=interp.recording.RECORDABLE_ROLES")
    layers = _pick("layer", list(rec.layers), layers, what,
                   "interp.record(..., layers=...)")
    import torch

    pattern = rec["pattern"][torch.tensor(rows.index.tolist())]  # [q_pos, layer, head, k_pos]
    n_heads = pattern.shape[2]
    heads = _pick("head", list(range(n_heads)), heads, what, "interp.record(...)")
    # recordings before the windows were stored: full causal attention
    windows = rec.meta["model"].get("attention_windows") or [None] * (max(layers) + 1)
    tokens = [str(s) for s in rows["token_str"]] if "token_str" in rows else \
        [str(t) for t in rows["token"]]
    roles = [str(r) for r in rows["role"]]
    series, entries = [], 0
    for layer in layers:
        li = list(rec.layers).index(layer)
        uniform = uniform_attention(n, windows[layer])
        for h in heads:
            a = pattern[:, li, h, :n].double().numpy()
            a = np.tril(a)
            keys, attn = [], []
            for q in range(n):
                ks = np.nonzero(a[q, :q + 1] >= floor)[0]
                keys.append(ks.tolist())
                attn.append(_round(a[q, ks], 3))
                entries += len(ks)
            later = np.arange(n - 1, -1, -1, dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                received = np.where(later > 0, (np.tril(a, -1).sum(0)) / later, np.nan)
                sinks = np.nonzero((received > sink_ratio * uniform)
                                   & (later >= min_queries))[0]
            series.append(dict(label=f"layer {layer} · head {h}", keys=keys, attn=attn,
                               received=_round(received),
                               received_max=float(np.nanmax(received)) if n > 1 else 1.0,
                               sinks=sinks.tolist()))
            _check_entries("attention", entries)
    return TokenView("attention", _base(
        "attention", title or "Attention by head", tokens, roles, series=series,
        note_received=f"Shading: attention each key receives (mean over later queries); bold: "
                      f"sinks (more than {sink_ratio:g}× uniform attention). Click a query to "
                      "see its pattern.",
        scale="white = none · blue = the most in this head"))


# ------------------------------------------------------------------------- 4. lens by token


def lens_view(model, lens, prompt, *, layers: Sequence[int] | None = None, k: int = 5,
              title: str | None = None) -> TokenView:
    """The Future Lens read token by token: for each position t, the lens's top-``k`` guesses
    of the tokens t + 1, t + 2, … (one per fitted offset) beside the model's own top-``k``
    prediction of that token (at position t + k − 1).

    The lens's linear maps are applied to the residual stream of ``prompt`` after each layer
    and decoded by the model's own final norm and unembedding (exactly as
    :func:`interp.probes.future_lens` scores them). Each token is shaded when the lens's
    top-1 for the selected offset equals the model's own top-1; click a token for the table.
    Offsets count positions of the prompt as given, pauses included (the fit's own scoring
    skips inserted pauses; here every position is read as it stands).

    Args:
        model: the model the lens was fitted on.
        lens: a :class:`~interp.probes.FutureLensResults` with its maps (``W``, ``b``).
        prompt: a text (tokenized with a BOS) or token ids ``[pos]``.
        layers: lens layers to offer (default: every fitted layer).
        k: guesses shown per offset.
        title: the view's title.

    Raises:
        InterpError: a lens without its maps, a layer it was not fitted at, a prompt longer
            than ``MAX_TOKENS["lens"]``.
    """
    from ..core.inputs import as_sequence

    what = "this Future Lens result"
    if not hasattr(lens, "read_tokens"):
        raise InterpError(f"lens_view takes a FutureLensResults, not {type(lens).__name__}",
                          "pass the result of interp.probes.future_lens (or load_future_lens)")
    if "W" not in lens.tensors or "b" not in lens.tensors:
        raise InterpError(f"{what} has no per-token data for this view: its linear maps were "
                          "not kept (saved without weights)",
                          "fit it again, or save it with weights=True (future_lens."
                          "save_weights = true in a probe spec) and load that folder")
    fitted = [int(x) for x in lens.meta["layers"]]
    offsets = [int(x) for x in lens.meta["offsets"]]
    layers = _pick("layer", fitted, layers, what, "interp.probes.future_lens(..., layers=...)")
    seq = as_sequence(model, prompt, what="the prompt")
    _check_length("lens", len(seq.tokens))
    read = lens.read_tokens(model, seq, layers=layers, k=k)
    series = [dict(label=f"layer {layer} · t+{off}", layer_index=li, offset_index=ki,
                   agree=_round(read["agree"][(layer, off)]))
              for li, layer in enumerate(layers) for ki, off in enumerate(offsets)]
    return TokenView("lens", _base(
        "lens", title or "Future Lens by token", read["tokens"], list(seq.roles), series=series,
        lens=read["lens"], model=read["model"], offsets=offsets, k=k,
        note="Shading: the lens's top-1 guess of token t + k from position t equals the "
             "model's own top-1 (blue) or not (white). Click a token for the guesses.",
        scale="blue = lens agrees with the model"))
