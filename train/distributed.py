"""Processes, devices and parallelism: torchrun's environment, DDP or FSDP2, gradient-sync control.

One process per device, started by ``torchrun`` (one or many nodes; no launcher of ours). Without torchrun's
variables the run is a single process with no process group. CPU processes talk over gloo, CUDA ones over NCCL.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.distributed as dist
from torch import nn

from lusifer_rag.errors import ConfigError


@dataclass(frozen=True)
class Env:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str | None = None) -> Env:
    """The process group from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (none: a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=dev if cuda else None)
    return Env(rank, world, local, dev)


def close() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def strategy_for(choice: str, env: Env) -> str:
    """'auto': FSDP2 on CUDA (sharding is what lets a 7B target train), DDP for several CPU processes."""
    if choice == "auto":
        return "fsdp" if env.device.type == "cuda" else ("ddp" if env.world > 1 else "none")
    if choice == "ddp" and env.world == 1:
        return "none"
    return choice


def wrap(model: nn.Module, strategy: str, env: Env, layers: list[nn.Module], bf16: bool) -> nn.Module:
    """DDP, or FSDP2 (``fully_shard`` per transformer layer, then the whole model; bf16 compute with fp32
    gradient reduction when ``bf16``), or the model itself."""
    if strategy == "none":
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if not dist.is_initialized():  # one process: a group of one, so FSDP2 runs the same code path
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            dist.init_process_group("nccl" if env.device.type == "cuda" else "gloo", rank=0, world_size=1)
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
        for layer in layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    raise ConfigError(f"strategy {strategy!r} is not valid; allowed: auto, none, ddp, fsdp")


def sync_factory(model: nn.Module, strategy: str) -> Callable[[bool], ContextManager]:
    """``sync(is_last)``: gradients are reduced across processes only in the last backward of a step."""
    if strategy == "ddp":
        return lambda last: nullcontext() if last else model.no_sync()
    if strategy == "fsdp":
        @contextmanager
        def fsdp_sync(last: bool):
            model.set_requires_gradient_sync(last)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        return fsdp_sync
    return lambda last: nullcontext()


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def all_mean(value: float, env: Env) -> float:
    if env.world == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / env.world


def all_sum(value: int, env: Env) -> int:
    if env.world == 1 or not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return int(t)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
