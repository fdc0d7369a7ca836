"""Device and dtype resolution shared by the torch backends."""

from __future__ import annotations

import torch

from lusifer_rag.errors import ConfigError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_devices(device: str | torch.device | None) -> list[torch.device]:
    """``None``: every CUDA device if any, else CPU. ``'cuda:0,1'``: those two. ``'cuda'``: all GPUs."""
    if device is None or str(device) == "cuda":
        if torch.cuda.is_available():
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        if device is not None:
            raise ConfigError("device 'cuda' was asked for, but torch sees no CUDA device")
        return [torch.device("cpu")]
    text = str(device)
    if text.startswith("cuda:") and "," in text:
        return [torch.device("cuda", int(i)) for i in text[5:].split(",")]
    try:
        dev = torch.device(text)
    except RuntimeError as e:
        raise ConfigError(f"invalid device {text!r}: {e}; allowed: cpu, cuda, cuda:N, cuda:N,M") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} was asked for, but torch sees no CUDA device")
    return [dev]


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ConfigError(f"invalid dtype {dtype!r}; allowed: {sorted(_DTYPES)}") from None
