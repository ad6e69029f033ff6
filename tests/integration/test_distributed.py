"""Data parallelism on torch.distributed: two CPU processes (gloo) give what one process gives.

Each test starts two processes with ``torch.multiprocessing.spawn`` and the environment
``torchrun`` would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); the
library creates the process group itself, as it does under ``torchrun``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import interp
from interp.errors import InterpError
from interp.recording import load_recording

TINY = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_vocab=61, n_ctx=64, seed=0)
N_SEQ, N_POS = 7, 16  # an odd count: the ranks get 4 and 3 sequences


def _tokens() -> torch.Tensor:
    return torch.randint(0, 61, (N_SEQ, N_POS), generator=torch.Generator().manual_seed(1))


def _model():
    return interp.load_model(interp.TinyConfig(**TINY), device="cpu")


def _record(out, inputs=None, **kw):
    settings = dict(sites=("resid_post", "k", "v"), roles=None, batch_size=2,
                    shard_bytes=4000, out=out, verbose=False)
    settings.update(kw)
    return interp.record(_model(), _tokens() if inputs is None else inputs, **settings)


def _lens_stats(model):
    """Future-Lens sufficient statistics (XᵀX, XᵀY per layer) of every sequence."""
    from interp.probes import accumulate_stats
    from interp.probes._data import ProbeSequence

    seqs = [ProbeSequence(str(i), interp.make_sequence(r)) for i, r in enumerate(_tokens())]
    positions = [np.arange(1, N_POS - 3) for _ in seqs]
    return accumulate_stats(model, seqs, [0, 1], [1, 2], positions, batch_size=2)


def _future_lens(model):
    """The whole Future Lens (maps, held-out metrics, a learned prompt) on every sequence."""
    from interp.probes import FutureLensSpec, future_lens

    return future_lens(model, _tokens(), layers=[0, 1], offsets=[1, 2], batch_size=2,
                       config=FutureLensSpec(eval_positions=40, prompt_layers=[0], prompt_length=2,
                                             prompt_steps=3, prompt_batch=4))


def _gradients(model):
    fg = interp.future_gradients(model, _tokens(), sites=("k", "v", "resid_post"),
                                 batch_size=2, verbose=False)
    bd = interp.by_distance(model, _tokens(), 6, sites=("k", "resid_post"), verbose=False)
    return fg, bd


def _die_after(n: int):
    """The sequences of :func:`_tokens`; rank 1 ends (as a crash would) on reaching item n."""
    for i, row in enumerate(_tokens()):
        if os.environ["RANK"] == "1" and i >= n:
            os._exit(3)
        yield interp.make_sequence(row)


def _worker(rank: int, world: int, port: int, jobs: tuple[str, ...], out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), INTERP_DIST_TIMEOUT="120")
    torch.set_num_threads(1)
    for job in jobs:
        if job == "die":
            _record(out + "/died", _die_after(5), batch_size=1, shard_bytes=1)
        elif job == "resume":
            _record(out + "/died", (interp.make_sequence(r) for r in _tokens()), batch_size=1,
                    shard_bytes=1, resume=True)
        elif job == "record":
            _record(out + "/rec")
        elif job == "gradients":
            fg, bd = _gradients(_model())
            stats = _lens_stats(_model())
            lens = _future_lens(_model())
            if rank == 0:
                lens.save(out + "/lens")
                fg.to_csv(out + "/fg.csv")
                bd.to_csv(out + "/bd.csv")
                save_file(stats.tensors(), out + "/lens.safetensors")
        elif job == "mismatch":
            try:
                _record(out + "/mismatch", layers=[0] if rank == 1 else None)
            except InterpError as e:
                (Path(out) / f"mismatch-{rank}.txt").write_text(str(e))


def _spawn(jobs: tuple[str, ...], out, world: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(world, port, jobs, str(out)), nprocs=world, join=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two launches of two processes: one where rank 1 dies mid-recording (its state is
    copied aside for inspection), then one that resumes it, records, computes gradients and
    tries mismatched configurations."""
    out = tmp_path_factory.mktemp("distributed")
    with pytest.raises(Exception, match="exit code 3") as died:
        _spawn(("die",), out)
    shutil.copytree(out / "died", out / "died-state")
    _spawn(("resume", "record", "gradients", "mismatch"), out)
    return out, died.value


def _by_row(rec) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    order = rec.index.sort_values(["sequence", "position"]).index.to_list()
    index = rec.index.iloc[order].reset_index(drop=True)
    return index, {s: rec[s][torch.tensor(order)] for s in rec.sites}


def test_two_processes_record_what_one_records(runs, tmp_path):
    out, _ = runs
    two = load_recording(out / "rec")  # verifies every shard's checksum
    one = _record(tmp_path / "one")
    assert sorted(p.name for p in (out / "rec").iterdir()) == [
        "rank-00000-of-00002", "rank-00001-of-00002", "recording.json"]
    assert len(two) == len(one) == N_SEQ * N_POS
    i2, t2 = _by_row(two)
    i1, t1 = _by_row(one)
    pd.testing.assert_frame_equal(i2, i1)
    assert sorted(set(two.index.sequence)) == list(range(N_SEQ))  # global numbers
    for site in one.sites:
        torch.testing.assert_close(t2[site], t1[site], rtol=1e-6, atol=1e-6)
    assert two.meta["config"]["world_size"] == 2 and two.meta["complete"]


def test_two_processes_compute_the_gradients_of_one(runs, tmp_path):
    out, _ = runs
    fg, bd = _gradients(_model())
    fg1 = interp.FutureGradients.from_csv(fg.to_csv(tmp_path / "fg.csv"))
    bd1 = interp.gradients.ByDistance.from_csv(bd.to_csv(tmp_path / "bd.csv"))
    fg2 = interp.FutureGradients.from_csv(out / "fg.csv")
    bd2 = interp.gradients.ByDistance.from_csv(out / "bd.csv")
    assert len(fg2.table) == len(fg1.table) > 0
    pd.testing.assert_frame_equal(fg2.table, fg1.table, rtol=1e-6, atol=1e-9)
    # float32 model, and the workers run 1 torch thread: GEMM sums in another order (~1e-8)
    pd.testing.assert_frame_equal(bd2.table, bd1.table, rtol=1e-6, atol=1e-9)
    # the Future-Lens sums, all-reduced over the two processes
    one = _lens_stats(_model()).tensors()
    two = load_file(out / "lens.safetensors")
    assert float(two["n"]) == N_SEQ * (N_POS - 4)
    for name, t in one.items():
        torch.testing.assert_close(two[name], t, rtol=1e-10, atol=1e-9)
    # and the whole Future Lens: sums all-reduced, held-out and prompt states gathered
    lens1, lens2 = _future_lens(_model()), interp.probes.load_future_lens(out / "lens")
    assert set(lens1.table.method) == {"linear", "prompt"} and lens1.table.n.min() > 0
    pd.testing.assert_frame_equal(lens2.table, lens1.table, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lens2.tensors["W"], lens1.tensors["W"], rtol=1e-4, atol=1e-5)


def test_a_rank_that_dies_leaves_a_resumable_recording(runs, tmp_path):
    out, died = runs
    state = out / "died-state"
    top = json.loads((state / "recording.json").read_text())
    assert top["complete"] is False and top["shards"] == []
    with pytest.raises(InterpError, match="unfinished"):
        load_recording(state)
    # rank 1 had finished two shards (its items 1 and 3); the resume verified and kept them
    part = json.loads((state / "rank-00001-of-00002" / "recording.json").read_text())
    assert part["complete"] is False and len(part["shards"]) == 2
    resumed = json.loads((out / "died" / "rank-00001-of-00002" / "recording.json").read_text())
    assert resumed["shards"][:2] == part["shards"]
    two = load_recording(out / "died")
    one = _record(tmp_path / "one", (interp.make_sequence(r) for r in _tokens()),
                  batch_size=1, shard_bytes=1)
    i2, t2 = _by_row(two)
    i1, t1 = _by_row(one)
    pd.testing.assert_frame_equal(i2, i1)
    for site in one.sites:
        torch.testing.assert_close(t2[site], t1[site], rtol=1e-6, atol=1e-6)


def test_ranks_with_different_configurations_are_refused(runs):
    out, _ = runs
    for rank in (0, 1):
        msg = (out / f"mismatch-{rank}.txt").read_text()
        assert "record configuration differs across ranks" in msg and "layers" in msg
    assert not (out / "mismatch" / "recording.json").exists()
