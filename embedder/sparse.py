"""BM25-style sparse vectors from an embedder's own tokenizer, for Qdrant sparse vectors with the IDF modifier.

Documents get BM25 term-frequency saturation ``tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))``; queries get
weight 1 per distinct term; Qdrant multiplies by IDF at query time (``modifier=IDF``), so the collection's own
statistics supply the IDF and nothing has to be re-computed when documents change.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import regex

#: a vocabulary piece with nothing but word-boundary markers, punctuation, symbols, spaces or controls
_JUNK_PIECE = regex.compile(r"(?:▁|Ġ|##|[\p{P}\p{S}\p{Z}\p{C}])*")
#: tokenizer -> kept-term mask; building one reads the whole vocabulary (~0.4 s for XLM-R's 250k pieces)
_keep_masks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_keep_lock = threading.Lock()


@dataclass(frozen=True)
class SparseVector:
    indices: np.ndarray  # (nnz,) uint32, sorted
    values: np.ndarray  # (nnz,) float32


class BM25SparseEncoder:
    """Term vectors over the tokenizer's vocabulary. Texts are lower-cased; special and punctuation-only pieces
    are dropped (they would match everything)."""

    version = "bm25-v1"

    def __init__(self, tokenizer, k1: float = 1.2, b: float = 0.75, avg_len: float = 128.0):
        self.tokenizer = tokenizer
        self.k1, self.b, self.avg_len = k1, b, avg_len
        with _keep_lock:
            keep = _keep_masks.get(tokenizer)
            if keep is None:
                keep = _keep_masks[tokenizer] = _kept_terms(tokenizer)
        self._keep = keep

    @property
    def params(self) -> dict:
        return {"version": self.version, "k1": self.k1, "b": self.b, "avg_len": self.avg_len}

    def _term_counts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row, term, count) of every distinct kept term of every text, and each text's kept length."""
        ids = self.tokenizer([t.lower() for t in texts], add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False, verbose=False)["input_ids"]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for seq in ids for i in seq), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        kept = self._keep[flat]
        flat, rows = flat[kept], rows[kept]
        doc_len = np.bincount(rows, minlength=len(ids)).astype(np.float32)
        vocab = len(self._keep)
        keys, counts = np.unique(rows * vocab + flat, return_counts=True)  # sorted by (row, term)
        return keys // vocab, keys % vocab, counts.astype(np.float32), doc_len

    def _split(self, n: int, rows: np.ndarray, terms: np.ndarray, values: np.ndarray) -> list[SparseVector]:
        bounds = np.searchsorted(rows, np.arange(n + 1))
        return [SparseVector(terms[s:e].astype(np.uint32), values[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]

    def encode_documents(self, texts: list[str]) -> list[SparseVector]:
        if not texts:
            return []
        rows, terms, tf, doc_len = self._term_counts(texts)
        norm = self.k1 * (1 - self.b + self.b * doc_len[rows] / self.avg_len)
        values = (tf * (self.k1 + 1) / (tf + norm)).astype(np.float32)
        return self._split(len(texts), rows, terms, values)

    def term_sets(self, texts: list[str]) -> list[np.ndarray]:
        """The distinct kept term ids of each text, sorted (the indices of its sparse vector)."""
        if not texts:
            return []
        rows, terms, _, _ = self._term_counts(texts)
        bounds = np.searchsorted(rows, np.arange(len(texts) + 1))
        return [terms[s:e] for s, e in zip(bounds[:-1], bounds[1:])]

    def encode_queries(self, texts: list[str]) -> list[SparseVector]:
        if not texts:
            return []
        rows, terms, _, _ = self._term_counts(texts)
        return self._split(len(texts), rows, terms, np.ones(len(terms), dtype=np.float32))


def _kept_terms(tokenizer) -> np.ndarray:
    """(vocab,) bool: False for special pieces and pieces without a letter or digit."""
    vocab = tokenizer.get_vocab()  # piece -> id
    keep = np.ones(max(vocab.values()) + 1, dtype=bool)
    keep[[idx for piece, idx in vocab.items() if _JUNK_PIECE.fullmatch(piece)]] = False
    keep[list(getattr(tokenizer, "all_special_ids", []) or [])] = False
    keep.flags.writeable = False  # shared by every encoder on this tokenizer
    return keep
