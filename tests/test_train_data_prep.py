"""lusifer_rag.train.data_prep: English training data from Debian documentation packages.

The fast tests cover the pieces (troff cleaner, text cleaning, BM25, the UDHR guard, refusals); the slow ones
run the real preparation (the Debian packages are fetched once into the cache) on a small size."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lusifer_rag.train import data_prep as dp

UDHR_MARKERS = ("universal declaration of human rights", "all human beings are born free", "human rights")
PAIR_KEYS = {"query", "positive", "negative", "dataset", "cluster"}
SMALL = dict(max_pairs=300, max_align=300, negatives=4, seed=0)


# ---- pieces (no download) -----------------------------------------------------------------------------
def test_refuses_the_held_out_debian_reference():
    for name in ("debian-reference-en", "debian-reference-common", "debian-reference"):
        with pytest.raises(ValueError, match="held-out"):
            dp.debian_package(name)


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        dp.prepare_english_data(tmp_path, sources=("udhr",))


def test_missing_apt_get_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(dp, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(dp.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match="python3.11-doc.*no apt-get"):
        dp.debian_package("python3.11-doc")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_failing_apt_get_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(dp, "cache_root", lambda: tmp_path)
    with pytest.raises(RuntimeError, match="apt-get download lusifer-no-such-package-xyz failed"):
        dp.debian_package("lusifer-no-such-package-xyz")
    assert not (tmp_path / "debs" / "lusifer-no-such-package-xyz").exists()  # nothing half-made is left


def test_troff_sections():
    src = r""".\" a comment
.TH LS 1 2023-01-01 "GNU coreutils"
.SH NAME
ls \- list directory contents
.SH SYNOPSIS
.B ls
[\fIOPTION\fR]... [\fIFILE\fR]...
.SH DESCRIPTION
List information about the FILEs (the current directory by default).
Sort entries alphabetically if none of
.B \-cftuvSUX
nor
.BR \-\-sort (1)
is specified.\" trailing comment
.PP
It returns
.I (size_t)\ \-1
on error \(em see
.IR "signal handler" ,
in the \fB"C"\fP locale, \[u00E9]t\(aqe \*(lqquoted\*(rq.
.TP
.BR \-a ", " \-\-all
do not ignore entries starting with .
.EX
int main(void) { return 0; }
.EE
.TS
l l.
a	b
.TE
.SH SEE ALSO
.BR dir (1)
"""
    s = dp.troff_sections(src)
    assert s["NAME"] == ["ls - list directory contents"]
    desc = s["DESCRIPTION"]
    assert desc[0] == ("List information about the FILEs (the current directory by default). Sort entries "
                       "alphabetically if none of -cftuvSUX nor --sort(1) is specified.")
    assert desc[1] == 'It returns (size_t) -1 on error — see signal handler, in the "C" locale, ét\'e “quoted”.'
    assert desc[2:] == ["-a, --all", "do not ignore entries starting with ."]  # a .TP tag is a block of its own
    assert not any("main(void)" in b or "\t" in b for b in desc)  # examples and tables are dropped
    assert s["SEE ALSO"] == ["dir(1)"]


def test_text_cleaning():
    assert dp.clean_heading("4.1. if Statements¶") == "if Statements"
    assert dp.clean_heading("A.2. Interactive Mode") == "Interactive Mode"
    assert dp.clean_heading("os.path — Common pathname manipulations") == "os.path — Common pathname manipulations"
    assert dp.clean_text("cafe\u0301  \n x") == "café x"  # NFC, whitespace collapsed
    assert dp.is_code_like("for i in range(10): x[i] = {1: 2}; y += [0, 1]  # 3 + 4 == 7")
    assert dp.is_code_like(">>> import os")
    assert not dp.is_code_like("Return the base name of pathname path.")
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(60))
    cut = dp.truncate_words(text, 100)
    assert cut.endswith(".") and dp.n_words(cut) <= 100 and dp.n_words(cut) == 98
    assert dp.split_sentences("Use e.g. this one. Then another! A third") == [
        "Use e.g. this one.", "Then another!", "A third"]
    assert dp.split_sentences("Return the arc cosine of x. foldspaces is a flag, etc. and J. Smith wrote it.") == [
        "Return the arc cosine of x.", "foldspaces is a flag, etc. and J. Smith wrote it."]


def test_bm25_ranks_the_matching_passage_first():
    docs = ["The semaphore is removed immediately once closed.", "Read bytes from a file descriptor.",
            "Write bytes to a file descriptor.", "Signals interrupt the process."]
    bm = dp.BM25(docs)
    scores = bm.scores(["remove a named semaphore", "read from a file descriptor"])
    assert scores.shape == (2, 4)
    assert scores[0].argmax() == 0 and scores[1].argmax() == 1 and scores[1, 2] > scores[1, 3] == 0
    assert bm.pair_scores(["read from a file descriptor"], [docs[1]])[0] == pytest.approx(scores[1, 1])


def test_udhr_guard(udhr):
    guard = dp.UdhrGuard()
    assert guard(udhr("en")[0]) and guard("see the Universal Declaration of Human Rights")
    words = udhr("en")[2].split()
    assert guard("Intro text. " + " ".join(words[:10]) + " and more.")  # a run of 8+ words of an article
    assert not guard("Return the base name of pathname path, the second element of the pair.")


# ---- the real preparation (downloads the packages once into the cache) -----------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("english-data")
    paths = dp.prepare_english_data(out, **SMALL)
    return paths


def _jsonl(path):
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _strings(record):
    for v in record.values():
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            yield from v


@pytest.mark.slow
def test_files_and_schema(prepared):
    assert set(prepared) == {"align", "complete", "pairs", "manifest"}
    assert all(p.is_file() for p in prepared.values())
    manifest = json.loads(prepared["manifest"].read_text())
    clusters = {ds: {int(k) for k in ids} for ds, ids in manifest["clusters"].items()}

    pairs = _jsonl(prepared["pairs"])
    assert len(pairs) == 300
    assert {r["dataset"] for r in pairs} == {"python-docs", "manpages"}
    for r in pairs:
        assert set(r) == PAIR_KEYS
        assert isinstance(r["query"], str) and r["query"].strip()
        assert isinstance(r["positive"], list) and r["positive"]
        assert all(isinstance(p, str) and p.strip() for p in r["positive"])
        assert isinstance(r["negative"], list) and len(r["negative"]) == 4
        assert all(isinstance(n, str) and n.strip() for n in r["negative"])
        assert len(set(r["negative"])) == 4 and not set(r["negative"]) & set(r["positive"])
        assert r["query"] not in r["positive"]
        assert isinstance(r["cluster"], int) and r["cluster"] in clusters[r["dataset"]]
        for text in r["positive"] + r["negative"]:
            assert dp.MIN_PASSAGE_WORDS <= dp.n_words(text) <= dp.MAX_PASSAGE_WORDS
            assert "¶" not in text and not re.search(r"\\f[BIRP]|^\.[A-Z]{1,2} ", text)
    man = {r["cluster"] for r in pairs if r["dataset"] == "manpages"}
    assert man <= set(range(1, 9)) and all(c >= dp.PYTHON_CLUSTER_BASE for c in clusters["python-docs"])
    assert len({r["cluster"] for r in pairs}) >= 10  # coarse topics, several of them

    align = _jsonl(prepared["align"])
    assert len(align) == 300
    for r in align:
        assert set(r) == {"text"} and dp.ALIGN_WORDS[0] <= dp.n_words(r["text"]) <= dp.ALIGN_WORDS[1]
    assert len({r["text"] for r in align}) == len(align)

    complete = _jsonl(prepared["complete"])
    assert len(complete) == 300
    for r in complete:
        assert set(r) == {"instruction", "input", "target"} and all(v.strip() for v in r.values())
        assert r["instruction"] in dp.INSTRUCTIONS.values() and r["target"] != r["input"]


@pytest.mark.slow
def test_queries_and_passages_are_english(prepared):
    from lusifer_rag.ingest.langid import detect_languages

    pairs = _jsonl(prepared["pairs"])
    queries = [r["query"] for r in pairs]
    langs = [lang for lang, _ in detect_languages(queries)]
    assert sum(lang == "en" for lang in langs) >= 0.8 * len(queries)  # short titles ("2to3: Fixers") may fool it
    other_scripts = re.compile(r"[\u0370-\u03ff\u0400-\u052f\u0590-\u06ff\u0900-\u0dff\u3040-\u9fff\uac00-\ud7af]")
    assert all(re.search(r"[A-Za-z]{3}", q) and not other_scripts.search(q) for q in queries)
    groups = [" ".join(f"{q.rstrip('.')}." for q in queries[i:i + 15]) for i in range(0, len(queries), 15)]
    assert {lang for lang, _ in detect_languages(groups)} == {"en"}
    passages = [r["positive"][0] for r in pairs] + [r["text"] for r in _jsonl(prepared["align"])]
    langs = [lang for lang, _ in detect_languages(passages)]
    assert sum(lang == "en" for lang in langs) >= 0.98 * len(passages)


@pytest.mark.slow
def test_no_udhr_text(prepared, udhr):
    guard = dp.UdhrGuard()
    for name in ("pairs", "align", "complete"):
        for r in _jsonl(prepared[name]):
            for text in _strings(r):
                low = text.lower()
                assert not any(m in low for m in UDHR_MARKERS), text[:200]
                assert not guard(text), text[:200]
    blob = "\n".join(prepared[n].read_text(encoding="utf-8") for n in ("pairs", "align", "complete"))
    assert "All human beings are born free" not in blob
    assert udhr("en")[0][:60] not in blob


@pytest.mark.slow
def test_manifest_matches_the_files(prepared):
    manifest = json.loads(prepared["manifest"].read_text())
    assert manifest["params"]["seed"] == 0 and manifest["params"]["max_pairs"] == 300
    assert manifest["params"]["negatives"] == 4 and manifest["params"]["sources"] == ["python-docs", "manpages"]
    for key in ("pairs", "align", "complete"):
        path = prepared[key]
        records = _jsonl(path)
        info = manifest["files"][path.name]
        assert info["records"] == len(records)
        assert info["sha256"] == dp._sha256(path)
        if key == "pairs":
            by = {ds: sum(r["dataset"] == ds for r in records) for ds in ("python-docs", "manpages")}
            assert info["by_dataset"] == by
            assert sum(info["by_kind"].values()) == len(records)
        assert sum(info["by_dataset"].values()) == len(records)
    pkgs = manifest["packages"]
    assert set(pkgs) == {"python3.11-doc", "manpages", "manpages-dev"}
    assert not any(p.startswith("debian-reference") for p in pkgs)
    for name, info in pkgs.items():
        assert re.match(r"\d", info["version"]) and info["licences"], name
    assert any("PYTHON SOFTWARE FOUNDATION" in lic for lic in pkgs["python3.11-doc"]["licences"])
    assert "GPL-2+" in pkgs["manpages"]["licences"]


@pytest.mark.slow
def test_deterministic_and_idempotent(prepared, tmp_path):
    again = dp.prepare_english_data(tmp_path / "again", **SMALL)
    for key in ("pairs", "align", "complete", "manifest"):
        assert again[key].read_bytes() == prepared[key].read_bytes(), key
    # same arguments in the same folder: the files are reused, not rewritten
    stamps = {k: p.stat().st_mtime_ns for k, p in again.items()}
    assert dp.prepare_english_data(tmp_path / "again", **SMALL) == again
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == stamps
    # another seed: other records
    other = dp.prepare_english_data(tmp_path / "other", **{**SMALL, "seed": 1})
    assert other["pairs"].read_bytes() != prepared["pairs"].read_bytes()
    # a changed file is not reused
    again["align"].write_text("{}\n")
    dp.prepare_english_data(tmp_path / "again", **SMALL)
    assert again["align"].read_bytes() == prepared["align"].read_bytes()


@pytest.mark.slow
def test_sources_can_be_chosen(tmp_path):
    paths = dp.prepare_english_data(tmp_path, max_pairs=50, max_align=50, negatives=2, sources=("manpages",))
    pairs = _jsonl(paths["pairs"])
    assert len(pairs) == 50 and {r["dataset"] for r in pairs} == {"manpages"}
    assert all(len(r["negative"]) == 2 for r in pairs)
    assert set(json.loads(paths["manifest"].read_text())["packages"]) == {"manpages", "manpages-dev"}
