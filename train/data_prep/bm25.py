"""Okapi BM25 over lower-cased word tokens minus stop words, for hard-negative mining."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .common import _WORD, BM25_B, BM25_K1, STOPWORDS

# ---- BM25 -------------------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


class BM25:
    """Okapi BM25 over a fixed corpus, as a sparse term-weight matrix: scores of a batch of queries are one
    sparse product."""

    def __init__(self, docs: Sequence[str], k1: float = BM25_K1, b: float = BM25_B) -> None:
        from scipy import sparse

        self.vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = np.zeros(len(docs), dtype=np.float64)
        for d, text in enumerate(docs):
            counts = Counter(tokenize(text))
            lengths[d] = sum(counts.values())
            for term, tf in counts.items():
                rows.append(d)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                tfs.append(tf)
        rows_a, cols_a, tf_a = np.array(rows), np.array(cols), np.array(tfs, dtype=np.float64)
        n = len(docs)
        df = np.bincount(cols_a, minlength=len(self.vocab)) if len(cols_a) else np.zeros(0)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avg = lengths.mean() if n else 1.0
        norm = k1 * (1 - b + b * lengths[rows_a] / (avg or 1.0)) if n else np.zeros(0)
        weights = idf[cols_a] * tf_a * (k1 + 1) / (tf_a + norm)
        self.matrix = sparse.csr_matrix((weights, (rows_a, cols_a)), shape=(n, len(self.vocab))).T.tocsr()
        self.n, self.idf, self.avg, self.k1, self.b = n, idf, float(avg or 1.0), k1, b

    def doc_matrix(self, docs: Sequence[str]):
        """Term weights of other texts under this corpus's statistics, (n_vocab, len(docs))."""
        from scipy import sparse

        rows, cols, vals = [], [], []
        for d, text in enumerate(docs):
            counts = Counter(tokenize(text))
            length = sum(counts.values())
            for term, tf in counts.items():
                if term in self.vocab:
                    t = self.vocab[term]
                    rows.append(t)
                    cols.append(d)
                    vals.append(self.idf[t] * tf * (self.k1 + 1)
                                / (tf + self.k1 * (1 - self.b + self.b * length / self.avg)))
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(self.vocab), len(docs)))

    def pair_scores(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """The score of each query against its own text (one each), as if that text were in the corpus."""
        q = self.query_matrix(queries)
        return np.asarray(q.multiply(self.doc_matrix(docs).T).sum(axis=1)).ravel()

    def query_matrix(self, queries: Sequence[str]):
        from scipy import sparse

        rows, cols = [], []
        for q, text in enumerate(queries):
            for term in dict.fromkeys(tokenize(text)):
                if term in self.vocab:
                    rows.append(q)
                    cols.append(self.vocab[term])
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab)))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(len(queries), n_docs) dense scores."""
        return np.asarray((self.query_matrix(queries) @ self.matrix).todense())
