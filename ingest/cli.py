"""``lusifer-rag ingest``, ``lusifer-rag stats`` and ``lusifer-rag reindex``."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from lusifer_rag.cli import command, server_args, store_args
from lusifer_rag.settings import Settings


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursive)")
    store_args(p)
    server_args(p)
    p.add_argument("--embedder", help="embedder spec for a new collection (an existing one keeps its own)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or cuda:N,M")
    p.add_argument("--dtype", help="float32, bfloat16 or float16")
    p.add_argument("--prune", action="store_true", help="remove documents under PATHs whose files are gone")
    p.add_argument("--report", metavar="FILE", help="write a JSON report of every file")
    p.add_argument("--max-tokens", type=int, help="chunk size cap in the embedder's tokens, template included")
    p.add_argument("--overlap", type=int, help="overlap between chunks in tokens")
    p.add_argument("--ocr", choices=["auto", "force", "off"], help="OCR of PDF pages without text and of images "
                   "(default: settings / LUSIFER_RAG_OCR, 'auto')")
    p.add_argument("--ocr-languages", metavar="PACKS", help="Tesseract packs, e.g. eng+swa (default: 'auto', by script)")
    p.add_argument("--pdf-password", metavar="PASSWORD", help="password to try on password-protected PDFs; '-' asks "
                   "for it (or reads a line from stdin), which keeps it out of the process list that other users can "
                   "read (so does LUSIFER_RAG_PDF_PASSWORD)")
    p.add_argument("--pdf-passwords", metavar="FILE", help='JSON file {"glob on path or name": "password"}')
    p.add_argument("--workers", type=int, help="parse/chunk processes, each file under the time and memory caps "
                   "(default: 1 with a CPU embedder, cores - 1 with a GPU one; 0: in this process, without the caps); "
                   "with --ray: embedding actors (default: GPUs)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray Data: a cluster address (auto, ray://head:10001) or none for a local Ray")
    p.add_argument("--shards", type=int, help="with --ray, a new server collection: shards (one writer each)")
    p.add_argument("--replication", type=int, help="with --ray, a new server collection: replication factor")
    p.add_argument("--on-disk", action="store_true", help="with --ray, a new collection: vectors and HNSW on disk")
    p.add_argument("--quantization", choices=["int8", "binary"], help="with --ray, a new collection: quantized vectors in RAM")


@command("ingest", "load, chunk, embed and index documents (idempotent; rerun to resume)", _ingest_args)
def ingest_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.ingest.chunking import ChunkingParams
    from lusifer_rag.ingest.bounded_pool import FileLimits
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.frontdoor import remote_ingest, server_for
    from lusifer_rag.runtime import get_embedder, open_store_from

    client = server_for(args, settings, "ingest")
    if client is not None:  # a server holds the store (or --server): it ingests what we send it
        with client:
            return finish_ingest(remote_ingest(client, args, settings), args)
    if args.ray is not None:
        from lusifer_rag.ingest.ray_ingest import ingest_from_args

        report = ingest_from_args(args, settings)
    else:
        with open_store_from(settings) as store:
            spec = args.embedder
            if not spec and settings.collection in store.list_collections():
                spec = (store.open_collection(settings.collection).meta or {}).get("embedder")
            emb = get_embedder(settings, spec)
            params = {k: v for k, v in (("max_tokens", args.max_tokens), ("overlap_tokens", args.overlap)) if v}
            chunking = ChunkingParams(**{"max_tokens": min(emb.max_tokens, 512), **params})
            ing = Ingestor(store, settings.collection, emb, chunking, workers=args.workers,
                           embed_batch_chunks=settings.ingest_batch_chunks, load_options=load_options(args, settings),
                           sentence_vectors=settings.sentence_vectors, limits=FileLimits.from_settings(settings))
            from lusifer_rag.app.identity import acl_function

            ing.acl_for = acl_function(settings.data_dir, settings.collection)  # who may read them in the app
            with cancel_on_interrupt(ing.cancel):
                report = ing.ingest(args.paths, prune=args.prune)
    return finish_ingest(report, args)


def finish_ingest(report, args: argparse.Namespace) -> int:
    """The end of an ingest, in this process or through a server: the --report file, failures, duplicates, pages
    without text, the summary; the exit code."""
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, ensure_ascii=False, indent=2)
    for r in report.by_status("failed"):
        print(f"failed: {r.message} [{r.reason}]")
    for r in report.by_status("duplicate"):
        print(f"duplicate: {r.message} (document {r.doc_id[:8]})")
    for r in report.results:
        if r.empty_pages:
            pages = ", ".join(f"{n} ({why})" for n, why in r.empty_pages[:10]) + (" …" if len(r.empty_pages) > 10 else "")
            print(f"note: {r.source}: {len(r.empty_pages)} page(s) gave no text: {pages}")
    print(report.summary())
    cancelled = report.by_status("cancelled")
    if cancelled:
        print(f"cancelled: {len(cancelled)} file(s) not done; run the same command again to resume (finished files "
              "are skipped as unchanged)")
    return report.exit_code


CANCELLING = "cancelling: stopping the workers and writing what is done (Ctrl-C again to stop at once)"


@contextlib.contextmanager
def cancel_on_interrupt(cancel, message: str = CANCELLING):
    """Ctrl-C (SIGINT) calls ``cancel()`` once: the ingest stops cleanly, with what was written kept; a second
    Ctrl-C interrupts at once (a crash, also resumable)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\n{message}", file=sys.stderr, flush=True)
        cancel()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def load_options(args: argparse.Namespace, settings: Settings):
    """The loaders' options: the settings, with this command's --ocr / --pdf-password... on top."""
    import dataclasses

    from lusifer_rag.ingest.options import LoadOptions

    password = args.pdf_password
    if password == "-":
        password = read_secret("PDF password: ")
    elif password:
        print("warning: --pdf-password is visible to other users in the process list while this runs; give '-' to "
              "be asked for it, or set LUSIFER_RAG_PDF_PASSWORD", file=sys.stderr)
    over = {k: v for k, v in (("ocr", args.ocr), ("ocr_languages", args.ocr_languages),
                              ("pdf_password", password), ("pdf_passwords_file", args.pdf_passwords)) if v}
    return LoadOptions.from_settings(dataclasses.replace(settings, **over))


def read_secret(prompt: str) -> str:
    """A secret from the terminal (not echoed), else the first line of stdin."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _stats_args(p: argparse.ArgumentParser) -> None:
    store_args(p)
    server_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--documents", action="store_true",
                   help="also list every document: its id, the sha256 of its file, language, chunks and source")


@command("stats", "points, documents and languages of a collection, and its embedder", _stats_args)
def stats_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from lusifer_rag.frontdoor import remote_stats, server_for
    from lusifer_rag.runtime import open_store_from

    client = server_for(args, settings, "stats")
    if client is not None:
        with client:
            stats = remote_stats(client, settings.collection, args.documents)
    else:
        with open_store_from(settings) as store:
            stats = collection_stats(store, settings.collection)
            if args.documents:
                stats["document_list"] = document_list(store, settings.collection)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
    else:
        print(f"collection  {stats['collection']}\npoints      {stats['points']}\ndocuments   {stats['documents']}")
        print(f"embedder    {stats['embedder']}  (fingerprint {stats['fingerprint']}; collection {stats['physical']})")
        print(f"reindex     {format_reindex(stats['reindex'])}")
        if stats["previous"]:
            print(f"previous    {stats['previous']} (kept; `lusifer-rag reindex --drop-old` deletes it)")
        print("languages   " + ", ".join(f"{k}: {v}" for k, v in stats["languages"].items()))
        if args.documents:
            print(f"\n{'id':8}  {'sha256':12}  {'lang':4}  {'chunks':>6}  source")
            for d in stats["document_list"]:
                print(f"{d['doc_id'][:8]}  {d['content_hash'][:12]:12}  {d['language']:4}  {d['chunks']:>6}  {d['source']}")
    return 0


def document_list(store, collection: str) -> list[dict]:
    """Every document of the collection (its first chunk's metadata), sorted by source."""
    from lusifer_rag.store import Filter

    docs: dict[str, dict] = {}
    for p in store.iter_points(collection, Filter(must={"metadata.chunk_no": 0})):
        md = p.payload.get("metadata", {})
        docs.setdefault(md.get("doc_id", ""), {
            "doc_id": md.get("doc_id", ""), "source": md.get("source", ""), "content_hash": md.get("content_hash", ""),
            "language": md.get("doc_language") or md.get("language", ""), "chunks": md.get("chunk_count", 0),
            "pages": md.get("pages", 0), "ingested_at": md.get("ingested_at", "")})
    return sorted(docs.values(), key=lambda d: d["source"])


def collection_stats(store, collection: str, access=None) -> dict:
    """``access``: a store filter of what the caller may read (app/access.py read_filter); counts are of those."""
    from lusifer_rag.errors import StoreError

    from .reindex import reindex_status

    if collection not in store.list_collections():
        raise StoreError(f"no collection {collection!r}; existing: {sorted(store.list_collections()) or 'none'}")
    meta = store.open_collection(collection).meta or {}
    docs = store.facet(collection, "metadata.doc_id", access, limit=10**9)
    langs = store.facet(collection, "metadata.language", access)
    previous = (meta.get("reindex") or {}).get("source")
    return {"collection": collection, "points": store.count(collection, access), "documents": len(docs),
            "languages": dict(sorted(langs.items(), key=lambda kv: -kv[1])), "embedder": meta.get("embedder"),
            "fingerprint": meta.get("embedder_fingerprint"), "chunking": meta.get("chunking"),
            "physical": store.resolve(collection),
            "previous": previous if previous and previous in store.list_physical() else None,
            "reindex": reindex_status(store, collection)}


def format_reindex(state: dict | None) -> str:
    if not state:
        return "none running"
    total = state.get("total") or 0
    pct = f" ({100 * state['done'] / total:.0f}%)" if total else ""
    return f"to {state['embedder']}: {state['done']}/{total} chunks{pct}, collection {state['target']}"


def _reindex_args(p: argparse.ArgumentParser) -> None:
    store_args(p)
    p.add_argument("--embedder", required=True, help="the embedder to serve the collection with from now on")
    p.add_argument("--device", help="cpu, cuda, cuda:N or cuda:N,M")
    p.add_argument("--dtype", help="float32, bfloat16 or float16")
    p.add_argument("--drop-old", action="store_true", help="delete the collection that served before, once switched")


@command("reindex", "re-embed a collection's chunks with another embedder, then switch to it (resumable)",
         _reindex_args)
def reindex_cmd(args: argparse.Namespace, settings: Settings) -> int:
    import sys
    import time

    from lusifer_rag.runtime import get_embedder, open_store_from

    from .reindex import Reindexer

    emb = get_embedder(settings, args.embedder)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 2 or done >= total:
            last[0] = time.monotonic()
            print(f"reindex {settings.collection}: {done}/{total} chunks", file=sys.stderr, flush=True)

    with open_store_from(settings) as store:
        report = Reindexer(store, settings.collection, emb, page=settings.ingest_batch_chunks,
                           on_progress=progress).run(drop_old=args.drop_old)
    print(report.summary())
    return 0
