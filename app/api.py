"""The explicit HTTP API (``/api/v1``): every operation of the app, each with its own right checked.

The caller is an API key (``Authorization: Bearer lrk_…``, multi-user mode), the signed-in session (``POST /login``
with ``username`` and ``password`` sets its cookie), or the anonymous caller (app/access.py). Every read goes through
the caller's read filter; every change checks the caller's right on the collection. Typed errors become JSON ``{"error": message}`` with 400 (bad input), 401/403
(access), 429 (throttled), 503 (busy) — once, in ``create_app``. OpenAPI: ``/api/v1/docs``.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Annotated

from lusifer_rag.errors import AccessError, NotFoundError, RagError

from . import viewer
from .access import Principal


from fastapi import APIRouter, Body, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field


class SearchRequest(BaseModel):
    query: str
    k: int = 10
    languages: list[str] | None = None
    sources: list[str] | None = None
    collections: list[str] | None = Field(None, description="collections to search (none: all)")
    highlight: bool = True
    mode: str | None = Field(None, description="dense, hybrid or sparse (none: the server's setting)")


class Message(BaseModel):
    role: str = Field(description="user or assistant")
    content: str


class AskRequest(BaseModel):
    question: str
    answer_language: str = "auto"
    languages: list[str] | None = None
    collections: list[str] | None = Field(None, description="collections to answer from (none: all)")
    k: int | None = None
    history: list[Message] | None = Field(None, description="the conversation so far, oldest first (OpenAI chat "
                                          "format): a follow-up question is resolved against it")


class DeleteRequest(BaseModel):
    documents: list[str] = Field(description="document ids (or sources) to delete")


class CollectionRequest(BaseModel):
    name: str


class GrantRequest(BaseModel):
    principal: str = Field(description="user:NAME, group:NAME or public")
    level: str | None = Field(description="read, write or admin; null removes the grant (public: read or null)")


class DocumentReadersRequest(BaseModel):
    readers: list[str] | None = Field(description="user:NAME / group:NAME / public: who of the collection's readers "
                                      "may read this document; null: all of them again")


class KeyRequest(BaseModel):
    name: str = "key"
    scopes: list[str] = Field(default_factory=lambda: ["search"], description="search, ingest, admin")
    expires_days: float | None = Field(None, gt=0)


class ReindexRequest(BaseModel):
    embedder: str
    drop_old: bool = False


def api_router(ws) -> APIRouter:
    """The routes over workspace ``ws`` (app/workspace.py); document routes take ``?collection=`` (default: the
    app's default collection)."""
    router = APIRouter()
    policy = ws.policy

    def caller(request: Request) -> Principal:
        auth = request.headers.get("authorization") or ""
        if auth:
            scheme, _, key = auth.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise AccessError("give the API key as 'Authorization: Bearer <key>'", status=401)
            return policy.principal_of_key(key.strip())
        return policy.principal_of(request.scope.get("session"), request.scope)

    def reading(request: Request, action: str) -> Principal:
        p = caller(request)
        p.require("read", action)
        return p

    @router.get("/me")
    def me(request: Request) -> dict:
        """Who the caller is and what it may do."""
        p = caller(request)
        groups = []
        if p.user_id is not None:
            names = {g["id"]: g["name"] for g in ws.identity.groups()}
            groups = sorted(names.get(g, g) for g in ws.identity.user(p.user_id).groups)
        return {"user": p.name, "rights": sorted(p.rights), "groups": groups,
                "administrator": p.ids is None and "admin" in p.rights,
                "login_required": policy.login_required}

    @router.post("/search")
    def search(request: Request, body: SearchRequest) -> list[dict]:
        """Ranked passages for a query in any language."""
        p = reading(request, "search")
        return [h.to_json() for h in ws.search(body.query, body.collections, k=body.k, languages=body.languages,
                                               sources=body.sources, highlight=body.highlight, mode=body.mode,
                                               principal=p)]

    @router.post("/ask")
    def ask(request: Request, body: AskRequest) -> dict:
        """A cited answer (the whole answer; the Gradio ``/ask`` endpoint streams)."""
        p = reading(request, "ask")
        history = [m.model_dump() for m in body.history] if body.history is not None else None
        return ws.ask(body.question, collections=body.collections, answer_language=body.answer_language,
                      languages=body.languages, k=body.k, history=history, principal=p).to_json()

    @router.get("/collections")
    def collections(request: Request) -> list[dict]:
        """Every collection: name, documents, chunks, embedder, whether it is the default."""
        return ws.collections(principal=reading(request, "list collections"))

    @router.get("/documents")
    def documents(request: Request, collection: str | None = None) -> list[dict]:
        """Every document: id, source, content hash, language, pages, chunks, when ingested."""
        return ws.service(collection).documents(principal=reading(request, "list documents"))

    @router.get("/stats")
    def stats(request: Request, collection: str | None = None) -> dict:
        return ws.service(collection).stats(principal=reading(request, "read the collection's statistics"))

    @router.post("/documents")
    def add_documents(request: Request, files: Annotated[list[UploadFile], File(description="files to ingest")],
                      names: Annotated[list[str] | None, Form(description="each file's name or relative path")] = None,
                      on_conflict: Annotated[str, Form(description="replace | keep")] = "replace",
                      collection: Annotated[str | None, Form(description="target collection")] = None,
                      paths_as_sources: Annotated[bool, Form(description="the names are the files' absolute paths, "
                                                             "kept as the documents' sources (as `lusifer-rag "
                                                             "ingest` names them)")] = False,
                      progress: Annotated[bool, Form(description="answer NDJSON: a line per file as it is done, "
                                                     "then {\"report\": ...}")] = False) -> dict:
        """Ingest uploaded files; returns the per-file report. A name a document already has replaces it
        (``on_conflict=replace``) or is kept beside it under a numbered name (``keep``). ``progress``: the answer
        streams (app/ingest_stream.py)."""
        p = caller(request)
        service = ws.service(collection)
        ws.authorizer.require(p, service.collection, "write", "add documents")
        if names is not None and len(names) != len(files):
            raise RagError(f"give one name per file: {len(files)} files, {len(names)} names")
        limit = service.options.max_upload_bytes
        tmp = Path(service.settings.data_dir) / "uploads" / ".incoming" / secrets.token_hex(8)
        tmp.mkdir(parents=True, mode=0o700)
        streaming = False  # the streamed ingest removes tmp when it is done
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
            if progress:
                from .ingest_stream import streamed_ingest

                streaming = True
                return streamed_ingest(service, pairs, tmp, on_conflict=on_conflict, principal=p,
                                       paths_as_sources=paths_as_sources)
            return service.ingest(pairs, on_conflict=on_conflict, principal=p,
                                  paths_as_sources=paths_as_sources).to_json()
        finally:
            if not streaming:
                shutil.rmtree(tmp, ignore_errors=True)

    @router.post("/ingest/cancel")
    def cancel_ingest(request: Request, collection: str | None = None) -> dict:
        """Stop the collection's running ingest: files not finished are reported ``cancelled`` in its report;
        uploading them again resumes (finished ones are skipped as unchanged)."""
        return {"cancelled": ws.service(collection).cancel_ingest(principal=caller(request))}

    @router.post("/documents/delete")
    def delete_documents(request: Request, body: DeleteRequest, collection: str | None = None) -> dict:
        """Delete several documents at once (ids or sources); all are checked before any is deleted."""
        return ws.service(collection).delete(body.documents, principal=caller(request))

    @router.delete("/documents/{doc_id}")
    def delete_document(request: Request, doc_id: str, collection: str | None = None) -> dict:
        return ws.service(collection).delete([doc_id], principal=caller(request))

    @router.get("/documents/{doc_id}/original")
    def original(request: Request, doc_id: str, collection: str | None = None):
        """The uploaded original of a document, as a download (never rendered by the browser); 404 for a document
        the caller cannot read in that collection."""
        path, name = viewer.original_file(ws.service(collection), doc_id, caller(request))
        return FileResponse(path, filename=name, media_type="application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    @router.get("/documents/{doc_id}/view")
    def view_document(request: Request, doc_id: str, chunk: str | None = None, page: int | None = None,
                      collection: str | None = None) -> dict:
        """The source viewer's content: a PDF's page (``page``, default: the passage's) with its image URL, or the
        passage ``chunk`` in its surrounding text (escaped HTML); previous and next, the original's URL."""
        return viewer.view(ws.service(collection), doc_id, chunk, page, principal=caller(request)).to_json()

    @router.get("/documents/{doc_id}/pages/{n}.png")
    def page_image(request: Request, doc_id: str, n: int, chunk: str | None = None, collection: str | None = None):
        """Page ``n`` of a PDF, rendered, with passage ``chunk`` highlighted when it lies on that page."""
        png = viewer.page_png(ws.service(collection), doc_id, n, chunk, principal=caller(request))
        return Response(png, media_type="image/png", headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"})

    @router.post("/reindex")
    def reindex(request: Request, body: ReindexRequest = Body(...), collection: str | None = None) -> dict:
        """Re-embed the collection with another embedder in the background (admin)."""
        return {"status": ws.service(collection).start_reindex(body.embedder, body.drop_old,
                                                                principal=caller(request))}

    @router.post("/collections")
    def create_collection(request: Request, body: CollectionRequest) -> dict:
        return {"created": ws.create_collection(body.name, principal=caller(request))}

    @router.delete("/collections/{name}")
    def drop_collection(request: Request, name: str) -> dict:
        return {"deleted": name, "documents": ws.drop_collection(name, principal=caller(request))}

    # ---- access: grants and API keys (multi-user mode) --------------------------------------------
    def _directory():
        if not policy.multi_user:
            raise RagError("grants and API keys need users: create the first with `lusifer-rag users add NAME --admin`")
        return ws.identity

    @router.get("/collections/{name}/grants")
    def grants(request: Request, name: str) -> dict:
        """Who may use the collection: owner, public, grants (needs admin on it)."""
        p = caller(request)
        ident = _directory()
        ws.authorizer.require(p, name, "admin", "see the collection's grants")
        info = ident.collection_info(name)
        return {"collection": name, "owner": ident.describe(info["owner"]) if info["owner"] else None,
                "public": info["public"], "grants": {ident.describe(k): v for k, v in info["grants"].items()}}

    @router.put("/collections/{name}/grants")
    def set_grant(request: Request, name: str, body: GrantRequest) -> dict:
        """Give a user, a group or everyone signed in (public) a level on the collection (needs admin on it); the
        chunks' acl payloads follow before the next read, without re-embedding."""
        p = caller(request)
        ident = _directory()
        ws.authorizer.require(p, name, "admin", "change the collection's grants")
        who = ident.principal_id(body.principal)
        if who == "public":
            if body.level not in ("read", None):
                raise RagError(f"public access is read or null; got {body.level!r}")
            ident.set_public(name, body.level == "read", by=p)
        else:
            ident.grant(name, who, body.level, by=p)
        ws.sync_acl(name)
        return grants(request, name)

    @router.put("/documents/{doc_id}/readers")
    def set_readers(request: Request, doc_id: str, body: DocumentReadersRequest, collection: str | None = None) -> dict:
        """Narrow who may read one document to some of its collection's readers (needs admin on the collection)."""
        p = caller(request)
        ident = _directory()
        svc = ws.service(collection)
        ws.authorizer.require(p, svc.collection, "admin", "change who reads a document")
        if doc_id not in {d["doc_id"] for d in svc.documents(principal=p)}:
            raise NotFoundError(f"no document {doc_id[:80]!r} in collection {svc.collection!r}")
        readers = None if body.readers is None else [ident.principal_id(r) for r in body.readers]
        ident.set_document_readers(svc.collection, doc_id, readers, by=p)
        ws.sync_acl(svc.collection)
        return {"doc_id": doc_id, "readers": [ident.describe(r) for r in ident.acl_of(svc.collection, doc_id)]}

    @router.get("/keys")
    def list_keys(request: Request) -> list[dict]:
        """The caller's API keys (administrators: everyone's); never the keys themselves."""
        p = caller(request)
        ident = _directory()
        p.require("read", "list API keys")
        if p.user_id is None:
            raise AccessError("sign in as a user to manage API keys", status=401)
        return ident.keys(None if p.ids is None else p.name)

    @router.post("/keys")
    def create_key(request: Request, body: KeyRequest) -> dict:
        """A new API key of the caller's (shown once in ``key``); its scopes cannot exceed the caller's rights."""
        p = caller(request)
        ident = _directory()
        if p.user_id is None or request.headers.get("authorization"):
            raise AccessError("create API keys from a signed-in session (not with another key)", status=403)
        key, rec = ident.create_key(p.name, body.name, body.scopes,
                                    body.expires_days * 86400 if body.expires_days else None, by=p)
        return {"key": key, **rec}

    @router.delete("/keys/{prefix}")
    def revoke_key(request: Request, prefix: str) -> dict:
        """Revoke one of the caller's keys (administrators: anyone's)."""
        p = caller(request)
        ident = _directory()
        if p.user_id is None:
            raise AccessError("sign in as a user to manage API keys", status=401)
        ident.revoke_key(prefix, None if p.ids is None else p.name, by=p)
        return {"revoked": prefix}

    return router
