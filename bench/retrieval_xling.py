"""Retrieval on mixed-language and single-language collections: raw, the previous defaults and the current ones.

Sets (bench/xling_data.py; all install offline; the Debian Reference is never used): the Debian Administrator's
Handbook (9 languages, HTML through the real loader), the UDHR (20 languages), Django's catalogs (12 languages,
short UI sentences). Each is ingested by the real pipeline into an embedded collection (kept in the cache dir, so
a rerun embeds nothing) and searched by the product's Retriever:

- topic queries (cross-lingual): a section title / an article's first sentence / a UI string; relevant: the same
  content in every language. recall@10 and nDCG@10 over documents (best chunk per document), and the share of
  the query's own language among the top-10 documents (each language is ~1/L of the corpus). P@1: the best
  document is the same content in some language. With L language versions relevant, recall@10 needs the right
  group first, so P@1 bounds what re-ranking the candidates can reach; ``en-only P@1`` is the model's own matching
  of a query to the right English document without any other language in the way.
- own version missing: each topic query again, its own language's version of the passage left out of the search
  (the language keeps its other documents): collections are rarely fully parallel.
- half-parallel: the search restricted to a fixed half of the documents (each kept with probability 1/2, by a hash
  of its id; the same half for every row), as a collection where only some passages are translated into some
  languages; relevant: the kept versions. Reported apart for the queries whose own version was kept and those
  whose own version was not (then the query's language holds other passages only).
- known-item queries: a sentence read off a page, in that page's language; success: the chunk holding it in the
  top 5 (no language filter).
- single-language: the English documents alone, queried in the other languages (relevant: the English document).

Rows: ``raw dense`` / ``raw hybrid`` (no correction), ``previous default`` (hybrid + debias=auto as of each
``--baseline`` — loaded from git), ``default`` (hybrid + debias=auto, this checkout). Reported on the ``test``
split (the other, ``tune``, is what choices were made on).

    .venv/bin/python bench/retrieval_xling.py [--sets handbook,udhr,django] [--split test] [--baseline REV ...]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
import types
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import xling_data as X  # noqa: E402

from lusifer_rag.ingest.pipeline import Ingestor  # noqa: E402
from lusifer_rag.rag.retrieval import Retriever, SearchFilters  # noqa: E402
from lusifer_rag.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LANGS = {
    "handbook": ["en", "de", "es", "fr", "it", "ja", "pt", "ru", "zh"],
    "udhr": ["en", "es", "fr", "de", "ru", "zh", "ja", "ko", "ar", "fa", "hi", "bn", "ta", "te", "th", "vi", "sw",
             "ha", "yo", "am"],
    "django": ["en", "de", "es", "fr", "ru", "zh", "ja", "ar", "hi", "sw", "id", "tr"],
}
#: bumped when ingestion stores something the retrieval reads (2: the chunks' language confidence), so that a rerun
#: builds fresh stores instead of measuring on stale ones
STORE_VERSION = 2
#: "previous" rows: the centring before the exact-match guard, before the language subspace + feedback, before
#: unsure language labels were told apart, before translation-group scoring, and before the same-language pivot
BASELINES = ("e50fe4a", "100797a", "f563cf7", "250a934", "346ce55")


def baseline_retriever(rev: str):
    """The Retriever class of ``rev`` (rag/retrieval.py and, where it has one, rag/language_bias.py from git), run
    against today's store and embedder."""
    def load(path: str, name: str) -> types.ModuleType | None:
        r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            return None
        src = r.stdout.replace("from .language_bias import", f"from ._baseline_{rev}_language_bias import")
        mod = types.ModuleType(f"lusifer_rag.rag._baseline_{rev}_{name}")
        mod.__package__ = "lusifer_rag.rag"
        sys.modules[mod.__name__] = mod  # dataclasses and relative imports look their module up
        exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
        return mod

    load("rag/language_bias.py", "language_bias")
    mod = load("rag/retrieval.py", "retrieval")
    if mod is None:
        raise SystemExit(f"no rag/retrieval.py at {rev}")
    return mod.Retriever


def build(s: X.XlingSet, emb, tag: str):
    """(store, {source path: doc id}); ingests what is missing into collections 'mixed' and 'en'."""
    root = X.cache_root() / "stores" / f"{s.name}-{len(s.languages)}-{tag}-v{STORE_VERSION}"
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    src = {}
    for d in s.docs:
        name = d.id.replace("|", "__")
        p = corpus / d.language / (f"{name}.html" if d.path is not None else f"{name}.txt")
        p.parent.mkdir(exist_ok=True)
        if not p.exists():
            p.write_bytes(d.path.read_bytes()) if d.path is not None else p.write_text(d.text, encoding="utf-8")
        src[str(p.resolve())] = d.id
    store = open_store(str(root / "store"))
    t0 = time.perf_counter()
    for coll, paths in (("mixed", [corpus]), ("en", [corpus / "en"])):
        rep = Ingestor(store, coll, emb, progress_mode="off").ingest(paths)
        failed = rep.by_status("failed")
        if failed:
            print(f"  {s.name}/{coll}: {len(failed)} files failed, e.g. {failed[0].source}: {failed[0].message}")
    print(f"  {s.name}: {store.count('mixed')} chunks mixed, {store.count('en')} English-only "
          f"(ingest {time.perf_counter() - t0:.1f}s)")
    return store, src


def half_of(s: X.XlingSet) -> set[str]:
    """The documents of the half-parallel variant: each kept with probability 1/2, by a hash of its id."""
    return {d.id for d in s.docs if int(hashlib.sha1(f"half|{d.id}".encode()).hexdigest(), 16) % 2 == 0}


def evaluate(retriever, s: X.XlingSet, src: dict, split: str, vectors: dict, missing: bool = False) -> dict:
    """Metrics over the queries of ``split``; relevance counts only documents in ``s.languages`` (the collection's).
    ``missing``: also each topic query with its own language's version left out of the search (``recall@10 own
    version missing``): the query's language still has documents, but not this passage; and each topic query on
    the half-parallel variant (:func:`half_of`; ``half_kept@10`` / ``half_not_kept@10``)."""
    langs = set(s.languages)
    sources_of = defaultdict(list)
    for path, doc in src.items():
        sources_of[doc].append(path)
    half = half_of(s)
    half_filter = SearchFilters(sources=[p for d, ps in sources_of.items() if d in half for p in ps])
    per = defaultdict(lambda: defaultdict(list))
    lat = []
    queries = [q for q in s.queries if q.split == split]
    for start in range(0, len(queries), 512):
        batch = queries[start:start + 512]
        # every row searches with the same query vectors, embedded once: the model's cost is not compared here
        retriever._query_cache.update((q.text, vectors[q.text]) for q in batch)
        for q in batch:
            hits = retriever.search(q.text, k=60)  # deep enough for 10 distinct documents
            if q.kind == "known":
                per[q.language]["known@5"].append(any(src[h.source] == q.target_doc and q.text in h.text
                                                      for h in hits[:5]))
                continue
            docs = list(dict.fromkeys(src[h.source] for h in hits))[:10]
            rel = [d for d in q.relevant if d.split("|")[1] in langs]
            gains = [d in rel for d in docs]
            ideal = sum(1 / np.log2(i + 2) for i in range(min(len(rel), 10)))
            per[q.language]["P@1"].append(bool(gains) and gains[0])  # the best document is in the right group
            per[q.language]["recall@10"].append(sum(gains) / min(len(rel), 10))
            per[q.language]["nDCG@10"].append(sum(g / np.log2(i + 2) for i, g in enumerate(gains)) / ideal)
            own_version = f"{q.group}|{q.language}"
            if missing and own_version in rel:
                keep = [p for d, ps in sources_of.items() if d != own_version for p in ps]
                left = retriever.search(q.text, k=60, filters=SearchFilters(sources=keep))
                docs_left = list(dict.fromkeys(src[h.source] for h in left))[:10]
                rel_left = [d for d in rel if d != own_version]
                per[q.language]["missing@10"].append(sum(d in rel_left for d in docs_left) / min(len(rel_left), 10))
            rel_half = [d for d in rel if d in half]
            if missing and rel_half:
                hits_half = retriever.search(q.text, k=60, filters=half_filter)
                docs_half = list(dict.fromkeys(src[h.source] for h in hits_half))[:10]
                key = "half_kept@10" if own_version in half else "half_not_kept@10"
                per[q.language][key].append(sum(d in rel_half for d in docs_half) / min(len(rel_half), 10))
            per[q.language]["own@10"].append(np.mean([d.endswith(f"|{q.language}") for d in docs]) if docs else 0)
    for q in queries[:200]:  # latency of a search as users run it (k=10), the query vector cached
        t0 = time.perf_counter()
        retriever.search(q.text, k=10)
        lat.append(time.perf_counter() - t0)
    means = {m: float(np.mean([v for lang in per for v in per[lang].get(m, [])]))
             for m in ("recall@10", "nDCG@10", "own@10", "known@5", "P@1", "missing@10", "half_kept@10",
                       "half_not_kept@10") if any(per[lang].get(m) for lang in per)}
    return {"all": means, "per_language": {lang: {m: float(np.mean(v)) for m, v in ms.items() if v}
                                           for lang, ms in per.items()},
            "ms": 1000 * float(np.median(lat)) if lat else 0.0}


def f3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="handbook,udhr,django")
    ap.add_argument("--split", default="test", choices=["tune", "test"])
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--baseline", action="append", default=[],
                    help=f"git revision whose defaults are a 'previous' row (repeatable; default {', '.join(BASELINES)})")
    ap.add_argument("--per-language", action="store_true", help="also print the per-query-language tables")
    ap.add_argument("--fetch-k", type=int, action="append", default=[],
                    help="also a row of the default with this many candidates per leg (repeatable)")
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder

    emb = load_embedder(args.embedder, device="cpu")
    baselines = args.baseline or list(BASELINES)
    header(f"retrieval_xling: {args.embedder}, split={args.split}, baselines={','.join(baselines)}")
    rows = {
        "raw dense": lambda st, c: Retriever(st, c, emb, mode="dense", debias="off"),
        "raw hybrid": lambda st, c: Retriever(st, c, emb, mode="hybrid", debias="off"),
    }
    for rev in baselines:
        rows[f"previous default ({rev})"] = lambda st, c, Old=baseline_retriever(rev): Old(st, c, emb)
    rows["default"] = lambda st, c: Retriever(st, c, emb)
    rows["default + same-language pivot"] = lambda st, c: Retriever(st, c, emb, same_language_pivot=True)
    for n in args.fetch_k:
        rows[f"default, fetch_k={n}"] = lambda st, c, n=n: Retriever(st, c, emb, fetch_k=n)
    for name in args.sets.split(","):
        s = X.SETS[name](LANGS[name])
        store, src = build(s, emb, args.embedder.replace(":", "_").replace("/", "_"))
        out = []
        texts = list(dict.fromkeys(q.text for q in s.queries if q.split == args.split))
        vectors = dict(zip(texts, emb.embed_queries(texts)))
        en_only = X.XlingSet(s.name, ["en"], s.docs, [q for q in s.queries if q.kind == "topic" and q.language != "en"])
        for label, make in rows.items():
            mixed = evaluate(make(store, "mixed"), s, src, args.split, vectors, missing=True)
            single = evaluate(make(store, "en"), en_only, src, args.split, vectors)
            m = mixed["all"]
            out.append({"mode": label, "recall@10": f3(m.get("recall@10")), "nDCG@10": f3(m.get("nDCG@10")),
                        "own-lang@10": f3(m.get("own@10")), "P@1": f3(m.get("P@1")),
                        "recall@10 own version missing": f3(m.get("missing@10")),
                        "half-parallel own kept / not kept": f"{f3(m.get('half_kept@10'))} / {f3(m.get('half_not_kept@10'))}",
                        "known@5": f3(m.get("known@5")),
                        "en-only recall@10": f3(single["all"].get("recall@10")), "en-only P@1": f3(single["all"].get("P@1")),
                        "search ms p50 (k=10)": f"{mixed['ms']:.1f}"})
            if args.per_language:
                langs = sorted(mixed["per_language"])
                print(f"\n{name} / {label}: per query language")
                table([{"lang": lg, **{m: f3(mixed["per_language"][lg].get(m)) for m in ("recall@10", "own@10", "known@5")}}
                       for lg in langs])
        n_topic = len([q for q in s.queries_of("topic", args.split)])
        n_known = len([q for q in s.queries_of("known", args.split)])
        print(f"\n## {name}: {len(s.languages)} languages, {len(s.docs)} documents; {n_topic} topic and {n_known} "
              f"known-item queries ({args.split} split)")
        table(out)
        store.close()


if __name__ == "__main__":
    main()
