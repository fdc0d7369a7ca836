"""The explicit HTTP API (``/api/v1``): every operation of the app, each with its own right checked.

The caller is the signed-in session (``POST /login`` with ``username`` and ``password`` sets its cookie) or the
anonymous caller (app/access.py). Typed errors become JSON ``{"error": message}`` with 400 (bad input), 401/403
(access), 429 (throttled), 503 (busy) — once, in ``create_app``. OpenAPI: ``/api/v1/docs``.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Annotated

from lusifer_rag.errors import RagError

from .access import Principal


from fastapi import APIRouter, Body, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field


class SearchRequest(BaseModel):
    query: str
    k: int = 10
    languages: list[str] | None = None
    sources: list[str] | None = None
    highlight: bool = True


class AskRequest(BaseModel):
    question: str
    answer_language: str = "auto"
    languages: list[str] | None = None
    k: int | None = None


class DeleteRequest(BaseModel):
    documents: list[str] = Field(description="document ids (or sources) to delete")


class ReindexRequest(BaseModel):
    embedder: str
    drop_old: bool = False


def api_router(service) -> APIRouter:
    router = APIRouter()
    policy = service.policy

    def caller(request: Request) -> Principal:
        return policy.principal((request.scope.get("session") or {}).get("user"))

    def reading(request: Request, action: str) -> Principal:
        p = caller(request)
        p.require("read", action)
        return p

    @router.get("/me")
    def me(request: Request) -> dict:
        """Who the caller is and what it may do."""
        p = caller(request)
        return {"user": p.name, "rights": sorted(p.rights), "login_required": policy.login_required}

    @router.post("/search")
    def search(request: Request, body: SearchRequest) -> list[dict]:
        """Ranked passages for a query in any language."""
        reading(request, "search")
        return [h.to_json() for h in service.search(body.query, k=body.k, languages=body.languages,
                                                    sources=body.sources, highlight=body.highlight)]

    @router.post("/ask")
    def ask(request: Request, body: AskRequest) -> dict:
        """A cited answer (the whole answer; the Gradio ``/ask`` endpoint streams)."""
        reading(request, "ask")
        return service.ask(body.question, body.answer_language, body.languages, body.k).to_json()

    @router.get("/documents")
    def documents(request: Request) -> list[dict]:
        """Every document: id, source, content hash, language, pages, chunks, when ingested."""
        reading(request, "list documents")
        return service.documents()

    @router.get("/stats")
    def stats(request: Request) -> dict:
        reading(request, "read the collection's statistics")
        return service.stats()

    @router.post("/documents")
    def add_documents(request: Request, files: Annotated[list[UploadFile], File(description="files to ingest")],
                      names: Annotated[list[str] | None, Form(description="each file's name or relative path")] = None,
                      on_conflict: Annotated[str, Form(description="replace | keep")] = "replace") -> dict:
        """Ingest uploaded files; returns the per-file report. A name a document already has replaces it
        (``on_conflict=replace``) or is kept beside it under a numbered name (``keep``)."""
        p = caller(request)
        p.require("write", "add documents")
        if names is not None and len(names) != len(files):
            raise RagError(f"give one name per file: {len(files)} files, {len(names)} names")
        limit = service.options.max_upload_bytes
        tmp = Path(service.settings.data_dir) / "uploads" / ".incoming" / secrets.token_hex(8)
        tmp.mkdir(parents=True, mode=0o700)
        try:
            pairs = []
            for i, f in enumerate(files):
                dest = tmp / str(i)
                with open(dest, "wb") as out:
                    copied = 0
                    while block := f.file.read(1 << 20):
                        copied += len(block)
                        if copied > limit:
                            raise RagError(f"{Path(f.filename or 'file').name}: larger than the upload limit of "
                                           f"{service.options.max_upload_mb} MB")
                        out.write(block)
                pairs.append(((names[i] if names else None) or f.filename or f"upload-{i}", dest))
            return service.ingest(pairs, on_conflict=on_conflict, principal=p).to_json()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @router.post("/documents/delete")
    def delete_documents(request: Request, body: DeleteRequest) -> dict:
        """Delete several documents at once (ids or sources); all are checked before any is deleted."""
        return service.delete(body.documents, principal=caller(request))

    @router.delete("/documents/{doc_id}")
    def delete_document(request: Request, doc_id: str) -> dict:
        return service.delete([doc_id], principal=caller(request))

    @router.get("/documents/{doc_id}/original")
    def original(request: Request, doc_id: str):
        """The uploaded original of a document, as a download (never rendered by the browser)."""
        reading(request, "open documents")
        doc = next((d for d in service.documents() if d["doc_id"] == doc_id), None)
        path = service.uploads().original(doc_id) if doc else None
        if path is None:
            raise RagError(f"no original is kept for document {doc_id!r} (unknown, or ingested by the command line)")
        return FileResponse(path, filename=Path(doc["source"]).name, media_type="application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    @router.post("/reindex")
    def reindex(request: Request, body: ReindexRequest = Body(...)) -> dict:
        """Re-embed the collection with another embedder in the background (admin)."""
        return {"status": service.start_reindex(body.embedder, body.drop_old, principal=caller(request))}

    return router
