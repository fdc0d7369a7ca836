"""One front door: ``lusifer-rag ingest/search/stats/ask`` through a running lusifer-rag server.

An embedded store opens in one process at a time. When ``lusifer-rag serve`` holds the store a command would open
(its lock record says where it listens: lusifer_rag/store/lock.py), or ``--server URL`` / ``LUSIFER_RAG_SERVER``
names one, the command sends its work to that server's HTTP API (lusifer_rag/remote.py) and prints what it would
print in-process: the same lines, the same JSON, the same exit codes. A store held by a process that does not serve
it keeps the lock's error; with no server, everything runs in this process as before.

Ingest sends the files in batches (at most BATCH_FILES files and BATCH_BYTES bytes a request, each file streamed
from disk), under the names an ingest in this process gives them (their absolute paths: the same file is the same
document either way, and the same bytes under another name are reported ``duplicate``), with the server's
progress shown per file as a local ingest shows it. Ctrl-C asks the server to cancel (``/ingest/cancel``); what is
done stays, and the same command resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from .errors import ConfigError, LusiferRagError, ServerError, StoreError
from .remote import ServerClient, UploadFile, find_server, hit_to_chunk
from .settings import Settings

BATCH_FILES = 32
BATCH_BYTES = 32 * 1024 * 1024
#: stats keys an in-process ``lusifer-rag stats`` prints (the server adds its own, e.g. last_reindex)
STATS_KEYS = ("collection", "points", "documents", "languages", "embedder", "fingerprint", "chunking", "physical",
              "previous", "reindex")
DOCUMENT_KEYS = ("doc_id", "source", "content_hash", "language", "chunks", "pages", "ingested_at")


def server_for(args: argparse.Namespace, settings: Settings, command: str) -> ServerClient | None:
    """The server this command sends its work to, or None (run it here): ``--server`` (or LUSIFER_RAG_SERVER
    unless --store is given), else the server holding the store. Says so on stderr once."""
    if getattr(args, "server", None) and getattr(args, "store", None):
        raise ConfigError("give --server or --store, not both: with --server the server's own store is used")
    url = settings.server if settings.server and not (getattr(args, "store", None) and not args.server) else None
    how = ""
    if url is None:
        url = find_server(settings.store_location)
        if url is None:
            return None
        how = " (it holds the store this command would open)"
    client = ServerClient(url, api_key=_api_key(args, settings))
    print(f"lusifer-rag {command}: the work goes to the lusifer-rag server at {client.url}{how}", file=sys.stderr,
          flush=True)
    return client


def _api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    key = settings.api_key
    if key == "-":
        from .ingest.cli import read_secret

        key = read_secret("API key: ").strip() or None
    elif key and getattr(args, "api_key", None):
        print("warning: --api-key is visible to other users in the process list while this runs; give '-' to be "
              "asked for it, or set LUSIFER_RAG_API_KEY", file=sys.stderr)
    return key


def refuse(args: argparse.Namespace, client: ServerClient, options: dict[str, str],
           why: str = "its API does not take them") -> None:
    """ConfigError for options the server's API cannot take (``options``: attribute -> flag)."""
    given = [flag for attr, flag in options.items() if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot be sent to the lusifer-rag server at {client.url} ({why}); "
                          "leave them out, or stop the server to run this command in this process")


# ---- search, ask, stats --------------------------------------------------------------------------
def remote_search(client: ServerClient, args: argparse.Namespace, settings: Settings) -> list:
    """RetrievedChunks, as the in-process search returns them. ``--min-score`` drops the server's results below
    it here."""
    refuse(args, client, {"mmr": "--mmr", "debias": "--debias", "same_language_pivot": "--same-language-pivot"})
    hits = client.search(args.query, k=args.k, languages=args.lang, sources=args.source,
                         collections=[settings.collection], mode=args.mode)
    chunks = [hit_to_chunk(h) for h in hits]
    if args.min_score is not None:
        chunks = [c for c in chunks if c.score >= args.min_score]
    return chunks


def remote_ask(client: ServerClient, args: argparse.Namespace, settings: Settings) -> dict:
    """The server's answer (``Answer.to_json()``), from the same collection an in-process ``ask`` reads."""
    refuse(args, client, {"llm_backend": "--llm"}, "it answers with the LLM it is configured with")
    return client.ask(args.question, answer_language=args.answer_lang, languages=args.lang,
                      collections=[settings.collection], k=args.k)


def remote_stats(client: ServerClient, collection: str, documents: bool = False) -> dict:
    """``collection_stats`` (and ``document_list``) of a collection of the server, keyed as in-process."""
    stats = client.stats(collection)
    if "physical" not in stats:  # the server describes a collection that does not exist as empty
        existing = sorted(c["name"] for c in client.collections() if c.get("embedder"))
        raise StoreError(f"no collection {collection!r}; existing: {existing or 'none'}")
    out = {key: stats.get(key) for key in STATS_KEYS}
    if documents:
        out["document_list"] = [{key: d.get(key, "" if key != "chunks" and key != "pages" else 0)
                                 for key in DOCUMENT_KEYS} for d in client.documents(collection)]
    return out


# ---- ingest --------------------------------------------------------------------------------------
def batches(files: list[Path], max_files: int | None = None, max_bytes: int | None = None):
    """Consecutive runs of ``files`` of at most ``max_files`` files and ``max_bytes`` bytes (a bigger file goes
    alone)."""
    max_files, max_bytes = max_files or BATCH_FILES, max_bytes or BATCH_BYTES
    batch: list[Path] = []
    size = 0
    for f in files:
        try:
            n = f.stat().st_size
        except OSError:
            n = 0  # reported unreadable when it is opened
        if batch and (len(batch) >= max_files or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += n
    if batch:
        yield batch


class RemoteIngest:
    """One ``lusifer-rag ingest`` through a server: batches sent, the server's progress shown, the report
    assembled as the in-process ingest's."""

    def __init__(self, client: ServerClient, collection: str, report, progress):
        self.client, self.collection, self.report, self.progress = client, collection, report, progress
        self.cancelled = threading.Event()
        self.in_flight = threading.Event()
        self.cancel_note = ""
        self._embedded_before = 0

    # ---- Ctrl-C ----------------------------------------------------------------------------------
    def cancel(self) -> None:
        """From the SIGINT handler: send no more batches, and ask the server to stop the running one."""
        self.cancelled.set()
        threading.Thread(target=self._cancel_on_server, name="lusifer-cancel", daemon=True).start()

    def _cancel_on_server(self) -> None:
        # an ingest the server has not started yet cannot be cancelled: ask again while our batch is in flight
        deadline = time.monotonic() + 60
        try:
            while self.in_flight.is_set() and time.monotonic() < deadline:
                if self.client.cancel_ingest(self.collection):
                    self.cancel_note = "the server stopped the ingest"
                    return
                time.sleep(0.3)
        except LusiferRagError as e:
            self.cancel_note = f"could not cancel on the server: {e}"

    # ---- batches ---------------------------------------------------------------------------------
    def finish(self, result) -> None:
        self.report.results.append(result)
        self.progress.file_done(result)

    def on_event(self, event: dict) -> None:
        from .ingest.pipeline import FileResult

        if "page" in event:
            source, done, total = event["page"]
            self.progress.page_done(source, int(done), int(total))
        elif "file" in event:
            self.report.embedded_chunks = self._embedded_before + int(event.get("embedded") or 0)
            self.finish(FileResult(**_known(event["file"])))

    def send(self, batch: list[Path]) -> None:
        from .ingest.pipeline import FileResult

        uploads = []
        try:
            for path in batch:
                try:
                    uploads.append(UploadFile(str(path), open(path, "rb")))
                except OSError as e:  # as the in-process ingest reports a file it cannot read
                    self.finish(FileResult(str(path), "failed", "unreadable", f"{path}: {e.strerror or e}"))
            while uploads and not self.cancelled.is_set():
                uploads = self._upload(uploads)
        finally:
            for u in uploads:
                u.file.close()

    def _upload(self, uploads: list[UploadFile]) -> list[UploadFile]:
        """Send ``uploads``; what is left to send again (the rest of a batch after a file the server refused)."""
        from .ingest.pipeline import FileResult

        seen = len(self.report.results)
        self._embedded_before = self.report.embedded_chunks
        self.in_flight.set()
        try:
            answer = self.client.upload(uploads, self.collection, paths_as_sources=True, on_event=self.on_event)
        except ServerError as e:
            # a file over the server's upload limit refuses the request before anything is ingested; the
            # message starts with its name: fail that file and send the others again
            big = next((u for u in uploads if e.status in (400, 413)
                        and e.detail.startswith(f"{os.path.basename(u.name)}: larger than")), None)
            if big is None or len(self.report.results) > seen:
                raise
            self.finish(FileResult(big.name, "failed", "too-large", f"{big.name}: {e.detail.split(': ', 1)[-1]}"))
            big.file.close()
            rest = [u for u in uploads if u is not big]
            for u in rest:
                u.file.seek(0)
            return rest
        finally:
            self.in_flight.clear()
        self._absorb(answer, {r.source for r in self.report.results[seen:]})
        for u in uploads:
            u.file.close()
        return []

    def _absorb(self, answer: dict, shown: set[str]) -> None:
        """The server's report of one batch: its counts, and its files that no progress event showed (those
        cancelled)."""
        from .ingest.pipeline import STATUSES, FileResult

        self.report.embedded_chunks = self._embedded_before + int(answer.get("embedded_chunks") or 0)
        self.report.embedded_tokens += int(answer.get("embedded_tokens") or 0)
        for status in STATUSES:
            for r in answer.get(status) or []:
                if r.get("source") not in shown:
                    self.report.results.append(FileResult(**_known(r)))


def _known(result: dict) -> dict:
    from dataclasses import fields

    from .ingest.pipeline import FileResult

    names = {f.name for f in fields(FileResult)}
    return {k: v for k, v in result.items() if k in names}


INGEST_LOCAL_ONLY = {"embedder": "--embedder", "max_tokens": "--max-tokens", "overlap": "--overlap", "ocr": "--ocr",
                     "ocr_languages": "--ocr-languages", "pdf_password": "--pdf-password",
                     "pdf_passwords": "--pdf-passwords", "ray": "--ray", "shards": "--shards",
                     "replication": "--replication", "on_disk": "--on-disk", "quantization": "--quantization"}


def remote_ingest(client: ServerClient, args: argparse.Namespace, settings: Settings, *,
                  max_files: int | None = None, max_bytes: int | None = None):
    """``lusifer-rag ingest PATH...`` through the server: an IngestReport as the in-process ingest gives."""
    from .ingest.cli import cancel_on_interrupt
    from .ingest.pipeline import FileResult, IngestReport, expand_paths
    from .ingest.progress import Progress

    refuse(args, client, INGEST_LOCAL_ONLY, "it ingests with its own settings")
    t0 = time.time()
    paths = list(args.paths)
    files = expand_paths(paths)
    collection = settings.collection
    pruned = remote_prune(client, collection, paths, files) if args.prune else []
    report = IngestReport(collection)
    progress = Progress(len(files), report=report)
    run = RemoteIngest(client, collection, report, progress)
    try:
        with cancel_on_interrupt(run.cancel, "cancelling: asking the server to stop the ingest and keep what is "
                                             "done (Ctrl-C again to stop waiting)"):
            for batch in batches(files, max_files, max_bytes):
                if run.cancelled.is_set():
                    break
                run.send(batch)
    finally:
        progress.close()
    if run.cancel_note:
        print(f"cancel: {run.cancel_note}", file=sys.stderr)
    done = {r.source for r in report.results}
    for f in files:
        if str(f) not in done:
            report.results.append(FileResult(str(f), "cancelled", message=f"{f}: not done: the ingest was cancelled "
                                             "(run it again to resume)"))
    report.results += pruned
    report.seconds = time.time() - t0
    return report


def remote_prune(client: ServerClient, collection: str, paths: list, files: list[Path]) -> list:
    """``--prune`` through the server: its documents under ``paths`` whose files are gone from this machine."""
    from .ingest.pipeline import FileResult

    roots = [str(Path(p).resolve()) for p in paths]
    keep = {str(f) for f in files}
    gone = [d for d in client.documents(collection)
            if any(d["source"] == r or d["source"].startswith(r.rstrip(os.sep) + os.sep) for r in roots)
            and d["source"] not in keep and not os.path.exists(d["source"])]
    if gone:
        client.delete([d["doc_id"] for d in gone], collection)
    return [FileResult(d["source"], "pruned", chunks=int(d.get("chunks") or 0)) for d in gone]
