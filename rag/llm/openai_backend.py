"""Any OpenAI-compatible chat-completions server: vLLM, Ollama, TGI, llama.cpp server, OpenAI itself.

Plain HTTP with httpx (no SDK): ``POST {base_url}/chat/completions``; streaming is server-sent events
(``data: {json}`` lines ending with ``data: [DONE]``). Connection errors, 429 and 5xx are retried with
exponential backoff (a stream only until its first delta arrives); other 4xx are not, and read timeouts
are not by default (a server that hangs once usually hangs again, and each try costs the full timeout).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from lusifer_rag.errors import ConfigError, LLMError

from ..prompt import Prompt
from .base import LLMBackend, register_llm

DEFAULT_BASE_URL = "http://localhost:8000/v1"
API_KEY_ENV = ("LUSIFER_RAG_LLM_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENV = "LUSIFER_RAG_LLM_BASE_URL"
MODEL_ENV = "LUSIFER_RAG_LLM_MODEL"
MAX_RETRY_AFTER_S = 30.0


class _Retryable(Exception):
    """One failed try that may succeed later (carries the LLMError to raise if no try is left)."""

    def __init__(self, error: LLMError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@register_llm("openai", "OpenAI-compatible chat server (vLLM, Ollama, TGI, llama.cpp); openai:<base_url>")
class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = 1024,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        retry_on_timeout: bool = False,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        base_url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM base_url must start with http:// or https://, got {base_url!r}")
        if timeout is not None:  # one number from settings: the read timeout, and a cap on connecting
            read_timeout, connect_timeout = float(timeout), min(float(connect_timeout), float(timeout))
        for label, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not value > 0:
                raise ConfigError(f"{label} must be a positive number of seconds, got {value!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {retries!r}")
        base_url = base_url.rstrip("/")
        self.url = base_url if base_url.endswith("/chat/completions") else base_url + "/chat/completions"
        self.base_url = self.url.removesuffix("/chat/completions")
        self.model = model or os.environ.get(MODEL_ENV) or None
        self.api_key = api_key or next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.connect_timeout, self.read_timeout = float(connect_timeout), float(read_timeout)
        self.retries, self.backoff, self.retry_on_timeout = retries, float(backoff), retry_on_timeout
        self.extra_body = dict(extra_body or {})
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if self.api_key:
            hdrs["Authorization"] = f"Bearer {self.api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout), headers=hdrs,
        )

    # ---- public -------------------------------------------------------------------------------
    def generate(self, prompt: Prompt, *, stream: bool = False) -> Iterator[str]:
        body = {"model": self._model(), "messages": prompt.messages, "temperature": self.temperature,
                "stream": bool(stream), **self.extra_body}
        if self.max_tokens is not None:
            body["max_tokens"] = int(self.max_tokens)
        if stream:
            return self._stream(body)
        return iter([self._with_retries(lambda: self._post(body))])

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "url": self.url, "model": self.model}

    def close(self) -> None:
        self._client.close()

    # ---- internals ----------------------------------------------------------------------------
    def _model(self) -> str:
        """The configured model, else the first one the server lists (vLLM/llama.cpp serve one)."""
        if self.model is None:
            models_url = self.base_url + "/models"

            def fetch() -> str:
                with self._request("GET", models_url) as r:
                    self._check_status(r, models_url)
                    ids = [m.get("id") for m in r.json().get("data", []) if m.get("id")]
                if not ids:
                    raise LLMError(f"no model given and the LLM server at {models_url} lists none; set the model "
                                   "(LUSIFER_RAG_LLM_MODEL)")
                return ids[0]

            self.model = self._with_retries(fetch)
        return self.model

    @contextmanager
    def _request(self, method: str, url: str, body: dict | None = None, stream: bool = False) -> Iterator[httpx.Response]:
        """The response (closed on exit), with transport errors turned into (retryable) LLMErrors."""
        try:
            r = self._client.send(self._client.build_request(method, url, json=body), stream=stream)
        except httpx.HTTPError as e:
            self._raise_transport(e, url)
        try:
            yield r
        finally:
            r.close()

    def _post(self, body: dict) -> str:
        with self._request("POST", self.url, body) as r:
            self._check_status(r, self.url)
            data = self._json(r.text)
        try:
            return data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMError(f"unexpected response from {self.url}: no choices[0].message: {r.text[:300]!r}") from None

    def _stream(self, body: dict) -> Iterator[str]:
        attempt = 0
        while True:
            started = False
            try:
                with self._request("POST", self.url, body, stream=True) as r:
                    self._check_status(r, self.url)
                    try:
                        for delta in self._sse_deltas(r):
                            started = True
                            yield delta
                    except httpx.HTTPError as e:
                        self._raise_transport(e, self.url)
                return
            except _Retryable as e:
                if started or attempt >= self.retries:
                    raise e.error from None
                self._sleep(attempt, e.retry_after)
                attempt += 1

    def _sse_deltas(self, r: httpx.Response) -> Iterator[str]:
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, "event:" lines
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            data = self._json(payload)
            if "error" in data:
                raise LLMError(f"LLM server at {self.url} reported an error mid-stream: {data['error']}")
            for choice in data.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text

    def _json(self, text: str) -> dict:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise LLMError(f"LLM server at {self.url} sent invalid JSON: {text[:300]!r}") from None
        if not isinstance(data, dict):
            raise LLMError(f"LLM server at {self.url} sent {type(data).__name__} JSON, expected an object")
        return data

    def _check_status(self, r: httpx.Response, url: str) -> None:
        if r.status_code < 400:
            return
        if not r.is_stream_consumed:
            try:
                r.read()
            except httpx.HTTPError:
                pass
        detail = _error_detail(r)
        msg = f"LLM server at {url} returned HTTP {r.status_code} {r.reason_phrase}: {detail}"
        if r.status_code == 401 or r.status_code == 403:
            msg += f" — check the API key ({' or '.join(API_KEY_ENV)})"
        elif r.status_code == 404:
            msg += f" — check the base URL (usually ends with /v1) and the model name ({self.model!r})"
        if r.status_code == 429 or r.status_code >= 500:
            raise _Retryable(LLMError(msg), _retry_after(r))
        raise LLMError(msg)

    def _raise_transport(self, e: httpx.HTTPError, url: str) -> None:
        if isinstance(e, httpx.ConnectTimeout):
            raise _Retryable(LLMError(f"cannot reach LLM server at {url}: connection timed out after "
                                      f"{self.connect_timeout:g}s — is the server running and the address right?"))
        if isinstance(e, httpx.TimeoutException):
            err = LLMError(f"LLM server at {url} timed out after {self.read_timeout:g}s without answering "
                           "(raise the read timeout for slow models)")
            if self.retry_on_timeout:
                raise _Retryable(err)
            raise err from None
        if isinstance(e, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(e).lower() else str(e) or type(e).__name__
            raise _Retryable(LLMError(f"cannot reach LLM server at {url}: {reason} — is vLLM/Ollama running?"))
        if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            raise _Retryable(LLMError(f"connection to LLM server at {url} broke: {e or type(e).__name__}"))
        raise LLMError(f"request to LLM server at {url} failed: {type(e).__name__}: {e}") from None

    def _with_retries(self, fn):
        attempt = 0
        while True:
            try:
                return fn()
            except _Retryable as e:
                if attempt >= self.retries:
                    raise e.error from None
                self._sleep(attempt, e.retry_after)
                attempt += 1

    def _sleep(self, attempt: int, retry_after: float | None) -> None:
        delay = self.backoff * (2 ** attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        time.sleep(delay)


def _error_detail(r: httpx.Response) -> str:
    try:
        data = r.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            err = err.get("message") or err
        return str(err)[:300]
    except (ValueError, httpx.HTTPError):
        return (r.text or "").strip()[:300] or "(empty body)"


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return float(r.headers.get("retry-after", ""))
    except ValueError:
        return None
