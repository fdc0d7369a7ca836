"""Text → vectors. ``load_embedder(spec)`` builds one of the registered backends.

>>> emb = load_embedder("e5-small")
>>> emb.embed_queries(["Habari ya asubuhi"]).shape
(1, 384)
"""

from __future__ import annotations

from typing import Any

from .base import Embedder, Role
from .registry import available, factory_for, parse_spec

# backends register themselves on import
from . import hf as _hf  # noqa: F401,E402
from . import e5_offline as _e5_offline  # noqa: F401,E402
from . import lusifer as _lusifer  # noqa: F401,E402


def load_embedder(spec: str, device: str | None = None, dtype: str | None = None, **options: Any) -> Embedder:
    """Build the embedder named by ``spec`` (see :func:`available`).

    ``device``: 'cpu', 'cuda', 'cuda:N' or 'cuda:N,M' (one replica per GPU); None: all GPUs, else CPU.
    ``dtype``: None means bfloat16 on CUDA, float32 on CPU. ``options`` go to the backend
    (``max_batch_tokens``, ``max_batch_size``, ``cache_dir``, ...).
    """
    kind, arg = parse_spec(spec)
    emb = factory_for(kind)(arg, device=device, dtype=dtype, **options)
    emb.spec = spec.strip()
    return emb


__all__ = ["Embedder", "Role", "load_embedder", "available"]
