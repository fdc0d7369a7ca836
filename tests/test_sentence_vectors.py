"""Sentence vectors stored at ingest (ingest/sentence_vectors.py): int8 storage ranks sentences as float32 does,
entries of another embedder or damaged ones are refused, ingest stores them (or not, by setting), and the app's
highlights from them equal the highlights of embedding the sentences per search, with no model call."""

from __future__ import annotations

import numpy as np
import pytest

from app_fixtures import app_settings
from lusifer_rag.app.access import LOCAL
from lusifer_rag.ingest.chunking import sentence_spans
from lusifer_rag.ingest.sentence_vectors import MAX_SENTENCES, PAYLOAD_KEY, decode, encode, sentence_vectors


def test_int8_rows_rank_sentences_as_float32(e5, udhr):
    texts = [" ".join(udhr(lang)[a:a + 3]) for lang in ("en", "ja", "ar") for a in (0, 9, 20)]
    entries = sentence_vectors(e5, texts)
    queries = e5.embed_queries([udhr("fr")[a] for a in range(0, 30, 2)])  # (15, dim), another language
    compared = 0
    for text, entry in zip(texts, entries):
        spans, vecs = decode(entry, e5)
        assert spans == sentence_spans(text)[:MAX_SENTENCES] and len(spans) > 1
        exact = e5.embed_documents([text[a:b] for a, b in spans])  # (n, dim) float32
        assert np.abs(vecs - exact).max() < 0.01  # int8 with a per-row scale: ~1/254 of the row's largest entry
        for q in queries:
            s_exact, s_int8 = exact @ q, vecs @ q  # (n,)
            top2 = np.sort(s_exact)[-2:]
            if top2[1] - top2[0] > 1e-3:  # not a near-tie
                assert np.argmax(s_int8) == np.argmax(s_exact)
                compared += 1
    assert compared >= 100


def test_entries_of_another_embedder_or_damaged_ones_are_refused(e5, tiny_hf_embedder):
    text = "Everyone has the right to rest. Everyone has the right to work."
    (entry,) = sentence_vectors(e5, [text])
    assert entry["embedder"] == e5.fingerprint and entry["dim"] == e5.dim
    assert decode(entry, tiny_hf_embedder) is None  # vectors of another model are not comparable with its queries
    assert decode({**entry, "int8": entry["int8"][:-8]}, e5) is None  # truncated bytes
    assert decode({**entry, "scale": "%%%"}, e5) is None
    assert decode(None, e5) is None and decode({"spans": "x"}, e5) is None
    # a one-sentence text: its span is the highlight, no vectors are stored
    (single,) = sentence_vectors(e5, ["One sentence only"])
    assert single == {"spans": [[0, 17]]} and decode(single, e5) == ([(0, 17)], None)
    # encode of a zero row stays finite
    assert np.isfinite(decode({"spans": [[0, 1], [1, 2]], **encode(np.zeros((2, e5.dim))), "embedder": e5.fingerprint},
                              e5)[1]).all()


@pytest.fixture(scope="module")
def services(tmp_path_factory, e5):
    """The sample corpus in two collections of one store: with sentence vectors (the default) and without."""
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.runtime import open_store_from

    tmp = tmp_path_factory.mktemp("sv")
    with_sv = app_settings(tmp, collection="with")
    without = app_settings(tmp, collection="without", sentence_vectors=False)
    with open_store_from(with_sv) as store:
        out = {}
        for name, settings in (("with", with_sv), ("without", without)):
            svc = RagService(settings, store, embedder=e5, options=AppOptions(ingest_workers=0))
            assert not svc.ingest_sample(principal=LOCAL).by_status("failed")
            out[name] = svc
        yield out


def test_ingest_stores_them_by_setting(services):
    store = services["with"].store
    stored = [p.payload.get(PAYLOAD_KEY) for p in store.iter_points("with")]
    assert stored and all(e and e["spans"] for e in stored)
    assert sum("int8" in e for e in stored) >= len(stored) - 1  # UDHR chunks hold many sentences
    assert not any(PAYLOAD_KEY in p.payload for p in store.iter_points("without"))
    # LangChain's view of a point is page_content + metadata: the vectors are neither
    assert all(PAYLOAD_KEY not in p.payload.get("metadata", {}) for p in store.iter_points("with"))


@pytest.mark.parametrize("query", ["freedom of opinion and expression", "教育を受ける権利",
                                   "Kila mtu ana haki ya kufanya kazi"])
def test_highlights_from_stored_vectors_equal_embedding_per_search(services, query):
    with_sv, without = services["with"], services["without"]
    hits = with_sv.search(query, k=5, highlight=False, principal=LOCAL)
    assert len(hits) == 5 and all(h.chunk.sentence_vectors for h in hits)
    cached = dict(with_sv._sentence_cache)
    stored = with_sv.highlight(query, [h.chunk for h in hits])
    assert with_sv._sentence_cache == cached  # nothing was embedded: the per-search path fills this cache
    per_search = with_sv.highlight(query, [h.chunk.text for h in hits])  # plain texts: sentences embedded now
    assert stored == per_search and all(stored)
    # the collection without them highlights its passages the same way, by embedding per search (its ranking may
    # differ: there the chunk's cosine alone scores, with no best sentence to add, Retriever._sentence_scores)
    plain = without.search(query, k=5, principal=LOCAL)
    from_stored = dict(zip([h.chunk.text for h in hits], stored))
    both = [h for h in plain if h.chunk.text in from_stored]
    assert len(both) >= 3, [h.chunk.text[:40] for h in plain]
    assert [h.highlight for h in both] == [from_stored[h.chunk.text] for h in both]


def test_the_best_sentence_weighs_more_in_a_chunk_of_more_sentences(tmp_path, e5, udhr):
    """The default's score of a chunk of n sentences: (1 − b) · q·chunk + b · best q·sentence, b = β · (1 − 1/n)
    (Retriever._sentence_scores): a two-line string is its own best description, a long passage's mean is not."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.rag.retrieval import SENTENCE_WEIGHT, Retriever
    from lusifer_rag.store import open_store

    docs = tmp_path / "docs"
    docs.mkdir()
    en = udhr("en")
    (docs / "short.txt").write_text(f"{en[25]} {en[22]}", encoding="utf-8")  # 2 sentences or more
    (docs / "long.txt").write_text(" ".join(en[18:24]), encoding="utf-8")
    store = open_store(str(tmp_path / "store"))
    try:
        assert Ingestor(store, "c", e5).ingest([docs]).exit_code == 0
        query = "the right to education"
        q = e5.embed_queries([query])[0]
        expected = {}
        for p in store.iter_points("c", with_vectors=True):
            spans, vecs = decode(p.payload[PAYLOAD_KEY], e5)
            b = SENTENCE_WEIGHT * (1 - 1 / len(vecs))
            expected[p.payload["page_content"]] = ((1 - b) * float(p.vector @ q) + b * float((vecs @ q).max()),
                                                   len(spans))
        assert len(expected) == 2 and len({n for _, n in expected.values()}) == 2, expected  # two lengths
        hits = Retriever(store, "c", e5, mode="dense", same_language_gap=0.0).search(query, k=2, score_threshold=-1.0)
        assert {h.text: round(h.score, 4) for h in hits} == {t: round(s, 4) for t, (s, _) in expected.items()}
    finally:
        store.close()


def test_the_same_language_gap_is_taken_off_the_query_language_s_chunks_only(tmp_path, e5, udhr):
    """The default's score of a chunk in the query's language is its score less the embedder's measured gap
    (Retriever._same_language_gap); chunks in other languages keep theirs. A setting of 0 turns it off."""
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.rag.retrieval import Retriever
    from lusifer_rag.settings import Settings
    from lusifer_rag.store import open_store

    docs = tmp_path / "docs"
    docs.mkdir()
    for lang in ("en", "de", "sw"):
        (docs / f"{lang}.txt").write_text(udhr(lang)[25], encoding="utf-8")  # article 26 in three languages
    store = open_store(str(tmp_path / "store"))
    try:
        assert Ingestor(store, "c", e5).ingest([docs]).exit_code == 0
        query = "Who has the right to education?"
        without = Retriever.from_settings(store, "c", e5, Settings(same_language_gap=0.0))
        default = Retriever.from_settings(store, "c", e5, Settings())
        assert default.same_language_gap == e5.same_language_gap > 0
        plain = {h.source.rsplit("/", 1)[1]: h.score for h in without.search(query, k=3, score_threshold=-1.0)}
        gapped = {h.source.rsplit("/", 1)[1]: h.score for h in default.search(query, k=3, score_threshold=-1.0)}
        assert set(plain) == set(gapped) == {"en.txt", "de.txt", "sw.txt"}
        assert gapped["en.txt"] == pytest.approx(plain["en.txt"] - e5.same_language_gap, abs=1e-6)
        assert gapped["de.txt"] == pytest.approx(plain["de.txt"], abs=1e-6)
        assert gapped["sw.txt"] == pytest.approx(plain["sw.txt"], abs=1e-6)
        with pytest.raises(Exception, match="same_language_gap"):
            Retriever(store, "c", e5, same_language_gap=0.5)
    finally:
        store.close()
