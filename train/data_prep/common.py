"""Constants, text helpers, the UDHR guard and the ``Unit`` record shared by every part of the data preparation
(see the docstring of ``lusifer_rag.train.data_prep``)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_VERSION = 3  # of the extraction and the output files: bump on any change to either
HELD_OUT_PREFIX = "debian-reference"
PYTHON_DOC_PACKAGE = "python3.11-doc"
SOURCES: dict[str, tuple[str, ...]] = {"python-docs": (PYTHON_DOC_PACKAGE,), "manpages": ("manpages", "manpages-dev")}
FILES = {"align": "align.jsonl", "complete": "complete.jsonl", "pairs": "pairs.jsonl", "manifest": "manifest.json"}

MAX_PASSAGE_WORDS = 300
MIN_PASSAGE_WORDS = 12
ALIGN_WORDS = (20, 200)
SENTENCE_QUERY_WORDS = (5, 40)
MIN_REST_WORDS = 15
SENTENCE_SHARE = 1 / 3  # of the eligible sections, those whose pair uses the first-sentence query
GENERIC_HEADING_MIN = 2  # a sub-heading used by this many sections is generic: its page is prefixed
SHORT_HEADING_WORDS = 2  # and so is one of at most this many words ("Affected APIs": of what?)
MAX_QUERY_WORDS = 40
MIN_LETTER_RATIO = 0.6
BM25_K1, BM25_B = 1.2, 0.75
PERC_POS = 0.95
MINE_TOP = 64
PYTHON_CLUSTER_BASE = 100

INSTRUCTIONS = {
    "section": "Please write a title for this passage.",
    "glossary": "Please write the term that this passage defines.",
    "manpage": "Please write a one-line description of what this passage documents.",
}

# the UDHR is the evaluation set: never train on it
UDHR_PHRASES = ("universal declaration of human rights", "all human beings are born free",
                "born free and equal in dignity", "endowed with reason and conscience",
                "spirit of brotherhood", "inherent dignity and of the equal and inalienable rights")
UDHR_EN = Path(__file__).resolve().parents[2] / "tests" / "data" / "udhr" / "en.json"
UDHR_SHINGLE = 8

_WS = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z0-9_]+")
_LETTER = re.compile(r"[^\W\d_]")
# a sentence ends at ".", "!" or "?" before a space and a word (lower case too: "database. database (path-like
# object) – ..."; "foo. bar" in API docs often starts with a parameter name), unless after an abbreviation
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]”’]?\s+(?=[\"'(\[“‘]?[A-Za-z0-9_])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|resp|Mr|Dr|No|Fig|Sec|Vol|al|viz|ca)\.|\b[A-Z]\.)$")
_NUMBERING = re.compile(r"^\s*(?:[A-Z]\.)?\d+(?:\.\d+)*\.?\s+|^\s*[A-Z]\.\d*\.?\s+(?=[A-Z])")
STOPWORDS = frozenset("""a an and are as at be been but by can could do does for from has have how if in into is it
its may might must no not of on or that the their then there these this those to was were what when where which
while who will with would you your we our i also than so such only other any each all more most some""".split())


# ---- text --------------------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("¶", " ").replace("\u00ad", "")
    return _WS.sub(" ", text).strip()


def n_words(text: str) -> int:
    return len(text.split())


def letter_ratio(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(1 for c in chars if _LETTER.match(c)) / len(chars) if chars else 0.0


def is_code_like(text: str) -> bool:
    t = text.lstrip()
    return not t or letter_ratio(t) < MIN_LETTER_RATIO or t.startswith((">>>", "$ ", "# ", "#include", "%"))


def split_sentences(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        piece = text[start:m.start()].strip()
        if _ABBREV.search(text[max(start, m.start() - 8):m.start()].rstrip("\"')]")):
            continue  # "e.g. Foo", "J. Smith": not a sentence end
        if piece:
            out.append(piece)
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def truncate_words(text: str, max_words: int = MAX_PASSAGE_WORDS) -> str:
    """At most ``max_words`` words, cut after the last sentence that fits (a hard cut when none does)."""
    if n_words(text) <= max_words:
        return text
    kept: list[str] = []
    count = 0
    for sentence in split_sentences(text):
        w = n_words(sentence)
        if count + w > max_words:
            break
        kept.append(sentence)
        count += w
    return " ".join(kept) if kept else " ".join(text.split()[:max_words])


def clean_heading(text: str) -> str:
    text = clean_text(text)
    text = _NUMBERING.sub("", text)
    return text.strip(" :").strip()


def usable_query(text: str) -> bool:
    return bool(text) and 1 <= n_words(text) <= MAX_QUERY_WORDS and len(_LETTER.findall(text)) >= 3 \
        and letter_ratio(text) >= 0.5


class UdhrGuard:
    """True for text that holds UDHR phrases or a run of ``UDHR_SHINGLE`` words of the English UDHR."""

    def __init__(self, path: Path = UDHR_EN) -> None:
        self.shingles: set[tuple[str, ...]] = set()
        if path.is_file():
            articles = json.loads(path.read_text(encoding="utf-8")).get("articles", {})
            for text in [*articles.values()]:
                words = _WORD.findall(text.lower())
                self.shingles.update(tuple(words[i:i + UDHR_SHINGLE]) for i in range(len(words) - UDHR_SHINGLE + 1))
        self.first = {s[0] for s in self.shingles}

    def __call__(self, text: str) -> bool:
        low = text.lower()
        if any(p in low for p in UDHR_PHRASES):
            return True
        if not self.shingles:
            return False
        words = _WORD.findall(low)
        return any(w in self.first and tuple(words[i:i + UDHR_SHINGLE]) in self.shingles
                   for i, w in enumerate(words[:len(words) - UDHR_SHINGLE + 1]))


# ---- units: a passage with its heading (and first sentence), the raw material of every record -----------
@dataclass
class Unit:
    uid: str
    dataset: str
    family: str  # the coarse topic (cluster name)
    kind: str  # section | api | glossary | manpage
    heading: str  # the title query (an identifier for api units)
    text: str  # the passage (<= MAX_PASSAGE_WORDS)
    context: str = ""  # the page title (python-docs) or the page name (manpages)
    level: int = 0  # the heading level of a section (1-3)
    first: str = ""  # the first sentence, when usable as a query
    rest: str = ""  # the passage without that sentence
    paragraphs: list[str] = field(default_factory=list)  # ALIGN_WORDS-sized paragraphs of the unit


def _make_unit(*, uid: str, dataset: str, family: str, kind: str, heading: str, blocks: Sequence[str],
               context: str = "", level: int = 0) -> Unit | None:
    blocks = [b for b in (clean_text(b) for b in blocks) if b and not is_code_like(b)]
    full = " ".join(blocks)
    if n_words(full) < MIN_PASSAGE_WORDS:
        return None
    text = truncate_words(full)
    unit = Unit(uid=uid, dataset=dataset, family=family, kind=kind, heading=heading, text=text, context=context,
                level=level,
                paragraphs=[b for b in blocks if ALIGN_WORDS[0] <= n_words(b) <= ALIGN_WORDS[1]])
    # the first sentence query: the first sentence of one of the first blocks (a paragraph that leads with a
    # parameter list "t11 – a number (optional)" or ends in "like this:" before dropped code is passed over)
    for k, block in enumerate(blocks[:3]):
        sentences = split_sentences(block)
        first = sentences[0] if sentences else ""
        if (SENTENCE_QUERY_WORDS[0] <= n_words(first) <= SENTENCE_QUERY_WORDS[1] and first[-1] in ".?!"
                and usable_query(first)):
            rest = truncate_words(" ".join([*blocks[:k], *sentences[1:], *blocks[k + 1:]]))
            if n_words(rest) >= MIN_REST_WORDS:
                unit.first, unit.rest = first, rest
            break
    return unit
