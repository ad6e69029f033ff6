"""The Future Lens causal test on the bundled SmolLM2-135M, small: the KV-cached path is
taken, the last layer's known answers hold, and one recorded transplant is recomputed with a
plain forward hook on the whole window."""

from __future__ import annotations

import pytest
import torch

from interp.controls import future_lens_causal
from interp.core import hooks

pytestmark = pytest.mark.slow


def test_causal_test_on_smollm_against_a_plain_patch(smollm):
    res = future_lens_causal(smollm, layers=[20, 29], n_rows=6, batch_size=6, n_random=1,
                             lens_windows=16, lens_tokens=48, lens_positions=50)
    assert res.settings["kv_cache"] is True  # the cached step agreed with the full forward
    s = res.summary.set_index(["layer", "offset"])
    assert s.loc[(29, 1), "follow_source"] == 1.0  # after the last block: the source's logits
    last2 = res.rows[(res.rows.layer == 29) & (res.rows.offset == 2)]
    assert (last2[["dlogp_source", "dlogp_null", "steer_lens", "steer_random"]] == 0).all().all()
    t = res.settings["position"]
    c = res.contexts.iloc[0]
    src, tgt = (torch.tensor([[int(x) for x in c[f"{n}_tokens"].split()]]) for n in ("source", "target"))
    name = hooks.resid(20, "post")
    with torch.no_grad():
        _, cache = smollm.run_with_cache(src, names_filter=[name])

        def put(x, hook):
            x = x.clone()
            x[:, t] = cache[name][:, t]
            return x

        patched = smollm.run_with_hooks(tgt, fwd_hooks=[(name, put)])[0, t + 1].double()
        clean = smollm(tgt)[0, t + 1].double()
        top = int(smollm(src)[0, t + 1].argmax())
    want = float(torch.log_softmax(patched, -1)[top] - torch.log_softmax(clean, -1)[top])
    row = res.rows[(res.rows.row == 0) & (res.rows.layer == 20) & (res.rows.offset == 2)]
    # float32 logits through two paths (cached step vs whole window): measured differences ~1e-5
    assert row.dlogp_source.item() == pytest.approx(want, abs=2e-3)
