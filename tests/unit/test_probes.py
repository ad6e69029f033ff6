"""Probes: specs, splits, streaming collection, batched fitting, baselines, artifacts, resume.

Everything here runs on tiny native models or synthetic tensors; the mathematics is checked
against independent computations (TransformerLens caches, per-unit fits, numpy solves,
brute-force counts, scikit-learn).
"""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.core import hooks
from interp.probes import ProbeSpec, TrainSpec, collect, split_groups, train_probes
from interp.probes._baselines import classification_baselines, control_labels
from interp.probes._data import ProbeSequence
from interp.probes._fit import fit_ridge, fit_softmax, softmax_outputs

TINY = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64)


def _successor_tokens(n_seq: int = 40, length: int = 20, vocab: int = 61, seed: int = 0) -> torch.Tensor:
    """Sequences where each token determines the next: t' = (3 t + 1) mod vocab."""
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(0, vocab, (n_seq, 1), generator=g)]
    for _ in range(length - 1):
        cols.append((cols[-1] * 3 + 1) % vocab)
    return torch.cat(cols, 1)


@pytest.fixture
def tiny_recording(tmp_path):
    """A recording of a tiny GQA model (2 KV heads) on successor sequences with fillers."""
    tiny_model = interp.load_model(interp.TinyConfig(**TINY), device="cpu")
    toks = _successor_tokens()
    # a filler token after every 4 text tokens gives a second role to read at
    interp.record(tiny_model, toks, sites=("resid_post", "k", "v"), roles=None, out=tmp_path / "rec",
                  policy=interp.PausePolicy(every=4, filler=0), verbose=False)
    return tmp_path / "rec", toks


def _rec_spec(path, **sections) -> ProbeSpec:
    d = dict(name="t", model=dict(tiny=TINY), data=dict(recording=str(path)),
             target=dict(offsets=[1, 2]), train=dict(max_epochs=15, lr=0.05, min_per_class=1, patience=3))
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return ProbeSpec.from_dict(d)


# --- specs -------------------------------------------------------------------------------


def test_unknown_field_names_field_and_valid_ones():
    with pytest.raises(interp.InterpError, match=r"train\.bogus") as e:
        ProbeSpec.from_dict({"train": {"bogus": 1}})
    assert "weight_decay" in str(e.value) and "patience" in str(e.value)
    with pytest.raises(interp.InterpError, match="unknown probe spec field colour"):
        ProbeSpec.from_dict({"colour": 1})


def test_overrides_dotted_keys_and_toml_round_trip(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(ProbeSpec(name="x").to_toml())
    spec = ProbeSpec.from_toml(path, ["target.offsets=[2, 1]", "data.max_windows=7", "model.name=my-model",
                                      "train.weight_decay=0.5"])
    assert spec.target.offsets == [1, 2] and spec.data.max_windows == 7
    assert spec.model.name == "my-model" and spec.train.weight_decay == 0.5
    assert ProbeSpec.from_dict(tomllib_loads(spec.to_toml())) == spec


def tomllib_loads(text):
    import tomllib

    return tomllib.loads(text)


@pytest.mark.parametrize("bad, match", [
    ({"target": {"offsets": [1, 70]}, "data": {"n_tokens": 64}}, "target.offsets: offset 70"),
    ({"inputs": {"sites": ["resid_top"]}}, "inputs.sites: unknown site 'resid_top'"),
    ({"inputs": {"roles": ["paws"]}}, "inputs.roles: unknown role"),
    ({"target": {"kind": "label"}}, "target.table"),
    ({"model": {"tiny": TINY}}, "model.tiny"),
    ({"train": {"val_fraction": 0.5, "test_fraction": 0.5}}, "train.val_fraction"),
])
def test_bad_spec_values_name_the_field(bad, match):
    with pytest.raises(interp.InterpError, match=match):
        ProbeSpec.from_dict(bad)


def test_bundled_specs_parse():
    for name in ("lookahead", "tiny", "pause_answer"):
        spec = ProbeSpec.from_toml(f"probes/{name}.toml")
        assert spec.name == name
    lookahead = ProbeSpec.from_toml("probes/lookahead.toml")
    assert lookahead.target.offsets == [1, 2, 3] and lookahead.method == "future_lens"
    assert ProbeSpec.from_toml("probes/tiny.toml").method == "classifier"


# --- splits --------------------------------------------------------------------------------


def test_split_by_group_never_shares_a_group():
    groups = np.array([f"doc{i // 7}" for i in range(7 * 30)], dtype=object)
    split = split_groups(groups, 0.2, 0.2, seed=3)
    for g in set(groups):
        assert len(set(split[groups == g])) == 1
    assert set(split) == {"train", "val", "test"}
    assert (split == split_groups(groups, 0.2, 0.2, seed=3)).all()
    assert not (split == split_groups(groups, 0.2, 0.2, seed=4)).all()
    with pytest.raises(interp.InterpError, match="too few for train, val and test"):
        split_groups(np.array(["a", "b"], dtype=object), 0.2, 0.2, seed=0)


# --- streaming collection ---------------------------------------------------------------------


def test_collect_matches_run_with_cache_and_skips_pauses(tiny_model):
    """Streamed rows equal a TransformerLens cache; offsets count text tokens, not pauses."""
    toks = _successor_tokens(n_seq=4, length=12)
    seqs = [ProbeSequence(f"d{i}", interp.insert_pauses(interp.make_sequence(t), interp.PausePolicy(every=3),
                                                        pause_id=60)) for i, t in enumerate(toks)]
    spec = ProbeSpec.from_dict(dict(inputs=dict(roles=["regular", "pause"]), target=dict(offsets=[1, 2]),
                                    data=dict(batch_size=3)))
    data = collect(spec, tiny_model, seqs, ["resid_post", "k"], [0, 1])
    _, cache = tiny_model.run_with_cache(torch.stack([s.seq.tokens for s in seqs]))
    n_kv = tiny_model.cfg.n_key_value_heads
    for i in range(data.n):
        w, p = int(data.window[i]), int(data.position[i])
        for u, (layer, _head) in enumerate(data.units["resid_post"]):
            torch.testing.assert_close(data.features["resid_post"][u, i], cache[hooks.resid(layer, "post")][w, p])
        for u, (layer, head) in enumerate(data.units["k"]):
            torch.testing.assert_close(data.features["k"][u, i], cache[hooks.k(layer)][w, p, head])
        # targets: the 1st and 2nd text token after the position's text anchor
        seq = seqs[w].seq
        orig = seq.original_position
        anchor = int(orig[: p + 1][orig[: p + 1] >= 0].max())
        text = seq.remove_pauses().tokens
        assert data.targets[i].tolist() == [int(text[anchor + 1]), int(text[anchor + 2])]
    assert set(data.roles) == {"regular", "pause"} and len(data.units["k"]) == 2 * n_kv


def test_role_selection_matching_nothing(tiny_model):
    seqs = [ProbeSequence("d", interp.make_sequence(t)) for t in _successor_tokens(n_seq=2, length=8)]
    spec = ProbeSpec.from_dict(dict(inputs=dict(roles=["pause"]), target=dict(offsets=[1])))
    with pytest.raises(interp.InterpError, match="inputs.roles.*matches no position"):
        collect(spec, tiny_model, seqs, ["resid_post"], [0])


# --- fitting ------------------------------------------------------------------------------------


def _gaussian_classes(n=600, d=8, c=4, units=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    means = torch.randn(units, c, d, generator=g) * torch.tensor([0.3, 1.0, 3.0])[:units, None, None]
    X = means[:, y] + torch.randn(units, n, d, generator=g)
    return X, y


def test_batched_softmax_equals_fitting_each_unit_alone():
    X, y = _gaussian_classes()
    Y = torch.stack([y, (y + 1) % 4], 1)  # two tasks
    train, val = torch.arange(0, 400), torch.arange(400, 500)
    cfg = TrainSpec(max_epochs=6, patience=2, batch_size=64, lr=0.05)
    together = fit_softmax(X, Y, 4, train, val, cfg, torch.device("cpu"))
    for u in range(X.shape[0]):
        alone = fit_softmax(X[u:u + 1], Y, 4, train, val, cfg, torch.device("cpu"))
        torch.testing.assert_close(together.best_W[u:u + 1], alone.best_W)
        torch.testing.assert_close(together.best_val[u:u + 1], alone.best_val)


def test_softmax_matches_sklearn_and_folds_standardisation():
    from sklearn.linear_model import LogisticRegression

    X, y = _gaussian_classes(n=900, units=2)
    train, val, test = torch.arange(0, 600), torch.arange(600, 750), torch.arange(750, 900)
    cfg = TrainSpec(max_epochs=40, patience=4, batch_size=128, lr=0.03, weight_decay=1e-4)
    st = fit_softmax(X, y[:, None], 4, train, val, cfg, torch.device("cpu"))
    W, b = st.raw()
    out = softmax_outputs(X, y[:, None], W, b, torch.device("cpu"))
    # raw-space weights give the standardised-space logits
    xs = (X[:, :5] - st.mu[:, None]) / st.sd[:, None]
    torch.testing.assert_close(torch.einsum("und,udc->unc", X[:, :5], W[:, :, 0]) + b[:, None, 0],
                               torch.einsum("und,udc->unc", xs, st.best_W[:, :, 0]) + st.best_b[:, None, 0],
                               atol=1e-4, rtol=1e-4)
    for u in range(2):
        ours = out["correct"][u, 0, test].float().mean().item()
        ref = LogisticRegression(C=1 / (2 * 1e-4 * len(train)), max_iter=2000).fit(
            X[u, train].numpy(), y[train].numpy()).score(X[u, test].numpy(), y[test].numpy())
        assert ours >= ref - 0.02


def test_softmax_outputs_equal_numpy():
    """correct, top5, nll and pred of raw-space probes, recomputed with numpy on 8 classes
    (so that top-5 can miss)."""
    g = torch.Generator().manual_seed(0)
    X, W = torch.randn(2, 300, 6, generator=g), torch.randn(2, 6, 2, 8, generator=g)
    b, y = torch.randn(2, 2, 8, generator=g), torch.randint(0, 8, (300, 2), generator=g)
    out = softmax_outputs(X, y, W, b, torch.device("cpu"))
    logits = np.einsum("und,udtc->utnc", X.double().numpy(), W.double().numpy()) + b.double().numpy()[:, :, None]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    yt = y.T.numpy()[None, :, :, None]  # [1, task, n, 1]
    rank = (logits > np.take_along_axis(logits, yt, -1)).sum(-1)  # classes scored above y
    np.testing.assert_array_equal(out["pred"].numpy(), logits.argmax(-1))
    np.testing.assert_array_equal(out["correct"].numpy(), rank == 0)
    np.testing.assert_array_equal(out["top5"].numpy(), rank < 5)
    assert 0 < out["top5"].float().mean() < 1 and out["correct"].float().mean() < out["top5"].float().mean()
    # float32 logits of size ~10 carry an absolute error ~10 × 6e-8
    np.testing.assert_allclose(out["nll"].numpy(), -np.take_along_axis(logp, yt, -1)[..., 0],
                               rtol=1e-5, atol=1e-6)


def test_softmax_resume_equals_uninterrupted():
    X, y = _gaussian_classes()
    train, val = torch.arange(0, 400), torch.arange(400, 500)
    cfg = TrainSpec(max_epochs=5, patience=5, batch_size=64, lr=0.05)
    full = fit_softmax(X, y[:, None], 4, train, val, cfg, torch.device("cpu"))
    saved = {}

    class Stop(Exception):
        pass

    def interrupt(state):
        saved.update(state.tensors())
        if int(state.epoch) == 2:
            raise Stop

    with pytest.raises(Stop):
        fit_softmax(X, y[:, None], 4, train, val, cfg, torch.device("cpu"), on_epoch=interrupt)
    from interp.probes._fit import SoftmaxState

    resumed = fit_softmax(X, y[:, None], 4, train, val, cfg, torch.device("cpu"),
                          state=SoftmaxState.from_tensors(saved, torch.device("cpu")))
    torch.testing.assert_close(resumed.best_W, full.best_W)
    assert int(resumed.epoch) == 5


def test_ridge_matches_direct_solve_and_sklearn_r2():
    from sklearn.metrics import r2_score

    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 300, 6, generator=g, dtype=torch.float64).float()
    Y = (X[0] @ torch.randn(6, 3, generator=g)).reshape(1, 300, 1, 3) + 0.1 * torch.randn(1, 300, 1, 3, generator=g)
    train, val = torch.arange(0, 200), torch.arange(200, 300)
    fit = fit_ridge(X, Y, train, val, [0.05], torch.device("cpu"))
    for u in range(2):
        x = X[u, train].double().numpy()
        mu, sd = x.mean(0), x.std(0)
        xs = (x - mu) / sd
        yt = Y[0, train, 0].double().numpy()
        w = np.linalg.solve(xs.T @ xs + 0.05 * len(train) * np.eye(6), xs.T @ (yt - yt.mean(0)))
        pred = ((X[u, val].double().numpy() - mu) / sd) @ w + yt.mean(0)
        ours = X[u, val].double().numpy() @ fit.W[u, :, 0].double().numpy() + fit.b[u, 0].double().numpy()
        np.testing.assert_allclose(ours, pred, rtol=1e-4, atol=1e-4)
    from interp.probes._fit import _r2

    pred0 = (X[0, val] @ fit.W[0, :, 0] + fit.b[0, 0])
    r2 = _r2(pred0[None, :, None], Y[:1, val]).item()
    assert r2 == pytest.approx(r2_score(Y[0, val, 0].numpy(), pred0.numpy(), multioutput="variance_weighted"),
                               abs=1e-5)
    assert r2 > 0.9


# --- baselines ---------------------------------------------------------------------------


def test_bigram_and_unigram_baselines_against_counting():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 6, (300,), generator=g)
    y = torch.stack([(x + torch.randint(0, 2, (300,), generator=g)) % 5, torch.randint(0, 5, (300,), generator=g)], 1)
    train = torch.arange(300) < 200
    base = classification_baselines(x, y, 5, train)
    for t in range(2):
        pairs = collections.Counter(zip(x[train].tolist(), y[train, t].tolist(), strict=True))
        uni = collections.Counter(y[train, t].tolist())
        majority = max(range(5), key=lambda c: (uni[c], -c))
        for i in range(200, 300):
            row = {c: pairs[(int(x[i]), c)] for c in range(5)}
            pred = max(range(5), key=lambda c: (row[c], uni[c], -c))
            assert base["bigram"][t, i] == float(pred == int(y[i, t]))
            assert base["majority"][t, i] == float(majority == int(y[i, t]))
            assert base["unigram"][t, i] == pytest.approx(uni[int(y[i, t])] / 200)


def test_control_labels_follow_another_types_real_labels():
    """Each type's control labels are real training labels of one other type (σ(x)), so the
    control keeps the real task's per-type uncertainty instead of being a function of x."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (3000,), generator=g)
    x[-5:] = 9  # a type never seen in training
    # type t's label is t (tasks 0 and 1) or, a third of the time, "other" = class 6
    y = torch.where(torch.rand(3000, 2, generator=g) < 1 / 3, 6, x[:, None].clamp(max=5))
    train = torch.arange(3000) < 2000
    lab = control_labels(x, y, 7, train, seed=0)
    assert torch.equal(lab, control_labels(x, y, 7, train, seed=0))
    sources = []
    for tok in x.unique().tolist():
        got = set(lab[x == tok].tolist())
        src = [s for s in range(6) if got <= set(y[train & (x == s)].reshape(-1).tolist())]
        assert src, f"type {tok}: labels {got} are not one training type's labels"
        sources.append(src[0])
        if tok != 9:  # not a deterministic function of the type: "other" keeps its share
            assert len(got) == 2 and 0.2 < float((lab[x == tok] == 6).float().mean()) < 0.5
    assert len(set(sources[:6])) == 6  # σ permutes the training types
    # the same marginal as the real labels
    assert abs(float((lab == 6).float().mean()) - float((y == 6).float().mean())) < 0.05


# --- end to end on a recording --------------------------------------------------------------


def test_train_from_recording_beats_majority_per_role_and_kv_head(tiny_recording, tmp_path):
    path, toks = tiny_recording
    spec = _rec_spec(path, inputs=dict(sites=["resid_post", "k"], roles=["filler", "regular"]))
    res = train_probes(spec, tmp_path / "out")
    m = res.to_pandas()
    assert {"filler", "regular", "all"} <= set(m.role)
    test = m[(m.split == "test") & (m.role == "regular") & (m.site == "resid_post")]
    assert (test.accuracy > test.baseline_majority + 0.5).all()
    assert (test.baseline_bigram > 0.99).all()  # the successor rule is a bigram rule
    assert set(m[m.site == "k"]["head"]) == {0, 1}
    # the control task (Hewitt & Liang 2019) relabels each token type at random: a probe that
    # reads the successor rule from the activations beats it by far
    assert (test.accuracy - test.control_accuracy > 0.3).all()
    for f in ("metrics.csv", "probes.json", "spec.toml", "probe_accuracy.html", "probes/resid_post.safetensors"):
        assert (tmp_path / "out" / f).is_file()
    loaded = interp.probes.load_probes(tmp_path / "out")
    pd.testing.assert_frame_equal(loaded.to_pandas(), m, check_dtype=False)
    W, b = loaded.probe(0, 1)
    assert W.shape[0] == TINY["d_model"] and b.shape == W.shape[1:]
    # the saved probes, applied by hand to the raw recorded activations, give the accuracy
    # that evaluate_probes reports (pooled over its splits, role "all")
    again = interp.probes.evaluate_probes(tmp_path / "out").to_pandas()
    _check_probes_by_hand(tmp_path / "out", path, toks, again)


def _check_probes_by_hand(out, rec_path, toks, metrics):
    """Accuracy of every saved resid_post probe recomputed from the recording's rows: the
    target at offset k of a row is the text token k after its anchor (its own original
    position, or the last text position before an inserted filler), read from the token ids
    the recording was made from; classes outside the saved list are the last ("other")."""
    loaded = interp.probes.load_probes(out)
    classes, offsets = loaded.description["classes"], loaded.spec.target.offsets
    rec = interp.load_recording(rec_path)
    idx = rec.index.reset_index(drop=True)
    feats = rec["resid_post"].double()  # [row, layer, d]
    rows, anchors = [], []
    for seq, part in idx.groupby("sequence"):
        anchor = None
        for r, row in part.sort_values("position").iterrows():
            if row.original_position >= 0:
                anchor = int(row.original_position)
                assert int(row.token) == int(toks[seq, anchor])  # the recorded token is the text's
            if row.role in ("filler", "regular") and anchor is not None \
                    and anchor + max(offsets) < toks.shape[1]:
                rows.append(r)
                anchors.append((seq, anchor))
    checked = 0
    for layer in rec.layers:
        for k in offsets:
            W, b = loaded.probe(layer, k, site="resid_post")
            pred = (feats[rows, rec.layers.index(layer)] @ W.double() + b.double()).argmax(-1)
            want = [int(toks[seq, a + k]) for seq, a in anchors]
            want = torch.tensor([classes.index(t) if t in classes else len(classes) - 1 for t in want])
            m = metrics[(metrics.site == "resid_post") & (metrics.layer == layer)
                        & (metrics.offset == k) & (metrics.role == "all")]
            assert m.n.sum() == len(rows)
            # accuracies are float32 means: compare the counts of correct examples, exactly
            assert int((m.accuracy * m.n).round().sum()) == int((pred == want).sum())
            checked += 1
    assert checked == len(rec.layers) * len(offsets)


def test_resume_skips_finished_sites(tiny_recording, tmp_path, monkeypatch):
    path, _ = tiny_recording
    spec = _rec_spec(path)
    first = train_probes(spec, tmp_path / "out")
    import interp.probes._recorded as recorded

    def boom(*a, **k):
        raise AssertionError("a finished run collected data again")

    monkeypatch.setattr(recorded, "collect_recorded", boom)
    again = train_probes(spec, tmp_path / "out")
    pd.testing.assert_frame_equal(again.to_pandas(), first.to_pandas(), check_dtype=False)
    with pytest.raises(interp.InterpError, match="different spec"):
        train_probes(spec.with_overrides(["train.seed=5"]), tmp_path / "out")


def test_hidden_state_regression(tiny_recording):
    path, _ = tiny_recording
    res = train_probes(_rec_spec(path, target=dict(kind="hidden", offsets=[1], hidden_layer=0)))
    m = res.to_pandas()
    assert m.r2.notna().all() and m.accuracy.isna().all()
    # layer 0 at i holds token i, which determines token i+1 and so part of its layer-0 state
    test = m[(m.split == "test") & (m.role == "all")]
    assert test.r2.max() > 0.2
    assert (test.baseline_majority.abs() < 0.05).all()  # the training mean explains nothing


def _label_table(path, tmp_path, label=lambda t: t % 3, name="labels.csv"):
    """Labels at every third regular position of the recording, by (sequence, position)."""
    idx = interp.load_recording(path).to_pandas()
    idx = idx[(idx.role == "regular") & (idx.position % 3 == 2)]
    csv = tmp_path / name
    pd.DataFrame(dict(sequence=idx.sequence, position=idx.position, token=idx.token,
                      label=[label(int(t)) for t in idx.token])).to_csv(csv, index=False)
    return csv


def test_label_table_and_its_errors(tiny_recording, tmp_path):
    path, _ = tiny_recording
    csv = _label_table(path, tmp_path)
    spec = _rec_spec(path, target=dict(kind="label", table=str(csv), column="label"),
                     train=dict(min_per_class=3))
    m = train_probes(spec).to_pandas()
    assert set(m.offset) == {0} and (m.target == "label").all()
    test = m[(m.split == "test") & (m.role == "all") & (m.layer == 0)]
    assert (test.accuracy > test.baseline_majority).all()
    # a table of an earlier release names the sequence `window`
    old = pd.read_csv(csv).rename(columns={"sequence": "window"})
    old.to_csv(tmp_path / "old.csv", index=False)
    pd.testing.assert_frame_equal(
        train_probes(spec.with_overrides([f'target.table="{tmp_path / "old.csv"}"'])).to_pandas(), m)
    # misaligned: a token column that disagrees with the data
    bad = pd.read_csv(csv)
    bad.loc[3, "token"] += 1
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(interp.InterpError, match="does not align"):
        train_probes(spec.with_overrides([f'target.table="{tmp_path / "bad.csv"}"']))
    # a position that was never recorded
    bad = pd.read_csv(csv)
    bad.loc[0, "position"] = 500
    bad.to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(interp.InterpError, match="does not align"):
        train_probes(spec.with_overrides([f'target.table="{tmp_path / "bad2.csv"}"']))
    # too few examples per class
    rare = _label_table(path, tmp_path, label=lambda t: "rare" if t == 5 else "common", name="rare.csv")
    with pytest.raises(interp.InterpError, match="too few examples per class"):
        train_probes(spec.with_overrides([f'target.table="{rare}"', "train.min_per_class=50"]))


def test_layer_not_recorded(tiny_recording):
    path, _ = tiny_recording
    with pytest.raises(interp.InterpError, match="inputs.layers"):
        train_probes(_rec_spec(path, inputs=dict(layers=[7])))


def test_deterministic_and_figure(tiny_recording):
    path, _ = tiny_recording
    res = train_probes(_rec_spec(path))
    pd.testing.assert_frame_equal(train_probes(_rec_spec(path)).to_pandas(), res.to_pandas())
    torch.testing.assert_close(train_probes(_rec_spec(path)).probes["resid_post"]["W"], res.probes["resid_post"]["W"],
                               rtol=0, atol=0)
    from interp.figures import probe_accuracy

    fig = probe_accuracy(res)
    names = [t.name for t in fig.data]
    assert "probe, offset 1" in names and "bigram, offset 2" in names and "control task" in names
    assert fig.layout.xaxis.title.text == "layer"


# --- synthetic tasks: the answer read at pause positions ---------------------------------------


def test_answer_at_pause_positions_of_a_toy_model(tmp_path):
    from interp.training.toy import TrainConfig, train_toy

    cfg = TrainConfig(task="parity", task_options=dict(n_bits=4), pauses=2, steps=2, eval_every=2,
                      eval_size=8, batch_size=8, n_layers=1, d_model=16, n_heads=2, device="cpu")
    train_toy(cfg, tmp_path / "toy", verbose=False)
    spec = ProbeSpec.from_dict(dict(
        name="pa", model=dict(toy=str(tmp_path / "toy")), data=dict(n_examples=120),
        inputs=dict(roles=["pause", "prompt"]), target=dict(kind="answer"),
        train=dict(max_epochs=3, min_per_class=5),
    ))
    res = train_probes(spec)
    m = res.to_pandas()
    assert {"pause", "prompt", "all"} <= set(m.role) and (m.target == "answer").all() and set(m.offset) == {0}
    assert res.description["classes"] == ["0", "1"]
    pause = m[(m.role == "pause") & (m.split == "test")]
    # two pauses per example, one example per split group
    assert (pause.n % 2 == 0).all()
    with pytest.raises(interp.InterpError, match="target.kind.*synthetic task"):
        ProbeSpec.from_dict(dict(target=dict(kind="answer")))
