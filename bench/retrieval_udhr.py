"""Retrieval quality on UDHR: dense vs hybrid, with and without the language-bias correction (centring).

1. Mixed collection: the 30 UDHR articles in every language given (tests/data/udhr), one point per article, all
   in one collection. Query: article a in language X; relevant: article a in every other language; the query's
   own article is excluded from its results, so what remains in its language is never relevant and the
   own-language share of the top 10 measures same-language bias.
2. Single-language collection (English only), queries in the other languages: what centring does where there is
   no mixing (the 'auto' setting keeps it off there).
3. Same-language queries: the last third of article a in X against the X articles (language filter): what the
   sparse leg of hybrid search adds where lexical matching can work.

    .venv/bin/python bench/retrieval_udhr.py [--langs en,sw,...] [--embedder e5-small]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lusifer_rag.embedder import load_embedder  # noqa: E402
from lusifer_rag.embedder.sparse import BM25SparseEncoder  # noqa: E402
from lusifer_rag.store import CollectionSpec, Point, SparseVector, open_store  # noqa: E402
from lusifer_rag.rag.retrieval import Retriever  # noqa: E402

UDHR = ROOT / "tests" / "data" / "udhr"
ALL = sorted(p.stem for p in UDHR.glob("*.json"))
NINE = ["en", "es", "fr", "ru", "zh", "ja", "hi", "ar", "sw"]


def articles(lang: str) -> list[str]:
    arts = json.loads((UDHR / f"{lang}.json").read_text(encoding="utf-8"))["articles"]
    return [arts[str(i)] for i in range(1, 31)]


def build(store, name: str, emb, langs: list[str]) -> None:
    texts, payloads = [], []
    for lang in langs:
        for a, text in enumerate(articles(lang), 1):
            texts.append(text)
            payloads.append({"page_content": text, "metadata": {"doc_id": f"{lang}-{a}", "source": f"{lang}.txt",
                                                                "language": lang, "article": a, "page": 1}})
    dense = emb.embed_documents(texts)
    sparse = BM25SparseEncoder(emb.tokenizer).encode_documents(texts)
    store.create_collection(name, CollectionSpec(dim=emb.dim, meta={"embedder": emb.spec}))
    store.upsert(name, [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, p["metadata"]["doc_id"])), vector=v,
                              sparse=SparseVector(s.indices, s.values), payload=p)
                        for v, s, p in zip(dense, sparse, payloads)])
    store.optimize(name)


def run(retriever: Retriever, langs: list[str], k: int = 10, **search) -> dict[str, tuple[float, float]]:
    """lang -> (recall@k, own-language share of the top k)."""
    out = {}
    for lang in langs:
        recalls, own = [], []
        for a, text in enumerate(articles(lang), 1):
            hits = retriever.search(text, k=k + 1, query_language=lang, **search)
            hits = [h for h in hits if h.doc_id != f"{lang}-{a}"][:k]
            rel = len(langs) - 1
            recalls.append(sum(h.doc_id.endswith(f"-{a}") for h in hits) / min(rel, k))
            own.append(sum(h.language == lang for h in hits) / k)
        out[lang] = (float(np.mean(recalls)), float(np.mean(own)))
    return out


def table(title: str, langs: list[str], results: dict[str, dict[str, tuple[float, float]]], second: str) -> None:
    print(f"\n## {title}\n" + f"{'lang':<6}" + "".join(f"{n:>26}" for n in results))
    for lang in langs:
        print(f"{lang:<6}" + "".join(f"{results[n][lang][0]:>18.3f} / {results[n][lang][1]:.2f}" for n in results))
    print(f"{'mean':<6}" + "".join(
        f"{np.mean([v[0] for v in results[n].values()]):>18.3f} / {np.mean([v[1] for v in results[n].values()]):.2f}"
        for n in results) + f"   (first: recall@10; second: {second})")


def single_language(retriever: Retriever, langs: list[str], **search) -> dict[str, tuple[float, float]]:
    """English-only collection; query = article a in X; relevant = English article a. -> (recall@10, P@1)."""
    out = {}
    for lang in langs:
        r10, p1 = [], []
        for a, text in enumerate(articles(lang), 1):
            hits = retriever.search(text, k=10, query_language=lang, **search)
            r10.append(any(h.doc_id == f"en-{a}" for h in hits))
            p1.append(bool(hits) and hits[0].doc_id == f"en-{a}")
        out[lang] = (float(np.mean(r10)), float(np.mean(p1)))
    return out


def same_language(retriever: Retriever, langs: list[str], **search) -> dict[str, tuple[float, float]]:
    """Query = last third of article a in X, documents = X articles. -> (recall@10, P@1)."""
    from lusifer_rag.rag.retrieval import SearchFilters

    out = {}
    for lang in langs:
        r10, p1 = [], []
        for a, text in enumerate(articles(lang), 1):
            q = text[len(text) * 2 // 3:]
            hits = retriever.search(q, k=10, query_language=lang, filters=SearchFilters(languages=[lang]), **search)
            r10.append(any(h.doc_id == f"{lang}-{a}" for h in hits))
            p1.append(bool(hits) and hits[0].doc_id == f"{lang}-{a}")
        out[lang] = (float(np.mean(r10)), float(np.mean(p1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--langs", default=",".join(NINE), help=f"comma-separated; 'all' = {','.join(ALL)}")
    args = ap.parse_args()
    langs = ALL if args.langs == "all" else args.langs.split(",")
    emb = load_embedder(args.embedder)
    cache: dict = {}

    def retriever(store, name, **kw):
        r = Retriever(store, name, emb, **kw)
        r._query_cache = cache  # every configuration reuses the query vectors
        return r

    with tempfile.TemporaryDirectory() as tmp, open_store(str(Path(tmp) / "store")) as store:
        t0 = time.time()
        build(store, "mixed", emb, langs)
        build(store, "en", emb, ["en"])
        print(f"# {emb.spec}: {len(langs)} languages x 30 UDHR articles (mixed) + English-only collection, "
              f"embedded in {time.time() - t0:.0f}s")
        configs = {"dense": dict(mode="dense", debias="off"), "dense+centring": dict(mode="dense", debias="on"),
                   "hybrid": dict(mode="hybrid", debias="off"), "hybrid+centring": dict(mode="hybrid", debias="on")}
        mixed = {n: run(retriever(store, "mixed"), langs, **c) for n, c in configs.items()}
        table(f"Mixed {len(langs)}-language collection (corpus share of each language {1 / len(langs):.2f})", langs,
              mixed, "own-language share of the top 10")
        others = [x for x in langs if x != "en"]
        single = {n: single_language(retriever(store, "en"), others, mode="dense", debias=d)
                  for n, d in (("dense (auto = off)", "off"), ("dense+centring forced", "on"))}
        table("English-only collection, queries in other languages", others, single, "P@1")
        same = {n: same_language(retriever(store, "mixed"), langs, mode=m, debias=d)
                for n, (m, d) in (("dense", ("dense", "off")), ("hybrid", ("hybrid", "off")),
                                  ("dense+centring", ("dense", "on")), ("hybrid+centring", ("hybrid", "on")))}
        table("Same-language queries (last third of the article), language filter", langs, same, "P@1")


if __name__ == "__main__":
    main()
