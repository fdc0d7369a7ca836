"""The pieces of the language-bias correction that are plain logic: the exact-match guard's coverage and the
rank merge, and the centring on the nearest language for rare labels (real XLM-R tokenizer, vectors built here)."""

from __future__ import annotations

import numpy as np
import pytest

from lusifer_rag.embedder.sparse import BM25SparseEncoder
from lusifer_rag.rag.language_bias import EXACT_MIN_TERMS, LanguageMeans, exact_matches, keep_exact_matches


@pytest.fixture(scope="module")
def encoder(xlmr_tokenizer_file):
    from transformers import XLMRobertaTokenizerFast

    return BM25SparseEncoder(XLMRobertaTokenizerFast(tokenizer_file=str(xlmr_tokenizer_file)))


def test_a_sentence_read_off_a_chunk_is_an_exact_match(encoder):
    chunk = ("Everyone has the right to education. Education shall be free, at least in the elementary and "
             "fundamental stages. Elementary education shall be compulsory.")
    sentence = "Education shall be free, at least in the elementary and fundamental stages."
    other = "Everyone has the right to freedom of thought, conscience and religion; this right includes freedom."
    assert exact_matches(encoder, sentence, [chunk, other]) == [True, False]
    # a few words are found in many chunks and say little: short queries never count as exact matches
    assert len(encoder.term_sets(["right to education"])[0]) < EXACT_MIN_TERMS
    assert exact_matches(encoder, "right to education", [chunk]) == [False]
    assert exact_matches(encoder, sentence, []) == []


def test_exact_matches_move_up_to_their_uncorrected_rank_only():
    corrected = ["a", "b", "c", "d", "e", "f"]
    uncorrected = ["e", "x", "a", "f", "b"]
    # e: corrected 4, uncorrected 0 -> 0; f: corrected 5, uncorrected 3 -> 3; a is not guarded: stays in order
    assert keep_exact_matches(corrected, uncorrected, {"e", "f"}) == ["e", "a", "b", "f", "c", "d"]
    # an exact match already better placed by the correction keeps its corrected rank
    assert keep_exact_matches(corrected, ["b", "a"], {"a"}) == corrected
    assert keep_exact_matches(corrected, uncorrected, set()) == corrected
    # two guarded ids wanting one rank: the next rank goes to the second
    assert keep_exact_matches(["a", "b", "c", "d"], ["d", "c"], {"c", "d"})[:2] == ["d", "c"]


class _FacetStore:
    """The three store calls LanguageMeans makes, over vectors built here."""

    def __init__(self, labelled):
        self.labelled = labelled

    def count(self, name, exact=True):
        return len(self.labelled)

    def facet(self, name, key):
        out = {}
        for lab, *_ in self.labelled:
            out[lab] = out.get(lab, 0) + 1
        return out

    def iter_points(self, name, flt, page, with_vectors):
        lang = flt.must["metadata.language"]
        lang = lang[0] if isinstance(lang, list) else lang
        for lab, v, *conf in self.labelled:
            if lab == lang:
                md = {"language": lab, **({"language_confidence": conf[0]} if conf else {})}
                yield type("P", (), {"vector": v, "payload": {"metadata": md}})()


def test_rare_labels_are_centred_on_the_nearest_language():
    rng = np.random.default_rng(0)
    dim = 16
    mu = {"en": np.eye(dim)[0] * 3, "fr": np.eye(dim)[1] * 3}
    labelled = [(lang, (mu[lang] + rng.normal(size=dim) * 0.1).astype(np.float32)) for lang in ("en", "fr") for _ in range(40)]
    odd = (mu["fr"] + rng.normal(size=dim) * 0.1).astype(np.float32)  # a French chunk the identifier called 'la'
    labelled.append(("la", odd))
    means = LanguageMeans(_FacetStore(labelled), "c")
    means.refresh()
    assert set(means.means) == {"en", "fr"} and means.shares["la"] == pytest.approx(1 / 81)
    got = means.means_for(["la", "en"], np.stack([odd, labelled[0][1]]))
    np.testing.assert_allclose(got[0], means.means["fr"])
    np.testing.assert_allclose(got[1], means.means["en"])
    q = np.ones(dim, dtype=np.float32)
    assert means.centre_query(q, "sw") is q  # a language the collection lacks: nothing to take off
    np.testing.assert_allclose(np.linalg.norm(means.centre_query(q, "en")), 1.0, rtol=1e-5)


def test_the_language_subspace_removes_what_tells_languages_apart_and_nothing_else():
    from lusifer_rag.rag.language_bias import language_subspace

    rng = np.random.default_rng(0)
    means = rng.normal(size=(5, 32)).astype(np.float32)  # 5 languages
    basis = language_subspace(means)
    assert basis.shape == (4, 32)  # L - 1 directions: the means' common part is not one of them
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-5)
    projected = (means - (means @ basis.T) @ basis)
    np.testing.assert_allclose(projected, np.broadcast_to(projected[0], projected.shape), atol=1e-5)
    other = rng.normal(size=32).astype(np.float32)
    other -= (other @ basis.T) @ basis  # a direction no language differs along is left as it is
    np.testing.assert_allclose(other - (other @ basis.T) @ basis, other, atol=1e-5)
    # two languages that are the same: nothing to remove
    assert language_subspace(np.stack([means[0], means[0]])).shape[0] == 0


def test_unsure_labels_neither_make_a_language_present_nor_a_mean():
    """English chunks the identifier half-guessed as Latin (8% of the collection, confidence 0.1): one language, and
    those chunks are centred on the English mean; the same share labelled with confidence is a language."""
    rng = np.random.default_rng(1)
    dim = 16
    en = [("en", (np.eye(dim)[0] * 3 + rng.normal(size=dim) * 0.1).astype(np.float32), 0.9) for _ in range(46)]
    la = [("la", (np.eye(dim)[0] * 3 + rng.normal(size=dim) * 0.1).astype(np.float32), 0.1) for _ in range(4)]
    means = LanguageMeans(_FacetStore(en + la), "c")
    means.refresh()
    assert means.languages() == 1 and set(means.means) == {"en"} and means.shares["la"] == 0.0
    np.testing.assert_allclose(means.means_for(["und"], la[0][1][None])[0], means.means["en"])
    sure = LanguageMeans(_FacetStore(en + [(lab, v, 0.9) for lab, v, _ in la]), "c")
    sure.refresh()
    assert sure.languages() == 2 and sure.shares["la"] == pytest.approx(4 / 50)


def test_a_passage_scored_well_in_every_language_outranks_a_one_language_hit():
    """Translation-group scoring: 3 languages, passage A in all three (each version near the others), a document B in
    English only (its nearest French/German documents are A's, which score less than B). A's versions score a little
    below B alone; grouped, every version of A rises above B, B falls, and nothing falls below the lowest score."""
    from lusifer_rag.rag.language_bias import translation_group_scores

    rng = np.random.default_rng(0)
    dim = 32
    a, b, c = (v / np.linalg.norm(v) for v in rng.normal(size=(3, dim)))
    def near(v):
        w = v + rng.normal(size=dim) * 0.05
        return w / np.linalg.norm(w)
    # documents: A-en, A-fr, A-de, B-en, C-fr (an unrelated French document)
    vectors = np.stack([near(a), near(a), near(a), near(b), near(c)])
    languages = ["en", "fr", "de", "en", "fr"]
    scores = np.array([0.60, 0.58, 0.57, 0.65, 0.20])
    got = translation_group_scores(scores, vectors, languages, ["en", "fr", "de"])
    assert got.shape == (5,)
    assert min(got[:3]) > got[3]  # every version of A above the English-only hit
    assert got[3] < scores[3]  # B's stand-ins are A's lower-scored versions
    assert np.all(got >= scores.min() - 1e-12)
    np.testing.assert_allclose(got[:3], np.mean(scores[:3]))  # A's versions stand in for each other: one group score
    # a language with no document among the candidates counts the lowest score
    four = translation_group_scores(scores, vectors, languages, ["en", "fr", "de", "ja"])
    np.testing.assert_allclose(four[0], (scores[:3].sum() + scores.min()) / 4)
    # one language, or one document: nothing to group
    np.testing.assert_array_equal(translation_group_scores(scores, vectors, languages, ["en"]), scores)
    np.testing.assert_array_equal(translation_group_scores(scores[:1], vectors[:1], languages[:1], ["en", "fr"]),
                                  scores[:1])
