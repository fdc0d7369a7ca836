"""LUSIFER backend: XLM-R (or mT5) → connector → bidirectional LLM → mean pool → MLP, official checkpoints.

``load_embedder("lusifer:<dir or hub id>")``; ``LusiferModel.random(...)`` builds a random-weight model of any
shape (benchmarks).
"""

from __future__ import annotations

from typing import Any

from ..registry import register
from .config import DEFAULT_INSTRUCTION, LusiferConfig
from .embedder import LusiferEmbedder, load_model, resolve_checkpoint
from .model import LusiferModel


@register("lusifer", "LUSIFER (XLM-R → connector → bidirectional LLM), official checkpoint format")
def _factory(arg: str, device: str | None = None, dtype: Any = None, **options: Any) -> LusiferEmbedder:
    return LusiferEmbedder(arg, device=device, dtype=dtype, **options)


__all__ = ["DEFAULT_INSTRUCTION", "LusiferConfig", "LusiferEmbedder", "LusiferModel", "load_model",
           "resolve_checkpoint"]
