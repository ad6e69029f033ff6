"""Probes on the bundled SmolLM2-135M: the fast spec end to end, leak-free splits, streamed
activations equal to a TransformerLens cache, and saved probes that reproduce their metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.core import hooks
from interp.probes import (
    ProbeSpec,
    collect,
    evaluate_probes,
    load_sequences,
    split_groups,
    train_probes,
)

pytestmark = pytest.mark.slow


def test_tiny_spec_end_to_end(smollm, smollm_hf, tmp_path):
    res = train_probes("probes/tiny.toml", tmp_path / "out", model=smollm)
    m = res.to_pandas()
    spec = res.spec
    assert set(m.layer) == set(spec.inputs.layers) and set(m.offset) == set(spec.target.offsets)
    test = m[(m.split == "test") & (m.role == "all")]
    assert test.n.min() > 100
    # accuracy, top-5 and cross-entropy are recomputed by hand below (_check_probes_by_hand)
    assert test[["baseline_bigram", "control_accuracy"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (test.baseline_unigram <= test.baseline_majority + 1e-9).all()  # sampling never beats argmax
    # the report's entry points
    assert not res.summary().empty and res.figure().data
    # the saved probes reproduce the metrics from freshly collected activations
    again = evaluate_probes(tmp_path / "out", model=smollm)
    cols = ["accuracy", "top5", "xent", "control_accuracy"]
    pd.testing.assert_frame_equal(again.to_pandas()[cols], m[cols], atol=1e-4, check_dtype=False)
    assert res.description["class_strings"][-1] == "<other>"
    _check_probes_by_hand(smollm_hf, tmp_path / "out", load_sequences(spec, smollm), again.to_pandas())


def _check_probes_by_hand(hf, out, seqs, metrics):
    """The saved probes (W, b) applied by hand to the plain HF model's hidden states give the
    accuracy, top-5 accuracy and cross-entropy evaluate_probes reports, pooled over its splits
    (role "all"). Rows: every
    regular position after BOS with both targets in its window; the target at offset k is
    the window's token k ahead, classes outside the saved list are the last ("other")."""
    loaded = interp.probes.load_probes(out)
    classes, offsets = loaded.description["classes"], loaded.spec.target.offsets
    tokens = torch.stack([s.seq.tokens for s in seqs])
    assert all(set(s.seq.roles[1:]) == {"regular"} for s in seqs)
    n, layers = tokens.shape[1], loaded.spec.inputs.layers
    resid = {}

    class Enough(Exception):
        """Raised after the last probed layer: the forward need not go on."""

    def keep(module, args, out, layer):  # decoder layer l's output is resid_post
        resid[layer] = out[0] if isinstance(out, tuple) else out
        if layer == max(layers):
            raise Enough

    handles = [hf.model.layers[layer].register_forward_hook(
        lambda m, a, out, layer=layer: keep(m, a, out, layer)) for layer in layers]
    try:
        with torch.no_grad():
            hf(tokens)
    except Enough:
        pass
    finally:
        for handle in handles:
            handle.remove()
    anchors = torch.arange(1, n - max(offsets))
    for layer in layers:
        feats = resid[layer][:, anchors].reshape(-1, resid[layer].shape[-1])
        for k in offsets:
            W, b = loaded.probe(layer, k, site="resid_post")
            logits = feats @ W + b
            want = torch.tensor([classes.index(t) if t in classes else len(classes) - 1
                                 for t in tokens[:, anchors + k].flatten().tolist()])
            m = metrics[(metrics.layer == layer) & (metrics.offset == k) & (metrics.role == "all")]
            assert m.n.sum() == len(want)
            # the same float32 model and weights: the counts of correct rows agree exactly
            assert int((m.accuracy * m.n).round().sum()) == int((logits.argmax(-1) == want).sum())
            in_top5 = (logits.topk(5, dim=-1).indices == want[:, None]).any(-1)
            assert int((m.top5 * m.n).round().sum()) == int(in_top5.sum())
            nll = -logits.double().log_softmax(-1)[torch.arange(len(want)), want]
            np.testing.assert_allclose((m.xent * m.n).sum(), float(nll.sum()), rtol=1e-5)


def test_documents_never_cross_splits_and_streaming_matches_cache(smollm):
    spec = ProbeSpec.from_toml("probes/tiny.toml", ["data.max_windows=12", "inputs.layers=[1]"])
    seqs = load_sequences(spec, smollm)
    data = collect(spec, smollm, seqs, ["resid_mid", "v"], [1])
    split = split_groups(data.groups, 0.2, 0.2, seed=0)
    for doc in set(data.groups):
        assert len(set(split[data.groups == doc])) == 1
    assert len(set(data.groups)) == len({s.group for s in seqs}) > 3
    toks = torch.stack([s.seq.tokens for s in seqs[:2]])
    _, cache = smollm.run_with_cache(toks, names_filter=[hooks.resid(1, "mid"), hooks.v(1)])
    rows = np.flatnonzero(data.window < 2)
    w, p = data.window[rows], data.position[rows]
    torch.testing.assert_close(data.features["resid_mid"][0, rows], cache[hooks.resid(1, "mid")][w, p])
    for h in range(3):  # SmolLM2 has 3 KV heads
        torch.testing.assert_close(data.features["v"][h, rows], cache[hooks.v(1)][w, p, h])
    # targets are the tokens 1 and 2 ahead in the same window; BOS is never read
    assert torch.equal(data.targets[rows, 0], toks[w, p + 1]) and torch.equal(data.targets[rows, 1], toks[w, p + 2])
    assert (data.position > 0).all()


def test_layer_out_of_range_on_the_real_model(smollm):
    with pytest.raises(interp.InterpError, match=r"(?s)inputs.layers.*\[30\].*0\.\.29"):
        train_probes("probes/tiny.toml", model=smollm, overrides=["inputs.layers=[0, 30]"])


def test_pause_positions_in_corpus_windows(smollm_fresh):
    """With [data.pauses] the bundled model gains a <pause> token, and probes read pauses too."""
    res = train_probes("probes/tiny.toml", model=smollm_fresh, overrides=[
        "model.add_pause=true", "data.pauses.every=4", "data.pauses.n=1", "data.max_windows=24",
        'inputs.roles=["regular", "pause"]', "inputs.layers=[1]", "train.max_epochs=2"])
    m = res.to_pandas()
    counts = m[(m.layer == 1) & (m.offset == 1)].groupby(["split", "role"]).n.first()
    assert {"pause", "regular", "all"} <= set(m.role)
    # one pause after every 4 text tokens: about a quarter as many pause rows as regular ones
    assert 0.15 < counts["train", "pause"] / counts["train", "regular"] < 0.35
    assert counts["train", "all"] == counts["train", "pause"] + counts["train", "regular"]
