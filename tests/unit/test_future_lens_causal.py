"""The Future Lens causal test: its interventions against a plain forward-hook patch (the
full forward and the KV-cached step), the cases with known answers (a state transplanted
from its own context, steering by zero, the last layer), and the named errors."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.cli import main
from interp.controls import (
    FutureLensCausal,
    TargetRun,
    future_lens_causal,
    lens_directions,
    load_future_lens_causal,
)
from interp.core import hooks
from interp.core.corpora import Window
from interp.errors import InterpError
from interp.probes._future_lens import decoder
from tests.conftest import tiny

T, K = 9, 2  # intervened position, largest offset


def _windows(n: int, length: int = 14, per_doc: int = 4, vocab: int = 61) -> list[Window]:
    g = torch.Generator().manual_seed(1)
    return [Window(f"doc{i // per_doc}", i % per_doc, 0,
                   interp.make_sequence(torch.randint(3, vocab, (length,), generator=g)))
            for i in range(n)]


def _plain_patch(model, tokens, layer, state, t):
    """The independent reference: the whole window, one forward hook, no cache, no narrowing."""
    def put(x, hook):
        x = x.clone()
        x[:, t] = state
        return x

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hooks.resid(layer, "post"), put)])


def _states(model, tokens, layer, t):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hooks.resid(layer, "post")])
    return cache[hooks.resid(layer, "post")][:, t]


@pytest.fixture(scope="module")
def tiny64():
    return tiny("gqa", dtype=torch.float64)


@pytest.fixture(scope="module")
def llama64(tiny_llama_dir):
    return interp.load_model(str(tiny_llama_dir), device="cpu", dtype=torch.float64)


@pytest.mark.parametrize("which", ["native", "hf"])
def test_transplant_equals_a_plain_hook_patch(which, tiny64, llama64):
    model = tiny64 if which == "native" else llama64
    g = torch.Generator().manual_seed(0)
    tgt, src = (torch.randint(3, 61, (4, T + K), generator=g) for _ in range(2))
    run = TargetRun(model, tgt, T, [0, 1])
    assert (run.cache is not None) == (which == "hf")  # the HF model takes the cached path
    for layer in (0, 1):
        state = _states(model, src, layer, T)
        ours = run.replaced(layer, state)
        ref = _plain_patch(model, tgt, layer, state, T)[:, T:T + K]
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
        # the state transplanted from its own context changes nothing (same path: exactly)
        assert torch.equal(run.replaced(layer, run.states[layer]), run.logits)
    # steering by zero changes nothing
    assert torch.equal(run.moved(1, torch.zeros_like(run.states[1])), run.logits)


def test_last_layer_transplant_moves_t_exactly_and_t_plus_one_not_at_all(tiny64):
    g = torch.Generator().manual_seed(2)
    tgt, src = (torch.randint(3, 61, (5, T + K), generator=g) for _ in range(2))
    run = TargetRun(tiny64, tgt, T, [1])
    src_run = TargetRun(tiny64, src, T, [1])
    out = run.replaced(1, src_run.states[1])
    # after the last block the logits at t are the decoded state: the source's own
    torch.testing.assert_close(out[:, 0], decoder(tiny64)(src_run.states[1]), rtol=0, atol=1e-12)
    torch.testing.assert_close(out[:, 0], src_run.logits[:, 0], rtol=0, atol=1e-12)
    assert torch.equal(out[:, 1], run.logits[:, 1])  # no later block reads position t


def test_lens_direction_is_the_steepest_ascent_of_the_lens_log_prob(tiny64):
    d = 32
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(d, d, generator=gen, dtype=torch.float64) / d ** 0.5
    b = torch.randn(d, generator=gen, dtype=torch.float64)
    h = torch.randn(6, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 61, (6,), generator=gen)
    dec = decoder(tiny64)

    def lens_lp(x):
        return torch.log_softmax(dec(x @ W + b), -1).gather(1, y[:, None])[:, 0]

    u = lens_directions(tiny64, W, b, h, y)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(6, dtype=torch.float64))
    step = 1e-6  # central differences: the slope along u is the gradient's norm, the largest
    slope = (lens_lp(h + step * u) - lens_lp(h - step * u)) / (2 * step)
    for _ in range(5):
        r = torch.randn(6, d, generator=gen, dtype=torch.float64)
        r = r / r.norm(dim=-1, keepdim=True)
        assert ((lens_lp(h + step * r) - lens_lp(h - step * r)) / (2 * step) <= slope + 1e-6).all()
    assert (slope > 0).all()


def test_end_to_end_known_answers_save_and_load(tiny64, tmp_path):
    res = future_lens_causal(tiny64, _windows(80), position=T, n_rows=12, batch_size=12,
                             n_random=2, lens_positions=100)
    s = res.summary.set_index(["layer", "offset"])
    assert list(s.index) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert s.loc[(1, 1), "follow_source"] == 1.0  # last layer, offset 1: the source's, exactly
    last2 = res.rows[(res.rows.layer == 1) & (res.rows.offset == 2)]
    assert not last2[last2.movable].follow_source.any()  # nothing follows at t + 1
    for col in ("dlogp_source", "dlogp_null", "steer_lens", "steer_random"):
        assert (last2[col] == 0).all(), col
    assert s.loc[(1, 1), "steer_lens"] > 0  # the lens direction raises log p(y) at t
    assert res.settings["kv_cache"] is False and len(res.contexts) == 12
    # an independent check of one recorded number: row 0's transplant at layer 0, offset 2
    c = res.contexts.iloc[0]
    src, tgt = (torch.tensor([[int(x) for x in c[f"{n}_tokens"].split()]]) for n in ("source", "target"))
    with torch.no_grad():
        ref = _plain_patch(tiny64, tgt, 0, _states(tiny64, src, 0, T), T)[0, T + 1]
        clean = tiny64(tgt)[0, T + 1]
        top = int(tiny64(src)[0, T + 1].argmax())
    want = float(torch.log_softmax(ref, -1)[top] - torch.log_softmax(clean, -1)[top])
    got = res.rows[(res.rows.row == 0) & (res.rows.layer == 0) & (res.rows.offset == 2)].dlogp_source
    assert got.item() == pytest.approx(want, abs=1e-10)
    zero = future_lens_causal(tiny64, _windows(40), position=T, layers=[0], n_rows=4, epsilon=0.0,
                              n_random=1, lens_positions=30)
    assert (zero.rows[["steer_lens", "steer_random"]] == 0).all().all()
    res.save(tmp_path)
    back = load_future_lens_causal(tmp_path)
    assert isinstance(back, FutureLensCausal)
    assert back.summary.round(12).equals(res.summary.round(12))
    assert back.figures()[0].draw(back).data


@pytest.mark.parametrize("kwargs, match", [
    (dict(layers=[5]), "choose layers in 0..1"),
    (dict(position=62), "give a position in 1..61"),
    (dict(position=0), "give a position in"),
    (dict(offsets=[0, 2]), "must be 1 or more"),
    (dict(epsilon=-0.1), "steering size of 0 or more"),
    (dict(n_random=0), "n_random >= 1"),
    (dict(n_rows=0), "n_rows >= 1"),
    (dict(test_fraction=1.0), "between 0 and 1"),
])
def test_bad_input_is_refused_by_name(tiny64, kwargs, match):
    with pytest.raises(InterpError, match=match):
        future_lens_causal(tiny64, _windows(40), **kwargs)


def test_a_lens_without_the_offsets_asked_for_is_refused(tiny64):
    import pandas as pd

    from interp.probes import LENS_COLUMNS, FutureLensResults

    lens = FutureLensResults(table=pd.DataFrame(columns=LENS_COLUMNS), meta=dict(layers=[0, 1], offsets=[1]),
                             tensors=dict(W=torch.zeros(2, 1, 32, 32), b=torch.zeros(2, 1, 32)))
    with pytest.raises(InterpError, match="not fitted at layers"):
        future_lens_causal(tiny64, _windows(40), position=T, lens=lens)


def test_cli_on_a_local_model(tiny_llama_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    g = torch.Generator().manual_seed(4)
    for d in range(12):
        words = torch.randint(3, 61, (60,), generator=g).tolist()
        (corpus / f"d{d}.txt").write_text(" ".join(f"w{i:02d}" for i in words))
    out = tmp_path / "out"
    assert main(["controls", "futurelens", "--out", str(out), "--model", str(tiny_llama_dir),
                 "--corpus", str(corpus), "--position", "9", "--rows", "8", "--random", "1",
                 "--lens-windows", "40", "--lens-tokens", "24", "--quiet", "--formats", "html"]) == 0
    assert "read vs used" in capsys.readouterr().out
    res = load_future_lens_causal(out / "futurelens")
    assert res.settings["kv_cache"] is True and res.settings["layers"] == [0, 1]
    assert (out / "futurelens" / "future_lens_causal.html").is_file()


@pytest.mark.parametrize("flag", ["--rows", "--random", "--batch-size", "--lens-windows", "--lens-tokens"])
def test_cli_refuses_a_zero_count_before_the_model_loads(flag, tmp_path, capsys):
    # a model path that does not exist: the count must be refused first
    assert main(["controls", "futurelens", "--out", str(tmp_path / "o"), "--model",
                 str(tmp_path / "no-model"), flag, "0"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} 0 must be 1 or more" in err and "no-model" not in err
