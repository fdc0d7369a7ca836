"""One typed settings object. Every field can be overridden by ``LUSIFER_RAG_<FIELD>`` in the environment."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import platformdirs

from .errors import ConfigError

ENV_PREFIX = "LUSIFER_RAG_"


def setting(default: Any = None, doc: str = "", *, factory=None, secret: bool = False):
    """A settings field with its documentation attached (shown by ``lusifer-rag models --settings``); a
    ``secret`` one is left out of the settings object's repr (so a logged Settings never shows it)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc}, repr=not secret)
    return field(default=default, metadata={"doc": doc}, repr=not secret)


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("lusifer-rag"))


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("lusifer-rag"))


@dataclass
class Settings:
    embedder: str = setting("e5-small", "Embedder spec: 'e5-small', 'hf:<dir or hub id>' or 'lusifer:<dir or hub id>'.")
    device: str | None = setting(None, "Torch device ('cpu', 'cuda', 'cuda:1', 'cuda:0,1' for replicas); unset: every GPU if any, else CPU.")
    dtype: str | None = setting(None, "Model dtype ('float32', 'bfloat16', 'float16'); unset: bfloat16 on CUDA, float32 on CPU.")
    max_batch_tokens: int | None = setting(None, "Token budget of one embedding batch, padding included; unset: 16384 on CUDA, 2048 on CPU.")
    max_batch_size: int = setting(256, "Most texts in one embedding batch.")
    embed_queue: bool = setting(True, "Dynamic batching: concurrent query and highlight embeddings (UI, API, LangChain in one process) share forward passes.")
    embed_queue_wait_ms: float = setting(2.0, "How long an idle embedding queue waits for concurrent requests to join a batch, in ms.")
    embed_queue_limit: int = setting(4096, "Texts that may wait for the embedder; beyond it requests fail with a 'busy, retry' error.")
    cache_dir: Path = setting(doc="Where converted models are cached.", factory=_default_cache_dir)
    data_dir: Path = setting(doc="Where the embedded store lives by default.", factory=_default_data_dir)
    store: str | None = setting(None, "Vector store: a directory (embedded Qdrant Edge) or an http(s):// URL of a Qdrant server; unset: <data_dir>/store.")
    qdrant_api_key: str | None = setting(None, "API key for a Qdrant server.")
    collection: str = setting("documents", "Default collection name.")
    ingest_batch_chunks: int = setting(256, "Chunks embedded together during ingest (larger: faster, more memory).")
    sentence_vectors: bool = setting(True, "Store every chunk's sentence vectors at ingest (int8, ~3 KB a chunk with e5-small) so search highlights need no model call; costs about as much embedding again as the chunks. Off: highlights embed the hits' sentences per search.")
    pdf_extractor: str = setting("pdfium", "PDF text backend: 'pdfium' (pypdfium2; see docs/pdf.md) or 'pypdf' (pypdf is also the fallback for files PDFium cannot open).")
    pdf_password: str | None = setting(None, "Password tried on every password-protected PDF (restriction-only PDFs need none).")
    pdf_passwords_file: str | None = setting(None, "A JSON file of {\"glob on path or file name\": \"password\"} for password-protected PDFs.")
    ocr: str = setting("auto", "OCR: 'auto' (PDF pages without a text layer, and images), 'force' (every PDF page, ignoring its text layer), 'off'.")
    ocr_languages: str = setting("auto", "Tesseract language packs: 'auto' (the page's script, detected by Tesseract) or packs joined by '+' (e.g. 'eng+swa').")
    ocr_page_timeout: float = setting(120.0, "Seconds one page may take in OCR before it is given up (and reported).")
    ocr_workers: int | None = setting(None, "Pages OCR'd at once (Tesseract processes); unset: one per core.")
    ocr_dpi: int = setting(300, "Resolution PDF pages are rendered at for OCR.")
    ingest_max_unpacked_mb: float = setting(64.0, "Most an archive (a .docx) may unpack while it is read, in MB, counted as it unpacks (zip headers are not trusted); beyond it the file is refused as 'too-large'.")
    ingest_file_timeout: float = setting(900.0, "Seconds one file may take to be parsed and chunked (in its worker process) before it is stopped and reported as 'timeout'; 0: no limit. Scans read by OCR take longest (up to ocr_page_timeout a page).")
    ingest_file_memory_mb: int = setting(2048, "Memory one file's parsing may add to its worker process, in MB (an address-space limit); beyond it the file is reported as 'too-large'; 0: no limit.")
    search_mode: str = setting("hybrid", "Retrieval mode: 'hybrid' (dense, with BM25 re-ordering the query language's results among the ranks they hold), 'dense' or 'sparse' (BM25 alone).")
    debias: str = setting("off", "Language-bias correction: 'off' (raw cosines: best on collections where each document exists in one language; bench/retrieval_real.py), 'reference' (each chunk's language gap against the query's language, measured on a parallel reference text shipped with the package and read off the chunk's vector: finds more across languages, costs some same-language search where a collection's documents share one subject), 'offsets' (each chunk scored against what an unrelated chunk of its language scores for the query: finds more across languages where each language holds several topics, loses where a language holds one manual), 'centre' (centring, feedback and translation groups: for parallel collections, where every passage exists in every language). 'auto' and 'on' are the old names of 'off' and 'centre'.")
    sentence_weight: float = setting(0.7, "Share of a chunk's best-matching sentence in its search score: (1 - b) x the chunk's cosine + b x its best sentence's, b = w x (1 - 1/n) for a chunk of n sentences (the sentence vectors stored at ingest; no model call). Finds the chunk that holds the answer among headings, code and other subjects, most of all across languages (docs/retrieval.md); 0: the chunk's cosine alone.")
    same_language_gap: float | None = setting(None, "What the embedder adds to a passage's score for sharing the query's language, taken off those passages' scores so that an equally relevant passage in another language ranks level with them (issue 32: each document in one language). Unset: the embedder's measured gap where it has one (e5-small: 0.0075; docs/retrieval.md), else none; 0: off.")
    min_relevance: float | None = setting(None, "Passages whose score for the query (cosine, with the best sentence's: sentence_weight) is below this are not relevant: a search or answer with none says 'nothing relevant found'. Unset: the embedder's measured floor where it has one (e5-small: 0.82; docs/retrieval.md), else none; 0: keep every match.")
    same_language_pivot: bool = setting(False, "For parallel collections (translated editions: most passages exist in every language): a mixed-language search expands the query with its best same-language match alone, which finds more of the other languages' versions. Off by default: where the query's language lacks the passage it finds fewer (docs/retrieval.md).")
    top_k: int = setting(6, "Passages retrieved for an answer.")
    answer_language: str = setting("auto", "Language answers are written in: 'auto' (the question's) or an ISO 639-1 code; a request may ask for another.")
    llm_backend: str | None = setting(None, "Answer backend: 'openai', 'transformers' or 'extractive'; unset: 'openai' if llm_base_url is set, else 'extractive'.")
    llm_base_url: str | None = setting(None, "Base URL of an OpenAI-compatible chat server (vLLM, Ollama, TGI, llama.cpp), e.g. http://localhost:8000/v1.")
    llm_model: str | None = setting(None, "Model name for the OpenAI-compatible server, or a model directory for the transformers backend.")
    llm_api_key: str | None = setting(None, "API key for the LLM server (else OPENAI_API_KEY).")
    llm_timeout: float = setting(60.0, "Seconds to wait for the LLM server before failing.")
    llm_max_tokens: int = setting(512, "Most tokens an answer may have.")
    auth_user: str | None = setting(None, "Web app single-user login name (set with auth_password; both or neither).")
    auth_password: str | None = setting(None, "Web app single-user password (signs in on the app's login page; gradio_client: auth=(user, password)).")
    anonymous_access: str | None = setting(None, "What web-app callers who are not signed in may do: 'none', 'read' (search, ask, open documents), 'write' (also add and delete documents) or 'admin' (also re-index); unset: 'none' with a login configured, else 'admin' when serving on loopback only and 'read' when serving a network.")
    allowed_origins: str | None = setting(None, "Other web origins (scheme://host[:port], comma-separated) whose pages may call the app's API from the browser; the app's own origin always may, every other is refused.")
    allowed_hosts: str | None = setting(None, "Host names the app answers to (comma-separated; guards against DNS rebinding); unset: localhost names when serving on loopback, any otherwise.")
    session_secret: str | None = setting(None, "Secret (>= 32 characters) that signs sign-in session cookies; unset: generated once and kept in <data_dir>/secrets/session.key (mode 0600).")
    public_url: str | None = setting(None, "The app's address as its users reach it (e.g. https://rag.example.org, behind a proxy); single sign-on's callback URL is built from it. Unset: from each request's Host header and scheme.")
    oidc_issuer: str | None = setting(None, "OpenID Connect single sign-on: the provider's issuer URL (its discovery document is <issuer>/.well-known/openid-configuration), e.g. https://keycloak.example.org/realms/acme; https unless on this machine. Unset: no single sign-on.")
    oidc_client_id: str | None = setting(None, "OpenID Connect: this app's client id at the provider (ID tokens must name it as their audience).")
    oidc_client_secret: str | None = setting(None, "OpenID Connect: this app's client secret (confidential client; unset: a public client, PKCE alone). Never logged or shown.", secret=True)
    oidc_scopes: str = setting("openid profile email", "OpenID Connect: scopes asked for, space-separated ('openid' is always added); add 'groups' where the provider needs that scope to send group membership (Dex, Okta).")
    oidc_username_claim: str = setting("preferred_username", "OpenID Connect: the ID-token claim that names the user here; when missing, 'email', then 'sub'.")
    oidc_groups_claim: str = setting("groups", "OpenID Connect: the claim listing the user's groups, mapped to local groups of the same names at each sign-in (a missing claim: no groups); empty: groups are not synced.")
    oidc_name: str | None = setting(None, "OpenID Connect: the provider's name on the login page ('Sign in with <name>'); unset: the issuer's host name.")
    trusted_proxies: str | None = setting(None, "Reverse proxies (addresses or CIDRs, comma-separated) whose user header signs requests in (trusted-header single sign-on); the header is ignored and removed from any other client. Unset: off.")
    trusted_user_header: str = setting("X-Forwarded-User", "Trusted-header sign-in: the header a trusted proxy puts the user name in.")
    trusted_groups_header: str = setting("X-Forwarded-Groups", "Trusted-header sign-in: the header a trusted proxy lists the user's groups in (comma-separated; a missing header: no groups); empty: groups are not synced.")
    max_upload_mb: int = setting(50, "Largest file the web app accepts for upload, in MB.")
    server: str | None = setting(None, "URL of a running lusifer-rag server (http://host:port) that `lusifer-rag ingest/search/stats/ask` send their work to; unset: the one serving the store, found through its lock record, else none (the work runs in this process).")
    api_key: str | None = setting(None, "API key the command line and LangChain (LusiferRetriever.from_server) send to a lusifer-rag server, as 'Authorization: Bearer <key>'.")
    search_concurrency: int = setting(32, "Searches and answers the web app runs at once (their embeddings are batched together; ingestion runs one at a time).")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``LUSIFER_RAG_*`` variables, then explicit keyword overrides (None means 'not given')."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, hints[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(f.name for f in fields(cls))}")
        return cls(**values)

    @property
    def store_location(self) -> str:
        return self.store or str(self.data_dir / "store")

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, documentation) for every field."""
        out = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append((ENV_PREFIX + f.name.upper(), str(default), f.metadata.get("doc", "")))
        return out


def _parse(name: str, raw: str, typ: Any) -> Any:
    text = str(typ)
    try:
        if typ is int or text.startswith("int"):
            return int(raw)
        if typ is float or text.startswith("float"):
            return float(raw)
        if typ is bool or text.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "Path" in text:
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {text}") from None
    return raw
