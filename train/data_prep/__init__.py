"""English-only training data for a small LUSIFER run, built offline from Debian documentation packages.

LUSIFER makes an English embedding model multilingual with English data only, so both stages here train on
English text. The packages are fetched without touching the system (``apt-get download`` into this project's
cache, then ``dpkg-deb -x``):

- ``python-docs``: ``python3.11-doc`` (the Python documentation as HTML: library reference, tutorial, howtos,
  language reference, FAQ, C API). Each page is split into units (``_parse_python_page``):

  * *sections*: an h1/h2/h3 heading with the prose that follows it up to the next h1-h3 (h4+ content included);
  * *API entries*: a ``dl`` with a Sphinx signature (``os.path.basename(path)``) and its own description
    (nested entries, e.g. a class's methods, are units of their own and left out of the outer one);
  * *glossary entries*: a term of ``glossary.html`` and its definition.

  Code (``pre``/highlight blocks), tables, local tables of contents and "Source code:" lines are dropped; API and
  glossary text is not repeated in the section around it, so no two passages overlap.
- ``manpages``: ``manpages`` + ``manpages-dev`` (the Linux man-pages project, English, sections 1-8 under
  ``/usr/share/man/man*``; ``manpages`` alone has a single page in section 2, ``manpages-dev`` holds sections 2
  and 3). troff is read by a small pure-Python cleaner (``troff_sections``: macros, escapes, fill/no-fill, tables
  and examples dropped); ``man``/``groff`` are not needed. ``.so`` alias pages and symlinks are skipped.

Outputs, in ``out_dir`` (deterministic given the seed; JSON lines, UTF-8):

- ``align.jsonl`` (stage 1): ``{"text": ...}``, English paragraphs of 20-200 words from both sources.
- ``complete.jsonl`` (stage 1, completion task): ``{"instruction", "input", "target"}``: input a passage, target
  its title (a section heading, a glossary term, a man page's NAME description), see ``INSTRUCTIONS``.
- ``pairs.jsonl`` (stage 2): ``{"query", "positive": [str], "negative": [str, ...], "dataset", "cluster"}``.
  Queries: one per unit, so that no two positives overlap (overlapping positives make false in-batch
  negatives); units that share a query (man pages with the same NAME description, methods with the same first
  sentence) make one record with several positives, never rival records.

  * heading pairs: the cleaned heading (no "¶", no "4.1." numbering) against the section's text. A sub-heading
    (h2/h3) that is generic in the docs (used by >= 2 sections: "Examples", "Notes") or of at most 2 words gets
    its page as context: "argparse: Examples". Man pages: the NAME line's description ("ls - list directory
    contents" → "list directory contents") against the DESCRIPTION section. Glossary: the term against its
    definition.
  * sentence pairs: the first sentence (5-40 words, ending in ".", "?" or "!") of one of the first three
    paragraphs against the text *without* that sentence (>= 15 words left). A natural-language, description-like
    query ("Return the base name of pathname path.") that does not occur verbatim in its positive (no trivial
    lexical match). API entries always use it (their heading is an identifier, not English); a third of the
    eligible sections do, chosen by a hash of (seed, unit id); the rest keep their heading.

  Hard negatives: BM25 (``BM25`` below, over lower-cased word tokens minus stop words, k1=1.2, b=0.75) of the
  query over every candidate passage of the same dataset, excluding the unit itself and units whose heading or
  query equals the query (case-folded); of the rest, the top ``negatives`` that score below 95% of the
  unit's own score (NV-Retriever's "TopK-PercPos": a passage scoring nearly as high as the positive is likely a
  false negative; the reference is the query against the unit's whole text, since a sentence query's positive
  lacks the sentence and would score too low to leave any hard negative). Missing ones (rare) are drawn at
  random (seeded) from the same cluster.
  ``cluster``: a coarse topic, for same-cluster batches: man pages the section number (1-8); Python docs 100 + the
  index of the page family (a library chapter such as "library/text" — the chapter pages of
  ``library/index.html`` and the module pages they list — else the top folder: tutorial, howto, reference, c-api,
  ...), sorted by name; ``manifest.json`` names them.
- ``manifest.json``: counts per file and dataset, the packages with versions and licences (read off each
  package's copyright file), the seed and all parameters.

Passages: NFC, whitespace collapsed, code-like blocks (letters < 60% of the non-space characters) dropped, at
most ``MAX_PASSAGE_WORDS`` words cut at a sentence end. The UDHR is the evaluation set: a unit that contains one
of its phrases, or an 8-word run of the vendored English UDHR (``tests/data/udhr/en.json`` where the source tree
has it), is dropped, and the written records are checked again. The Debian Reference (``debian-reference-*``)
is the project's held-out evaluation and is refused.

Extracted units are cached per package version under ``<cache_dir>/train-data/units``: a rerun with other sizes
or another seed only re-selects and re-mines. ``python -m lusifer_rag.train.data_prep OUT_DIR`` runs it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .bm25 import BM25, tokenize
from .common import (
    ALIGN_WORDS, BM25_B, BM25_K1, FILES, FORMAT_VERSION, GENERIC_HEADING_MIN, HELD_OUT_PREFIX, INSTRUCTIONS,
    MAX_PASSAGE_WORDS, MAX_QUERY_WORDS, MIN_LETTER_RATIO, MIN_PASSAGE_WORDS, MIN_REST_WORDS, MINE_TOP, PERC_POS,
    PYTHON_CLUSTER_BASE, PYTHON_DOC_PACKAGE, SENTENCE_QUERY_WORDS, SENTENCE_SHARE, SHORT_HEADING_WORDS, SOURCES,
    STOPWORDS, UDHR_EN, UDHR_PHRASES, UDHR_SHINGLE, UdhrGuard, Unit, _make_unit, clean_heading, clean_text,
    is_code_like, letter_ratio, n_words, split_sentences, truncate_words, usable_query,
)
from .manpages import MAN_ALIGN_SECTIONS, _parse_man_page, troff_sections, troff_unescape
from .python_docs import PY_SKIP_PAGES, _parse_python_page, _python_families, _python_family

log = logging.getLogger(__name__)


# ---- Debian packages, unpacked into the cache (no system install) ----------------------------------------
def cache_root() -> Path:
    from lusifer_rag.settings import Settings

    return Path(Settings.from_env().cache_dir) / "train-data"


def debian_package(name: str) -> Path:
    """The unpacked Debian package ``name`` (``apt-get download`` + ``dpkg-deb -x`` under the cache, once)."""
    if name.startswith(HELD_OUT_PREFIX):
        raise ValueError(f"{name} is the project's held-out evaluation: never train on it")
    out = cache_root() / "debs" / name
    if (out / ".done").is_file():
        return out
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise RuntimeError(f"the training data needs Debian's package {name}: no {tool} here")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    try:
        try:
            subprocess.run(["apt-get", "download", "-q", name], cwd=work, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            detail = (e.stderr or e.stdout or "").strip().splitlines()
            raise RuntimeError(f"apt-get download {name} failed (exit {e.returncode}): "
                               f"{detail[-1] if detail else 'no output'}") from None
        debs = sorted(work.glob(f"{name}_*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {name} left {len(debs)} .deb files")
        fields = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Package", "Version", "Architecture", "Source"],
                                check=True, capture_output=True, text=True).stdout
        info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work)], check=True, capture_output=True)
        debs[0].unlink()
        (work / ".version").write_text(json.dumps(info, sort_keys=True))
        (work / ".done").write_text("ok")
        try:
            work.rename(out)
        except OSError:  # another process got there first, or a stale unfinished copy: keep a finished one
            if not (out / ".done").is_file():
                shutil.rmtree(out, ignore_errors=True)
                work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return out


def package_info(name: str) -> dict:
    root = debian_package(name)
    info = json.loads((root / ".version").read_text()) if (root / ".version").is_file() else {"Package": name}
    return {"version": info.get("Version", "unknown"), "architecture": info.get("Architecture", ""),
            "licences": package_licences(root, name)}


def package_licences(root: Path, name: str) -> list[str]:
    """The licence names of a package's copyright file: the ``License:`` fields of a machine-readable file
    (DEP-5), and the licence titles of a free-form one ("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2")."""
    doc = root / "usr" / "share" / "doc" / name
    if doc.is_symlink() and not doc.exists():  # manpages-dev's doc folder is a link to manpages'
        target = os.readlink(doc)
        if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", target) and not target.startswith(HELD_OUT_PREFIX):
            return package_licences(debian_package(target), target)
    path = doc / "copyright"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    found: list[str] = []
    for m in re.finditer(r"^License:[ \t]*(\S.*)$", text, re.M):
        value = m.group(1).strip()
        if len(value.split()) <= 8:  # a short name, not the first line of an inline licence text
            found.append(value)
    for m in re.finditer(r"^([A-Z0-9][A-Z0-9 .,/()-]{3,80})$", text, re.M):
        title = m.group(1).strip()
        if "LICENSE" in title and not title[0].isdigit():
            found.append(title)
    return list(dict.fromkeys(found))


# ---- the units of each source (the parsers: python_docs.py, manpages.py) --------------------------------
def python_doc_units(workers: int | None = None) -> list[Unit]:
    root = debian_package(PYTHON_DOC_PACKAGE)
    html = root / "usr" / "share" / "doc" / "python3.11" / "html"
    if not html.is_dir():
        raise RuntimeError(f"{PYTHON_DOC_PACKAGE}: no HTML documentation under {html}")
    families = _python_families(html)
    jobs = []
    for path in sorted(html.rglob("*.html")):
        rel = path.relative_to(html).as_posix()
        if rel.startswith("_") or PY_SKIP_PAGES.match(rel):
            continue
        jobs.append((str(path), rel, _python_family(rel, families)))
    workers = workers or min(4, os.cpu_count() or 1)
    results: list[list[dict]] | None = None
    if workers > 1:
        import multiprocessing

        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_parse_python_page, jobs, chunksize=8))
        except (OSError, RuntimeError) as e:  # no processes here: parse in this one
            log.warning("parsing in one process (%s)", e)
    if results is None:
        results = [_parse_python_page(job) for job in jobs]
    return [Unit(**d) for page in results for d in page]


def manpage_units() -> list[Unit]:
    units: dict[str, Unit] = {}
    for pkg in SOURCES["manpages"]:
        man = debian_package(pkg) / "usr" / "share" / "man"
        for path in sorted(man.glob("man[1-8]/*")):
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(man).as_posix()
            unit = _parse_man_page(path, rel)
            if unit is not None:
                units.setdefault(unit.uid, unit)
    return [units[k] for k in sorted(units)]


# ---- units, cached per package version ----------------------------------------------------------------
def load_units(dataset: str) -> list[Unit]:
    versions = "-".join(f"{pkg}_{package_info(pkg)['version']}" for pkg in SOURCES[dataset])
    path = cache_root() / "units" / f"{dataset}-{re.sub(r'[^A-Za-z0-9._+-]', '_', versions)}-v{FORMAT_VERSION}.json.gz"
    if path.is_file():
        return [Unit(**d) for d in json.loads(gzip.decompress(path.read_bytes()))]
    units = python_doc_units() if dataset == "python-docs" else manpage_units()
    guard = UdhrGuard()
    kept = [u for u in units if not any(guard(t) for t in (u.heading, u.text, u.first, *u.paragraphs))]
    if len(kept) < len(units):
        log.warning("%s: dropped %d units with UDHR text", dataset, len(units) - len(kept))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(gzip.compress(json.dumps([asdict(u) for u in kept], ensure_ascii=False).encode(), mtime=0))
    os.replace(tmp, path)
    return kept


# ---- pairs and records ----------------------------------------------------------------------------------
def _hash01(*parts: object) -> float:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12], 16) / float(16 ** 12)


@dataclass
class Candidate:
    """One stage-2 record to be: a query and every unit it is the query of (the same man page description, the
    same first sentence of several methods: one record with several positives, never rival records)."""
    query: str
    kind: str  # heading | sentence
    units: list[Unit] = field(default_factory=list)
    positives: list[str] = field(default_factory=list)

    @property
    def unit(self) -> Unit:
        return self.units[0]


def candidates(units: Sequence[Unit], seed: int) -> list[Candidate]:
    generic = Counter(u.heading.casefold() for u in units if u.kind == "section" and u.level > 1)
    by_query: dict[str, Candidate] = {}
    seen: set[str] = set()
    for u in units:
        heading = u.heading
        if (u.kind == "section" and u.level > 1 and u.context and u.context.casefold() not in heading.casefold()
                and (generic[heading.casefold()] >= GENERIC_HEADING_MIN or n_words(heading) <= SHORT_HEADING_WORDS)):
            heading = f"{u.context}: {heading}"
        use_sentence = bool(u.first) and (u.kind == "api" or (u.kind == "section"
                                                                and _hash01(seed, u.uid) < SENTENCE_SHARE))
        if use_sentence:
            query, positive, kind = u.first, u.rest, "sentence"
        elif u.kind != "api" and usable_query(heading):
            query, positive, kind = heading, u.text, "heading"
        else:
            continue
        if positive in seen:  # one record per positive text
            continue
        seen.add(positive)
        c = by_query.setdefault(query.casefold(), Candidate(query, kind))
        c.units.append(u)
        c.positives.append(positive)
    return list(by_query.values())


def mine_negatives(pool: Sequence[Candidate], chosen: Sequence[int], negatives: int, seed: int) -> list[list[str]]:
    """``negatives`` BM25 hard negatives for each pool index in ``chosen`` (see the module docstring); the
    corpus is every positive of the pool."""
    if negatives <= 0 or not chosen:
        return [[] for _ in chosen]
    docs = [(g, u, text) for g, c in enumerate(pool) for u, text in zip(c.units, c.positives)]
    bm25 = BM25([text for _, _, text in docs])
    by_cluster: dict[str, list[int]] = defaultdict(list)
    for j, (_, u, _) in enumerate(docs):
        by_cluster[u.family].append(j)
    keys = [{u.heading.casefold(), pool[g].query.casefold()} for g, u, _ in docs]
    out: list[list[str]] = []
    batch = 512
    for start in range(0, len(chosen), batch):
        idx = list(chosen[start:start + batch])
        scores = bm25.scores([pool[i].query for i in idx])
        # the reference: the query against its unit's whole text (a sentence query's positive lacks the
        # sentence, so its own score is low); a passage that scores nearly as well is likely a false negative
        refs = bm25.pair_scores([pool[i].query for i in idx], [pool[i].unit.text for i in idx])
        for row, ref, i in zip(scores, refs, idx):
            me = pool[i]
            q = me.query.casefold()
            mine = {u.uid for u in me.units}

            def allowed(j: int) -> bool:
                g, u, text = docs[j]
                return g != i and u.uid not in mine and q not in keys[j] and text not in me.positives

            pos_score = float(ref)
            top = np.argpartition(-row, min(MINE_TOP, len(row) - 1))[:MINE_TOP]
            top = sorted(top.tolist(), key=lambda j: (-row[j], j))
            picked: list[int] = []
            texts: set[str] = set()
            for j in top:
                if row[j] <= 0 or len(picked) == negatives:
                    break
                if not allowed(j) or docs[j][2] in texts:
                    continue
                if pos_score > 0 and row[j] >= PERC_POS * pos_score:
                    continue
                picked.append(j)
                texts.add(docs[j][2])
            if len(picked) < negatives:  # too few scored: same-cluster passages at random
                rng = random.Random(f"{seed}:{me.unit.uid}")
                others = [j for j in by_cluster[me.unit.family] if j not in picked and allowed(j)]
                if len(others) < negatives - len(picked):
                    others = [j for j in range(len(docs)) if j not in picked and allowed(j)]
                for j in rng.sample(others, len(others)):
                    if len(picked) == negatives:
                        break
                    if docs[j][2] not in texts:
                        picked.append(j)
                        texts.add(docs[j][2])
            out.append([docs[j][2] for j in picked])
    return out


def _write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cluster_ids(units_by_dataset: dict[str, list[Unit]]) -> dict[str, dict[str, int]]:
    ids: dict[str, dict[str, int]] = {}
    for dataset, units in units_by_dataset.items():
        families = sorted({u.family for u in units})
        if dataset == "manpages":
            ids[dataset] = {f: int(f[3:]) for f in families}
        else:
            ids[dataset] = {f: PYTHON_CLUSTER_BASE + k for k, f in enumerate(families)}
    return ids


def prepare_english_data(out_dir: str | os.PathLike, *, max_pairs: int = 20000, max_align: int = 20000,
                         negatives: int = 4, seed: int = 0,
                         sources: Sequence[str] = ("python-docs", "manpages")) -> dict[str, Path]:
    """Write ``align.jsonl``, ``complete.jsonl``, ``pairs.jsonl`` and ``manifest.json`` into ``out_dir``; returns
    their paths by name ("align", "complete", "pairs", "manifest"). Reuses the files when ``manifest.json``
    records the same parameters and the files' checksums still match."""
    t0 = time.perf_counter()
    sources = tuple(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"unknown source(s) {unknown or sources}; known: {sorted(SOURCES)}")
    out = Path(out_dir)
    paths = {k: out / v for k, v in FILES.items()}
    params = {"format": FORMAT_VERSION, "max_pairs": max_pairs, "max_align": max_align, "negatives": negatives,
              "seed": seed, "sources": list(sources), "max_passage_words": MAX_PASSAGE_WORDS,
              "min_passage_words": MIN_PASSAGE_WORDS, "align_words": list(ALIGN_WORDS),
              "sentence_query_words": list(SENTENCE_QUERY_WORDS), "min_rest_words": MIN_REST_WORDS,
              "sentence_share": SENTENCE_SHARE, "generic_heading_min": GENERIC_HEADING_MIN,
              "short_heading_words": SHORT_HEADING_WORDS,
              "bm25": {"k1": BM25_K1, "b": BM25_B}, "perc_pos": PERC_POS, "mine_top": MINE_TOP,
              "instructions": INSTRUCTIONS}
    if paths["manifest"].is_file():
        try:
            old = json.loads(paths["manifest"].read_text())
            if old.get("params") == params and all(
                    paths[k].is_file() and _sha256(paths[k]) == old["files"][FILES[k]]["sha256"]
                    for k in ("align", "complete", "pairs")):
                log.info("reusing %s (same parameters)", out)
                return paths
        except (ValueError, KeyError, TypeError):
            pass
    out.mkdir(parents=True, exist_ok=True)

    packages = {pkg: package_info(pkg) for s in sources for pkg in SOURCES[s]}
    units_by_dataset = {s: load_units(s) for s in sources}
    t_units = time.perf_counter()
    clusters = _cluster_ids(units_by_dataset)
    guard = UdhrGuard()

    # stage 2 pairs: a seeded shuffle of every candidate, the first max_pairs; negatives from the whole pool
    pools = {s: candidates(units_by_dataset[s], seed) for s in sources}
    everything = [(s, i) for s in sources for i in range(len(pools[s]))]
    random.Random(seed).shuffle(everything)
    selected = everything[:max_pairs]
    mined: dict[tuple[str, int], list[str]] = {}
    for s in sources:
        chosen = sorted(i for d, i in selected if d == s)
        for i, negs in zip(chosen, mine_negatives(pools[s], chosen, negatives, seed)):
            mined[(s, i)] = negs
    pair_records, pair_kinds = [], Counter()
    for s, i in selected:
        c = pools[s][i]
        pair_records.append({"query": c.query, "positive": list(c.positives), "negative": mined[(s, i)],
                             "dataset": s, "cluster": clusters[s][c.unit.family]})
        pair_kinds[(s, c.kind)] += 1

    # stage 1: paragraphs (align) and title completion (complete)
    paragraphs = sorted({p for s in sources for u in units_by_dataset[s] for p in u.paragraphs})
    source_of = {p: s for s in sources for u in units_by_dataset[s] for p in u.paragraphs}
    random.Random(f"align:{seed}").shuffle(paragraphs)
    align = [{"text": p} for p in paragraphs[:max_align]]
    completions = [c for s in sources for c in pools[s] if c.kind == "heading"]
    random.Random(f"complete:{seed}").shuffle(completions)
    complete = [{"instruction": INSTRUCTIONS[c.unit.kind], "input": c.positives[0], "target": c.query}
                for c in completions[:max_align]]

    for name, records in (("pairs", pair_records), ("align", align), ("complete", complete)):
        for r in records:
            if guard(json.dumps(r, ensure_ascii=False)):
                raise RuntimeError(f"UDHR text in a {name} record: {str(r)[:200]}")

    counts = {
        FILES["pairs"]: {"records": len(pair_records),
                         "by_dataset": {s: sum(1 for r in pair_records if r["dataset"] == s) for s in sources},
                         "by_kind": {f"{s}/{k}": n for (s, k), n in sorted(pair_kinds.items())},
                         "available": {s: len(pools[s]) for s in sources}},
        FILES["align"]: {"records": len(align),
                         "by_dataset": {s: sum(1 for r in align if source_of[r["text"]] == s) for s in sources},
                         "available": len(paragraphs)},
        FILES["complete"]: {"records": len(complete),
                            "by_dataset": {s: sum(1 for c in completions[:max_align] if c.unit.dataset == s)
                                           for s in sources},
                            "available": len(completions)},
    }
    for name, records in (("pairs", pair_records), ("align", align), ("complete", complete)):
        _write_jsonl(paths[name], records)
        counts[FILES[name]]["sha256"] = _sha256(paths[name])
    manifest = {
        "params": params,
        "files": counts,
        "units": {s: dict(sorted(Counter(u.kind for u in units_by_dataset[s]).items())) for s in sources},
        "clusters": {s: {str(v): k for k, v in sorted(clusters[s].items(), key=lambda kv: kv[1])} for s in sources},
        "packages": packages,
        "sources": {s: list(SOURCES[s]) for s in sources},
    }
    tmp = paths["manifest"].with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, paths["manifest"])
    log.info("prepared %s in %.1fs (units %.1fs)", out, time.perf_counter() - t0, t_units - t0)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lusifer_rag.train.data_prep", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--max-pairs", type=int, default=20000)
    ap.add_argument("--max-align", type=int, default=20000)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", nargs="+", default=["python-docs", "manpages"], choices=sorted(SOURCES))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    paths = prepare_english_data(args.out_dir, max_pairs=args.max_pairs, max_align=args.max_align,
                                 negatives=args.negatives, seed=args.seed, sources=args.sources)
    files = json.loads(paths["manifest"].read_text())["files"]
    for name, info in files.items():
        print(f"{name}: {info['records']} records {info.get('by_dataset', '')}")
    print(f"{time.perf_counter() - t0:.1f}s")
    return 0
