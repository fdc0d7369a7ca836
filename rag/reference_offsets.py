"""Language offsets from a parallel reference text, not from the collection (``debias="reference"``).

A multilingual embedder scores an unrelated passage in the query's language higher than one in another language.
``debias="offsets"`` takes that off with each language's mean over the collection's own chunks; where a language
holds one or a few documents that mean is largely their topic, and subtracting it costs them their relevance.
Here each language's direction comes from a **parallel** text instead (the same messages in every language,
:file:`rag/data/reference_parallel.json.gz`: Django's translated UI messages, see scripts/vendor_reference.py):

    shift[l] = mean over the messages m translated into l of (v_l(m) − v_en(m))   (passage embeddings)

is language and no topic (each message is compared with its own English original). The shifts of the
collection's languages and the query's span a small subspace (rank ≤ the number of languages); P projects on it.
A chunk's language component is read off its own vector, P(d − m_en) (m_en: the English messages' mean), not off
its label, and a chunk d scores, for a query q in language a,

    q·d − w · q·P(d − m_en − shift[a])

what it would score if its language were the query's: chunks in the query's language keep about their cosine (so
the relevance floor keeps its meaning), chunks in another language gain what the language gap took from them, and
code listings, tables and mislabelled chunks are corrected by what their vectors carry, not by their labels (a
label-based offset, q·(shift[label] − shift[a]), lifted the code and index pages of a Chinese or Polish manual
above the answer to a French question: bench/reference_sweep.py).

The shifts are computed once per embedder (a few hundred short messages per language, embedded on first use,
about 3 s a language on 2 CPU cores) and cached under the cache dir by the embedder's fingerprint; nothing is
fitted to a collection and nothing is read from the network.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_parallel.json.gz"
#: shifts computed ahead for the default embedder (scripts/vendor_reference.py --shifts), read when the cache has none
SHIPPED = Path(__file__).resolve().parent / "data" / "language_shifts"
#: langid labels that the reference spells otherwise
ALIASES = {"no": "nb"}
#: share of the measured language gap taken off (bench/reference_sweep.py, tune split: 0.5 keeps same-language
#: search closest to the raw model, 1.0 finds most across languages; 0.75 gains >= 0.11 cross-language MRR@10 on
#: the three non-parallel sets with known-item search unchanged)
REFERENCE_WEIGHT = 0.75


def _load(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))


class ReferenceShifts:
    """Per-language shift vectors of one embedder from the parallel reference, embedded lazily and cached on disk
    (``<cache_dir>/language-shifts/<fingerprint>-<reference digest>.npz``)."""

    _shared: dict[tuple[str, str], "ReferenceShifts"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, embedder, cache_dir: str | os.PathLike | None = None, reference: Path = REFERENCE):
        self.embedder, self.reference = embedder, Path(reference)
        if cache_dir is None:
            from lusifer_rag.settings import Settings

            cache_dir = Settings.from_env().cache_dir
        digest = hashlib.sha256(self.reference.read_bytes()).hexdigest()[:12]
        self.name = f"{embedder.fingerprint}-{digest}.npz"
        self.path = Path(cache_dir).expanduser() / "language-shifts" / self.name
        self._lock = threading.Lock()
        self._data: dict | None = None  # the reference text, read on first need
        self.english: np.ndarray | None = None  # (messages, dim) the English originals' vectors, when computed
        self.shifts: dict[str, np.ndarray] = {}
        self._bases: dict[tuple[str, ...], np.ndarray] = {}
        self._english_mean: np.ndarray | None = None
        self._read_cache()

    @classmethod
    def shared(cls, embedder) -> "ReferenceShifts":
        """One instance per embedder fingerprint in this process (retrievers of one model share the shifts)."""
        key = (embedder.fingerprint, str(REFERENCE))
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(embedder)
            return cls._shared[key]

    def languages(self) -> list[str]:
        """The languages the reference holds."""
        return ["en", *self._text()["languages"]]

    def has(self, lang: str) -> bool:
        lang = ALIASES.get(lang, lang)
        return lang == "en" or lang in self._text()["languages"]

    def get(self, languages: Iterable[str]) -> dict[str, np.ndarray]:
        """{label: shift (dim,)} for the labels the reference holds (English: zero), computing and caching the
        missing ones; labels it lacks are left out."""
        wanted = {lab: ALIASES.get(lab, lab) for lab in languages}
        todo = sorted({code for code in wanted.values() if code not in self.shifts and self.has(code)})
        if todo:
            with self._lock:
                todo = [code for code in todo if code not in self.shifts]
                if todo:
                    self._compute(todo)
        return {lab: self.shifts[code] for lab, code in wanted.items() if code in self.shifts}

    def english_mean(self) -> np.ndarray:
        """(dim,) the English messages' mean vector: the point the shifts start from."""
        if self._english_mean is None:
            self._english_mean = self._english().mean(axis=0)
        return self._english_mean

    def basis(self, languages: Iterable[str]) -> np.ndarray:
        """(r, dim) orthonormal basis of the span of these languages' shifts (those the reference holds; r = 0
        when fewer than one non-English language is known), cached per language set."""
        key = tuple(sorted(set(languages)))
        if key not in self._bases:
            shifts = [s for lang, s in self.get(key).items() if ALIASES.get(lang, lang) != "en"]
            if not shifts:
                basis = np.zeros((0, self.english_mean().shape[0]), dtype=np.float32)
            else:
                _, sv, vt = np.linalg.svd(np.stack(shifts).astype(np.float64), full_matrices=False)
                basis = vt[sv > 1e-6 * sv[0]].astype(np.float32)
            self._bases[key] = basis
        return self._bases[key]

    # ---- internals -------------------------------------------------------------------------------------------
    def _text(self) -> dict:
        if self._data is None:
            self._data = _load(self.reference)
        return self._data

    def _english(self) -> np.ndarray:
        if self.english is None:
            self.english = np.asarray(self.embedder.embed_documents(self._text()["en"]), dtype=np.float32)
        return self.english

    def _compute(self, codes: Sequence[str]) -> None:
        data = self._text()
        for code in codes:
            if code == "en":
                self.shifts["en"] = np.zeros(self._english().shape[1], dtype=np.float32)
                continue
            rows = [i for i, t in enumerate(data["languages"][code]) if t]
            vecs = np.asarray(self.embedder.embed_documents([data["languages"][code][i] for i in rows]),
                              dtype=np.float32)  # (m, dim)
            self.shifts[code] = (vecs - self._english()[rows]).mean(axis=0).astype(np.float32)
        self.english_mean()
        self._write_cache()

    def _read_cache(self) -> None:
        for path in (self.path, SHIPPED / self.name):
            try:
                with np.load(path) as z:
                    mean, codes, shifts = z["english_mean"], [str(c) for c in z["codes"]], z["shifts"]
            except (OSError, ValueError, KeyError):
                continue  # none (or unreadable): the next place, else computed on first use
            self._english_mean, self.shifts = mean.astype(np.float32), dict(zip(codes, shifts.astype(np.float32)))
            return

    def save(self, path: Path) -> None:
        """Write the shifts computed so far (and the English mean) to ``path`` (.npz)."""
        codes = sorted(self.shifts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.npz")
        np.savez(tmp, english_mean=self.english_mean(), codes=np.array(codes),
                 shifts=np.stack([self.shifts[c] for c in codes]))
        os.replace(tmp, path)

    def _write_cache(self) -> None:
        try:
            self.save(self.path)
        except OSError:
            pass  # a read-only cache dir: the next process computes them again


def reference_offsets(q: np.ndarray, vectors: np.ndarray, basis: np.ndarray, origin: np.ndarray,
                      weight: float = REFERENCE_WEIGHT) -> np.ndarray:
    """(n,) what to subtract from each chunk's cosine q·d: w · q·P(d − origin), P the projection on ``basis``
    (r, dim), ``origin`` the query language's point (the English mean plus the query language's shift)."""
    if not len(basis) or not len(vectors):
        return np.zeros(len(vectors))
    qp = basis @ q  # (r,)
    return weight * (((vectors - origin) @ basis.T) @ qp)
