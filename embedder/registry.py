"""Embedder specs → classes. ``kind:argument`` (``lusifer:/models/lusifer``, ``hf:intfloat/...``) or a bare name."""

from __future__ import annotations

from typing import Callable

from lusifer_rag.errors import ConfigError

# kind -> (factory(argument, **options) -> Embedder, one-line help)
_REGISTRY: dict[str, tuple[Callable[..., object], str]] = {}


def register(kind: str, help: str) -> Callable:
    def deco(factory: Callable) -> Callable:
        _REGISTRY[kind] = (factory, help)
        return factory

    return deco


def parse_spec(spec: str) -> tuple[str, str]:
    """('kind', 'argument'); a bare registered name has an empty argument."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"embedder spec must be a non-empty string, got {spec!r}; valid: {valid_specs()}")
    spec = spec.strip()
    kind, sep, arg = spec.partition(":")
    if kind in _REGISTRY:
        return kind, arg
    raise ConfigError(f"unknown embedder spec {spec!r}; valid: {valid_specs()}")


def valid_specs() -> str:
    return ", ".join(f"{k}{'' if k in _BARE else ':<dir or hub id>'}" for k in sorted(_REGISTRY))


def factory_for(kind: str) -> Callable:
    return _REGISTRY[kind][0]


def available() -> list[tuple[str, str]]:
    return [(k, _REGISTRY[k][1]) for k in sorted(_REGISTRY)]


#: kinds used without an argument
_BARE: set[str] = set()


def register_bare(kind: str) -> None:
    _BARE.add(kind)
