"""Settings an admin changes in the app, kept in the app database and applied without a restart: the answer
backend (an OpenAI-compatible server's URL, model and key), top-k and the default answer language. The key is
stored server-side (the database file is readable by this user only) and never sent back to a browser."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from lusifer_rag.errors import ConfigError, LusiferRagError
from lusifer_rag.rag.language import LANGUAGE_NAMES

EDITABLE = ("llm_backend", "llm_base_url", "llm_model", "llm_api_key", "top_k", "answer_language")
BACKENDS = ("extractive", "openai", "transformers")
TEST_TIMEOUT_S = 20.0


def validated(values: dict, current) -> dict:
    """The editable settings of ``values`` checked (an empty text means 'not set'); ConfigError says what is
    allowed."""
    out: dict = {}
    backend = (values.get("llm_backend") or "").strip() or None
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not known; allowed: {', '.join(BACKENDS)}")
    out["llm_backend"] = backend
    url = (values.get("llm_base_url") or "").strip() or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"server URL {url[:80]!r} is not valid; give http(s)://host[:port]/v1")
    out["llm_base_url"] = url
    out["llm_model"] = (values.get("llm_model") or "").strip() or None
    if (backend or ("openai" if url else "extractive")) == "openai" and not url:
        raise ConfigError("the openai backend needs the server URL (e.g. http://localhost:8000/v1)")
    top_k = values.get("top_k")
    if top_k not in (None, ""):
        top_k = int(float(top_k))
        if not 1 <= top_k <= 50:
            raise ConfigError(f"top-k must be from 1 to 50; got {top_k}")
        out["top_k"] = top_k
    lang = (values.get("answer_language") or "auto").strip()
    if lang != "auto" and lang not in LANGUAGE_NAMES:
        raise ConfigError(f"answer language {lang!r} is not known; give 'auto' or an ISO 639-1 code such as 'fr'")
    out["answer_language"] = lang
    key = values.get("llm_api_key")
    if key:  # an empty box keeps the stored key
        out["llm_api_key"] = key.strip()
    return out


def applied(settings, stored: dict):
    """``settings`` with the stored overrides."""
    known = {k: v for k, v in stored.items() if k in EDITABLE}
    return dataclasses.replace(settings, **known) if known else settings


def settings_form(ws, principal) -> tuple:
    """The Settings tab's values: backend, URL, model, key box (always empty), clear-key, top-k, answer language,
    and the runtime description (the key shown only as whether one is set)."""
    s = ws.settings
    info = ws.service().info()
    info["llm"]["api_key"] = "set" if s.llm_api_key else "not set"
    info["access"] = {"you": principal.name or "not signed in", "rights": sorted(principal.rights)}
    backend = s.llm_backend or ("openai" if s.llm_base_url else "extractive")
    return (backend, s.llm_base_url or "", s.llm_model or "", "", False, s.top_k, s.answer_language or "auto", info)


def test_connection(settings, values: dict) -> str:
    """Build the backend the values describe (the stored key when none is given) and ask it for a one-word reply."""
    from lusifer_rag.rag.cli import make_answerer
    from lusifer_rag.rag.prompt import Prompt

    trial = dataclasses.replace(settings, llm_timeout=TEST_TIMEOUT_S,
                                **{k: v for k, v in validated(values, settings).items()
                                   if k in ("llm_backend", "llm_base_url", "llm_model", "llm_api_key")})
    backend = trial.llm_backend or ("openai" if trial.llm_base_url else "extractive")
    if backend == "extractive":
        return "The extractive backend needs no connection: answers quote your documents."
    try:
        llm = make_answerer(trial, None).llm
        prompt = Prompt(messages=[{"role": "system", "content": "Reply with the single word OK."},
                                  {"role": "user", "content": "Are you there?"}], question="Are you there?",
                        sources=[], answer_language="en", answer_language_name="English")
        reply = " ".join(llm.complete(prompt).split())[:80]
    except LusiferRagError as e:
        return f"**Connection failed:** {_md_text(str(e)[:300])}"
    return f"**Connected.** The model replied: “{_md_text(reply)}”"


def _md_text(text: str) -> str:
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)
