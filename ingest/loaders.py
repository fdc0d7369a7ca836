"""Document loaders: one file → pages of normalised text, chosen by content sniffing.

Every loader sees the file's bytes, not its name: a PDF named ``.txt`` loads as a PDF, a binary file
named ``.pdf`` fails as "binary". Loaders are registered in order; the first whose ``sniff`` accepts the
first bytes of the file loads it (plain text is the last resort).

Failures raise :class:`DocumentError` (an :class:`IngestError`) whose ``reason`` is one of
:data:`REASONS` and whose message names the file, so a pipeline can report per-file errors and go on.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lusifer_rag.errors import IngestError

from .options import LoadOptions
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
    """Text of one page; ``number`` is 1-based for paged formats (PDF), None for the others. ``ocr``: the text
    was read off the page's image; ``note``: why a page has no text ("blank", "OCR timed out after 120 s")."""

    number: int | None
    text: str
    ocr: bool = False
    note: str = ""


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
    empty_pages: tuple[tuple[int, str], ...] = ()  # (page number, why) of pages that gave no text
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def text(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", PAGE_SEPARATOR.join(p.text for p in self.pages))
        return self._text  # type: ignore[return-value]

    @property
    def ocr_pages(self) -> list[int]:
        return [p.number for p in self.pages if p.ocr and p.number is not None]

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
    def load(self, data: bytes, source: str, options: LoadOptions,
             on_page: Callable[[int, int], None] | None = None) -> tuple[list[PageText], str | None]:
        """Pages (raw or normalised text) and the title, or raise :class:`DocumentError`. Paged formats call
        ``on_page(done, total)`` as they go."""

    def state_key(self, options: LoadOptions) -> str:
        """What, besides the bytes, decides this format's text (part of a document's state)."""
        return ""


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
def load_document(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, options: LoadOptions | None = None,
                  on_page: Callable[[int, int], None] | None = None) -> LoadedDocument:
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
    return load_bytes(data, source, max_bytes=max_bytes, options=options, on_page=on_page)


def load_bytes(data: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES, options: LoadOptions | None = None,
               on_page: Callable[[int, int], None] | None = None) -> LoadedDocument:
    """Load a document held in memory (an upload); ``source`` names it in errors and in the result."""
    if len(data) == 0:
        raise DocumentError(source, "zero-byte", "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise DocumentError(source, "too-large", f"{len(data)} bytes, the limit is {max_bytes} (max_bytes)")
    loader = sniff_loader(data[:SNIFF_BYTES])
    raw, title = loader.load(data, source, options or LoadOptions(), on_page)
    pages, empty = [], []
    for p in raw:
        text = normalize_text(p.text)
        if text:
            pages.append(PageText(p.number, text, p.ocr))
        elif p.number is not None:
            empty.append((p.number, p.note or "blank"))
    if not pages:
        raise DocumentError(source, "empty", f"no text in this {loader.name} document")
    title = normalize_text(title) if title else None
    return LoadedDocument(
        source=source, pages=pages, mime=loader.mime, title=title or None,
        content_hash=hashlib.sha256(data).hexdigest(), size=len(data), empty_pages=tuple(empty),
    )


def state_key(head: bytes, options: LoadOptions) -> str:
    """The loader-side part of a document's state, from its first bytes."""
    return sniff_loader(head[:SNIFF_BYTES]).state_key(options)


# ---- PDF -----------------------------------------------------------------------------------------
class PdfLoader(Loader):
    """PDF pages through a PDF backend (``ingest/pdf.py``): decryption, OCR of pages without text, running headers
    and footers out, lines joined into paragraphs. Page numbers are the PDF's page indices (1-based)."""

    name, mime = "pdf", "application/pdf"

    def sniff(self, head: bytes) -> bool:
        # the header may follow a little junk; readers accept it within the first KiB
        return b"%PDF-" in head[:1024]

    def state_key(self, options: LoadOptions) -> str:
        return options.state_key()

    def load(self, data, source, options, on_page=None):
        from .ocr import INSTALL_HINT, OcrUnavailable
        from .pdf import PdfPasswordError, clean_pages, open_pdf, read_pages

        if b"%%EOF" not in data[-8192:]:
            raise DocumentError(source, "corrupt", "truncated PDF (no %%EOF marker at the end)")
        try:
            pdf = open_pdf(data, source, options)
        except PdfPasswordError as e:
            tried = len(options.passwords_for(source)) - 1
            raise DocumentError(source, "encrypted", "password-protected PDF: it cannot be opened without its "
                                f"password ({tried} configured password(s) tried); give it with --pdf-password "
                                "or a --pdf-passwords file") from e
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any parser failure on untrusted bytes is "corrupt"
            raise DocumentError(source, "corrupt", f"{type(e).__name__}: {e}") from e
        try:
            if pdf.pages == 0:
                raise DocumentError(source, "empty", "the PDF has no pages")
            try:
                pages = read_pages(pdf, options, on_page)
            except OcrUnavailable as e:
                pages = read_pages(pdf, replace(options, ocr="off"), on_page)
                if not any(p.text.strip() for p in pages):
                    raise DocumentError(source, "no-text-layer", f"no text layer on any of its {pdf.pages} pages "
                                        f"(scanned PDF?), and OCR is not possible: {e}") from e
                pages = [p if p.text.strip() else replace(p, note=f"no text layer; OCR not possible: {INSTALL_HINT}")
                         for p in pages]
            title = pdf.title
        except DocumentError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001
            raise DocumentError(source, "corrupt", f"{type(e).__name__}: {e}") from e
        finally:
            pdf.close()
        if not any(p.text.strip() for p in pages):
            if options.ocr == "off":
                raise DocumentError(source, "no-text-layer", f"no text layer on any of its {len(pages)} pages "
                                    "(scanned PDF?) and OCR is off (ocr=off)")
            notes = sorted({p.note for p in pages if p.note and p.note != "blank"})
            raise DocumentError(source, "no-text-layer", f"no text on any of its {len(pages)} pages, OCR included "
                                "(blank or unreadable scan)" + (f"; {'; '.join(notes)}" if notes else ""))
        return [PageText(p.number, p.text, p.ocr, p.note) for p in clean_pages(pages)], title


# ---- images (OCR) ------------------------------------------------------------------------------------
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")


class ImageLoader(Loader):
    """PNG, JPEG, TIFF (every frame a page) and WebP scans, read by OCR."""

    name, mime = "image", "image/*"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")

    def state_key(self, options: LoadOptions) -> str:
        return options.state_key()

    def load(self, data, source, options, on_page=None):
        from PIL import Image, UnidentifiedImageError

        from .ocr import OcrUnavailable, PageOcr, Tesseract

        if options.ocr == "off":
            raise DocumentError(source, "unsupported", "an image: its text can only be read by OCR, and OCR is off")
        try:
            image = Image.open(io.BytesIO(data))
            n_frames = getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
        except (UnidentifiedImageError, OSError, ValueError, EOFError) as e:
            raise DocumentError(source, "corrupt", f"unreadable image: {type(e).__name__}: {e}") from e

        def frame(i: int):  # one frame in memory at a time (a 300-page TIFF), decoded in this thread
            image.seek(i)
            return image.convert("L")
        try:
            engine = Tesseract(options.ocr_languages, options.ocr_timeout)
        except OcrUnavailable as e:
            raise DocumentError(source, "no-text-layer", f"an image: its text can only be read by OCR: {e}") from e
        done = [0]

        def tick():
            done[0] += 1
            if on_page:
                on_page(done[0], n_frames)

        with PageOcr(engine, options.ocr_workers, on_done=tick) as pool:
            for i in range(n_frames):
                pool.submit(i + 1, lambda i=i: frame(i))
            results = list(pool.results())
        pages = [PageText(i, r.text, ocr=bool(r.text.strip()), note="" if r.text.strip() else (r.error or "blank"))
                 for i, r in results]
        if not any(p.text.strip() for p in pages):
            notes = sorted({p.note for p in pages})
            raise DocumentError(source, "no-text-layer", f"OCR found no text in this image ({len(pages)} page(s): "
                                f"{', '.join(notes)})")
        return [replace(p, text=clean_pdf_page(p.text)) for p in pages], None


# ---- DOCX ----------------------------------------------------------------------------------------
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"


class DocxLoader(Loader):
    """Word documents. Zip headers are never trusted: every member is read through a stream that counts the bytes
    it really unpacks and stops at the cap (``LoadOptions.max_unpacked``), and ``word/document.xml`` is parsed as it
    streams, its paragraphs taken and their elements dropped, so memory follows the text, not the XML tree."""

    name = "docx"
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

    def sniff(self, head: bytes) -> bool:
        # a zip whose first entries name the Word parts (Word writes [Content_Types].xml and word/ early)
        return head.startswith(b"PK\x03\x04") and (b"word/" in head or b"[Content_Types].xml" in head)

    def load(self, data, source, options, on_page=None):
        budget = _UnpackBudget(source, options.max_unpacked)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
                if "word/document.xml" not in names:
                    raise DocumentError(source, "unsupported", "a zip archive that is not a Word document")
                paragraphs = _docx_paragraphs(budget.stream(zf, "word/document.xml"))
                title = None
                if "docProps/core.xml" in names:
                    core = b"".join(budget.stream(zf, "docProps/core.xml", cap=DOCX_CORE_MAX_BYTES))
                    el = ET.fromstring(core).find(_DC_TITLE)
                    title = el.text if el is not None else None
        except DocumentError:
            raise
        except (zipfile.BadZipFile, ET.ParseError, KeyError, EOFError, ValueError, NotImplementedError,
                RuntimeError, zlib.error) as e:
            raise DocumentError(source, "corrupt", f"{type(e).__name__}: {e}") from e
        return [PageText(None, "\n\n".join(p for p in paragraphs if p.strip()))], title


DOCX_CORE_MAX_BYTES = 1 << 20  # docProps/core.xml: a few KB of metadata in any real document
_UNPACK_BLOCK = 1 << 16


class _UnpackBudget:
    """Bytes an archive may unpack, counted as they come out of the decompressor (headers can lie)."""

    def __init__(self, source: str, limit: int):
        self.source, self.limit, self.used = source, limit, 0

    def stream(self, zf: zipfile.ZipFile, name: str, cap: int | None = None) -> Iterator[bytes]:
        """The member's bytes in blocks; DocumentError ``too-large`` as soon as it passes ``cap`` or the budget."""
        info = copy.copy(zf.getinfo(name))
        limit = min(cap or self.limit, self.limit - self.used)
        # zipfile stops at the header's file_size (and fails the CRC there): lift it, so that the real end of the
        # compressed data decides (where the CRC is still checked), and our count stops a member past the cap
        info.file_size = 1 << 62
        read = 0
        with zf.open(info) as f:
            while block := f.read(_UNPACK_BLOCK):
                read += len(block)
                if read > limit:
                    what = "its unpack limit" if cap and limit == cap else "the archive's unpack limit"
                    raise DocumentError(self.source, "too-large", f"{name} unpacks to more than {limit} bytes "
                                        f"({what}; max_unpacked is {self.limit} bytes)")
                yield block
        self.used += read


def _docx_paragraphs(blocks: Iterable[bytes]) -> list[str]:
    """Text of every top-level ``w:p`` (nested ones, in text boxes, inside their paragraph), parsed as the XML
    streams; each paragraph's elements are dropped once read."""
    parser = ET.XMLPullParser(events=("start", "end"))
    stack: list[ET.Element] = []
    depth_in_p = 0
    out: list[str] = []
    for block in blocks:
        parser.feed(block)
        for event, el in parser.read_events():
            if event == "start":
                stack.append(el)
                if el.tag == f"{_W}p":
                    depth_in_p += 1
                continue
            stack.pop()
            if el.tag != f"{_W}p":
                continue
            depth_in_p -= 1
            if depth_in_p == 0:
                out.append(_docx_paragraph(el))
                if stack:
                    stack[-1].remove(el)
    parser.close()
    return out


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

    def load(self, data, source, options, on_page=None):
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
    """HTML through lxml's event parser (no tree: time and memory linear in the input, whatever the nesting):
    the text of ``<main>``, else ``<article>``, else the body, without scripts, navigation and other chrome."""

    name, mime = "html", "text/html"

    def sniff(self, head: bytes) -> bool:
        for bom in (b"\xef\xbb\xbf",):
            head = head.removeprefix(bom)
        return bool(_HTML_START.match(head[:SNIFF_BYTES]))

    def load(self, data, source, options, on_page=None):
        from lxml import etree

        target = _HtmlText()
        parser = etree.HTMLParser(target=target, recover=True, no_network=True, remove_comments=True, remove_pis=True)
        text = _decode_html(data, source)
        for i in range(0, len(text), 1 << 20):
            parser.feed(text[i : i + (1 << 20)])
        parser.close()
        text = re.sub(r"\s+", " ", target.text())
        text = re.sub(rf"\s*{_PARA}[\s{_PARA}{_LINE}]*", "\n\n", text)
        text = re.sub(rf"\s*{_LINE}\s*", "\n", text)
        title = re.sub(r"\s+", " ", "".join(target.title)).strip()
        return [PageText(None, text)], title or None


_DROP_ROLES = ("navigation", "banner", "contentinfo", "complementary")
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.I)


def _decode_html(data: bytes, source: str) -> str:
    """The page as text: a BOM, else the ``<meta charset>`` of its head, else as plain text is decoded."""
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        m = _META_CHARSET.search(data[:SNIFF_BYTES])
        if m:
            try:
                return data.decode(m.group(1).decode("ascii"), errors="replace")
            except LookupError:
                pass
    return decode_text(data, source)


class _HtmlText:
    """An lxml parser target: collects text in one pass, keeping the first ``<main>``'s and ``<article>``'s text
    apart from the whole body's (the page's content is the first of these that exists)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {"main": [], "article": [], "body": []}
        self.state = {"main": 0, "article": 0}  # 0 not seen, 1 inside the first one, 2 after it
        self.stack: list[tuple[str, bool]] = []  # (tag, whether it started a dropped region)
        self.dropped = 0
        self.in_title = False
        self.title: list[str] = []

    def _emit(self, text: str) -> None:
        self.parts["body"].append(text)
        for name in ("main", "article"):
            if self.state[name] == 1:
                self.parts[name].append(text)

    def start(self, tag, attrib) -> None:
        tag = tag.lower() if isinstance(tag, str) else ""
        drop = tag in _DROP_TAGS or tag == "head" or attrib.get("role") in _DROP_ROLES
        if tag == "title":
            self.in_title = True
        self.stack.append((tag, drop))
        if drop:
            self.dropped += 1
        if self.dropped:
            return
        if tag in _BLOCK_TAGS:
            self._emit(_PARA)
        if tag in self.state and self.state[tag] == 0:
            self.state[tag] = 1

    def end(self, tag) -> None:
        if not self.stack:
            return
        tag, drop = self.stack.pop()
        if tag == "title":
            self.in_title = False
        if not self.dropped:
            if tag in self.state and self.state[tag] == 1 and not any(t == tag for t, _ in self.stack):
                self.state[tag] = 2
            if tag in _BLOCK_TAGS:
                self._emit(_PARA)
            elif tag == "br":
                self._emit(_LINE)
            elif tag in ("td", "th"):
                self._emit(" ")
        if drop:
            self.dropped -= 1

    def data(self, text: str) -> None:
        if self.in_title:
            self.title.append(text)
        if not self.dropped:
            self._emit(text)

    def close(self) -> None:
        return None

    def text(self) -> str:
        for name in ("main", "article"):
            if self.state[name]:
                return "".join(self.parts[name])
        return "".join(self.parts["body"])


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

    def load(self, data, source, options, on_page=None):
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


for _loader in (PdfLoader(), ImageLoader(), DocxLoader(), ZipLoader(), HtmlLoader(), TextLoader()):
    register_loader(_loader)
