"""A lusifer-rag server's HTTP API (``/api/v1``, app/api.py) from another process.

Only one process can open an embedded store. While ``lusifer-rag serve`` holds one, the command line
(``ingest``, ``search``, ``stats``, ``ask``) and LangChain (``LusiferRetriever.from_server``) send their work to that
server instead: ``find_server`` reads where it listens from the store's lock record (lusifer_rag/store/lock.py), and
``ServerClient`` speaks its API, sending ``Authorization: Bearer <key>`` when given an API key. Failures become
typed errors: ServerUnreachableError (connection refused, no answer), AccessError (401, 403), BusyError (503),
ServerError (any other 4xx/5xx), each with the server's own ``{"error": message}``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence
from urllib.parse import urlsplit

from .errors import AccessError, BusyError, ConfigError, ServerError, ServerUnreachableError, ThrottledError

API = "/api/v1"
WILDCARD = ("0.0.0.0", "::", "")  # a server bound to every address is reached on loopback
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SEARCH_TIMEOUT_S = 120.0
ASK_TIMEOUT_S = 600.0  # an LLM may take a while (a rewrite of the question, then the answer)


def normalise_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing '/' or '/api/v1'; ConfigError otherwise."""
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"server URL {text[:200]!r} is not valid; give http(s)://host[:port], e.g. "
                          "http://127.0.0.1:7860")
    if parts.username or parts.password:
        raise ConfigError("give the server URL without a user or password in it; pass an API key with --api-key "
                          "or LUSIFER_RAG_API_KEY")
    path = parts.path.rstrip("/")
    if path.endswith(API):
        path = path[: -len(API)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def url_of(serve: dict) -> str:
    """The URL to reach a server from its lock record's ``serve`` entry (wildcard binds: via 127.0.0.1)."""
    host = str(serve.get("host") or "")
    host = "127.0.0.1" if host in WILDCARD else host
    if ":" in host:
        host = f"[{host}]"
    return f"{serve.get('scheme') or 'http'}://{host}:{int(serve['port'])}"


def find_server(store_location: str) -> str | None:
    """The URL of the lusifer-rag server holding the embedded store at ``store_location`` (found through its lock
    record), or None: not an embedded store, nobody holds it, its holder does not serve it, or it is held on
    another machine (a network file system; its loopback address is not ours)."""
    from .store import parse_location
    from .store.lock import serving_record

    scheme, target = parse_location(store_location)
    if scheme not in ("", "edge"):
        return None
    record = serving_record(Path(target).expanduser())
    if record is None:
        return None
    if record.get("host") not in (None, socket.gethostname()):
        return None
    try:
        return url_of(record["serve"])
    except (KeyError, TypeError, ValueError):
        return None


def _message(response) -> str:
    """The server's own words: its ``{"error": ...}``, FastAPI's ``{"detail": ...}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return body["error"]
        detail = body.get("detail")
        if isinstance(detail, list):  # request validation: [{"loc": [...], "msg": ...}]
            return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg', '')}"
                             for d in detail if isinstance(d, dict))[:300]
        if detail is not None:
            return str(detail)[:300]
    return str(body)[:300]


@dataclass
class UploadFile:
    """One file of an upload: the name the server gives its document, and the open file to send."""

    name: str
    file: BinaryIO


class ServerClient:
    """The HTTP API of the lusifer-rag server at ``url``. ``api_key``: sent as ``Authorization: Bearer <key>``."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = SEARCH_TIMEOUT_S):
        import httpx

        from . import __version__

        self.url = normalise_url(url)
        self.has_key = bool(api_key)
        headers = {"Accept": "application/json", "User-Agent": f"lusifer-rag/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # a server on this machine is never reached through a proxy set in the environment
        local = (urlsplit(self.url).hostname or "") in LOOPBACK_NAMES
        self._http = httpx.Client(base_url=self.url + API, headers=headers, trust_env=not local,
                                  timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ServerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, stream: bool = False, **kw):
        import httpx

        try:
            if stream:
                request = self._http.build_request(method, path, **kw)
                return self._http.send(request, stream=True)
            return self._http.request(method, path, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ServerUnreachableError(
                f"cannot reach the lusifer-rag server at {self.url}: {_reason(e)}. Is `lusifer-rag serve` running "
                "there? (check --server / LUSIFER_RAG_SERVER)") from None
        except httpx.TimeoutException:
            raise ServerUnreachableError(f"the lusifer-rag server at {self.url} did not answer in time "
                                         f"({method} {API}{path})") from None
        except httpx.TransportError as e:
            raise ServerUnreachableError(f"the connection to the lusifer-rag server at {self.url} failed: "
                                         f"{_reason(e)}") from None

    def check(self, response) -> None:
        """Raise the typed error of a refused or failed request (nothing for a 2xx)."""
        status = response.status_code
        if status < 300:
            return
        if not response.is_closed:
            response.read()
        raise self.error(status, _message(response), response.headers.get("retry-after"))

    def error(self, status: int, message: str, retry_after: str | None = None) -> Exception:
        where = f"the lusifer-rag server at {self.url}"
        if status == 401:
            hint = ("the API key was not accepted (check --api-key / LUSIFER_RAG_API_KEY)" if self.has_key
                    else "give an API key with --api-key or LUSIFER_RAG_API_KEY")
            return AccessError(f"{where} refused the request (401 unauthorised: {message}); {hint}", status=401)
        if status == 403:
            return AccessError(f"{where} refused the request (403 forbidden: {message})", status=403)
        if status == 429:
            try:
                wait = float(retry_after or 1)
            except ValueError:
                wait = 1.0
            return ThrottledError(f"{where} is throttling this client (429: {message})", retry_after=wait)
        if status == 503:
            return BusyError(f"{where} is busy (503: {message}); try again shortly")
        if status >= 500:
            return ServerError(f"{where} failed ({status}: {message})", status, message)
        return ServerError(f"{where}: {message}" if status in (400, 404) else f"{where} answered {status}: {message}",
                           status, message)

    def _json(self, method: str, path: str, **kw) -> Any:
        response = self._send(method, path, **kw)
        self.check(response)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"the lusifer-rag server at {self.url} answered {method} {API}{path} with something "
                              "that is not JSON (is it a lusifer-rag server?)", response.status_code) from None

    # ---- the API -----------------------------------------------------------------------------------
    def me(self) -> dict:
        return self._json("GET", "/me")

    def search(self, query: str, k: int = 10, *, languages: Sequence[str] | None = None,
               sources: Sequence[str] | None = None, collections: Sequence[str] | None = None,
               mode: str | None = None, highlight: bool = False) -> list[dict]:
        body: dict[str, Any] = {"query": query, "k": k, "languages": _list(languages), "sources": _list(sources),
                                "collections": _list(collections), "highlight": highlight}
        if mode:
            body["mode"] = mode
        return self._json("POST", "/search", json=body)

    def ask(self, question: str, *, answer_language: str | None = None, languages: Sequence[str] | None = None,
            collections: Sequence[str] | None = None, k: int | None = None) -> dict:
        body = {"question": question, "answer_language": answer_language or "auto", "languages": _list(languages),
                "collections": _list(collections), "k": k}
        return self._json("POST", "/ask", json=body, timeout=ASK_TIMEOUT_S)

    def stats(self, collection: str | None = None) -> dict:
        return self._json("GET", "/stats", params=_params(collection))

    def documents(self, collection: str | None = None) -> list[dict]:
        return self._json("GET", "/documents", params=_params(collection))

    def collections(self) -> list[dict]:
        return self._json("GET", "/collections")

    def delete(self, documents: Sequence[str], collection: str | None = None) -> dict:
        return self._json("POST", "/documents/delete", json={"documents": list(documents)},
                          params=_params(collection))

    def cancel_ingest(self, collection: str | None = None) -> bool:
        return bool(self._json("POST", "/ingest/cancel", params=_params(collection)).get("cancelled"))

    def upload(self, files: Sequence[UploadFile], collection: str | None = None, *, paths_as_sources: bool = False,
               on_conflict: str = "replace", on_event: Callable[[dict], None] | None = None) -> dict:
        """Ingest ``files`` (POST /documents, streamed from the open files); returns the server's report (its
        ``IngestReport.to_json()``). ``paths_as_sources``: the names are the files' absolute paths and become the
        documents' sources as they are, as an ingest in-process names them. ``on_event`` gets the server's
        progress as it goes: ``{"done", "total", "file": {...}}`` per file, ``{"page": [source, done, total]}``."""
        import httpx

        data: dict[str, Any] = {"names": [f.name for f in files], "on_conflict": on_conflict, "progress": "true"}
        if collection:
            data["collection"] = collection
        if paths_as_sources:
            data["paths_as_sources"] = "true"
        parts = [("files", (os.path.basename(f.name.replace("\\", "/")) or "file", f.file, "application/octet-stream"))
                 for f in files]
        # no read timeout: one file may take minutes (a long scan to OCR); the server's per-file caps bound it
        response = self._send("POST", "/documents", stream=True, data=data, files=parts,
                              timeout=httpx.Timeout(None, connect=10.0))
        try:
            self.check(response)
            report = None
            try:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if "error" in event:
                        raise self.error(int(event.get("status") or 500), str(event["error"]))
                    if "report" in event:
                        report = event["report"]
                    elif on_event is not None:
                        on_event(event)
            except httpx.TransportError as e:
                raise ServerUnreachableError(f"the connection to the lusifer-rag server at {self.url} broke during "
                                             f"the ingest: {_reason(e)}") from None
            except ValueError:
                raise ServerError(f"the lusifer-rag server at {self.url} sent an ingest progress line that is not "
                                  "JSON (is it a lusifer-rag server of this version?)", 502) from None
            if report is None:
                if not response.headers.get("content-type", "").startswith("application/x-ndjson"):
                    raise ServerError(f"the lusifer-rag server at {self.url} does not stream ingest progress (an "
                                      "older version?); upgrade it or stop it to ingest in this process", 502)
                raise ServerUnreachableError(f"the lusifer-rag server at {self.url} closed the connection before the "
                                             "ingest finished")
            return report
        finally:
            response.close()


def _list(values: Sequence[str] | None) -> list[str] | None:
    return [values] if isinstance(values, str) else (list(values) if values else None)


def _params(collection: str | None) -> dict:
    return {"collection": collection} if collection else {}


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:200]


# ---- LangChain ---------------------------------------------------------------------------------------
class RemoteRetriever:
    """``Retriever.search`` over a server's ``/search``, for ``LusiferRetriever.from_server``: the same
    RetrievedChunk results (their metadata: what the API returns about each hit). ``score_threshold`` drops the
    server's results below it here; MMR, ``debias`` and ``doc_ids`` are not in the API and are refused."""

    def __init__(self, client: ServerClient, collection: str | None = None):
        self.client, self.collection = client, collection

    def search(self, query: str, k: int = 10, filters=None, *, mode: str | None = None,
               score_threshold: float | None = None, mmr: bool = False, mmr_lambda: float = 0.5,
               debias: str | None = None, **unsupported: Any) -> list:
        from .rag.types import RetrievedChunk

        refused = [name for name, given in (("mmr", mmr), ("debias", debias),
                                            ("doc_ids", getattr(filters, "doc_ids", None)),
                                            ("page_range", getattr(filters, "page_range", None)),
                                            *unsupported.items()) if given]
        if refused:
            raise ConfigError(f"{', '.join(refused)} cannot be used through the server at {self.client.url} (its "
                              "search API takes k, languages, sources, mode and collections); open the collection "
                              "in-process (LusiferRetriever.from_collection) for them")
        hits = self.client.search(query, k=k, languages=getattr(filters, "languages", None),
                                  sources=getattr(filters, "sources", None),
                                  collections=[self.collection] if self.collection else None, mode=mode)
        chunks = [hit_to_chunk(h, RetrievedChunk) for h in hits]
        if score_threshold is not None:
            chunks = [c for c in chunks if c.score >= score_threshold]
        return chunks


def hit_to_chunk(hit: dict, cls=None):
    """A ``/search`` hit as a RetrievedChunk (what the in-process search returns)."""
    if cls is None:
        from .rag.types import RetrievedChunk as cls
    metadata = {key: hit.get(key) for key in ("source", "title", "page", "page_end", "language", "doc_id",
                                              "collection") if hit.get(key) is not None}
    return cls(id=str(hit.get("chunk_id", "")), text=hit.get("text", ""), score=float(hit.get("score", 0.0)),
               source=hit.get("source", ""), page=hit.get("page"), page_end=hit.get("page_end"),
               language=hit.get("language") or "und", doc_id=hit.get("doc_id", ""), title=hit.get("title", ""),
               metadata=metadata, collection=hit.get("collection", ""))
