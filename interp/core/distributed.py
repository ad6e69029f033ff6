"""Data parallelism on ``torch.distributed``: the one place that knows about process groups.

Run any interp command under ``torchrun --nproc-per-node N`` (or set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` yourself) and the work is
split over N processes:

* inputs are split by their index: process ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...``
  (:func:`shard`), so the split is deterministic and needs no communication;
* sums (sufficient statistics: gradient-by-distance accumulators, XᵀX and XᵀY of a linear
  fit) are added up over processes with :func:`all_reduce_sum`;
* tables are gathered with :func:`gather_tables` (every process gets the whole table, in
  the order a single process would have produced when a sort key is given);
* recordings are written by every process into its own ``rank-RRRRR-of-WWWWW`` folder inside
  the one output directory and indexed by rank 0 after a :func:`barrier` (see
  :func:`interp.record`).

The process group is created on first use (gloo on CPU, NCCL when CUDA is present), so
library calls and the command line behave the same. Objects travel as bytes in uint8
tensors (JSON and parquet), never as pickles. Outside ``torchrun`` (``WORLD_SIZE`` unset or
1) every function is the identity, and nothing is imported from ``torch.distributed``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

import pandas as pd
import torch
from torch import Tensor

from ..errors import InterpError

__all__ = [
    "RankInfo",
    "all_gather_bytes",
    "all_reduce_sum",
    "barrier",
    "check_same",
    "gather_tables",
    "rank_info",
    "shard",
]

#: Seconds a collective waits for the other processes before failing (``INTERP_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands.

    Attributes:
        rank: global rank, 0..world_size − 1.
        world_size: number of processes (1 outside torchrun).
        local_rank: rank on this machine (picks the GPU: ``cuda:local_rank``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """``cuda:local_rank`` when CUDA is present, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InterpError(f"environment variable {name}={value!r} is not an integer",
                          "launch with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK") from None


def rank_info() -> RankInfo:
    """This process's rank, world size and local rank from ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK`` (as set by ``torchrun``); creates the process group on first call when
    ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL with CUDA; timeout ``INTERP_DIST_TIMEOUT`` s).

    Raises:
        InterpError: inconsistent variables (a rank outside 0..WORLD_SIZE − 1, or
            ``MASTER_ADDR``/``MASTER_PORT`` missing).
    """
    world = _env_int("WORLD_SIZE", 1)
    info = RankInfo(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0))
    if world < 1 or not 0 <= info.rank < world:
        raise InterpError(f"RANK={info.rank} with WORLD_SIZE={world}",
                          "launch with torchrun --nproc-per-node N, which sets both")
    if info.distributed:
        _init(info)
    return info


def _init(info: RankInfo) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise InterpError(f"WORLD_SIZE={info.world_size} but {', '.join(missing)} unset",
                          "launch with torchrun --nproc-per-node N (it sets them)")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(info.local_rank)
    timeout = timedelta(seconds=_env_int("INTERP_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    dist.init_process_group("nccl" if cuda else "gloo", rank=info.rank,
                            world_size=info.world_size, timeout=timeout)


def _comm_device() -> torch.device:
    import torch.distributed as dist

    return rank_info().device if dist.get_backend() == "nccl" else torch.device("cpu")


def shard(items: Iterable, info: RankInfo | None = None) -> Iterator:
    """This process's share of ``items``: those whose index ≡ rank (mod world size).

    Deterministic and lazy: every process walks the same sequence and keeps every
    world-size-th item, so no list of work is exchanged and a resume sees the same split.
    """
    info = info or rank_info()
    return islice(items, info.rank, None, info.world_size)


def all_reduce_sum(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Sum each tensor over processes (in place, and returned). Outside torchrun: unchanged.

    Float64 sums are added in float64; every process gets the same totals. Tensors on any
    device are accepted (they are moved to the backend's device and back).
    """
    if not rank_info().distributed:
        return list(tensors)
    import torch.distributed as dist

    dev = _comm_device()
    for t in tensors:
        buf = t.to(dev)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        t.copy_(buf)
    return list(tensors)


def all_gather_bytes(payload: bytes) -> list[bytes]:
    """Every process's ``payload``, in rank order (one element outside torchrun)."""
    if not rank_info().distributed:
        return [payload]
    import torch.distributed as dist

    dev = _comm_device()
    world = dist.get_world_size()
    size = torch.tensor([len(payload)], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    width = int(max(int(s) for s in sizes))
    buf = torch.zeros(width, dtype=torch.uint8, device=dev)
    buf[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(dev)
    parts = [torch.zeros_like(buf) for _ in range(world)]
    dist.all_gather(parts, buf)
    return [bytes(p[:int(s)].cpu().numpy().tobytes()) for p, s in zip(parts, sizes, strict=True)]


def check_same(what: str, value: dict) -> None:
    """Raise on every process when ``value`` (JSON-able) differs between processes.

    Raises:
        InterpError: naming the keys that differ and the ranks that hold each version.
    """
    mine = json.dumps(value, sort_keys=True, default=str)
    seen = [b.decode() for b in all_gather_bytes(mine.encode())]
    if len(set(seen)) == 1:
        return
    first = json.loads(seen[0])
    for rank, s in enumerate(seen):
        other = json.loads(s)
        diff = [k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k)]
        if diff:
            details = "; ".join(f"{k}: {first.get(k)!r} on rank 0 vs {other.get(k)!r} on rank "
                                f"{rank}" for k in diff)
            raise InterpError(
                f"the {what} differs across ranks ({details})",
                "launch every process with the same arguments (torchrun passes the same "
                "command line to each)",
            )


def gather_tables(df: pd.DataFrame, sort_by: Sequence[str] | None = None) -> pd.DataFrame:
    """Concatenate every process's table (rank order); every process gets the whole table.

    Tables travel as parquet bytes. ``sort_by`` (a stable sort) restores the row order of a
    single process when the rows carry their global order (e.g. a sequence number).
    """
    if not rank_info().distributed:
        return df
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    parts = [pd.read_parquet(io.BytesIO(b)) for b in all_gather_bytes(buf.getvalue())]
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    if sort_by:
        out = out.sort_values(list(sort_by), kind="stable", ignore_index=True)
    return out


def barrier() -> None:
    """Wait until every process gets here (no-op outside torchrun)."""
    if rank_info().distributed:
        import torch.distributed as dist

        dist.barrier()
