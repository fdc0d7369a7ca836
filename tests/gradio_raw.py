"""Calling a Gradio event the way any HTTP client can: by ``fn_index`` through ``/gradio_api/queue/join``, then
its server-sent events. What an attacker does without the UI, so the tests do it too."""

from __future__ import annotations

import json
import secrets

import httpx


def call_fn(client: httpx.Client, fn_index: int, data: list, timeout: float = 120.0, session: str | None = None) -> dict:
    """Run event ``fn_index`` with ``data`` (in browser session ``session``: a new one if None); returns the last
    message about it: ``{"success": bool, "output": …}``, or ``{"status": code, "text": body}`` when the join itself
    was refused."""
    session = session or secrets.token_hex(6)
    r = client.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                   "event_data": None, "trigger_id": None})
    if r.status_code != 200:
        return {"status": r.status_code, "text": r.text}
    event_id = r.json()["event_id"]
    last: dict = {}
    with client.stream("GET", "gradio_api/queue/data", params={"session_hash": session}, timeout=timeout) as s:
        for line in s.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("event_id") not in (None, event_id):
                continue
            last = msg
            if msg.get("msg") == "process_completed":
                break
    return last


def error_of(result: dict) -> str:
    """The user-facing error of a finished call ('' if it succeeded)."""
    if "status" in result:
        return f"HTTP {result['status']}: {result['text']}"
    if result.get("success"):
        return ""
    out = result.get("output") or {}
    return str(out.get("error") or out.get("title") or "failed")
