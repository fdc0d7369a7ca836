"""Ingest end to end: our pipeline vs the plain LangChain route, same PDFs, same embedder, one run; and the two
store backends at N points.

    .venv/bin/python bench/ingest.py [--quick] [--pdfs 24] [--embedder e5-small] [--points 100000] [--only ingest|store]

Part 1 — ingest. A corpus of multilingual PDFs (UDHR in en fr es de sw yo ha vi, several pages each, fpdf2 with
DejaVu Sans when installed, else Helvetica/latin-1) goes through
  (a) ``lusifer_rag.ingest.pipeline.Ingestor`` into the embedded store (``lusifer_rag.store.open_store(dir)``, Qdrant Edge),
      without sentence vectors (like for like: LangChain stores none) and with them (the default: every chunk's
      sentences embedded too, so search highlights need no model call; ingest/sentence_vectors.py);
  (b) the plain LangChain route: ``PyPDFLoader`` → ``RecursiveCharacterTextSplitter`` →
      ``QdrantVectorStore.from_documents`` (qdrant-client local mode on a path) with LangChain's own
      ``HuggingFaceEmbeddings`` (sentence-transformers) on the same model directory, prefix and token cap —
      the same vectors (the max |diff| is printed); only for embedders sentence-transformers can load;
  (c) the same LangChain route with our embedder object wrapped as LangChain ``Embeddings``
      (``lusifer_rag.langchain.LusiferEmbeddings``): it separates what the pipeline gains from what the embedder's
      batching gains. Without (b) (e.g. LUSIFER) the target is measured against (c).
The splitter's chunk size is in characters: the corpus's characters-per-token × our chunk token cap, overlap 1/8,
so the routes embed a similar number of tokens (the table shows chunks and tokens of each). The embedder is
wrapped by a timer in every route: "embed s" is the time inside it, "not embedder" the share of end-to-end time
spent elsewhere (parsing, chunking, language id, sparse vectors, upserts, setup). Both embedders are loaded and
warmed before any route is timed. "truncated": chunks longer than the model's input cap, whose tail is never
embedded (a character splitter cannot see tokens; ours caps chunks in the embedder's tokens, template included);
"tokens" counts what the model sees. A last line shows the padding each batcher adds on the LangChain chunks.

Part 2 — stores. N random 384-d unit vectors (with a small payload) upserted in batches of 1,000 through our
store interface into (a) Qdrant Edge (embedded; HNSW built by ``optimize()``) and (b) qdrant-client local mode
(on a path; local mode is a brute-force numpy engine with no index); then ``--queries`` random queries, k=10:
p50/p95 latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TimedCalls, header, set_threads, table, timed, udhr_articles  # noqa: E402

LANGS = ["en", "fr", "es", "de", "sw", "yo", "ha", "vi"]
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


# ---- corpus ---------------------------------------------------------------------------------------------
def make_pdfs(out: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` PDFs, one language each, 20–60 UDHR articles (cycled from a random start): about 3–12 pages."""
    import random

    from fpdf import FPDF

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        lang = LANGS[i % len(LANGS)]
        arts = udhr_articles(lang)
        start, count = rng.randrange(len(arts)), rng.randint(20, 60)
        pdf = FPDF(format="A4")
        pdf.set_margins(20, 20, 20)
        if DEJAVU.is_file():
            pdf.add_font("DejaVu", fname=str(DEJAVU))
            font, clean = "DejaVu", (lambda s: s)
        else:  # core font: latin-1 only (yo/vi lose some diacritics)
            font, clean = "Helvetica", (lambda s: s.encode("latin-1", "replace").decode("latin-1"))
        pdf.add_page()
        pdf.set_font(font, size=11)
        for j in range(count):
            a = (start + j) % len(arts)
            pdf.multi_cell(0, 6, clean(f"Article {a + 1}"), new_x="LMARGIN", new_y="NEXT")
            for para in arts[a].split("\n"):
                pdf.multi_cell(0, 6, clean(para), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        path = out / f"udhr-{lang}-{i:03d}.pdf"
        pdf.output(str(path))
        files.append(path)
    return files


def chars_per_token(files: list[Path], emb: Any) -> float:
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() or "" for f in files[: len(LANGS)] for p in PdfReader(str(f)).pages)
    return len(text) / max(1, emb.count_tokens([text])[0])


# ---- the two routes -------------------------------------------------------------------------------------
def route_ours(files: list[Path], emb: Any, work: Path, sentence_vectors: bool = False) -> dict:
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    store = open_store(str(work / "edge"))
    try:
        ing = Ingestor(store, "bench", emb, progress_mode="off", sentence_vectors=sentence_vectors)
        report = ing.ingest([str(f) for f in files])
        failed = report.by_status("failed")
        if failed:
            raise SystemExit(f"our pipeline failed on {len(failed)} files: {failed[0].message}")
        n = store.count("bench")
    finally:
        store.close()
    return {"chunks": n, "tokens": report.embedded_tokens, "max_tokens": ing.chunking.max_tokens}


class TimedEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` that delegates to another and adds up the seconds spent in it."""

    def __init__(self, inner: Any):
        self.inner, self.timer = inner, TimedCalls(inner.embed_documents)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.timer(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def plain_langchain_embeddings(emb: Any) -> tuple[Any, str]:
    """LangChain's own class for a local Hugging Face encoder (sentence-transformers underneath) on the same
    model dir, document prefix and token cap as ``emb`` — what a LangChain user writes — or (None, why not)."""
    from lusifer_rag.embedder.hf import HFEncoderEmbedder

    model_dir = getattr(emb, "model_dir", None)
    if not isinstance(emb, HFEncoderEmbedder) or model_dir is None:
        return None, f"{emb.spec} is not a plain Hugging Face encoder that sentence-transformers can load"
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:  # langchain-huggingface 1.x pins huggingface-hub < 2; the community class is the same code
        try:
            from langchain_community.embeddings import HuggingFaceEmbeddings
        except ImportError as e:
            return None, f"{e} (pip install 'lusifer-rag[bench]')"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            lc = HuggingFaceEmbeddings(model_name=str(model_dir), model_kwargs={"device": str(emb.devices[0])},
                                       encode_kwargs={"normalize_embeddings": True, "prompt": emb.document_prefix})
        except ImportError as e:
            return None, f"{e} (pip install 'lusifer-rag[bench]')"
    lc.client.max_seq_length = emb.max_tokens  # same truncation as ours
    return lc, f"{type(lc).__module__}.HuggingFaceEmbeddings (sentence-transformers, batch_size 32)"


def split_langchain(files: list[Path], chunk_chars: int) -> list[Any]:
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = [d for f in files for d in PyPDFLoader(str(f)).load()]
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=chunk_chars // 8)
    return splitter.split_documents(docs)


def route_langchain(files: list[Path], embeddings: Any, work: Path, chunk_chars: int) -> dict:
    from langchain_qdrant import QdrantVectorStore

    chunks = split_langchain(files, chunk_chars)
    vs = QdrantVectorStore.from_documents(chunks, embeddings, path=str(work / "qdrant-local"), collection_name="bench")
    n = vs.client.count("bench").count
    vs.client.close()
    return {"chunks": n, "texts": [c.page_content for c in chunks]}


def padding_factor(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Tokens the model runs (each batch padded to its longest) / real tokens."""
    return sum(len(b) * int(lengths[b].max()) for b in batches) / max(1, int(lengths.sum()))


def explain_padding(emb: Any, texts: list[str]) -> str:
    """Padding of the two batchers on the same texts: sentence-transformers sorts by characters and cuts
    batches of 32; ours sorts by tokens and cuts by a token budget."""
    from lusifer_rag.embedder.batching import plan_batches

    lengths = np.minimum(np.asarray(emb.count_tokens(texts), dtype=np.int64), emb.max_tokens)  # truncated
    by_chars = np.argsort([-len(t) for t in texts], kind="stable")
    st_batches = [by_chars[i:i + 32] for i in range(0, len(texts), 32)]
    ours = plan_batches(lengths, emb.batch_token_budget(), emb.max_batch_size, emb.pad_to_multiple_of)
    return (f"padding on the LangChain chunks (model tokens / real tokens): sentence-transformers "
            f"{padding_factor(lengths, st_batches):.2f}x, ours {padding_factor(lengths, ours):.2f}x "
            f"(tokens per chunk {lengths.min()}-{lengths.max()}, median {int(np.median(lengths))})")


def bench_ingest(args: argparse.Namespace) -> None:
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.langchain import LusiferEmbeddings

    emb = load_embedder(args.embedder)
    emb.embed_documents(["warm-up", "Habari ya asubuhi"])
    plain, plain_what = plain_langchain_embeddings(emb)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        with timed() as t:
            files = make_pdfs(tmp / "pdfs", args.pdfs)
        from pypdf import PdfReader

        pages = sum(len(PdfReader(str(f)).pages) for f in files)
        cpt = chars_per_token(files, emb)
        max_tokens = min(emb.max_tokens, 512)
        chunk_chars = int(cpt * (max_tokens - emb.template_overhead()))
        print(f"corpus: {len(files)} PDFs, {pages} pages, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB "
              f"(built in {t[0]:.1f}s); embedder {args.embedder}; {cpt:.2f} chars/token → LangChain chunk_size "
              f"{chunk_chars} chars, overlap {chunk_chars // 8}")
        routes = ["ours", "langchain+ours", "ours+sv"]
        if plain is None:
            print(f"plain LangChain embeddings: none ({plain_what}); the LangChain route uses our embedder")
        else:
            sample = [c.page_content for c in split_langchain(files[:4], chunk_chars)][:16]
            plain.embed_documents(sample[:2])  # warm-up
            diff = np.abs(np.asarray(plain.embed_documents(sample)) - emb.embed_documents(sample)).max()
            print(f"plain LangChain embeddings: {plain_what}; same vectors as ours: max |diff| {diff:.1e} "
                  f"on {len(sample)} chunks")
            routes.insert(1, "langchain")
        print()
        timer = TimedCalls(type(emb).embed_documents.__get__(emb))
        emb.embed_documents = timer  # instance attribute: our route and langchain+ours call it through the object
        best: dict[str, dict] = {}
        rounds: list[dict[str, float]] = []  # seconds per route, per round: the paired ratios show the noise
        for rep in range(args.repeats):
            rounds.append({})
            for name in routes[rep % len(routes):] + routes[:rep % len(routes)]:  # each route leads a round
                work = tmp / f"{name}-{rep}"
                timer.seconds = timer.calls = 0
                wrapped = TimedEmbeddings(plain if name == "langchain" else LusiferEmbeddings(emb))
                with timed() as t:
                    res = (route_ours(files, emb, work, name == "ours+sv") if name.startswith("ours")
                           else route_langchain(files, wrapped, work, chunk_chars))
                clock = wrapped.timer if name == "langchain" else timer
                res.update(seconds=t[0], embed=clock.seconds, calls=clock.calls)
                rounds[-1][name] = t[0]
                if name not in best or res["seconds"] < best[name]["seconds"]:
                    best[name] = res
        del emb.embed_documents
        lc_texts = best["langchain+ours"].pop("texts")
        for name in [r for r in routes[1:] if not r.startswith("ours")]:
            counts = np.asarray(emb.count_tokens(best[name].pop("texts", lc_texts)))
            best[name]["tokens"] = int(np.minimum(counts, emb.max_tokens).sum())  # what the model sees
            best[name]["cut"] = int((counts > emb.max_tokens).sum())  # chunks whose tail was never embedded
        base = best[routes[1]]["seconds"]  # the plain LangChain route
        labels = {"langchain": "LangChain + HuggingFaceEmbeddings",
                  "langchain+ours": "LangChain + our embedder (LusiferEmbeddings)",
                  "ours": "ours (Ingestor + Edge), no sentence vectors: like for like",
                  "ours+sv": "ours + sentence vectors for highlights (the default)"}
        rows = []
        for name in [*[r for r in routes[1:] if r != "ours+sv"], "ours", "ours+sv"]:
            r = best[name]
            rows.append({"route": labels[name], "files": len(files), "chunks": r["chunks"],
                         "truncated": r.get("cut", 0), "tokens": r["tokens"],
                         "embed calls": r["calls"], "seconds": r["seconds"], "embed s": r["embed"],
                         "not embedder %": 100 * (1 - r["embed"] / r["seconds"]),
                         "tokens/s": r["tokens"] / r["seconds"], "speed-up": base / r["seconds"]})
        table(rows, f"ingest end to end (best of {args.repeats}; speed-up = {labels[routes[1]]} seconds / seconds)")
        print(explain_padding(emb, lc_texts))
        if len(rounds) > 1:
            paired = sorted(r[routes[1]] / r["ours"] for r in rounds)
            print(f"ours vs {labels[routes[1]]}, round by round (same round, routes back to back): "
                  + ", ".join(f"{x:.2f}x" for x in paired) + f"; median {float(np.median(paired)):.2f}x")
        ours, with_sv = rows[-2], rows[-1]  # like for like (LangChain stores no sentence vectors), the default
        print(f"sentence vectors (the default) cost {with_sv['seconds'] / ours['seconds']:.2f}x the ingest time of the "
              f"same pipeline without them ({with_sv['seconds']:.1f}s vs {ours['seconds']:.1f}s): search highlights "
              f"then need no model call (docs/serving.md)")
        print(f"like for like, ours vs the plain LangChain route ({labels[routes[1]]}): {ours['speed-up']:.2f}x "
              f"(target >= 1.5x: {'PASS' if ours['speed-up'] >= 1.5 else 'FAIL'}); vs LangChain with our embedder: "
              f"{best['langchain+ours']['seconds'] / ours['seconds']:.2f}x; time not in the embedder: "
              f"{ours['not embedder %']:.1f}% (target <= 10%: {'PASS' if ours['not embedder %'] <= 10 else 'FAIL'})\n")


# ---- stores ---------------------------------------------------------------------------------------------
def bench_stores(args: argparse.Namespace) -> None:
    from lusifer_rag.store import CollectionSpec, Point, open_store

    rng = np.random.default_rng(0)
    n, dim = args.points, 384
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, dim), dtype=np.float32)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")) for i in range(n)]
    langs = np.array(LANGS)[rng.integers(0, len(LANGS), n)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp:
        for label, location in (("Qdrant Edge (embedded, HNSW)", f"{tmp}/edge"),
                                ("qdrant-client local mode (brute force)", f"qdrant-local:{tmp}/local")):
            store = open_store(location)
            spec = CollectionSpec(dim=dim, sparse_name=None, meta={"bench": True})
            store.create_collection("pts", spec)
            with timed() as t_up:
                for s in range(0, n, 1000):
                    store.upsert("pts", [Point(id=ids[i], vector=vecs[i], payload={
                        "page_content": f"chunk {i}", "metadata": {"doc_id": f"d{i // 50}", "language": str(langs[i]),
                                                                   "page": i % 20, "source": f"f{i // 50}.pdf"}})
                                         for i in range(s, min(n, s + 1000))])
            with timed() as t_opt:
                store.optimize("pts")
            count = store.count("pts")
            store.query("pts", dense=queries[0], k=10)  # warm-up
            lat = []
            for q in queries:
                t0 = time.perf_counter()
                store.query("pts", dense=q, k=10)
                lat.append(time.perf_counter() - t0)
            store.close()
            lat_ms = np.array(lat) * 1e3
            rows.append({"backend": label, "points": count, "upsert s": t_up[0], "upserts/s": n / t_up[0],
                         "optimize s": t_opt[0], "query p50 ms": float(np.percentile(lat_ms, 50)),
                         "query p95 ms": float(np.percentile(lat_ms, 95)), "queries": len(lat)})
    table(rows, f"stores: {n:,} random {dim}-d points, batches of 1,000; k=10 dense queries")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 PDFs, 20k points")
    ap.add_argument("--pdfs", type=int, help="PDFs in the corpus (default 24, quick 8)")
    ap.add_argument("--embedder", default="e5-small", help="embedder spec used by both routes")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all routes (the first route rotates each round); best kept per route")
    ap.add_argument("--points", type=int, help="points for the store part (default 100000, quick 20000)")
    ap.add_argument("--queries", type=int, default=200, help="queries per store backend")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    ap.add_argument("--only", choices=["ingest", "store"])
    args = ap.parse_args()
    args.pdfs = args.pdfs or (8 if args.quick else 24)
    args.points = args.points or (20_000 if args.quick else 100_000)
    threads = set_threads(args.threads)
    header("bench/ingest.py", pdfs=args.pdfs, points=args.points, threads=threads)
    if args.only in (None, "ingest"):
        bench_ingest(args)
    if args.only in (None, "store"):
        bench_stores(args)


if __name__ == "__main__":
    main()
