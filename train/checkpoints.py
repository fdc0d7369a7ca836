"""Resumable checkpoints: what a run needs to continue exactly where it stopped.

``<output>/checkpoints/step-000100/``: the trainable parameters, the optimizer and scheduler states, the data
position, every process's RNG states. A checkpoint is written into ``step-….partial`` and renamed when complete;
``latest`` names the newest complete one (written last, atomically), so a ``kill -9`` at any moment leaves the
previous checkpoint intact and rerunning the same command resumes from it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .distributed import Env, barrier

LATEST = "latest"


def _sharded(strategy: str) -> bool:
    return strategy in ("ddp", "fsdp") and dist.is_initialized()


def model_state(model: nn.Module, strategy: str) -> dict[str, torch.Tensor]:
    """Trainable parameters, full (gathered), on CPU; names without the DDP/FSDP wrapper's prefixes."""
    if _sharded(strategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                    ignore_frozen_params=True))
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, strategy: str) -> dict[str, Any]:
    if _sharded(strategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                   cpu_offload=True))
    return optimizer.state_dict()


def rng_state(extra: dict[str, torch.Generator]) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            "python": random.getstate(), "numpy": np.random.get_state(),
            "extra": {k: g.get_state() for k, g in extra.items()}}


def set_rng_state(state: dict[str, Any], extra: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    for k, g in extra.items():
        g.set_state(state["extra"][k])


def save(output: Path, step: int, model: nn.Module, optimizer, scheduler, position: dict[str, Any], env: Env,
         strategy: str, extra_rng: dict[str, torch.Generator], keep: int) -> Path:
    root = output / "checkpoints"
    final = root / f"step-{step:07d}"
    partial = root / f"step-{step:07d}.partial"
    weights = model_state(model, strategy)  # collective: every process takes part
    optim = optimizer_state(model, optimizer, strategy)
    if env.main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    barrier()
    torch.save(rng_state(extra_rng), partial / f"rng-rank{env.rank}.pt")
    barrier()
    if env.main:
        torch.save(weights, partial / "trainable.pt")
        torch.save(optim, partial / "optimizer.pt")
        torch.save(scheduler.state_dict(), partial / "scheduler.pt")
        (partial / "position.json").write_text(json.dumps({**position, "step": step, "world": env.world}))
        for f in partial.iterdir():  # on disk before the rename makes the checkpoint count
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        tmp = root / (LATEST + ".tmp")
        tmp.write_text(final.name)
        os.replace(tmp, root / LATEST)
        for old in sorted(p for p in root.glob("step-*") if p.is_dir() and p.suffix != ".partial")[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def latest(output: Path) -> Path | None:
    pointer = output / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = output / "checkpoints" / pointer.read_text().strip()
    return path if (path / "position.json").is_file() else None


def restore(path: Path, model: nn.Module, optimizer, scheduler, env: Env, strategy: str,
            extra_rng: dict[str, torch.Generator]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` (the same number of processes); returns its data position."""
    from lusifer_rag.errors import ConfigError

    position = json.loads((path / "position.json").read_text())
    if position.get("world", env.world) != env.world:
        raise ConfigError(f"{path} was written by {position['world']} processes; resume it with the same number "
                          f"(this run has {env.world})")
    weights = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
    optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    if _sharded(strategy):
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, weights, options=opts)
        set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
    else:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        optimizer.load_state_dict(optim)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-rank{env.rank}.pt", weights_only=False), extra_rng)
    return position
