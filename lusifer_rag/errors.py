"""Typed errors. Library code raises these; the CLI and the UI map them to user messages once."""

from __future__ import annotations


class LusiferRagError(Exception):
    """Base of every error this project raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it.
    """

    exit_code = 1


class ConfigError(LusiferRagError):
    """A setting, a spec or a command-line value is not valid (usage error)."""

    exit_code = 2


class EmbedderError(LusiferRagError):
    """An embedder cannot be built or cannot embed the given input."""

    exit_code = 2


class BusyError(EmbedderError):
    """Too many requests are waiting for the embedder; the caller should retry shortly (HTTP 503 territory)."""

    exit_code = 75  # EX_TEMPFAIL


class CheckpointError(EmbedderError):
    """A model checkpoint is missing, malformed or does not match its config."""


class StoreError(LusiferRagError):
    """The vector store refused an operation (lock held, mismatched embedder, bad collection)."""

    exit_code = 2


class IngestError(LusiferRagError):
    """A document could not be loaded, parsed or chunked."""


class RagError(LusiferRagError):
    """Retrieval or answer generation failed."""


class NotFoundError(RagError):
    """No such document, passage or page that the caller may read (HTTP 404): unknown, in another collection, or
    gone. Says which, never where a file lies."""


class LLMError(RagError):
    """An LLM backend failed (server down, timeout, bad response)."""


class AccessError(LusiferRagError):
    """The caller may not do this: not signed in (``status`` 401) or without the right (403). Fails closed."""

    exit_code = 77  # EX_NOPERM

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


class ThrottledError(AccessError):
    """Too many failed sign-ins from this client or for this user: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerUnreachableError(LusiferRagError):
    """A lusifer-rag server (``--server``, or the one found serving the store) cannot be reached: connection
    refused, name not known, timed out."""

    exit_code = 69  # EX_UNAVAILABLE


class ServerError(RagError):
    """A lusifer-rag server refused a request (4xx: ``status``; ``detail``: its own ``{"error": message}``) or
    failed (5xx)."""

    def __init__(self, message: str, status: int, detail: str = ""):
        super().__init__(message)
        self.status, self.detail = status, detail
