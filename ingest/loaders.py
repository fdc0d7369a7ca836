"""Document loaders: one file → pages of normalised text, chosen by content sniffing.

Every loader sees the file's bytes, not its name: a PDF named ``.txt`` loads as a PDF, a binary file
named ``.pdf`` fails as "binary". Loaders are registered in order; the first whose ``sniff`` accepts the
first bytes of the file loads it (plain text is the last resort).

Failures raise :class:`DocumentError` (an :class:`IngestError`) whose ``reason`` is one of
:data:`REASONS` and whose message names the file, so a pipeline can report per-file errors and go on.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from lusifer_rag.errors import IngestError

from .text import clean_pdf_page, normalize_text

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: why a document could not be loaded
REASONS = (
    "zero-byte", "empty", "too-large", "encrypted", "no-text-layer", "corrupt", "binary",
    "undecodable", "unsupported", "unreadable",
)
PAGE_SEPARATOR = "\n\n"
SNIFF_BYTES = 4096


class DocumentError(IngestError):
    """One document failed to load. ``reason`` is a code from :data:`REASONS`; ``source`` the file."""

    def __init__(self, source: str, reason: str, detail: str):
        self.source = source
        self.reason = reason
        self.detail = detail
        super().__init__(f"{source}: {reason}: {detail}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.source, self.reason, self.detail))


@dataclass(frozen=True)
class PageText:
    """Text of one page; ``number`` is 1-based for paged formats (PDF), None for the others."""

    number: int | None
    text: str


@dataclass(frozen=True)
class LoadedDocument:
    """A loaded document. Its full text is ``pages`` joined with :data:`PAGE_SEPARATOR` ("\\n\\n").

    Character offsets (chunks, citations) index into :attr:`text`; pages with no text are left out.
    """

    source: str
    pages: list[PageText]
    mime: str
    title: str | None
    content_hash: str  # sha256 hex of the file's bytes
    size: int  # bytes
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def text(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", PAGE_SEPARATOR.join(p.text for p in self.pages))
        return self._text  # type: ignore[return-value]

    def page_starts(self) -> list[int]:
        """Offset in :attr:`text` where each page of :attr:`pages` starts."""
        starts, pos = [], 0
        for p in self.pages:
            starts.append(pos)
            pos += len(p.text) + len(PAGE_SEPARATOR)
        return starts


# ---- the registry --------------------------------------------------------------------------------
class Loader(ABC):
    """A format: recognise its bytes, turn them into (pages, title)."""

    name: str
    mime: str

    @abstractmethod
    def sniff(self, head: bytes) -> bool:
        """Whether the first :data:`SNIFF_BYTES` bytes of a file are this format."""

    @abstractmethod
    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        """Pages (raw or normalised text) and the title, or raise :class:`DocumentError`."""


_LOADERS: list[Loader] = []


def register_loader(loader: Loader, *, before: str | None = None) -> Loader:
    """Add a loader; ``before`` puts it ahead of a registered one (sniffing is first-match)."""
    index = next((i for i, known in enumerate(_LOADERS) if known.name == before), len(_LOADERS))
    _LOADERS.insert(index, loader)
    return loader


def loaders() -> list[Loader]:
    return list(_LOADERS)


def sniff_loader(head: bytes) -> Loader:
    for loader in _LOADERS:
        if loader.sniff(head):
            return loader
    raise AssertionError("the text loader accepts everything")  # pragma: no cover


# ---- entry points --------------------------------------------------------------------------------
def load_document(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedDocument:
    """Load one file. Raises :class:`DocumentError` with a reason code for every kind of bad input."""
    source = str(path)
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise DocumentError(source, "unreadable", e.strerror or str(e)) from e
    if size > max_bytes:
        raise DocumentError(source, "too-large", f"{size} bytes, the limit is {max_bytes} (max_bytes)")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DocumentError(source, "unreadable", e.strerror or str(e)) from e
    return load_bytes(data, source, max_bytes=max_bytes)


def load_bytes(data: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedDocument:
    """Load a document held in memory (an upload); ``source`` names it in errors and in the result."""
    if len(data) == 0:
        raise DocumentError(source, "zero-byte", "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise DocumentError(source, "too-large", f"{len(data)} bytes, the limit is {max_bytes} (max_bytes)")
    loader = sniff_loader(data[:SNIFF_BYTES])
    pages, title = loader.load(data, source)
    pages = [PageText(p.number, t) for p in pages if (t := normalize_text(p.text))]
    if not pages:
        raise DocumentError(source, "empty", f"no text in this {loader.name} document")
    title = normalize_text(title) if title else None
    return LoadedDocument(
        source=source, pages=pages, mime=loader.mime, title=title or None,
        content_hash=hashlib.sha256(data).hexdigest(), size=len(data),
    )


# ---- PDF -----------------------------------------------------------------------------------------
class PdfLoader(Loader):
    name, mime = "pdf", "application/pdf"

    def sniff(self, head: bytes) -> bool:
        # the header may follow a little junk; readers accept it within the first KiB
        return b"%PDF-" in head[:1024]

    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, FileNotDecryptedError

        if b"%%EOF" not in data[-8192:]:
            raise DocumentError(source, "corrupt", "truncated PDF (no %%EOF marker at the end)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader = PdfReader(io.BytesIO(data), strict=False)
                if reader.is_encrypted:
                    try:
                        ok = reader.decrypt("")
                    except (DependencyError, NotImplementedError) as e:
                        raise DocumentError(source, "encrypted", f"cannot decrypt ({e})") from e
                    if not ok:
                        raise DocumentError(source, "encrypted", "the PDF needs a password; decrypt it first")
                pages = reader.pages
                n_pages = len(pages)
                title = _pdf_title(reader)
                texts = [_page_text(page) for page in pages]
        except DocumentError:
            raise
        except FileNotDecryptedError as e:
            raise DocumentError(source, "encrypted", str(e)) from e
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any parser failure on untrusted bytes is "corrupt"
            raise DocumentError(source, "corrupt", f"{type(e).__name__}: {e}") from e
        if n_pages == 0:
            raise DocumentError(source, "empty", "the PDF has no pages")
        if not any(t.strip() for t in texts):
            raise DocumentError(
                source, "no-text-layer", f"no text layer on any of its {n_pages} pages (scanned PDF?): OCR it first"
            )
        return [PageText(i + 1, clean_pdf_page(t)) for i, t in enumerate(texts)], title


def _page_text(page) -> str:
    try:
        return page.extract_text() or ""
    except Exception:  # noqa: BLE001 - one broken page must not lose the document; it yields no text
        return ""


def _pdf_title(reader) -> str | None:
    try:
        meta = reader.metadata
        return str(meta.title) if meta and meta.title else None
    except Exception:  # noqa: BLE001 - metadata is optional and often malformed
        return None


# ---- DOCX ----------------------------------------------------------------------------------------
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"


class DocxLoader(Loader):
    name = "docx"
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

    def sniff(self, head: bytes) -> bool:
        # a zip whose first entries name the Word parts (Word writes [Content_Types].xml and word/ early)
        return head.startswith(b"PK\x03\x04") and (b"word/" in head or b"[Content_Types].xml" in head)

    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
                if "word/document.xml" not in names:
                    raise DocumentError(source, "unsupported", "a zip archive that is not a Word document")
                info = zf.getinfo("word/document.xml")
                if info.file_size > 20 * max(len(data), 1 << 20):
                    raise DocumentError(source, "too-large", f"word/document.xml unpacks to {info.file_size} bytes")
                body = ET.fromstring(zf.read(info))
                title = None
                if "docProps/core.xml" in names:
                    el = ET.fromstring(zf.read("docProps/core.xml")).find(_DC_TITLE)
                    title = el.text if el is not None else None
        except DocumentError:
            raise
        except (zipfile.BadZipFile, ET.ParseError, KeyError, EOFError, ValueError) as e:
            raise DocumentError(source, "corrupt", f"{type(e).__name__}: {e}") from e
        paragraphs = [_docx_paragraph(p) for p in body.iter(f"{_W}p")]
        return [PageText(None, "\n\n".join(p for p in paragraphs if p.strip()))], title


def _docx_paragraph(p: ET.Element) -> str:
    parts = []
    for el in p.iter():
        if el.tag == f"{_W}t" and el.text:
            parts.append(el.text)
        elif el.tag == f"{_W}tab":
            parts.append("\t")
        elif el.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return "".join(parts)


class ZipLoader(Loader):
    """Any other zip (xlsx, odt, epub...): refused by name rather than read as binary text."""

    name, mime = "zip", "application/zip"

    def sniff(self, head: bytes) -> bool:
        return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))

    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        raise DocumentError(source, "unsupported", "a zip archive (only .docx among zip formats is supported)")


# ---- HTML ----------------------------------------------------------------------------------------
_HTML_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|meta|title)[\s>]", re.I | re.S)
_DROP_TAGS = ("script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg", "iframe", "form", "button")
_BLOCK_TAGS = (
    "p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "dl", "dt", "dd",
    "table", "tr", "blockquote", "pre", "figure", "figcaption", "address", "details", "summary", "hr",
)
_PARA, _LINE = "\ue000", "\ue001"  # private-use markers that survive whitespace collapsing


class HtmlLoader(Loader):
    name, mime = "html", "text/html"

    def sniff(self, head: bytes) -> bool:
        for bom in (b"\xef\xbb\xbf",):
            head = head.removeprefix(bom)
        return bool(_HTML_START.match(head[:SNIFF_BYTES]))

    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        from bs4 import BeautifulSoup

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            soup = BeautifulSoup(data, "lxml")
        title = soup.title.get_text(" ", strip=True) if soup.title else None
        for tag in soup(list(_DROP_TAGS) + ["title", "head"]):
            tag.decompose()
        for el in soup.find_all(attrs={"role": ("navigation", "banner", "contentinfo", "complementary")}):
            el.decompose()
        root = soup.find("main") or soup.find("article") or soup.body or soup
        for el in root.find_all(_BLOCK_TAGS):
            el.insert_before(_PARA)
            el.append(_PARA)
        for el in root.find_all(("br", "td", "th")):
            el.insert_after(_LINE if el.name == "br" else " ")
        text = re.sub(r"\s+", " ", root.get_text())
        text = re.sub(rf"\s*{_PARA}[\s{_PARA}{_LINE}]*", "\n\n", text)
        text = re.sub(rf"\s*{_LINE}\s*", "\n", text)
        return [PageText(None, text)], title


# ---- plain text / Markdown -----------------------------------------------------------------------
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_MD_TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.M)


class TextLoader(Loader):
    name, mime = "text", "text/plain"

    def sniff(self, head: bytes) -> bool:
        return True

    def load(self, data: bytes, source: str) -> tuple[list[PageText], str | None]:
        text = decode_text(data, source)
        m = _MD_TITLE.search(text[:4096])
        return [PageText(None, text)], (m.group(1) if m else None)


def decode_text(data: bytes, source: str) -> str:
    """BOM, then strict UTF-8, then charset-normalizer; binary or undecodable bytes raise."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as e:
                raise DocumentError(source, "undecodable", f"has a {encoding} byte-order mark but is not {encoding}: {e}") from e
    sample = data[: 1 << 16]
    if b"\x00" in sample or len(sample.translate(None, _CONTROL_BYTES)) < 0.9 * len(sample):
        raise DocumentError(source, "binary", "binary file, not text (NUL or control bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    # charset-normalizer often ties single-byte code pages (cp1250 = cp1252 on French text): among the
    # least chaotic candidates prefer the common encodings; EBCDIC decodes any bytes, so it never wins
    results = [r for r in from_bytes(data[: 1 << 20]) if r.encoding not in _EBCDIC and r.chaos <= 0.3]
    if not results:
        raise DocumentError(source, "undecodable", "not UTF-8 and no other text encoding fits (mis-encoded or binary?)")
    least = min(r.chaos for r in results)
    best = min(
        (r for r in results if r.chaos <= least + 0.01),
        key=lambda r: (_PREFERRED.index(r.encoding) if r.encoding in _PREFERRED else len(_PREFERRED), -r.coherence),
    )
    try:
        return data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise DocumentError(source, "undecodable", f"looked like {best.encoding} but does not decode: {e}") from e


_PREFERRED = [
    "cp1252", "latin_1", "iso8859_15", "cp932", "shift_jis", "euc_jp", "gb18030", "gbk", "gb2312", "big5",
    "euc_kr", "cp949", "cp1251", "koi8_r", "cp1256", "cp1253", "cp1255", "cp1254", "cp1250", "cp874",
]
_EBCDIC = {"cp037", "cp273", "cp424", "cp500", "cp875", "cp1026", "cp1140"}


for _loader in (PdfLoader(), DocxLoader(), ZipLoader(), HtmlLoader(), TextLoader()):
    register_loader(_loader)
