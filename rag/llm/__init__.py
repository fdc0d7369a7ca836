"""Answer generators behind one small interface, chosen by name.

>>> llm = load_llm("openai", base_url="http://localhost:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")
>>> llm = load_llm("transformers:/models/qwen2.5-0.5b-instruct", max_new_tokens=256)
>>> llm = load_llm("extractive", embedder=embedder)   # also what load_llm(None) gives
"""

from __future__ import annotations

import inspect
from typing import Any

from lusifer_rag.errors import ConfigError

from .base import LLMBackend, parse_llm_spec, register_llm, registry

# backends register themselves on import
from . import extractive as _extractive  # noqa: F401,E402
from . import openai_backend as _openai  # noqa: F401,E402
from . import transformers_backend as _transformers  # noqa: F401,E402

DEFAULT_LLM = "extractive"


def load_llm(name_or_spec: str | None = None, **options: Any) -> LLMBackend:
    """Build an LLM backend: ``"openai[:base_url]"``, ``"transformers[:model_dir]"`` or ``"extractive"``.

    None or "" gives the default (``extractive``). Options are the backend's keyword arguments; options
    that are None count as not given, so settings can be passed through as they are.
    """
    name, arg = parse_llm_spec(name_or_spec)
    factory = registry()[name][0]
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n[0] != "_"]
        if unknown := sorted(set(options) - set(params)):
            raise ConfigError(f"unknown options {unknown} for LLM backend {name!r}; accepted: {', '.join(accepted)}")
    first = next(iter(params), None)
    if arg and first in options:
        raise ConfigError(f"LLM spec {name_or_spec!r} already gives {first}; do not pass {first}= as well")
    llm = factory(arg, **options) if arg else factory(**options)
    llm.name = name
    return llm


def available_llms() -> list[tuple[str, str]]:
    """(name, help) of every registered backend."""
    return sorted((name, help) for name, (_, help) in registry().items())


__all__ = ["LLMBackend", "DEFAULT_LLM", "available_llms", "load_llm", "register_llm"]
