"""Text normalisation shared by the loaders: NFC, control characters, whitespace, PDF line repair.

Everything here is a whole-string regex pass (no per-character Python loops): documents can be large.
"""

from __future__ import annotations

import unicodedata

import regex

# C0/C1 controls except tab/newline, DEL, BOM/ZWNBSP, soft hyphen and the line/paragraph separators
# (mapped to newlines first). ZWJ/ZWNJ are kept: they change meaning in Persian and Indic scripts.
_CONTROL = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u00ad\ufff9-\ufffb]")
_NEWLINES = regex.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")
_HSPACE = regex.compile(r"[^\S\n]+")  # any whitespace but newline (tabs, NBSP, ideographic space...)
_SPACE_AROUND_NL = regex.compile(r" *\n *")
_MANY_NL = regex.compile(r"\n{3,}")

# "inter-\nnational": a letter, a hyphen at the end of a line, a letter at the start of the next one.
_HYPHEN_BREAK = regex.compile(r"(?<=\p{L})[-\u2010]\n(?=\p{L})")
# Scripts written without spaces between words: a line wrap inside them joins with nothing.
_NO_SPACE = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\u3000-\u303f\uff00-\uffef]"
_WRAP_NO_SPACE = regex.compile(rf"(?<={_NO_SPACE})\n(?={_NO_SPACE})")
# A line that starts a list item or looks like a heading number keeps its line break.
_LIST_START = regex.compile(r"\n(?=\s*(?:[-*•▪◦‣·]\s|\d{1,3}[.)]\s|\(\w\)\s))")


def normalize_text(text: str) -> str:
    """NFC, no control characters, single spaces, no trailing spaces, at most one blank line in a row, stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


def repair_hyphenation(text: str) -> str:
    """Undo line-end hyphenation: ``inter-\\nnational`` → ``international``.

    Only where a letter stands on both sides of a hyphen that ends a line; when the next line starts
    with an upper-case letter ("Franco-\\nGerman") the hyphen is kept (it is probably a real compound)
    and only the line break goes.
    """

    def fix(m: regex.Match) -> str:
        nxt = m.string[m.end()] if m.end() < len(m.string) else ""
        return "-" if nxt.isupper() else ""

    return _HYPHEN_BREAK.sub(fix, text)


def join_wrapped_lines(text: str) -> str:
    """Join hard-wrapped lines inside paragraphs (PDF text): a paragraph is kept where a blank line is.

    PDF extractors give one line per visual line and rarely a blank line between paragraphs, so a line
    break is also kept after a line that ends a sentence and is clearly shorter than the page's longest
    line (the last line of a paragraph). Lines in scripts without word spaces join with no space.
    """
    text = _LIST_START.sub("\n\n", text)
    paragraphs = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if len(lines) == 1:
            paragraphs.append(block)
            continue
        width = max(map(len, lines))
        out = [lines[0]]
        for prev, line in zip(lines, lines[1:]):
            if _ends_paragraph(prev, width):
                out.append("\n\n")
            else:
                out.append("\n")
            out.append(line)
        joined = "".join(out)
        # the remaining single newlines are wraps: no-space scripts join tight, others with a space
        joined = _WRAP_NO_SPACE.sub("", joined)
        paragraphs.append(regex.sub(r"(?<!\n)\n(?!\n)", " ", joined))
    return "\n\n".join(paragraphs)


_SENTENCE_END = regex.compile(r"[.!?:;。！？।॥؟۔።…]['\"”’»)\]」』]*$")


def _ends_paragraph(line: str, width: int) -> bool:
    return bool(_SENTENCE_END.search(line)) and len(line) < 0.8 * width


def clean_pdf_page(text: str) -> str:
    """A PDF page's extracted text → normalised paragraphs (hyphenation repaired, wraps joined)."""
    text = normalize_text(text)
    text = repair_hyphenation(text)
    text = join_wrapped_lines(text)
    return normalize_text(text)
