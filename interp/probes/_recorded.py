"""Probe examples from a saved recording (:func:`interp.record`) instead of a live model.

A recording keeps activations only at the roles it was asked for, so a target at offset k is
found by its index row: the row of the same ``sequence`` whose ``original_position`` is
``a(i) + k`` (``a(i)`` as in :mod:`._data`). Token targets therefore need the text positions
(role ``regular``, ``prompt`` or ``answer``) to have been recorded; examples whose target row
is absent (the end of a sequence) are dropped. Label tables name rows by ``window`` = the
recording's ``sequence`` number and ``position``. Split groups are the ``document`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import InterpError
from ._data import ProbeData
from ._spec import ProbeSpec

__all__ = ["collect_recorded", "open_recording"]


def open_recording(spec: ProbeSpec):
    from ..recording import load_recording

    return load_recording(spec.data.recording)


def _recorded_layers(spec: ProbeSpec, rec) -> list[int]:
    layers = list(rec.layers) if spec.inputs.layers == "all" else list(spec.inputs.layers)
    missing = [x for x in layers if x not in rec.layers]
    if missing:
        raise InterpError(f"probe spec field inputs.layers: layer(s) {missing} are not in the recording",
                          f"recorded layers: {', '.join(map(str, rec.layers))}")
    return sorted(set(layers))


def collect_recorded(spec: ProbeSpec, sites: list[str], layers: list[int] | None = None) -> ProbeData:
    """Examples, features and targets from ``spec.data.recording`` (see module docstring)."""
    rec = open_recording(spec)
    layers = layers if layers is not None else _recorded_layers(spec, rec)
    t = spec.target
    if t.kind == "hidden" and t.hidden_layer is not None and t.hidden_layer not in rec.layers:
        raise InterpError(f"probe spec field target.hidden_layer: layer {t.hidden_layer} is not in the recording",
                          f"recorded layers: {', '.join(map(str, rec.layers))}")
    for s in sites + (["resid_post"] if t.kind == "hidden" else []):
        if s not in rec.sites:
            raise InterpError(f"probe spec field inputs.sites: site {s!r} is not in the recording",
                              f"recorded sites: {', '.join(rec.sites)}")
    idx = rec.index.reset_index(drop=True)
    idx = idx.assign(row=np.arange(len(idx))).sort_values(["sequence", "position"], kind="stable")
    # a(i): the original position of a text row, or of the last text row before an inserted one
    anchor = idx["original_position"].where(idx["original_position"] >= 0)
    idx["anchor"] = anchor.groupby(idx["sequence"]).ffill()
    keep = idx["role"].isin(spec.inputs.roles).to_numpy() & idx["anchor"].notna().to_numpy()
    text = idx[idx["original_position"] >= 0]
    lookup = pd.Series(text["row"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [text["sequence"].to_numpy(), text["original_position"].to_numpy()]))
    if t.kind in ("token", "hidden"):
        tgt_rows = []
        for k in t.offsets:
            key = pd.MultiIndex.from_arrays([idx["sequence"].to_numpy(), (idx["anchor"].fillna(-10**9) + k).astype(np.int64)])
            tgt_rows.append(lookup.reindex(key).to_numpy())
        tgt = np.stack(tgt_rows, 1)
        keep &= ~np.isnan(tgt).any(1)
        sel = idx[keep]
        tgt = tgt[keep].astype(np.int64)
    else:
        from ._data import read_label_table

        table = read_label_table(spec, n_sequences=int(idx["sequence"].max()) + 1)
        known = table.merge(idx[["sequence", "position"]], on=["sequence", "position"], how="left",
                            indicator=True)
        if (known["_merge"] == "left_only").any():
            r = known[known["_merge"] == "left_only"].iloc[0]
            raise InterpError(
                "probe spec field target.table: the label table does not align with the positions: "
                f"sequence={r['sequence']}, position={r['position']} was not recorded",
                "make the table from the same recording (and record the roles it labels)")
        merged = idx[keep].merge(table, on=["sequence", "position"], how="inner",
                                 suffixes=("", "_table"))
        if "token_table" in merged.columns and (merged["token_table"] != merged["token"]).any():
            r = merged[merged["token_table"] != merged["token"]].iloc[0]
            raise InterpError(
                "probe spec field target.table: the label table does not align with the positions: "
                f"sequence {r['sequence']}, position {r['position']} holds token {r['token']}, the table says "
                f"{r['token_table']}", "make the table from the same recording")
        sel, tgt = merged, None
    if len(sel) == 0:
        raise InterpError(
            f"probe spec field inputs.roles: the role selection {spec.inputs.roles} matches no recorded "
            f"position with a target (recorded roles: {', '.join(sorted(idx['role'].unique()))})",
            "select recorded roles (with the text positions recorded for token targets)",
        )
    rows = torch.tensor(sel["row"].to_numpy())
    features, units = {}, {}
    slots = [rec.layers.index(x) for x in layers]
    for s in sites:
        x = rec[s][rows][:, slots].float()  # [n, layer, (kv_head,) d]
        if s.startswith("resid_"):
            features[s] = x.transpose(0, 1).contiguous()
            units[s] = [(layer, -1) for layer in layers]
        else:
            n, L, H, d = x.shape
            features[s] = x.permute(1, 2, 0, 3).reshape(L * H, n, d).contiguous()
            units[s] = [(layer, h) for layer in layers for h in range(H)]
    tokens = torch.tensor(sel["token"].to_numpy(), dtype=torch.long)
    targets = values = label_names = None
    value_layers: list[int] = []
    if t.kind == "token":
        targets = torch.tensor(rec.index["token"].to_numpy()[tgt], dtype=torch.long)
    elif t.kind == "hidden":
        value_layers = [t.hidden_layer] if t.hidden_layer is not None else layers
        hid = rec["resid_post"][:, [rec.layers.index(x) for x in value_layers]].float()  # [N, L, d]
        values = hid[torch.tensor(tgt)].permute(2, 0, 1, 3).contiguous()  # [L, n, offset, d]
    elif t.kind == "label":
        names, codes = np.unique(sel[t.column].astype(str).to_numpy(), return_inverse=True)
        targets, label_names = torch.tensor(codes.astype(np.int64))[:, None], names.tolist()
    else:
        values = torch.tensor(sel[t.column].to_numpy(np.float64), dtype=torch.float32)[None, :, None, None]
    return ProbeData(
        features=features, units=units, tokens=tokens, targets=targets, values=values,
        roles=sel["role"].to_numpy(object), groups=sel["document"].astype(str).to_numpy(object),
        window=sel["sequence"].to_numpy(), position=sel["position"].to_numpy(),
        label_names=label_names, value_layers=value_layers,
    )
