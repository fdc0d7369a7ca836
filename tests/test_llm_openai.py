"""The openai backend against a real local HTTP server speaking the chat-completions wire format."""

from __future__ import annotations

import time

import pytest

from lusifer_rag.errors import ConfigError, LLMError
from openai_stub_server import Behaviour, StubOpenAIServer, closed_port
from lusifer_rag.rag.answer import Answerer
from lusifer_rag.rag.llm import load_llm
from lusifer_rag.rag.llm.openai_backend import OpenAIBackend
from lusifer_rag.rag.prompt import build_prompt
from lusifer_rag.rag.types import RetrievedChunk

CHUNKS = [
    RetrievedChunk(id="c1", text="Everyone has the right to education.", score=0.9, source="udhr-en.pdf", page=7),
    RetrievedChunk(id="c2", text="Kila mtu ana haki ya kupata elimu.", score=0.8, source="udhr-sw.pdf", page=2),
]


def _prompt(question: str = "Who has the right to education?"):
    return build_prompt(question, CHUNKS, "en")


@pytest.fixture
def server():
    with StubOpenAIServer(reply="Everyone has the right to education [1] [2] [9].") as srv:
        yield srv


def _llm(server, **kw):
    kw.setdefault("model", "my-model")
    kw.setdefault("backoff", 0.01)
    return load_llm("openai", base_url=server.base_url, **kw)


def test_non_streaming_request_and_reply(server, monkeypatch):
    monkeypatch.setenv("LUSIFER_RAG_LLM_API_KEY", "sk-test-123")
    llm = _llm(server, temperature=0.2, max_tokens=77)
    prompt = _prompt()
    assert llm.complete(prompt) == server.reply
    (req,) = server.chat_requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test-123"
    assert req.body["model"] == "my-model"
    assert req.body["messages"] == prompt.messages
    assert req.body["stream"] is False
    assert req.body["temperature"] == 0.2 and req.body["max_tokens"] == 77


def test_streaming_deltas_concatenate_to_reply(server):
    llm = _llm(server, api_key="explicit-key")
    deltas = list(llm.generate(_prompt(), stream=True))
    assert len(deltas) > 1  # really streamed, several SSE events
    assert "".join(deltas) == server.reply
    (req,) = server.chat_requests
    assert req.body["stream"] is True
    assert req.headers["authorization"] == "Bearer explicit-key"


def test_openai_api_key_env_fallback_and_spec_url(server, monkeypatch):
    monkeypatch.delenv("LUSIFER_RAG_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    llm = load_llm(f"openai:{server.base_url}", model="m")
    llm.complete(_prompt())
    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-openai"


def test_model_discovered_from_server_when_not_given(server, monkeypatch):
    monkeypatch.delenv("LUSIFER_RAG_LLM_MODEL", raising=False)
    llm = load_llm("openai", base_url=server.base_url)
    llm.complete(_prompt())
    assert server.chat_requests[0].body["model"] == server.model
    assert any(r.path == "/v1/models" for r in server.requests)


@pytest.mark.parametrize("stream", [False, True])
def test_retries_after_500_then_succeeds(server, stream):
    server.then(Behaviour(status=500), Behaviour(status=503))
    llm = _llm(server, retries=2)
    assert "".join(llm.generate(_prompt(), stream=stream)) == server.reply
    assert len(server.chat_requests) == 3


def test_gives_up_after_retries_with_clear_error(server):
    server.then(*[Behaviour(status=502, error="bad gateway upstream")] * 3)
    llm = _llm(server, retries=1)
    with pytest.raises(LLMError, match=r"HTTP 502.*bad gateway upstream") as e:
        llm.complete(_prompt())
    assert server.base_url in str(e.value)
    assert len(server.chat_requests) == 2  # first try + one retry


def test_429_is_retried(server):
    server.then(Behaviour(status=429, headers={"Retry-After": "0"}))
    assert _llm(server).complete(_prompt()) == server.reply
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_401_is_not_retried_and_says_so(server, stream):
    server.then(Behaviour(status=401, error="invalid api key"))
    llm = _llm(server, retries=3)
    with pytest.raises(LLMError, match=r"HTTP 401.*invalid api key.*API key") as e:
        "".join(llm.generate(_prompt(), stream=stream))
    assert server.base_url in str(e.value)
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_server_times_out_within_the_timeout(server, stream):
    server.then(Behaviour(hang=30))
    llm = _llm(server, timeout=0.5, retries=2)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"timed out after 0.5s"):
        "".join(llm.generate(_prompt(), stream=stream))
    assert time.monotonic() - t0 < 3.0  # read timeouts are not retried: one timeout, not three
    assert len(server.chat_requests) == 1


def test_connection_refused_names_the_url():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    llm = load_llm("openai", base_url=url, model="m", retries=1, backoff=0.01)
    with pytest.raises(LLMError, match=r"cannot reach LLM server at http://127\.0\.0\.1:\d+/v1/chat/completions: "
                                        r"connection refused .*vLLM/Ollama running"):
        llm.complete(_prompt())


def test_invalid_configuration_is_a_config_error():
    with pytest.raises(ConfigError, match="http:// or https://"):
        OpenAIBackend("localhost:8000")
    with pytest.raises(ConfigError, match="read_timeout"):
        OpenAIBackend("http://localhost:1/v1", read_timeout=0)
    with pytest.raises(ConfigError, match="unknown LLM backend 'gpt5'"):
        load_llm("gpt5")


def test_answerer_with_openai_drops_invented_citations(server):
    ans = Answerer(_llm(server)).answer("Who has the right to education?", CHUNKS)
    assert ans.text == server.reply
    assert [c.number for c in ans.citations] == [1, 2]  # [9] names no source
    assert [c.chunk.id for c in ans.citations] == ["c1", "c2"]
    assert ans.backend == "openai" and not ans.extractive and ans.language == "en"


def test_answerer_streams_then_returns_answer(server):
    parts = list(Answerer(_llm(server)).stream("Who has the right to education?", CHUNKS))
    *deltas, final = parts
    assert all(isinstance(d, str) for d in deltas) and len(deltas) > 1
    assert "".join(deltas) == final.text == server.reply
    assert [c.number for c in final.citations] == [1, 2]
    assert server.chat_requests[0].body["stream"] is True


def test_no_context_does_not_call_the_server(server):
    answerer = Answerer(_llm(server), min_score=0.5)
    low = [RetrievedChunk(id="x", text="unrelated", score=0.1, source="a.txt")]
    for contexts in ([], low):
        ans = answerer.answer("Je, kila mtu ana haki ya kupata elimu bila malipo?", contexts)
        assert ans.no_context and ans.language == "sw" and ans.citations == []
        assert ans.text.startswith("Sikupata")
    streamed = list(answerer.stream("これは何についての文書ですか？", []))
    assert streamed[-1].no_context and streamed[-1].language == "ja" and streamed[0] == streamed[-1].text
    assert server.requests == []  # zero requests of any kind
