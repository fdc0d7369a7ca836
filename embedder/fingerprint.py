"""Stable fingerprints: change when weights, templates or pooling change; survive copying a model dir."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable

_SAMPLES = 256
_SAMPLE_BYTES = 1 << 16
FULL_HASH_LIMIT = 2 << 30  # files up to 2 GiB are hashed whole (about a second per GB)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file: whole files up to 2 GiB; for larger ones (a 16 GB LUSIFER checkpoint would take
    half a minute on every start) the size, the safetensors header (every tensor's name, dtype, shape, offsets)
    and 256 evenly spaced 64 KiB samples of the data."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    if size <= FULL_HASH_LIMIT:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()
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
