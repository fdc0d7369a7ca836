"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

A contrastive loss couples every embedding of the global batch, so plain gradient accumulation over chunks
changes the loss (fewer in-batch negatives). GradCache keeps the big-batch loss at chunk-sized activation
memory:

1. encode every chunk without a graph (``torch.no_grad``), recording the RNG state before each;
2. compute the loss on all representations at once and backpropagate to them only: the cache d loss/d reps;
3. re-encode each chunk with its RNG state restored (same dropout masks, so the same reps) and
   backpropagate the surrogate ``(reps_chunk * cache_chunk).sum()``, whose parameter gradient is exactly the
   chunk's share of d loss/d θ (chain rule). Summed over chunks: the full-batch gradient.

RNG: pass 1 advances the global generators as one ordinary forward over the chunks would, and ``loss_fn``
runs once after it; pass 2 replays inside ``torch.random.fork_rng``, so its draws are discarded. After a step
the generators are where a plain "encode chunks, loss, backward" step leaves them (backward draws nothing),
independent of whether GradCache replayed. CPU and CUDA generators are covered (CUDA when initialised).

The model's own state (BatchNorm running statistics, …) is updated by both passes; LUSIFER has none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from lusifer_rag.errors import ConfigError

SyncFactory = Callable[[bool], AbstractContextManager]


def _rng_state() -> tuple[Tensor, list[Tensor] | None]:
    """CPU state, and every CUDA device's when CUDA is initialised (querying it must not initialise CUDA)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _check_reps(reps: Any, chunk: int) -> Tensor:
    if not isinstance(reps, Tensor) or reps.ndim != 2 or not reps.is_floating_point():
        got = f"a {tuple(reps.shape)} {reps.dtype} tensor" if isinstance(reps, Tensor) else type(reps).__name__
        raise ConfigError(f"encode must return one floating (m, d) tensor per chunk; chunk {chunk} gave {got} "
                          "(concatenate several outputs into one tensor inside encode)")
    return reps


class GradCache:
    """Runs one optimisation step's forward/backward of a contrastive loss over chunks of a global batch.

    ``encode(chunk) -> reps (m, d)`` is the model forward for one chunk of inputs (anything: a dict of token
    tensors, …); one tensor per chunk — a model with several outputs concatenates them, and ``loss_fn`` splits
    them again. Reps of all chunks are concatenated in chunk order, so ``loss_fn`` sees the layout the caller
    built (e.g. :func:`lusifer_rag.train.losses.ntxent.contrastive_labels` per chunk, or one layout whose rows
    the chunks cut in order).
    """

    def __init__(self, encode: Callable[[Any], Tensor]):
        if not callable(encode):
            raise ConfigError(f"encode must be callable (chunk -> (m, d) tensor); got {type(encode).__name__}")
        self.encode = encode

    def step(self, chunks: Sequence[Any], loss_fn: Callable[[Tensor], Tensor],
             sync: SyncFactory | None = None) -> Tensor:
        """Accumulate d loss_fn(all reps)/d θ into the parameters' ``.grad`` (as ``backward`` would) and return
        the loss, detached. ``loss_fn(reps (n, d)) -> scalar`` sees every chunk's reps at once; its own
        parameters (a learnable temperature, …) get their gradient from its single backward.

        ``sync(is_last)`` returns the context that decides gradient synchronisation (DDP: ``nullcontext()`` if
        is_last else ``model.no_sync()``; FSDP2: a context calling ``model.set_requires_gradient_sync(is_last)``).
        It wraps each chunk's pass-2 forward AND backward: DDP decides at forward time whether the backward
        will all-reduce, so a backward-only context would sync every chunk. ``None``: no synchronisation.
        """
        if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence) or len(chunks) == 0:
            got = f"{len(chunks)} chunks" if isinstance(chunks, Sequence) else type(chunks).__name__
            raise ConfigError(f"chunks must be a non-empty sequence of model inputs; got {got}")
        sync = sync if sync is not None else (lambda is_last: nullcontext())

        # pass 1: reps without a graph, remembering the RNG state each chunk started from
        states, reps = [], []
        with torch.no_grad():
            for i, chunk in enumerate(chunks):
                states.append(_rng_state())
                reps.append(_check_reps(self.encode(chunk), i))  # (m_i, d)
        sizes = [r.shape[0] for r in reps]
        if len({r.shape[1:] for r in reps}) != 1 or len({(r.dtype, r.device) for r in reps}) != 1:
            got = [(tuple(r.shape), str(r.dtype), str(r.device)) for r in reps]
            raise ConfigError(f"every chunk's reps must share d, dtype and device; got {got}")
        if states[0][1] is None and torch.cuda.is_initialized():
            raise ConfigError("CUDA was initialised during pass 1 (by encode), after the first chunk's RNG state "
                              "was recorded, so its dropout cannot be replayed; initialise CUDA before the step "
                              "(e.g. move the model to the GPU first)")

        # the loss on every rep at once; its gradient w.r.t. the reps is the cache
        all_reps = torch.cat(reps).requires_grad_(True)  # (n, d), a leaf
        del reps
        with torch.enable_grad():
            loss = loss_fn(all_reps)
            if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
                got = f"a {tuple(loss.shape)} tensor, requires_grad={loss.requires_grad}" \
                    if isinstance(loss, Tensor) else type(loss).__name__
                raise ConfigError(f"loss_fn must return a one-element tensor differentiable in reps; got {got}")
            loss.backward()
        cache = torch.zeros_like(all_reps) if all_reps.grad is None else all_reps.grad  # (n, d)
        cache_chunks = cache.split(sizes)  # [(m_i, d)]

        # pass 2: replay each chunk with its RNG state and push the cached gradient into the model
        cuda_devices = list(range(torch.cuda.device_count())) if states[0][1] is not None else []
        last = len(chunks) - 1
        for i, (chunk, (cpu_state, cuda_state), grad) in enumerate(zip(chunks, states, cache_chunks)):
            with torch.random.fork_rng(devices=cuda_devices), sync(i == last), torch.enable_grad():
                torch.set_rng_state(cpu_state)
                if cuda_state is not None:
                    torch.cuda.set_rng_state_all(cuda_state)
                chunk_reps = _check_reps(self.encode(chunk), i)  # (m_i, d)
                if chunk_reps.shape != grad.shape or not chunk_reps.requires_grad:
                    raise ConfigError(f"chunk {i}: pass 2 gave reps {tuple(chunk_reps.shape)} with requires_grad="
                                      f"{chunk_reps.requires_grad}; pass 1 gave {tuple(grad.shape)}: encode must be "
                                      "deterministic in shape and depend on trainable parameters")
                (chunk_reps * grad).sum().backward()
        return loss.detach().reshape(())
