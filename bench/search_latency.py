"""Search latency at 10k, 100k and 1M chunks: the default search (hybrid + language centring) and dense only,
p50/p95, with recall@10 against exact (brute-force) search.

    .venv/bin/python bench/search_latency.py                         # 10k, 100k, 1M (builds and caches them)
    .venv/bin/python bench/search_latency.py --sizes 10000,100000 --queries 100

How the collections are made (ingesting 1M chunks on 2 CPU cores would take days): the base is the real Debian
Administrator's Handbook (Debian package ``debian-handbook``) in 14 of its 26 languages (``BASE_LANGUAGES``: six
scripts; ingesting all 26 takes about an hour here), ingested by the product's pipeline (HTML loader, language
detection, chunker, multilingual-e5-small, BM25): real chunks with real vectors. Larger collections add synthetic chunks: each is a real chunk's payload and BM25 vector with the dense
vector ``normalize(a·v_i + (1−a)·v_j + σ·g)`` — v_i its own vector, v_j another chunk of the same language,
a ~ U(0.6, 1), g Gaussian, σ = 0.01 per dimension — so the vectors spread over each language's region of the
space instead of piling up as duplicates (the table prints the nearest-neighbour cosine of real and synthetic
points: they should look alike). Collections of ``--int8-from`` chunks or more (default 1M) keep int8-quantized
vectors in RAM and rescore with the originals, as ``lusifer-rag ingest --quantization int8`` makes them.

Queries: section titles and sentences of the handbook in its languages, embedded once beforehand; the table
reports the search without the query embedding (``search ms``) and the embedding's own cost on this machine
(``+ query embedding``), since the target is for the whole search. recall@10: the share of the exact search's top
10 (the same retriever, every store query brute force) that the indexed search returns, counting chunks with
equal vectors as interchangeable (``tie_aware_recall``). ``beams raw/centred``: the HNSW beams the retriever chose
for the uncentred and centred dense legs by collection size (``rag/retrieval.py`` ``LEG_BEAMS``; "spec": the
collection's ``hnsw_ef``).
The collections are cached under the cache dir (``bench-search-latency/``); ``--rebuild`` makes them again.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import header, table  # noqa: E402

import xling_data as X  # noqa: E402

BASE_LANGUAGES = ("ar-MA", "ca-ES", "cs-CZ", "da-DK", "de-DE", "el-GR", "en-US", "es-ES", "fa-IR", "fr-FR", "hr-HR",
                  "ja-JP", "ru-RU", "zh-CN")
RECIPE = {"version": 1, "sigma": 0.01, "mix": [0.6, 1.0], "seed": 0}


def cache() -> Path:
    from lusifer_rag.settings import Settings

    return Path(Settings.from_env().cache_dir) / "bench-search-latency"


def handbook_files() -> list[Path]:
    root = X.debian_package("debian-handbook") / "usr/share/doc/debian-handbook/html"
    return sorted(p for lang in BASE_LANGUAGES for p in (root / lang).glob("sect.*.html"))


def base_store(emb):
    """The real base: every handbook section in every language, ingested by the product's pipeline."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    store = open_store(str(cache() / "base"))
    t0 = time.perf_counter()
    rep = Ingestor(store, "base", emb, progress_mode=None).ingest(handbook_files())
    if rep.by_status("ingested"):
        print(f"base: {rep.summary()} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    store.optimize("base")
    return store


def load_base(store):
    """(ids, vectors (n, dim), payloads, sparse vectors) of the base collection."""
    ids, vecs, payloads = [], [], []
    for p in store.iter_points("base", with_vectors=True):
        ids.append(p.id)
        vecs.append(p.vector)
        payloads.append(p.payload)
    return ids, np.stack(vecs).astype(np.float32), payloads


def synthetic_vectors(vecs: np.ndarray, langs: list[str], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(source row of each synthetic point (n,), vectors (n, dim)): see the module docstring."""
    by_lang: dict[str, np.ndarray] = {}
    for lang in set(langs):
        by_lang[lang] = np.array([i for i, x in enumerate(langs) if x == lang])
    src = rng.integers(0, len(vecs), n)
    partner = np.array([rng.choice(by_lang[langs[i]]) for i in src])
    a = rng.uniform(*RECIPE["mix"], size=(n, 1)).astype(np.float32)
    out = a * vecs[src] + (1 - a) * vecs[partner] + RECIPE["sigma"] * rng.standard_normal((n, vecs.shape[1])).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return src, out


def build(size: int, emb, base, int8: bool, rebuild: bool):
    """The collection of ``size`` chunks (base + synthetic), cached; returns (store, collection name)."""
    from lusifer_rag.embedder.sparse import BM25SparseEncoder
    from lusifer_rag.store import CollectionSpec, Point, SparseVector, open_store

    ids, vecs, payloads = base
    name = f"n{size}" + ("-int8" if int8 else "")
    store = open_store(str(cache() / name))
    recipe = {**RECIPE, "size": size, "base": len(ids), "int8": int8}
    if name in store.list_collections():
        spec = store.open_collection(name)
        if not rebuild and spec.meta.get("bench_recipe") == recipe and store.count(name) == size:
            return store, name
        store.drop_collection(name)
    src_store = open_store(str(cache() / "base"))
    meta = dict(src_store.open_collection("base").meta)
    src_store.close()
    spec = CollectionSpec(dim=vecs.shape[1], quantization="int8" if int8 else None,
                          meta={**meta, "bench_recipe": recipe})
    store.create_collection(name, spec)
    sparse = BM25SparseEncoder(emb.tokenizer).encode_documents([p["page_content"] for p in payloads])
    langs = [p["metadata"]["language"] for p in payloads]
    rng = np.random.default_rng(RECIPE["seed"])
    t0 = time.perf_counter()
    step = 4096
    done = 0
    while done < size:
        n = min(step, size - done)
        if done < len(ids):  # the real chunks first
            rows = np.arange(done, min(done + n, len(ids)))
            src, dense = rows, vecs[rows]
        else:
            src, dense = synthetic_vectors(vecs, langs, n, rng)
        points = []
        for j, (i, v) in enumerate(zip(src, dense)):
            k = done + j
            md = dict(payloads[i]["metadata"])
            if k >= len(ids):
                md["doc_id"] = f"{md['doc_id']}~{k}"
                md["source"] = f"{md['source']}~{k // 1000}"
            points.append(Point(str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}/{k}")), v,
                                {"page_content": payloads[i]["page_content"], "metadata": md},
                                SparseVector(sparse[i].indices, sparse[i].values)))
        store.upsert(name, points)
        done += len(points)
        print(f"\r{name}: {done:,}/{size:,} points ({time.perf_counter() - t0:.0f}s)", end="", file=sys.stderr)
    t1 = time.perf_counter()
    store.optimize(name)
    print(f"\n{name}: upsert {t1 - t0:.0f}s, index {time.perf_counter() - t1:.0f}s", file=sys.stderr)
    return store, name


def queries(n: int, seed: int = 0) -> list[str]:
    """Section titles and sentences of the handbook in its languages (real user-like queries)."""
    rng = random.Random(seed)
    files = handbook_files()
    picked = rng.sample(files, min(len(files), n))
    out = []
    for f in picked:
        title, text = X._handbook_text(f)
        sents = X._sentences(text)
        if rng.random() < 0.5 and title:
            out.append(title)
        elif sents:
            out.append(rng.choice(sents))
    return list(dict.fromkeys(q for q in out if q.strip()))[:n]


def nn_cosine(store, name: str, vecs: np.ndarray, rows: np.ndarray) -> float:
    """Median cosine of points to their nearest other point (exact search)."""
    out = []
    for v in vecs[rows]:
        hits = store.query(name, dense=v, k=2, exact=True)
        out.append(hits[1].score if len(hits) > 1 else np.nan)
    return float(np.nanmedian(out))


def tie_aware_recall(got, want) -> float:
    """Share of the exact top k found, where chunks with equal vectors are interchangeable: the handbook's
    untranslated sections are the same text in several languages' folders, so several chunks score exactly alike
    and any of them is a right answer. A result matches a wanted one with the same id, or with the same language
    label and the same score (to 1e-5; the score is the chunk's cosine, centred or not, not its fused rank)."""
    ids = {c.id for c in got}
    left = [(c.language, round(c.score, 5)) for c in got if c.id not in {w.id for w in want}]
    hits = 0
    for w in want:
        if w.id in ids:
            hits += 1
        elif (w.language, round(w.score, 5)) in left:
            left.remove((w.language, round(w.score, 5)))
            hits += 1
    return hits / len(want)


def measure(retriever, qs: list[str], exact_retriever, k: int = 10) -> dict:
    lat, rec = [], []
    for q in qs:  # warm-up: language means, caches, page cache
        retriever.search(q, k=k)
        break
    for q in qs:
        t0 = time.perf_counter()
        got = retriever.search(q, k=k)
        lat.append(time.perf_counter() - t0)
        want = exact_retriever.search(q, k=k)
        if want:
            rec.append(tie_aware_recall(got, want))
    lat.sort()
    return {"p50": 1000 * statistics.median(lat), "p95": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "recall": float(np.mean(rec)) if rec else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--int8-from", type=int, default=1_000_000, help="collections this large are int8-quantized")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args()
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.rag.retrieval import Retriever

    emb = load_embedder("e5-small", device="cpu")
    header("search_latency: multilingual-e5-small, embedded Qdrant Edge", recipe=json.dumps(RECIPE))
    bstore = base_store(emb)
    base = load_base(bstore)
    bstore.close()
    qs = queries(args.queries)
    vectors = emb.embed_queries(qs)  # (n, dim), embedded once: the rows below compare the search itself
    t0 = time.perf_counter()
    for q in qs[:50]:
        emb.embed_queries([q])
    embed_ms = 1000 * (time.perf_counter() - t0) / min(50, len(qs))
    rows = []
    langs = [p["metadata"]["language"] for p in base[2]]
    for size in [int(s) for s in args.sizes.split(",")]:
        store, name = build(size, emb, base, size >= args.int8_from, args.rebuild)
        rng = np.random.default_rng(1)
        real_nn = nn_cosine(store, name, base[1], rng.choice(len(base[0]), 50, replace=False))
        synth_nn = float("nan")
        if size > len(base[0]):
            _, sv = synthetic_vectors(base[1], langs, 50, np.random.default_rng(2))
            synth_nn = nn_cosine(store, name, sv, np.arange(50))
        for mode, kw in (("default (hybrid + centring)", {}), ("dense only", {"mode": "dense", "debias": "off"})):
            r = Retriever(store, name, emb, **kw)
            x = Retriever(store, name, emb, exact=True, **kw)
            for ret in (r, x):
                ret._query_cache.update(zip(qs, vectors))
            m = measure(r, qs, x)
            beams = "/".join(str(b or "spec") for b in r._leg_beams())
            rows.append({"chunks": size, "int8": "yes" if size >= args.int8_from else "no", "search": mode,
                         "beams raw/centred": beams if kw.get("mode") != "dense" else str(r._leg_beams()[0] or "spec"),
                         "search ms p50": m["p50"], "p95": m["p95"], "+ query embedding p50": m["p50"] + embed_ms,
                         "recall@10 vs exact": m["recall"], "nn cos real/synth": f"{real_nn:.3f}/{synth_nn:.3f}"})
            print(rows[-1], file=sys.stderr)
        store.close()
    print(f"{len(qs)} queries; query embedding alone: {embed_ms:.1f} ms per query on this machine\n")
    table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
