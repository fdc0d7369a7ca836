"""The LLM interface: one abstract method, ``generate``; everything else is built on it once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from lusifer_rag.errors import ConfigError

from ..prompt import Prompt


class LLMBackend(ABC):
    """Turns a :class:`Prompt` into answer text.

    ``generate(prompt, stream=False)`` yields the whole text once; ``stream=True`` yields deltas as they
    are produced. Concatenating the deltas gives the answer either way.
    """

    name: str = ""
    extractive: bool = False  # True: the text is extracts from the sources, not generated
    wants_embedder: bool = False  # True: ``set_embedder`` improves it (the Answerer passes its embedder)

    @abstractmethod
    def generate(self, prompt: Prompt, *, stream: bool = False) -> Iterator[str]:
        """Text deltas of the answer to ``prompt``."""

    # ---- optional knowledge a backend may expose (used to fit the prompt) ----------------------
    @property
    def context_tokens(self) -> int | None:
        """Prompt + answer tokens the model accepts; None when unknown."""
        return None

    def count_tokens(self, texts: list[str]) -> list[int] | None:
        """Tokens of each text for this model; None when the backend cannot count."""
        return None

    def set_embedder(self, embedder: Any) -> None:  # pragma: no cover - only backends that want one override it
        pass

    # ---- conveniences, built once -------------------------------------------------------------
    def complete(self, prompt: Prompt) -> str:
        """The whole answer text."""
        return "".join(self.generate(prompt, stream=False))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def close(self) -> None:
        """Release connections or models (optional)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


# name -> (factory(argument, **options) -> LLMBackend, one-line help)
_REGISTRY: dict[str, tuple[Callable[..., LLMBackend], str]] = {}


def register_llm(name: str, help: str) -> Callable:
    """Class or factory decorator: ``load_llm("name[:argument]", **options)`` builds it."""

    def deco(factory: Callable[..., LLMBackend]) -> Callable[..., LLMBackend]:
        _REGISTRY[name] = (factory, help)
        return factory

    return deco


def registry() -> dict[str, tuple[Callable[..., LLMBackend], str]]:
    return _REGISTRY


def parse_llm_spec(spec: str | None) -> tuple[str, str]:
    """('name', 'argument') from 'name' or 'name:argument'; None or '' means the default, 'extractive'."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return "extractive", ""
    if not isinstance(spec, str):
        raise ConfigError(f"LLM spec must be a string such as 'openai' or 'transformers:/models/qwen', got {spec!r}")
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown LLM backend {spec!r}; available: {', '.join(sorted(_REGISTRY))}")
    return name, arg.strip()
