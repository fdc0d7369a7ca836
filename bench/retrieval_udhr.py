"""Cross-lingual retrieval on UDHR: dense vs hybrid (sparse weights) and the language-bias correction.

Corpus: the 30 UDHR articles in every language given (tests/data/udhr), one point per article, in one embedded
collection ("mixed": all languages at once). Query: article a in language X; relevant: article a in every other
language; the query's own article (same language) is excluded from its results, so what remains in the query's
language is never relevant and the own-language share of the top 10 measures same-language bias.

    .venv/bin/python bench/retrieval_udhr.py [--langs en,sw,...] [--embedder e5-small]

Prints per-language recall@10 and own-language share for each configuration, and the means.
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

from embedder import load_embedder  # noqa: E402
from embedder.sparse import BM25SparseEncoder  # noqa: E402
from lusifer_rag.store import CollectionSpec, Point, SparseVector, open_store  # noqa: E402
from rag.retrieval import Retriever  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--langs", default=",".join(NINE), help=f"comma-separated; 'all' = {','.join(ALL)}")
    ap.add_argument("--weights", default="0.1,0.25,0.5,1.0", help="sparse weights to try in hybrid mode")
    args = ap.parse_args()
    langs = ALL if args.langs == "all" else args.langs.split(",")
    emb = load_embedder(args.embedder)
    with tempfile.TemporaryDirectory() as tmp, open_store(str(Path(tmp) / "store")) as store:
        t0 = time.time()
        build(store, "udhr", emb, langs)
        print(f"# {len(langs)} languages x 30 articles embedded with {emb.spec} in {time.time() - t0:.0f}s")
        configs = {"dense": dict(mode="dense", debias="off"), "dense+debias": dict(mode="dense", debias="on")}
        for w in map(float, args.weights.split(",")):
            configs[f"hybrid w={w}"] = dict(mode="hybrid", debias="off", sparse_weight=w)
            configs[f"hybrid w={w}+debias"] = dict(mode="hybrid", debias="on", sparse_weight=w)
        results = {}
        for name, cfg in configs.items():
            w = cfg.pop("sparse_weight", 0.25)
            r = Retriever(store, "udhr", emb, sparse_weight=w)
            r._query_cache = getattr(main, "_cache", {})
            results[name] = run(r, langs, **cfg)
            main._cache = r._query_cache
        header = f"{'lang':<6}" + "".join(f"{n:>22}" for n in results)
        print("\nrecall@10 / own-language share of top 10 (corpus share "
              f"{1 / len(langs):.2f})\n" + header)
        for lang in langs:
            print(f"{lang:<6}" + "".join(f"{results[n][lang][0]:>14.3f} / {results[n][lang][1]:.2f}" for n in results))
        print(f"{'mean':<6}" + "".join(
            f"{np.mean([v[0] for v in results[n].values()]):>14.3f} / {np.mean([v[1] for v in results[n].values()]):.2f}"
            for n in results))


if __name__ == "__main__":
    main()
