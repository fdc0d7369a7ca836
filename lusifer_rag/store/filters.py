"""A small typed payload filter, translated once per backend into that backend's filter objects.

``Filter(must={"metadata.language": "sw", "metadata.doc_id": ["a", "b"]},
must_not={"metadata.source": "x.pdf"}, ranges={"metadata.page": (3, 7)}, ids=[...])``

- ``must`` / ``must_not``: key -> a scalar (exact match) or a list/tuple/set of scalars (match any of them).
- ``ranges``: key -> ``(lo, hi)``, both inclusive, ``None`` for an open end.
- ``ids``: restrict to these point ids (UUID strings).
- ``all_of``: filters that must every one hold as well (``both(a, b)``): how an access filter is ANDed with a
  caller's filter without either replacing a condition of the other on the same key.
Keys are payload paths (``metadata.<field>`` for the langchain-qdrant layout).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import StoreError

Scalar = str | int | bool
_SCALARS = (str, int, bool)


@dataclass(frozen=True)
class Filter:
    must: Mapping[str, Any] = field(default_factory=dict)
    must_not: Mapping[str, Any] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    ids: Sequence[str] | None = None
    all_of: tuple["Filter", ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(f, Filter) for f in self.all_of):
            raise StoreError("Filter.all_of takes Filter objects")
        object.__setattr__(self, "all_of", tuple(self.all_of))
        for part in (self.must, self.must_not):
            for key, value in part.items():
                _check_value(key, value)
        for key, bounds in self.ranges.items():
            if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
                raise StoreError(f"filter range for {key!r} must be (lo, hi) with None for an open end; got {bounds!r}")
            for b in bounds:
                if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))):
                    raise StoreError(f"filter range bound for {key!r} must be a number or None; got {b!r}")
        if self.ids is not None:
            object.__setattr__(self, "ids", [_check_id(i) for i in self.ids])

    def is_empty(self) -> bool:
        return not (self.must or self.must_not or self.ranges) and self.ids is None and \
            all(f.is_empty() for f in self.all_of)


def both(a: Filter | None, b: Filter | None) -> Filter | None:
    """Points that match ``a`` and ``b`` (None matches all)."""
    parts = [f for f in (a, b) if f is not None and not f.is_empty()]
    if len(parts) < 2:
        return parts[0] if parts else None
    return Filter(all_of=tuple(parts))


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        kinds = {str if isinstance(v, str) else int if isinstance(v, int) and not isinstance(v, bool) else None for v in value}
        if None in kinds or len(kinds) > 1:
            raise StoreError(f"filter values for {key!r} must all be str or all be int; got {list(value)!r}")
        return
    raise StoreError(f"filter value for {key!r} must be str, int, bool or a list of str/int; got {type(value).__name__} {value!r}")


def _check_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise StoreError(f"point id must be a UUID string; got {value!r}") from None


@dataclass(frozen=True)
class FilterBuilders:
    """The constructors one backend supplies; ``translate`` builds that backend's filter from them."""

    match_value: Callable[[str, Scalar], Any]
    match_any: Callable[[str, list], Any]
    range: Callable[[str, float | None, float | None], Any]
    has_ids: Callable[[list[str]], Any]
    filter: Callable[[list, list], Any]  # (must conditions, must_not conditions) -> filter


def translate(flt: Filter | None, b: FilterBuilders) -> Any:
    """Our Filter -> the backend's filter object (None for no filter)."""
    if flt is None or flt.is_empty():
        return None

    def cond(key: str, value: Any) -> Any:
        if isinstance(value, _SCALARS):
            return b.match_value(key, value)
        return b.match_any(key, list(value))

    must = [cond(k, v) for k, v in flt.must.items()]
    must += [b.range(k, lo, hi) for k, (lo, hi) in flt.ranges.items()]
    if flt.ids is not None:
        must.append(b.has_ids(list(flt.ids)))
    must += [translate(sub, b) for sub in flt.all_of if not sub.is_empty()]
    must_not = [cond(k, v) for k, v in flt.must_not.items()]
    return b.filter(must, must_not)
