"""Ranking on a mixed-language collection (UDHR articles in 12 languages, real e5-small, embedded Qdrant Edge, the
real ingest pipeline), searched without a language filter as users search.

- known-item: a sentence read off an article, in that article's language, must find its own chunk in the top 5 as
  well with the language-bias correction (the default) as without it (it did not: 0.55 against 0.79);
- the correction is never worse than raw where there is nothing to correct: a one-language collection, a
  one-language filter;
- the query's language is told right on short queries in every language of the collection;
- the opt-in same-language pivot helps on a parallel collection and changes nothing without a same-language
  version.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor
from lusifer_rag.rag.retrieval import Retriever, SearchFilters
from lusifer_rag.store import open_store

LANGS = ("en", "fr", "es", "de", "ru", "zh", "ja", "ar", "hi", "sw", "te", "vi")
_SENT = re.compile(r"(?<=[.!?。！？।])\s*")


def later_sentence(article: str) -> str | None:
    """The last sentence of an article that is not its first (queries for the article's own chunk)."""
    sents = [s.strip() for s in _SENT.split(article.replace("\n", " ")) if s.strip()]
    later = [s for s in sents[1:] if len(s) >= 30]
    return later[-1] if later else None


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, e5, udhr):
    docs = tmp_path_factory.mktemp("udhr-mixed")
    for lang in LANGS:
        for a, text in enumerate(udhr(lang), 1):
            (docs / f"{lang}_{a:02d}.txt").write_text(text, encoding="utf-8")
    store = open_store(str(tmp_path_factory.mktemp("store") / "s"))
    report = Ingestor(store, "mixed", e5, ChunkingParams(max_tokens=512, overlap_tokens=0)).ingest([docs])
    assert report.exit_code == 0
    yield store
    store.close()


def known_items(udhr):
    out = []
    for lang in LANGS:
        for a, text in enumerate(udhr(lang), 1):
            s = later_sentence(text)
            if s:
                out.append((lang, a, s))
    return out


def known_at_5(r: Retriever, items, **search) -> float:
    r.embed_queries([s for _, _, s in items])
    found = []
    for lang, a, sentence in items:
        hits = r.search(sentence, k=5, **search)
        found.append(any(h.source.endswith(f"{lang}_{a:02d}.txt") and sentence in h.text for h in hits))
    return float(np.mean(found))


@pytest.mark.slow
def test_known_item_search_as_good_with_the_correction_as_without(mixed, e5, udhr):
    items = known_items(udhr)
    assert len(items) > 200
    default = Retriever(mixed, "mixed", e5)
    assert default.means.refresh() or default.means.languages() == 12  # a mixed collection: the correction is on
    got = {
        "raw dense": known_at_5(Retriever(mixed, "mixed", e5, mode="dense", debias="off", sentence_weight=0.0, same_language_gap=0.0), items),
        "raw hybrid": known_at_5(Retriever(mixed, "mixed", e5, mode="hybrid", debias="off", sentence_weight=0.0, same_language_gap=0.0),
                                 items),
        "default": known_at_5(default, items),
        "corrected dense": known_at_5(Retriever(mixed, "mixed", e5, mode="dense", debias="on"), items),
    }
    best_raw = max(got["raw dense"], got["raw hybrid"])
    assert best_raw > 0.7, got
    assert got["default"] >= best_raw - 0.01, got
    assert got["corrected dense"] >= got["raw dense"] - 0.01, got


@pytest.mark.slow
def test_correction_still_favours_no_language_on_cross_lingual_queries(mixed, e5, udhr):
    """Centring (for parallel collections): the guard must not bring the same-language bias back; query = an
    article's first sentence."""
    def own_share(r):
        shares = []
        for lang in ("en", "sw", "ja", "ar"):
            for a in range(1, 31, 3):
                text = udhr(lang)[a - 1]
                first = [s for s in _SENT.split(text.replace("\n", " ")) if s.strip()][0]
                hits = r.search(first, k=10)
                shares.append(np.mean([h.language == lang for h in hits]))
        return float(np.mean(shares))

    off, on = own_share(Retriever(mixed, "mixed", e5, debias="off")), \
        own_share(Retriever(mixed, "mixed", e5, debias="centre"))
    assert on < off / 2, (on, off)


def test_one_language_filter_gives_the_raw_ranking(mixed, e5, udhr):
    default, raw = Retriever(mixed, "mixed", e5), Retriever(mixed, "mixed", e5, debias="off")
    for lang, a in (("sw", 3), ("ja", 19), ("de", 26)):
        q = udhr("en")[a - 1][:120]
        flt = SearchFilters(languages=[lang])
        assert [h.id for h in default.search(q, k=10, filters=flt)] == [h.id for h in raw.search(q, k=10, filters=flt)]


def test_one_language_collection_gives_the_raw_ranking(tmp_path, e5, udhr):
    docs = tmp_path / "d"
    docs.mkdir()
    for a, text in enumerate(udhr("fr"), 1):
        (docs / f"fr_{a:02d}.txt").write_text(text, encoding="utf-8")
    with open_store(str(tmp_path / "s")) as store:
        Ingestor(store, "fr", e5, ChunkingParams(max_tokens=512)).ingest([docs])
        default, raw = Retriever(store, "fr", e5), Retriever(store, "fr", e5, debias="off")
        for lang in ("en", "sw", "ja", "fr"):  # cross-lingual and same-language queries
            for a in (1, 12, 26):
                q = udhr(lang)[a - 1]
                assert [h.id for h in default.search(q, k=10)] == [h.id for h in raw.search(q, k=10)]


def stdlib_messages() -> list[str]:
    """Python's own English command-line messages (argparse, optparse, getopt): short strings that the language
    identifier half-guesses ('ignored explicit argument %r' -> 'la', 'option --%s not a unique prefix' -> 'fr')."""
    import argparse
    import getopt
    import optparse
    from pathlib import Path

    found = []
    for mod in (argparse, optparse, getopt):
        found += re.findall(r"_\(['\"]([^'\"]{12,})['\"]\)", Path(mod.__file__).read_text(encoding="utf-8"))
    return list(dict.fromkeys(found))


def test_one_language_collection_of_short_strings_gives_the_raw_ranking(tmp_path, e5):
    """Unsure labels do not make a language present: a collection of English messages, some labelled 'la', 'fr',
    'de'… with low confidence, is one language, so debias=auto searches it as raw (it centred it before)."""
    messages = stdlib_messages()
    assert len(messages) >= 30
    docs = tmp_path / "d"
    docs.mkdir()
    for i, text in enumerate(messages):
        (docs / f"m{i:02d}.txt").write_text(text, encoding="utf-8")
    with open_store(str(tmp_path / "s")) as store:
        assert Ingestor(store, "cli", e5, ChunkingParams(max_tokens=128)).ingest([docs]).exit_code == 0
        labels = store.facet("cli", "metadata.language")
        assert len(labels) >= 3, labels  # the identifier does mislabel some: the case under test is real
        default, raw = Retriever(store, "cli", e5), Retriever(store, "cli", e5, debias="off")
        assert not default._debias_on(None)
        for q in ("the option requires an argument", "argumento no válido", "option ambiguë", "ungültiger Wert",
                  "引数が必要です"):
            assert [h.id for h in default.search(q, k=10)] == [h.id for h in raw.search(q, k=10)]


def test_an_english_chunk_mislabelled_french_scores_as_labelled_english(tmp_path, e5, udhr):
    """A wrong label that has a mean of its own (the identifier half-guessed an English chunk as French, in a
    collection holding French) costs the chunk nothing: after the language subspace is removed, centring on the French
    or the English mean gives the same vector, so no per-candidate confidence is needed at search time."""
    import uuid

    from lusifer_rag.store import Point

    docs = tmp_path / "d"
    docs.mkdir()
    for lang in ("en", "fr"):
        for a, text in enumerate(udhr(lang)[:15], 1):
            (docs / f"{lang}_{a:02d}.txt").write_text(text, encoding="utf-8")
    with open_store(str(tmp_path / "s")) as store:
        assert Ingestor(store, "c", e5, ChunkingParams(max_tokens=512)).ingest([docs]).exit_code == 0
        en = next(p for p in store.iter_points("c", with_vectors=True) if p.payload["metadata"]["language"] == "en")
        copies = {}
        for label, conf in (("en", 0.95), ("fr", 0.2)):
            pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"copy-{label}"))
            md = {**en.payload["metadata"], "language": label, "language_confidence": conf, "doc_id": pid}
            copies[label] = pid
            store.upsert("c", [Point(pid, en.vector, {**en.payload, "metadata": md})])
        r = Retriever(store, "c", e5, mode="dense", debias="on", feedback_docs=0)
        for q in ("droit à l'éducation", "right to life", "libertad de expresión"):
            scores = {h.id: h.score for h in r.search(q, k=40)}
            assert copies["en"] in scores and copies["fr"] in scores, q
            assert scores[copies["fr"]] == pytest.approx(scores[copies["en"]], abs=1e-5), q
        assert set(r.means.means) == {"en", "fr"}


def test_short_queries_get_their_language(mixed, e5, udhr):
    """Three- or four-word queries (an article's first words) in the 12 languages of the collection: the language
    the retriever centres on is right for ~all of them, and for most in every language."""
    r = Retriever(mixed, "mixed", e5)
    queries = []
    for lang in LANGS:
        for a in range(1, 31):
            text = udhr(lang)[a - 1].replace("\n", " ")
            words = text.split()
            q = text[:12] if lang in ("zh", "ja") else " ".join(words[:3] if len(words[0]) > 3 else words[:4])
            queries.append((lang, q))
    per_lang = {lang: np.mean([r._query_language(q) == lg for lg, q in queries if lg == lang]) for lang in LANGS}
    assert np.mean(list(per_lang.values())) >= 0.9 and min(per_lang.values()) >= 0.7, per_lang


def test_short_queries_in_a_language_the_collection_lacks_stay_uncentred(mixed, e5, udhr):
    """A question in a language with no documents here keeps its language, so no collection language's mean is
    taken off it (that would push the results away from that language)."""
    r = Retriever(mixed, "mixed", e5)
    r.means.refresh()
    queries = [(lang, " ".join(udhr(lang)[a - 1].split()[:4])) for lang in ("ko", "th", "am", "ha", "bn", "fa")
               for a in range(1, 31, 2)]
    got = [r._query_language(q) for _, q in queries]
    assert np.mean([g not in r.means.means for g in got]) >= 0.9, list(zip(queries, got))
    q = r.embed_query(queries[0][1])
    assert r.means.centre_query(q, got[0]) is q


def _first_sentence_recall_and_own(r, udhr, langs):
    """Query = an article's first sentence in each of ``langs``; relevant = that article in all 12 languages:
    (recall@10, the query language's share of the top 10)."""
    queries = [(lang, a, [s for s in _SENT.split(udhr(lang)[a - 1].replace("\n", " ")) if s.strip()][0])
               for lang in langs for a in range(1, 31)]
    rec, own = [], []
    r.embed_queries([q for _, _, q in queries])
    for lang, a, q in queries:
        hits = r.search(q, k=10)
        rec.append(np.mean([h.source.endswith(f"_{a:02d}.txt") for h in hits]))
        own.append(np.mean([h.language == lang for h in hits]))
    return float(np.mean(rec)), float(np.mean(own))


@pytest.mark.slow
def test_feedback_and_the_language_subspace_raise_cross_lingual_recall(mixed, e5, udhr):
    """The default (centring in the collection's language-subspace complement, then pseudo-relevance feedback) must
    find more of an article's versions than centring alone, and keep the query's own language near its corpus
    share."""
    langs = ("en", "sw", "ja", "ar", "ru")
    centred = Retriever(mixed, "mixed", e5, debias="centre", feedback_docs=0, translation_pool=0)
    centred.means.refresh()
    centred.means._basis = np.zeros((0, 0), np.float32)  # centring on the means alone, as before
    before = _first_sentence_recall_and_own(centred, udhr, langs)
    after = _first_sentence_recall_and_own(Retriever(mixed, "mixed", e5, debias="centre", translation_pool=0), udhr, langs)
    assert after[0] > before[0] + 0.02, (before, after)
    assert after[1] <= max(before[1], 1 / len(LANGS) + 0.05), (before, after)


@pytest.mark.slow
def test_translation_group_scoring_raises_cross_lingual_recall(mixed, e5, udhr):
    """Scoring the best documents by their translation groups finds more of an article's versions than the same
    search without it, with no more of the query's own language."""
    langs = ("en", "sw", "ja", "ar", "ru", "hi")
    before = _first_sentence_recall_and_own(Retriever(mixed, "mixed", e5, debias="centre", translation_pool=0), udhr, langs)
    after = _first_sentence_recall_and_own(Retriever(mixed, "mixed", e5, debias="centre"), udhr, langs)
    assert after[0] > before[0] + 0.02, (before, after)  # measured 0.704 -> 0.750, own language 0.121 -> 0.104
    assert after[1] <= before[1], (before, after)


@pytest.mark.slow
def test_the_same_language_pivot_finds_more_versions_on_a_parallel_collection(mixed, e5, udhr):
    """With ``same_language_pivot`` (opt-in, for parallel collections), where the uncorrected search's best article
    is in the query's language, the feedback pivots on it alone and finds more of the article's versions than the
    default feedback from the corrected search's best documents."""
    langs = ("en", "sw", "ja", "ar", "ru", "hi")
    before = _first_sentence_recall_and_own(Retriever(mixed, "mixed", e5, debias="centre"), udhr, langs)
    after = _first_sentence_recall_and_own(Retriever(mixed, "mixed", e5, debias="centre", same_language_pivot=True), udhr, langs)
    assert after[0] > before[0] + 0.05, (before, after)  # measured 0.750 -> 0.886, own language 0.104 -> 0.103
    assert after[1] <= before[1] + 0.01, (before, after)


@pytest.mark.slow
def test_without_a_version_in_the_query_language_the_pivot_changes_nothing(mixed, e5, udhr):
    """A search filtered to languages other than the query's (still corrected: several languages) has no
    same-language version to pivot on: its results are those of the feedback from the corrected search."""
    others = SearchFilters(languages=["en", "fr", "zh", "ar", "hi", "vi"])
    queries = [udhr(lang)[a] for lang in ("es", "de", "ja", "sw") for a in (0, 6, 17, 25)]
    pivot, plain = Retriever(mixed, "mixed", e5, debias="centre", same_language_pivot=True), Retriever(mixed, "mixed", e5, debias="centre")
    pivot.embed_queries(queries)
    plain._query_cache.update(pivot._query_cache)
    for q in queries:
        got = [(h.id, round(h.score, 6)) for h in pivot.search(q, k=10, filters=others)]
        assert got == [(h.id, round(h.score, 6)) for h in plain.search(q, k=10, filters=others)], q
        assert pivot._debias_on(None, others)  # the correction was on: the comparison means something
