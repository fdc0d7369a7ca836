"""Language identification on real UDHR translations with the bundled lid.176 model (and py3langid)."""

from __future__ import annotations

import threading

import pytest

from lusifer_rag.ingest import langid


@pytest.mark.parametrize("lang", ["sw", "ja", "te", "ar", "ru", "fr", "zh", "hi", "am", "ha", "yo", "th"])
def test_udhr_articles(lang, udhr):
    articles = udhr(lang)
    results = langid.detect_languages(articles)
    correct = sum(code == lang for code, _ in results)
    assert correct >= 28, (lang, results)
    assert all(0.0 < conf <= 1.0 for _, conf in results)


def test_single_and_batch_agree(udhr):
    texts = [udhr(lang)[0] for lang in ("sw", "ja", "te", "ar", "ru", "fr")]
    batch = langid.detect_languages(texts)
    assert [langid.detect_language(t) for t in texts] == batch
    assert [code for code, _ in batch] == ["sw", "ja", "te", "ar", "ru", "fr"]  # ISO 639-1, not 639-3


@pytest.mark.parametrize("text", ["", "   \n ", "12 345 6.7", "ok", "!!", "—"])
def test_too_short_is_undetermined(text):
    assert langid.detect_language(text) == ("und", 0.0)


def test_mixed_batch_keeps_positions(udhr):
    texts = ["", udhr("ja")[0], "a", udhr("ru")[0]]
    assert [c for c, _ in langid.detect_languages(texts)] == ["und", "ja", "und", "ru"]


def test_py3langid_backend(udhr):
    model = langid.Py3LangidIdentifier()
    codes = [c for c, _ in model.predict([udhr(lang)[0] for lang in ("fr", "ru", "ja")])]
    assert codes == ["fr", "ru", "ja"]


def test_fasttext_backend_is_the_bundled_file(udhr):
    model = langid.FastTextIdentifier()
    (code, conf), = model.predict([udhr("te")[0]])
    assert code == "te" and conf > 0.9


def test_loaded_once_thread_safe_and_offline(monkeypatch, udhr):
    from pytest_socket import disable_socket, enable_socket

    monkeypatch.setattr(langid, "_identifier", None)
    created = []
    original = langid.IDENTIFIERS[langid.CombinedIdentifier.name]

    def counting():
        created.append(1)
        return original()

    monkeypatch.setitem(langid.IDENTIFIERS, langid.CombinedIdentifier.name, counting)
    disable_socket()  # nothing may be downloaded
    try:
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(langid.get_identifier())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(created) == 1 and len({id(x) for x in seen}) == 1
        assert langid.detect_language(udhr("sw")[0])[0] == "sw"
    finally:
        enable_socket()
