"""Variants of language offsets from a parallel reference text (``debias="reference"``), on bench/retrieval_real.py's
sets. Choose on the ``tune`` split; bench/retrieval_real.py reports the chosen mode on ``test``.

The reference: rag/data/reference_parallel.json.gz (Django's UI messages in ~85 languages, none a test item of
any set here); shift[l] = mean over the messages of (v_l − v_en) (:mod:`lusifer_rag.rag.reference_offsets`).
Rows (each through the product's Retriever, hybrid unless said):

- ``raw dense``, ``hybrid, chunk cosines`` (the default before sentence scores), ``default`` (hybrid, chunk + best
  sentence), ``sentences β=B γ=G`` (the best sentence's weight β · (1 − 1/n)^G for a chunk of n sentences; the
  default: β = sentence_weight, G = 1; G = 0: one weight at every length), ``offsets`` (the collection's language
  means);
- ``label w=W``: by the chunk's label l: q·d − W · q·(shift[l] − shift[a]), a the query's language;
- ``label w=W, strength``: the same with each chunk's shift scaled by how much of its label's language its vector
  carries (its projection on shift[l], 0 where the English messages stand, 1 where their translations stand; code
  listings and index pages ~0);
- ``pair``: a per-language-pair offset: q replaced by the mean query vector of the reference messages in the
  query's language, so the offset depends only on (query language, chunk label);
- ``blend κ=K``: per label l, λ = n_l / (n_l + K) of the collection's offset (q·μ_l less its mean over the
  collection's languages) and 1 − λ of the reference's (label), n_l the documents labelled l;
- ``reference w=W`` (the product's ``debias="reference"``): label-free, from the chunk's vector:
  q·d − W · q·P(d − m_en − shift[a]), P the projection on the span of the shifts of the collection's languages and
  the query's; also dense only, without the per-language candidate legs, and with 50 per language;
- ``gated lo-hi``: ``reference`` weighted by clip((hi − s) / (hi − lo), 0, 1), s the best cosine of a candidate in
  the query's language (no correction where the own language holds a close match);
- ``margin gate M`` / ``margin pin M``: no correction (gate), or the correction with that document kept first (pin),
  when the best own-language document leads the second by ≥ M;
- ``rrf(raw, reference) k=K``: reciprocal-rank fusion of the raw cosines' order and ``reference``'s
  (docs/retrieval.md has both, tried and not kept).

    .venv/bin/python bench/reference_sweep.py [--sets ...] [--split tune] [--rows 'TEXT|TEXT']
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import retrieval_real as R  # noqa: E402

from lusifer_rag.rag.reference_offsets import ALIASES, ReferenceShifts  # noqa: E402
from lusifer_rag.rag.retrieval import DOC_KEY, LANGUAGE_KEY, Retriever  # noqa: E402
from lusifer_rag.store import Filter  # noqa: E402


class LabelRetriever(Retriever):
    """Offsets by the chunk's language label: w · q·(a · shift[label] − shift[query language]), a = 1 or the
    chunk's language strength. A label the reference lacks stands at the mean shift of the collection's
    languages."""

    def __init__(self, *a, strength: bool = False, **kw):
        super().__init__(*a, **kw)
        self.strength = strength

    def _probe(self, q: np.ndarray, query_lang: str) -> np.ndarray:
        return q  # the vector the offsets are measured with

    def _label_offsets(self, labels, q, query_lang, ids=()) -> np.ndarray:
        """(n,) offsets of chunks with these labels (``ids``: their ids, to read their vectors for the strength)."""
        present = list(self.means.means)
        shifts = self._shifts.get([*dict.fromkeys(labels), *present, query_lang])
        probe = self._probe(q, query_lang)
        known = [shifts[lang] for lang in dict.fromkeys(present) if lang in shifts]
        neutral = float(probe @ np.mean(known, axis=0)) if known else 0.0
        proj = {lang: float(probe @ s) for lang, s in shifts.items()}
        own = np.array([proj.get(lab, neutral) for lab in labels])
        if self.strength and len(ids):
            vec_of = {p.id: p.vector for p in self.store.retrieve(self.collection, list(ids), with_payload=False,
                                                                  with_vectors=True)}
            base = self._shifts.english_mean()
            a = np.ones(len(ids))
            for n, (i, lab) in enumerate(zip(ids, labels)):
                s = shifts.get(lab)
                if s is not None and ALIASES.get(lab, lab) != "en" and vec_of.get(i) is not None:
                    a[n] = float((vec_of[i] - base) @ s) / max(float(s @ s), 1e-12)
            own = own * np.clip(a, 0.0, 1.0)
        return self.reference_weight * (own - proj.get(query_lang, neutral))

    def _reference_scores(self, cands, q, query_lang):
        if self._shifts is None:
            self._shifts = ReferenceShifts.shared(self.embedder)
        ids = [i for i, c in cands.items() if np.isfinite(c.score)]
        for i, o in zip(ids, self._label_offsets([cands[i].language for i in ids], q, query_lang, ids)):
            cands[i].score = float(cands[i].score - o)


class PairRetriever(LabelRetriever):
    """Per (query language, chunk label): the query replaced by its language's mean query vector over the reference
    messages (a query language the reference lacks: the query itself)."""

    _query_means: dict[str, np.ndarray] = {}

    def _probe(self, q, query_lang):
        shifts = ReferenceShifts.shared(self.embedder)
        code = ALIASES.get(query_lang, query_lang)
        if not shifts.has(code):
            return q
        if code not in self._query_means:
            data = shifts._text()
            texts = data["en"] if code == "en" else [t for t in data["languages"][code] if t]
            mean = np.asarray(self.embedder.embed_queries(texts)).mean(axis=0)
            self._query_means[code] = mean / np.linalg.norm(mean)
        return self._query_means[code]


class BlendRetriever(LabelRetriever):
    """λ_l = n_l / (n_l + κ) of the collection's offset, 1 − λ_l of the reference's (by label)."""

    def __init__(self, *a, kappa: float = 10.0, **kw):
        super().__init__(*a, **kw)
        self.kappa, self._docs = kappa, None

    def _reference_scores(self, cands, q, query_lang):
        if self._shifts is None:
            self._shifts = ReferenceShifts.shared(self.embedder)
        if self._docs is None:
            self._docs = {lang: len(self.store.facet(self.collection, DOC_KEY, Filter(must={LANGUAGE_KEY: [lang]}),
                                                     limit=100_000)) for lang in self.means.means}
        ids = [i for i, c in cands.items() if np.isfinite(c.score)]
        labels = [cands[i].language for i in ids]
        ref = self._label_offsets(labels, q, query_lang, ids)
        present = list(self.means.means)
        if present:  # against the mean over the collection's languages, like the collection's offsets below
            ref = ref - float(np.mean(self._label_offsets(present, q, query_lang)))
        bg = self.means.background(q)  # {lang: q·μ_lang}
        centre = float(np.mean(list(bg.values()))) if bg else 0.0
        for i, lab, r in zip(ids, labels, ref):
            lam = self._docs.get(lab, 0) / (self._docs.get(lab, 0) + self.kappa) if lab in bg else 0.0
            cands[i].score -= float(lam * (bg[lab] - centre) + (1 - lam) * r if lab in bg else r)


class GatedRetriever(Retriever):
    """``reference`` weighted down when the query's own language already holds a close match: w · clip((hi − s)/(hi −
    lo), 0, 1), s the best cosine among the candidates labelled with the query's language."""

    def __init__(self, *a, lo: float = 0.85, hi: float = 0.85, **kw):
        super().__init__(*a, **kw)
        self.lo, self.hi, self.base_weight = lo, hi, self.reference_weight

    def _reference_scores(self, cands, q, query_lang):
        same = [c.score for c in cands.values() if c.language == query_lang and np.isfinite(c.score)]
        s = max(same, default=-1.0)
        gate = 1.0 if s < self.lo else 0.0 if s >= self.hi else (self.hi - s) / (self.hi - self.lo)
        self.reference_weight = self.base_weight * gate
        if gate > 0:
            super()._reference_scores(cands, q, query_lang)


class FusedRetriever(Retriever):
    """Reciprocal-rank fusion of the raw cosines' order and ``reference``'s: a same-language match the raw order puts
    first stays near the top, a cross-language one the correction lifts comes up beside it."""

    def __init__(self, *a, rrf_k: float = 60.0, **kw):
        super().__init__(*a, **kw)
        self.rrf_k = rrf_k

    def _reference_scores(self, cands, q, query_lang):
        ids = [i for i, c in cands.items() if np.isfinite(c.score)]
        raw = {i: cands[i].score for i in ids}
        super()._reference_scores(cands, q, query_lang)
        rank_raw = {i: r for r, i in enumerate(sorted(ids, key=lambda i: -raw[i]))}
        rank_ref = {i: r for r, i in enumerate(sorted(ids, key=lambda i: -cands[i].score))}
        for i in ids:
            cands[i].score = 1.0 / (self.rrf_k + rank_raw[i]) + 1.0 / (self.rrf_k + rank_ref[i])


class MarginRetriever(Retriever):
    """``reference`` where the query's own language holds no document that stands out: the best own-language
    document's lead over the second (best chunk each, raw cosines) below ``margin``. ``pin``: the correction always,
    but a standing-out own-language document stays first."""

    def __init__(self, *a, margin: float = 0.02, pin: bool = False, **kw):
        super().__init__(*a, **kw)
        self.margin, self.pin = margin, pin

    def _reference_scores(self, cands, q, query_lang):
        best: dict[str, float] = {}
        for c in cands.values():
            if c.language == query_lang and np.isfinite(c.score):
                best[c.doc] = max(best.get(c.doc, -np.inf), c.score)
        top = sorted(best.items(), key=lambda kv: -kv[1])
        lead = top[0][1] - top[1][1] if len(top) >= 2 else 0.0
        if lead >= self.margin and not self.pin:
            return
        super()._reference_scores(cands, q, query_lang)
        if lead >= self.margin:
            top_doc = top[0][0]
            lift = max(c.score for c in cands.values() if np.isfinite(c.score))
            for c in cands.values():
                if c.doc == top_doc and np.isfinite(c.score):
                    c.score += lift + 1.0


class CountedSentenceRetriever(Retriever):
    """The best-sentence score with its weight scaled by the chunk's sentence count, β · (1 − 1/n)^γ (the default:
    γ = 1; γ = 0: the same weight at every length, the default before)."""

    def __init__(self, *a, gamma: float = 1.0, **kw):
        super().__init__(*a, **kw)
        self.gamma = gamma

    def _sentence_share(self, n):
        return self.sentence_weight * (1 - 1 / n) ** self.gamma


def variants(emb, rows: str) -> dict:
    out = {
        "raw dense": lambda st, c: Retriever(st, c, emb, mode="dense", debias="off", sentence_weight=0.0,
                                                        same_language_gap=0.0),
        "hybrid, chunk cosines (sentence_weight=0)": lambda st, c: Retriever(st, c, emb, sentence_weight=0.0,
                                                                                                   same_language_gap=0.0),
        "default (hybrid, chunk + best sentence)": lambda st, c: Retriever(st, c, emb),
        "offsets (collection means)": lambda st, c: Retriever(st, c, emb, debias="offsets"),
    }
    for w in (0.5, 0.75, 1.0, 1.25, 1.5):
        out[f"label w={w}"] = lambda st, c, w=w: LabelRetriever(st, c, emb, debias="reference", reference_weight=w)
    for w in (0.75, 1.0, 1.25):
        out[f"label w={w}, strength"] = lambda st, c, w=w: LabelRetriever(st, c, emb, debias="reference",
                                                                           reference_weight=w, strength=True)
    out["pair w=1.0"] = lambda st, c: PairRetriever(st, c, emb, debias="reference", reference_weight=1.0)
    for kappa in (5.0, 20.0, 80.0):
        out[f"blend κ={kappa:g}"] = lambda st, c, kappa=kappa: BlendRetriever(st, c, emb, debias="reference",
                                                                               reference_weight=1.0, kappa=kappa)
    for w in (0.5, 0.75, 1.0, 1.25):
        out[f"reference w={w}"] = lambda st, c, w=w: Retriever(st, c, emb, debias="reference", reference_weight=w)
    out["reference w=0.75, dense"] = lambda st, c: Retriever(st, c, emb, mode="dense", debias="reference")
    out["reference w=0.75, no per-language legs"] = lambda st, c: Retriever(st, c, emb, debias="reference",
                                                                             per_language_k=0)
    out["reference w=0.75, 50 per language"] = lambda st, c: Retriever(st, c, emb, debias="reference",
                                                                        per_language_k=50)
    for lo, hi in ((0.84, 0.84), (0.86, 0.86), (0.88, 0.88), (0.90, 0.90), (0.84, 0.90), (0.86, 0.92)):
        out[f"gated {lo}-{hi}"] = lambda st, c, lo=lo, hi=hi: GatedRetriever(st, c, emb, debias="reference", lo=lo,
                                                                           hi=hi)
    for rrf_k in (1.0, 10.0, 60.0):
        out[f"rrf(raw, reference) k={rrf_k:g}"] = lambda st, c, rrf_k=rrf_k: FusedRetriever(
            st, c, emb, debias="reference", rrf_k=rrf_k)
    for m in (0.01, 0.02, 0.03):
        out[f"margin gate {m}"] = lambda st, c, m=m: MarginRetriever(st, c, emb, debias="reference", margin=m)
        out[f"margin pin {m}"] = lambda st, c, m=m: MarginRetriever(st, c, emb, debias="reference", margin=m,
                                                                    pin=True)
    # the default's best-sentence weight β · (1 − 1/n)^γ for a chunk of n sentences (chosen: β = 0.7, γ = 1)
    for beta, gamma in ((0.3, 0.0), (0.5, 0.0), (0.7, 0.0), (1.0, 0.0), (0.5, 1.0), (0.7, 1.0), (0.7, 2.0),
                        (1.0, 1.0)):
        out[f"sentences β={beta} γ={gamma:g}"] = lambda st, c, beta=beta, gamma=gamma: CountedSentenceRetriever(
            st, c, emb, sentence_weight=beta, gamma=gamma)
    return {k: v for k, v in out.items() if any(part in k for part in rows.split("|"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="handbook-np,udhr-np,django-np,udhr,pdf")
    ap.add_argument("--split", default="tune", choices=["tune", "test"])
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--rows", default="", help="only rows whose label holds one of these '|'-separated texts")
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder

    emb = load_embedder(args.embedder, device="cpu")
    header(f"reference_sweep: {args.embedder}, split={args.split}")
    tag = args.embedder.replace(":", "_").replace("/", "_")
    rows = variants(emb, args.rows)
    for name in args.sets.split(","):
        if name == "pdf":
            results = R.pdf_results(rows, emb, args.split)
            print(f"\n## pdf ({args.split} split)")
        else:
            s = R.load_set(name)
            store, src = R.build(s, emb, tag)
            texts = list(dict.fromkeys(q.text for q in s.queries if q.split == args.split))
            vectors = dict(zip(texts, emb.embed_queries(texts)))
            results = {label: R.evaluate(make(store, "docs"), s, src, args.split, vectors)
                       for label, make in rows.items()}
            store.close()
            print(f"\n## {name} ({args.split} split)")
        table([R.row(label, res) for label, res in results.items()])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
