"""The default search on realistic collections (issue 32): each document in one language, queries in every
language; a German manual among the sample corpus; nonsense queries. Real e5-small, the real ingest pipeline,
the embedded store.

- on a non-parallel collection (each UDHR article kept in one of 10 languages, queried in all 10) the default is
  never below the raw model by more than 0.01 MRR@10, on same-language and on cross-language queries;
- a German question with a rare term printed on one page of a German PDF finds that page first, with the sample
  corpus in the same collection;
- a nonsense query finds nothing relevant; real questions do;
- a German document made mostly of code listings keeps German as the language of its chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

from lusifer_rag.ingest.chunking import ChunkingParams
from lusifer_rag.ingest.pipeline import Ingestor
from lusifer_rag.rag.retrieval import Retriever
from lusifer_rag.settings import Settings
from lusifer_rag.store import open_store

LANGS = ("en", "fr", "es", "de", "ru", "zh", "ja", "ar", "hi", "sw")

# a German manual: prose pages, one of them naming the option `bindingoffset`, and pages of code listings
GERMAN_PAGES = [
    "Einleitung. Dieses Handbuch beschreibt, wie man den Satzspiegel eines Dokuments einstellt. Der Satzspiegel "
    "bestimmt, welcher Teil der Seite bedruckt wird und wie breit die Ränder sind.",
    "Papierformate. Das Paket kennt die üblichen Formate wie A4, A5 und Letter. Wer ein eigenes Format braucht, "
    "gibt Breite und Höhe des Papiers in Millimetern an.",
    "Bindekorrektur. Die Option bindingoffset fügt dem inneren Rand einen festen Abstand hinzu, damit beim Binden "
    "kein Text in der Klebung verschwindet. Der Abstand wird vor allen anderen Berechnungen abgezogen.",
    "\\usepackage[a4paper]{geometry}\n\\geometry{left=25mm, right=20mm}\n\\newgeometry{top=10mm}\n"
    "\\restoregeometry\n\\savegeometry{eins}\n\\loadgeometry{eins}\n\\setlength{\\textwidth}{160mm}",
    "\\geometry{landscape, margin=1in}\n\\usepackage[showframe]{geometry}\n\\setlength{\\marginparwidth}{2cm}\n"
    "\\geometry{includehead, includefoot}\n\\geometry{hmarginratio=1:1}\n\\geometry{vmarginratio=2:3}",
    "Randverhältnisse. Statt fester Ränder kann man das Verhältnis von innerem zu äußerem Rand angeben. Das Paket "
    "verteilt dann den freien Platz entsprechend auf beide Seiten.",
]


FILLER = ("Die folgenden Absätze erläutern die Einstellungen ausführlich und mit Beispielen aus der Praxis. "
          "Jede Einstellung wirkt sich auf die Aufteilung der Seite aus, und nicht jede Kombination ist sinnvoll. "
          "Im Zweifel hilft ein Probedruck, bevor das ganze Dokument gesetzt wird. ") * 8


def _german_pdf(path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in GERMAN_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 6, text if text.startswith("\\") else f"{text} {FILLER}")
    pdf.output(str(path))


@pytest.fixture(scope="module")
def non_parallel(tmp_path_factory, e5, udhr):
    """Article a kept in LANGS[a % 10] only; every article queried by its first sentence in all 10 languages."""
    docs = tmp_path_factory.mktemp("udhr-np")
    queries = []  # (query, query language, article, the kept document's language)
    for a in range(1, 31):
        kept = LANGS[a % len(LANGS)]
        (docs / f"{kept}_{a:02d}.txt").write_text(udhr(kept)[a - 1], encoding="utf-8")
        for lang in LANGS:
            first = udhr(lang)[a - 1].replace("\n", " ").split(". ")[0]
            queries.append((first, lang, a, kept))
    store = open_store(str(tmp_path_factory.mktemp("store") / "s"))
    report = Ingestor(store, "np", e5, ChunkingParams(max_tokens=512, overlap_tokens=0)).ingest([docs])
    assert report.exit_code == 0
    yield store, queries
    store.close()


def _mrr(r: Retriever, queries) -> dict[str, float]:
    r.embed_queries([q for q, *_ in queries])
    out = {"same": [], "cross": []}
    for query, lang, a, kept in queries:
        articles = list(dict.fromkeys(int(h.source.rsplit("_", 1)[1][:2]) for h in r.search(query, k=10)))
        rank = articles.index(a) + 1 if a in articles else 0
        out["same" if lang == kept else "cross"].append(1 / rank if rank else 0.0)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.slow
def test_the_default_is_never_below_the_raw_model_on_a_non_parallel_collection(non_parallel, e5):
    store, queries = non_parallel
    raw = _mrr(Retriever(store, "np", e5, mode="dense", debias="off", sentence_weight=0.0, same_language_gap=0.0), queries)
    default = _mrr(Retriever.from_settings(store, "np", e5, Settings()), queries)
    for part in ("same", "cross"):
        assert default[part] >= raw[part] - 0.01, (part, default, raw)


@pytest.mark.slow
def test_the_best_sentence_finds_more_across_languages_than_the_chunk_alone(non_parallel, e5):
    """The default scores a chunk with its best-matching sentence too (sentence_weight; the vectors stored for the
    highlights): a query matches the sentence that says it, which the chunk's mean dilutes, most of all across
    languages (bench/retrieval_real.py test split, cross-language MRR@10: handbook-np 0.345 -> 0.579, udhr-np
    0.486 -> 0.550, PDF questions 0.067 -> 0.203)."""
    store, queries = non_parallel
    chunk_only = Retriever.from_settings(store, "np", e5, Settings(sentence_weight=0.0))
    default = Retriever.from_settings(store, "np", e5, Settings())
    assert default.sentence_weight == 0.7
    alone, both = _mrr(chunk_only, queries), _mrr(default, queries)
    assert both["same"] >= alone["same"] - 0.01, (both, alone)
    assert both["cross"] > alone["cross"] + 0.03, (both, alone)


@pytest.fixture(scope="module")
def manual_with_sample(tmp_path_factory, e5):
    from lusifer_rag.app.service import SAMPLE_CORPUS

    docs = tmp_path_factory.mktemp("manual")
    _german_pdf(docs / "satzspiegel.pdf")
    store = open_store(str(tmp_path_factory.mktemp("store") / "s"))
    ingest = Ingestor(store, "docs", e5)
    assert ingest.ingest([docs]).exit_code == 0
    assert ingest.ingest([SAMPLE_CORPUS]).exit_code == 0
    yield store
    store.close()


@pytest.mark.slow
def test_a_rare_term_from_a_german_page_finds_that_page_first_beside_the_sample(manual_with_sample, e5):
    r = Retriever.from_settings(manual_with_sample, "docs", e5, Settings())
    hits = r.search("Was bewirkt die Option bindingoffset?", k=5)
    top = hits[0]
    assert top.source.endswith("satzspiegel.pdf") and top.page <= 3 <= (top.page_end or top.page), \
        [(h.source, h.page, h.page_end) for h in hits]
    assert "bindingoffset" in top.text


@pytest.mark.slow
def test_the_code_pages_of_a_german_manual_are_labelled_german(manual_with_sample):
    from lusifer_rag.store import Filter

    labels = [p.payload["metadata"]["language"] for p in manual_with_sample.iter_points("docs", Filter())
              if p.payload["metadata"]["source"].endswith("satzspiegel.pdf")]
    assert len(labels) >= 3 and set(labels) == {"de"}, labels


def test_label_document_keeps_prose_language_over_code_and_a_quotation_its_own(udhr):
    from lusifer_rag.ingest.langid import label_document

    code = "\\usepackage[a4paper]{geometry}\n\\geometry{left=25mm, right=20mm}\n\\setlength{\\textwidth}{160mm}"
    quote = "This paragraph is a quotation in English that explains how the margins are computed."
    (doc, _), labels = label_document([GERMAN_PAGES[0], code, code, code, GERMAN_PAGES[2], quote])
    assert doc == "de"
    assert [lang for lang, _ in labels] == ["de", "de", "de", "de", "de", "en"]
    for lang in ("hi", "te", "th", "ja"):  # vowel signs are combining marks; Thai and Japanese have no spaces
        assert label_document([udhr(lang)[0] + "\n" + udhr(lang)[1]])[0][0] == lang


@pytest.mark.slow
def test_nonsense_finds_nothing_relevant_and_real_questions_do(manual_with_sample, e5):
    r = Retriever.from_settings(manual_with_sample, "docs", e5, Settings())
    assert r.min_relevance == e5.relevance_floor  # no setting: the embedder's measured floor
    # the nonsense query (bench/retrieval_real.py reports the rejection rate over 30 off-topic queries)
    assert r.search("zxqv blorf wumpus 7781 klaatu", k=10) == []
    for question in ("Who has the right to education?", "Was bewirkt die Option bindingoffset?",
                     "¿Quién tiene derecho a la educación?"):
        assert r.search(question, k=10), question


@pytest.mark.slow
def test_the_same_language_gap_finds_more_across_languages_and_keeps_the_own_language(non_parallel, e5):
    """e5-small scores a passage in the query's language higher than an equally relevant one in another; the
    default takes its measured gap off the scores of own-language chunks (bench/retrieval_real.py test split,
    cross-language MRR@10 udhr-np 0.550 -> 0.599, same-language unchanged on every set)."""
    store, queries = non_parallel
    without = Retriever.from_settings(store, "np", e5, Settings(same_language_gap=0.0))
    default = Retriever.from_settings(store, "np", e5, Settings())
    assert without.same_language_gap == 0.0 and default.same_language_gap == e5.same_language_gap == 0.0075
    before, after = _mrr(without, queries), _mrr(default, queries)
    assert after["same"] >= before["same"] - 0.01, (after, before)
    assert after["cross"] > before["cross"] + 0.01, (after, before)


@pytest.mark.slow
def test_offsets_find_more_across_languages_on_a_non_parallel_collection(non_parallel, e5):
    """The opt-in debias=offsets: each chunk against its language's background for the query (udhr-np test split:
    cross-language MRR@10 0.486 -> 0.617)."""
    store, queries = non_parallel
    raw = _mrr(Retriever(store, "np", e5, mode="dense", debias="off", sentence_weight=0.0, same_language_gap=0.0), queries)
    offsets = _mrr(Retriever(store, "np", e5, mode="dense", debias="offsets"), queries)
    assert offsets["cross"] > raw["cross"] + 0.02, (offsets, raw)


@pytest.mark.slow
def test_reference_offsets_keep_same_language_and_find_more_across_languages(non_parallel, e5):
    """The opt-in debias=reference: language gaps measured on a parallel reference text (Django's UI messages, not
    the UDHR), read off each chunk's vector. On the non-parallel UDHR fixture it puts at most one same-language
    article of 30 a rank lower than the raw model (here MRR@10 1.000 -> 0.983) and finds more across
    languages (here 0.47 -> 0.70; bench/retrieval_real.py, udhr-np test split: cross 0.486 -> 0.641, same 0.971 ->
    0.971). Not the default: it costs same-language search where the documents share one subject (handbook-np)."""
    store, queries = non_parallel
    # every same-language query; across languages, queries in four languages of four scripts (the test's time)
    queries = [q for q in queries if q[1] == q[3] or q[1] in ("en", "zh", "ar", "hi")]
    plain, r = Retriever(store, "np", e5, mode="dense", debias="off", sentence_weight=0.0, same_language_gap=0.0), Retriever(store, "np", e5, debias="reference")
    raw = _mrr(plain, queries)
    r._query_cache.update(plain._query_cache)  # the query vectors once
    reference = _mrr(r, queries)
    assert reference["same"] >= raw["same"] - 0.02, (reference, raw)  # one of 30 articles a rank lower at most
    assert reference["cross"] > raw["cross"] + 0.05, (reference, raw)
    # the scores stay cosines of the query's language: same-language matches still clear the relevance floor
    same = [query for query, lang, _, kept in queries if lang == kept]
    assert all(r.search(query, k=1)[0].score >= e5.relevance_floor for query in same[:10])


def test_the_default_embedder_s_language_shifts_ship_with_the_package(e5, tmp_path):
    from lusifer_rag.rag.reference_offsets import ReferenceShifts

    shifts = ReferenceShifts(e5, cache_dir=tmp_path)
    assert {"de", "zh", "hi", "sw", "te", "ar"} <= set(shifts.shifts), \
        "the shipped shifts do not match e5-small's fingerprint: scripts/vendor_reference.py --shifts e5-small"
    assert set(shifts.get(["de", "zxx", "und"])) == {"de"}  # labels the reference lacks are left out
    assert shifts.basis(["de", "fr", "en"]).shape == (2, e5.dim)  # English is the origin: no direction
    assert not (tmp_path / "language-shifts").exists()  # nothing was embedded


@pytest.mark.slow
def test_min_relevance_zero_keeps_weak_matches(manual_with_sample, e5):
    r = Retriever.from_settings(manual_with_sample, "docs", e5, Settings(min_relevance=0.0))
    assert r.min_relevance is None and r.search("zxqv blorf wumpus 7781 klaatu", k=3)


def test_the_language_filter_names_languages_and_says_what_zxx_and_und_hold():
    from lusifer_rag.app.ui import language_filter_options

    options = language_filter_options(["zxx", "de", "und", "en"])
    assert [code for _, code in options] == ["en", "de", "zxx", "und"]
    assert options[1][0] == "German (de)" and "code" in options[2][0] and "undetermined" in options[3][0]
