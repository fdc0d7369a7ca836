"""A real local HTTP server speaking the OpenAI chat-completions wire format, for tests.

Listens on 127.0.0.1 on an ephemeral port (``ThreadingHTTPServer``). Answers ``POST /v1/chat/completions``
(JSON, or server-sent events when the request has ``"stream": true``) and ``GET /v1/models``. Tests
script failures with a queue of ``Behaviour``s consumed one per chat request (``status=500`` then a
normal reply tests retries; ``status=401``; ``hang=seconds`` for timeouts) and read back every request
it received (path, headers, JSON body).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    status: int = 200
    hang: float = 0.0  # seconds to wait before sending anything
    error: str = ""  # error message for status >= 400
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class StubOpenAIServer:
    """``with StubOpenAIServer(reply="...") as srv: ... srv.base_url ...``"""

    def __init__(self, reply: str = "Stub answer [1].", model: str = "stub-model", chunk_chars: int = 4):
        self.reply = reply
        self.model = model
        self.chunk_chars = chunk_chars  # streamed deltas are this many characters each
        self.behaviours: list[Behaviour] = []
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_requests(self) -> list[Received]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def then(self, *behaviours: Behaviour) -> "StubOpenAIServer":
        """Queue behaviours for the next chat requests (afterwards: normal replies)."""
        with self._lock:
            self.behaviours.extend(behaviours)
        return self

    def __enter__(self) -> "StubOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Behaviour:
        with self._lock:
            return self.behaviours.pop(0) if self.behaviours else Behaviour()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _record(self, body: dict | None) -> None:
                with stub._lock:
                    stub.requests.append(Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                                  body))

            def _send_json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._record(None)
                if self.path.rstrip("/").endswith("/models"):
                    self._send_json(200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]})
                else:
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except json.JSONDecodeError:
                    body = None
                self._record(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                b = stub._next()
                if b.hang and stub._stop.wait(b.hang):
                    return
                if b.status >= 400:
                    self._send_json(b.status, {"error": {"message": b.error or f"stub error {b.status}",
                                                         "type": "stub", "code": b.status}}, b.headers)
                    return
                if not isinstance(body, dict) or not body.get("messages"):
                    self._send_json(400, {"error": {"message": "messages is required"}})
                    return
                if body.get("stream"):
                    self._stream()
                else:
                    self._send_json(200, {
                        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": stub.reply},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    })

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                n = stub.chunk_chars
                pieces = [stub.reply[i:i + n] for i in range(0, len(stub.reply), n)]
                events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
                events += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
                events += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
                self.wfile.write(b": keep-alive\n\n")
                for e in events:
                    e.update(id="chatcmpl-stub", object="chat.completion.chunk", model=stub.model)
                    self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler


def closed_port() -> int:
    """A localhost port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
