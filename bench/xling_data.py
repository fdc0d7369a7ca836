"""Parallel multilingual benchmark sets that install offline, for bench/retrieval_xling.py.

- ``handbook``: the Debian Administrator's Handbook (Debian package ``debian-handbook``, HTML in 26 languages;
  GPL-2+ / CC-BY-SA-3.0). One document per (section file, language), kept only where the section is translated
  in every language of the set. Topic queries: the section's title in each language (relevant: the section in
  every language). Known-item queries: sentences read off the section's text (target: the chunk holding it).
- ``udhr``: the vendored UDHR articles (tests/data/udhr). Topic queries: the first sentence of an article
  (relevant: that article in every language); known-item: a later sentence of it.
- ``django``: Django's translation catalogs (PyPI ``django``): short UI sentences of >= 4 English words that
  every language of the set translates. Query: one translation; relevant: the string in every language.

Every query belongs to a split (``tune`` or ``test``) by a hash of its group (section, article, msgid), so that a
method tuned on one split is reported on the other. The Debian Reference (``debian-reference-*``) is never used: it
is the project's held-out evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UDHR = ROOT / "tests" / "data" / "udhr"
HELD_OUT_PREFIX = "debian-reference"

HANDBOOK_LANGS = {"en": "en-US", "de": "de-DE", "es": "es-ES", "fr": "fr-FR", "it": "it-IT", "ja": "ja-JP",
                  "pt": "pt-BR", "ru": "ru-RU", "zh": "zh-CN", "ar": "ar-MA", "fa": "fa-IR", "id": "id-ID",
                  "nb": "nb-NO", "ca": "ca-ES"}
DJANGO_LOCALES = {"zh": "zh_Hans", "pt": "pt_BR"}
_SENT = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


@dataclass
class Doc:
    id: str
    language: str
    group: str  # the same content in every language shares a group
    text: str = ""
    path: Path | None = None  # ingested from this file (else `text` is written to a .txt)


@dataclass
class Query:
    id: str
    language: str
    text: str
    kind: str  # "topic" (relevant: the group in every language) or "known" (target: the chunk holding `text`)
    group: str
    split: str
    relevant: set[str] = field(default_factory=set)  # doc ids
    target_doc: str = ""  # known-item: the document whose chunk holds the sentence


@dataclass
class XlingSet:
    name: str
    languages: list[str]
    docs: list[Doc]
    queries: list[Query]

    def queries_of(self, kind: str, split: str | None = None) -> list[Query]:
        return [q for q in self.queries if q.kind == kind and (split is None or q.split == split)]


def split_of(group: str) -> str:
    return "tune" if int(hashlib.sha1(group.encode()).hexdigest(), 16) % 2 == 0 else "test"


def cache_root() -> Path:
    from lusifer_rag.settings import Settings

    return Path(Settings.from_env().cache_dir) / "bench-xling"


# ---- Debian packages, unpacked into the cache (no system install) ----------------------------------------
def debian_package(name: str) -> Path:
    if name.startswith(HELD_OUT_PREFIX):
        raise ValueError(f"{name} is the project's held-out evaluation: never benchmark or tune on it")
    out = cache_root() / "debs" / name
    if (out / ".done").is_file():
        return out
    if not shutil.which("apt-get"):
        raise RuntimeError(f"the {name} set needs Debian's package {name}: no apt-get here")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", name], cwd=out, check=True, capture_output=True)
    (deb,) = out.glob(f"{name}_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    deb.unlink()
    (out / ".done").write_text("ok")
    return out


def _sentences(text: str, min_words: int = 8, min_chars: int = 40) -> list[str]:
    out = []
    for para in text.split("\n"):
        for s in _SENT.split(para.strip()):
            s = s.strip()
            cjk = sum(1 for ch in s if "\u3040" <= ch <= "\u9fff")
            if len(s) >= min_chars and (len(s.split()) >= min_words or cjk >= 20):
                out.append(s)
    return out


def _language_of(text: str) -> str:
    from lusifer_rag.ingest.langid import detect_language

    lang = detect_language(text)[0]
    return "nb" if lang == "no" else lang


# ---- the handbook ------------------------------------------------------------------------------------------
def _handbook_text(path: Path) -> tuple[str, str]:
    """(title, main text) of one section page, through the product's HTML loader."""
    from lusifer_rag.ingest.loaders import load_document

    doc = load_document(path)
    text = "\n".join(p.text for p in doc.pages)
    title = ""
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "lxml")
    head = soup.find(["h1", "h2"], class_="title")
    if head is not None:
        title = re.sub(r"^\s*[\d.]+\s*", "", head.get_text(" ", strip=True))
    return title, text


def handbook(languages: list[str], sentences_per_doc: int = 2) -> XlingSet:
    import random

    import py3langid

    root = debian_package("debian-handbook") / "usr/share/doc/debian-handbook/html"
    index_file = cache_root() / f"handbook-{'-'.join(languages)}.json"
    if index_file.is_file():
        index = json.loads(index_file.read_text())
    else:  # sections translated in every language (language id of the page's text)
        pages: dict[str, dict[str, list[str]]] = {}
        for lang in languages:
            for f in sorted((root / HANDBOOK_LANGS[lang]).glob("sect.*.html")):
                title, text = _handbook_text(f)
                detected, _ = py3langid.classify(text[:4000])
                if detected == lang or (lang == "nb" and detected in ("no", "nb")):
                    pages.setdefault(f.name, {})[lang] = [title, text]
        index = {name: by_lang for name, by_lang in sorted(pages.items()) if len(by_lang) == len(languages)}
        index_file.parent.mkdir(parents=True, exist_ok=True)
        index_file.write_text(json.dumps(index, ensure_ascii=False))
    docs, queries = [], []
    rng = random.Random(0)
    all_texts = [text for by_lang in index.values() for _, text in by_lang.values()]
    for section, by_lang in index.items():
        group = section.removeprefix("sect.").removesuffix(".html")
        ids = {lang: f"{group}|{lang}" for lang in languages}
        for lang in languages:
            title, text = by_lang[lang]
            docs.append(Doc(ids[lang], lang, group, path=root / HANDBOOK_LANGS[lang] / section))
            split = split_of(group)
            if title:
                queries.append(Query(f"t:{ids[lang]}", lang, title, "topic", group, split, set(ids.values())))
            # known items: sentences in the page's own language (translations leave some English paragraphs)
            # that occur in no other page, so the target is unambiguous
            sents = [s for s in _sentences(text) if _language_of(s) == lang and sum(s in t for t in all_texts) == 1]
            for i, s in enumerate(rng.sample(sents, min(sentences_per_doc, len(sents)))):
                queries.append(Query(f"k{i}:{ids[lang]}", lang, s, "known", group, split, {ids[lang]}, ids[lang]))
    return XlingSet("handbook", languages, docs, queries)


# ---- UDHR --------------------------------------------------------------------------------------------------
def udhr(languages: list[str]) -> XlingSet:
    docs, queries = [], []
    for lang in languages:
        arts = json.loads((UDHR / f"{lang}.json").read_text(encoding="utf-8"))["articles"]
        for a in range(1, 31):
            group, text = f"art{a}", arts[str(a)]
            docs.append(Doc(f"{group}|{lang}", lang, group, text=text))
            sents = [s for s in _SENT.split(text.replace("\n", " ")) if s.strip()]
            split = split_of(group)
            rel = {f"{group}|{x}" for x in languages}
            queries.append(Query(f"t:{group}|{lang}", lang, sents[0].strip(), "topic", group, split, rel))
            later = [s.strip() for s in sents[1:] if len(s.strip()) >= 30]
            if later:
                queries.append(Query(f"k:{group}|{lang}", lang, later[-1], "known", group, split, {f"{group}|{lang}"},
                                     f"{group}|{lang}"))
    return XlingSet("udhr", languages, docs, queries)


# ---- Django's catalogs -------------------------------------------------------------------------------------
def po_entries(text: str) -> dict[str, str]:
    """msgid -> msgstr of the singular, non-fuzzy, translated entries of a .po file."""
    out, cur, key, fuzzy = {}, {}, None, False

    def unq(s: str) -> str:
        return json.loads(s) if s.startswith('"') else ""

    def flush():
        if cur.get("msgid") and cur.get("msgstr") and not fuzzy and "msgid_plural" not in cur:
            out[cur["msgid"]] = cur["msgstr"]

    for line in text.splitlines() + [""]:
        line = line.strip()
        if not line:
            flush()
            cur, key, fuzzy = {}, None, False
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        elif line.startswith('"') and key:
            cur[key] += unq(line)
        else:
            key, _, rest = line.partition(" ")
            cur[key] = unq(rest.strip())
    return out


def django(languages: list[str], min_words: int = 4) -> XlingSet:
    wheel_dir = cache_root() / "pypi"
    wheels = sorted(wheel_dir.glob("django-*.whl")) if wheel_dir.is_dir() else []
    if not wheels:
        import sys

        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "django==5.2.*", "-d",
                        str(wheel_dir)], check=True, capture_output=True)
        wheels = sorted(wheel_dir.glob("django-*.whl"))
    z = zipfile.ZipFile(wheels[-1])
    catalogs = [n for n in z.namelist() if n.endswith("/LC_MESSAGES/django.po")]
    per_lang: dict[str, dict[str, str]] = {}
    for lang in languages:
        loc = DJANGO_LOCALES.get(lang, lang)
        entries: dict[str, str] = {}
        for n in catalogs:
            if f"/locale/{loc}/LC_MESSAGES/" in n:
                entries.update(po_entries(z.read(n).decode("utf-8")))
        per_lang[lang] = entries
    shared = [m for m in per_lang[languages[1]] if all(per_lang[x].get(m, "").strip() for x in languages if x != "en")]
    shared = sorted({m for m in shared if len(m.split()) >= min_words and "%" not in m and "{" not in m
                     and "<" not in m})
    docs, queries = [], []
    for i, msgid in enumerate(shared):
        group = f"m{hashlib.sha1(msgid.encode()).hexdigest()[:10]}"
        split = split_of(group)
        rel = {f"{group}|{x}" for x in languages}
        for lang in languages:
            text = msgid if lang == "en" else per_lang[lang][msgid]
            docs.append(Doc(f"{group}|{lang}", lang, group, text=text))
            queries.append(Query(f"t:{group}|{lang}", lang, text, "topic", group, split, rel))
    return XlingSet("django", languages, docs, queries)


SETS = {"handbook": handbook, "udhr": udhr, "django": django}
