"""Word-level agreement of extracted text with a reference extraction (poppler's pdftotext).

Tokens: NFKC + casefold; runs of letters/digits/combining marks; zero-width joiners and soft hyphens dropped;
Han/Kana/Hangul runs become character bigrams (no spaces to tell words by). ``recall``: the share of the
reference's tokens found (multiset); ``glued``: the share of the extraction's tokens that are not reference words
but the concatenation of 2–6 consecutive reference words (lost spaces: "grep(1)canbeusedto…").
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import regex

_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]+")
_DROP = regex.compile(r"[\u200b-\u200f\u00ad\u0640\ufffe]")


def tokens(text: str) -> list[str]:
    text = _DROP.sub("", unicodedata.normalize("NFKC", text).casefold())
    out = []
    for tok in _TOKEN.findall(text):
        pieces = _CJK.split(tok)
        out += [p for p in pieces if p]
        for run in _CJK.findall(tok):
            out += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
    return out


def recall(got: str, reference: str) -> float:
    ref, have = Counter(tokens(reference)), Counter(tokens(got))
    return sum(min(n, have[t]) for t, n in ref.items()) / max(1, sum(ref.values()))


def glued_share(got: str, reference: str) -> float:
    ref_words = tokens(reference)
    vocab = set(ref_words)
    joins = {"".join(ref_words[i:i + n]) for n in range(2, 7) for i in range(len(ref_words) - n + 1)}
    toks = tokens(got)
    return sum(1 for t in toks if t not in vocab and t in joins) / max(1, len(toks))
