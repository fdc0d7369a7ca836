"""Stable fingerprints: change when weights, templates or pooling change; survive copying a model dir."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable

_SAMPLES = 16
_SAMPLE_BYTES = 1 << 16


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file's size, its safetensors header (if any) and 16 evenly spaced 64 KiB samples.

    Reading a 16 GB checkpoint whole on every start would cost a minute; this costs milliseconds and
    still changes when any tensor's name, shape, dtype or (almost surely) values change.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        head = f.read(8)
        h.update(head)
        if path.suffix == ".safetensors" and len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            if n < size:
                h.update(f.read(n))
        for i in range(_SAMPLES):
            f.seek(max(0, (size - _SAMPLE_BYTES) * i // max(_SAMPLES - 1, 1)))
            h.update(f.read(_SAMPLE_BYTES))
    return h.hexdigest()


def fingerprint(kind: str, weights: Iterable[str | os.PathLike], **settings: Any) -> str:
    """``kind-<16 hex>`` from the weights' digests and every setting that changes the vectors."""
    payload = {"kind": kind, "weights": [file_digest(p) for p in sorted(map(str, weights))], "settings": settings}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{kind}-{digest[:16]}"
