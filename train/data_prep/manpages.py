"""The Linux man pages (``manpages``, ``manpages-dev``): a small pure-Python troff cleaner."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from .common import ALIGN_WORDS, _LETTER, Unit, _make_unit, clean_heading, clean_text, is_code_like, n_words

# ---- manpages: troff -------------------------------------------------------------------------------------
_CHARS = {"em": "—", "en": "–", "hy": "-", "mi": "-", "bu": "•", "aq": "'", "dq": '"', "lq": "“", "rq": "”",
          "oq": "‘", "cq": "’", "co": "©", "rg": "®", "tm": "™", "mu": "×", "di": "÷", "<=": "≤", ">=": "≥",
          "!=": "≠", "->": "→", "<-": "←", "de": "°", "+-": "±", "pl": "+", "ti": "~", "ha": "^", "rs": "\\",
          "sl": "/", "ga": "`", "aa": "´", "sc": "§", "dg": "†", "fm": "′", "Fo": "«", "Fc": "»", "at": "@",
          "sh": "#", "Do": "$", "ba": "|", "br": "|", "or": "|", "lB": "[", "rB": "]", "lC": "{", "rC": "}",
          "la": "⟨", "ra": "⟩", "eq": "=", "ss": "ß", "'e": "é", "`e": "è", "'a": "á", ':u': "ü", ':o': "ö",
          ":a": "ä", "R": "®", "Tm": "™"}
_ESCAPE = re.compile(r"""\\(?:
    \((?P<c2>..) | \[(?P<cn>[^\]]*)\] | \*(?:\((?P<s2>..)|\[(?P<sn>[^\]]*)\]|(?P<s1>.))
  | f(?:\(..|\[[^\]]*\]|.) | s(?:[+-]?\d|\([+-]?\d\d|\[[^\]]*\]) | n(?:[+-]?(?:\(..|\[[^\]]*\]|.))
  | [hvwlLoDXNbBCRSxZ]'[^']*' | k. | (?P<one>.) )""", re.X)
_SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "&": "", "|": "", "^": "",
           "%": "", ":": "", "c": "", ")": "", "/": "", ",": "", "z": "", "'": "´", "`": "`", ".": ".", "!": ""}
_ARGS = re.compile(r'"(?P<q>(?:\\.|""|[^"])*)"?|(?P<w>(?:\\.|\S)+)')  # an escaped space does not split
_FONT_ALT = {"BR", "RB", "BI", "IB", "IR", "RI"}
_FONT = {"B", "I", "SM", "SB"}
_BREAKS = {"PP", "P", "LP", "sp", "br", "HP", "RS", "RE", "IP", "TP", "TQ", "PD", "in", "ti", "bp", "ne", "SY", "YS"}
_SKIP_BLOCKS = {"TS": "TE", "EQ": "EN", "EX": "EE", "de": "..", "am": "..", "ig": ".."}


def troff_unescape(text: str) -> str:
    def repl(m: re.Match) -> str:
        if m.group("c2") is not None:
            return _CHARS.get(m.group("c2"), "")
        if m.group("cn") is not None:
            name = m.group("cn")
            if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
                return chr(int(name[1:], 16))
            return _CHARS.get(name, "")
        string = m.group("s2") or m.group("sn") or m.group("s1")
        if string is not None:
            return {"lq": "“", "rq": "”", "R": "®", "Tm": "™"}.get(string, "")
        one = m.group("one")
        if one is not None:
            return _SIMPLE.get(one, one)
        return ""

    return _ESCAPE.sub(repl, text)


def _macro_args(rest: str) -> list[str]:
    return [troff_unescape(m.group("q").replace('""', '"') if m.group("q") is not None else m.group("w"))
            for m in _ARGS.finditer(rest)]


def troff_sections(src: str) -> dict[str, list[str]]:
    """A man page's sections, each as a list of text blocks (paragraphs; a ``.TP`` tag is a block of its own).

    A small cleaner, not a formatter: man(7) font/paragraph macros, the usual escapes, fill mode; tables,
    equations, examples and macro definitions are dropped, and so are requests it does not know."""
    sections: dict[str, list[str]] = {}
    name = ""
    current: list[str] = []
    skip_until: str | None = None
    nofill = False
    tag_pending = False

    def flush() -> None:
        if current and name:
            block = clean_text(" ".join(current))
            if block:
                sections.setdefault(name, []).append(block)
        current.clear()

    lines = src.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):  # continuation
            line = line[:-1] + lines[i]
            i += 1
        line = re.sub(r'(?<!\\)\\".*$', "", line)  # comment
        if skip_until is not None:
            if line.strip().lstrip(".'").split()[:1] == [skip_until.lstrip(".")] or line.strip() == skip_until:
                skip_until = None
            continue
        if line[:1] in (".", "'"):
            body = line[1:].lstrip()
            macro, _, rest = body.partition(" ")
            macro, rest = macro.strip(), rest.strip()
            if macro in _SKIP_BLOCKS:
                flush()
                skip_until = _SKIP_BLOCKS[macro]
                continue
            if macro in ("SH", "SS"):
                flush()
                title = " ".join(_macro_args(rest)).strip()
                if not title and i < len(lines):
                    title = troff_unescape(lines[i]).strip()
                    i += 1
                if macro == "SH":
                    name = clean_text(title).upper()
                tag_pending = False
                continue
            if macro in _FONT_ALT or macro in _FONT:
                args = _macro_args(rest)
                if args:
                    text = "".join(args) if macro in _FONT_ALT else " ".join(args)
                    current.append(text)
                    if nofill or tag_pending:
                        flush()
                        tag_pending = False
                continue
            if macro in ("UE", "ME"):
                if current and rest:
                    current[-1] += "".join(_macro_args(rest))
                continue
            if macro in ("nf",):
                flush()
                nofill = True
                continue
            if macro in ("fi",):
                flush()
                nofill = False
                continue
            if macro in _BREAKS:
                flush()
                if macro in ("TP", "TQ"):
                    tag_pending = True
                elif macro == "IP":
                    args = _macro_args(rest)
                    if args and _LETTER.search(args[0]):  # a tag, not a bullet
                        current.append(args[0])
                        flush()
                continue
            continue  # a request or macro we do not format (TH, if/ie/el, ds, nr, so, ft, ad, UR, MT, ...)
        text = troff_unescape(line)
        if not text.strip():
            flush()
            continue
        current.append(text)
        if nofill or tag_pending:
            flush()
            tag_pending = False
    flush()
    return sections


MAN_ALIGN_SECTIONS = ("DESCRIPTION", "RETURN VALUE", "ERRORS", "NOTES", "BUGS", "CAVEATS", "OPTIONS", "VERSIONS",
                      "HISTORY", "OVERVIEW")


def _parse_man_page(path: Path, rel: str) -> Unit | None:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        src = raw.decode("utf-8")
    except UnicodeDecodeError:
        src = raw.decode("latin-1")
    if re.match(r"^\s*\.so\s", src.lstrip("\ufeff"), re.M) and len(src.strip().splitlines()) <= 3:
        return None  # an alias of another page
    sections = troff_sections(src)
    name_line = " ".join(sections.get("NAME", []))
    m = re.match(r"^(.*?)\s+[-—–]+\s+(.+)$", name_line)
    if not m:
        return None
    names, description = m.group(1), clean_heading(m.group(2))
    section_no = int(re.match(r"man(\d)", rel).group(1))
    unit = _make_unit(uid=f"man/{rel}", dataset="manpages", family=f"man{section_no}", kind="manpage",
                      heading=description, blocks=sections.get("DESCRIPTION", []),
                      context=names.split(",")[0].strip())
    if unit is not None:
        unit.paragraphs = list(dict.fromkeys(
            b for s in MAN_ALIGN_SECTIONS for b in sections.get(s, [])
            if ALIGN_WORDS[0] <= n_words(b) <= ALIGN_WORDS[1] and not is_code_like(b)))
    return unit
