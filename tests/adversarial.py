"""An adversarial corpus made on the spot (nothing big in git), for tests/test_ingest_bounds.py and
bench/ui_load.py: three DOCX bombs (a member whose headers lie about its size, a huge docProps/core.xml, real-looking
text that unpacks past the cap under a 10:1 ratio), 100,000 nested ``<div>``s, Markdown on one line, and a form PDF
with one same-pattern line a page."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pdf_factory as pf

BOMB_UNPACKED = 128 << 20  # twice the default max_unpacked
_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_CONTENT_TYPES = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
WORDS = ("river stone market letter window garden signal morning harbour lantern copper meadow orbit thunder "
         "village pepper circle anchor velvet canyon").split()


def _paragraphs(rng: random.Random, size: int) -> bytes:
    """About ``size`` bytes of Word paragraphs of random words (compresses about 10:1, as real text does)."""
    out, n = [], 0
    while n < size:
        p = f"<w:p><w:r><w:t>{' '.join(rng.choices(WORDS, k=12))}.</w:t></w:r></w:p>".encode()
        out.append(p)
        n += len(p)
    return b"".join(out)


def _docx(path: Path, document: bytes | list[bytes], repeat: int = 1, core: bytes | None = None) -> Path:
    """A .docx whose word/document.xml is ``document`` (blocks cycled ``repeat`` times between header and footer),
    streamed into the zip (the test never holds the unpacked XML)."""
    blocks = document if isinstance(document, list) else [document]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        with zf.open("word/document.xml", "w") as f:
            f.write(f'<?xml version="1.0"?><w:document {_W}><w:body>'.encode())
            for i in range(repeat):
                f.write(blocks[i % len(blocks)])
            f.write(b"</w:body></w:document>")
        if core is not None:
            zf.writestr("docProps/core.xml", core)
    return path


def _lie_about_size(path: Path, member: str, claimed: int) -> None:
    """Rewrite the member's unpacked size in its local and central headers (the bytes themselves unchanged)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        pos = data.find(sig)
        while pos >= 0:
            if data[pos + name_at: pos + name_at + len(name)] == name:
                data[pos + size_at: pos + size_at + 4] = claimed.to_bytes(4, "little")
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def build_corpus(d: Path, md_words: int = 150_000) -> dict[str, Path]:
    """The adversarial files, written under ``d``: key -> path."""
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    blocks = [_paragraphs(rng, 1 << 20) for _ in range(4)]  # distinct 1 MB blocks: zlib cannot match across them
    files = {}
    # a member whose headers say 1000 bytes and that unpacks to 128 MB
    files["lying"] = _docx(d / "lying-header.docx", b"<w:p><w:r><w:t>" + b"a" * (1 << 20) + b"</w:t></w:r></w:p>",
                           repeat=128)
    _lie_about_size(files["lying"], "word/document.xml", 1000)
    # docProps/core.xml of 32 MB (a few KB in any real document)
    files["core"] = _docx(d / "core-bomb.docx", b"<w:p><w:r><w:t>A real paragraph.</w:t></w:r></w:p>", core=b"<x>" + b" " * (32 << 20) + b"</x>")
    # ~12 MB of real-looking text that unpacks tenfold: under the old 20:1 ratio check, over max_unpacked
    files["ratio"] = _docx(d / "ratio-bomb.docx", blocks, repeat=BOMB_UNPACKED >> 20)
    # 100,000 nested <div>s (1.1 MB): quadratic before
    depth = 100_000
    files["html"] = d / "nested.html"
    files["html"].write_bytes(b"<html><head><title>Deep</title></head><body>" + b"<div>" * depth
                              + b"Deep inside the nest." + b"</div>" * depth + b"<p>After the nest.</p></body></html>")
    # 1 MB of Markdown on one line
    files["md"] = d / "one-line.md"
    files["md"].write_text(" ".join(rng.choices(WORDS, k=md_words)), encoding="utf-8")
    # a form: one same-pattern line a page
    files["form"] = pf.long_pdf(d / "form.pdf", [f"Entry {i}: gate opened at 0{i}:00 by guard {i + 40}"
                                                 for i in range(1, 9)])
    return files
