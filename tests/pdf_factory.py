"""Build real test documents: multilingual PDFs (fpdf2 + vendored Noto subsets), DOCX, HTML, bad inputs.

Fonts: tests/data/fonts/*.ttf are static subsets of Noto Sans / Noto Sans SC / Noto Sans Arabic (OFL,
licence beside them) covering exactly the characters of the texts below (plus ASCII); rebuild them with
``python tests/data/fonts/build_fonts.py WHEEL_DIR`` after changing a text here.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

FONTS = Path(__file__).parent / "data" / "fonts"
LATIN_FONT = FONTS / "NotoSans-subset.ttf"
CJK_FONT = FONTS / "NotoSansSC-subset.ttf"
ARABIC_FONT = FONTS / "NotoSansArabic-subset.ttf"

# English pages as explicit lines: a line ending in "-" is a hyphenated break to be repaired.
ENGLISH_PAGES = [
    [
        "The Universal Declaration of Human Rights is a milestone document in the",
        "history of human rights. Drafted by representatives with different legal and cul-",
        "tural backgrounds from all regions of the world, it was proclaimed by the United",
        "Nations General Assembly in Paris on 10 December 1948.",
        "It sets out, for the first time, fundamental human rights to be universally pro-",
        "tected and it has been translated into over five hundred languages.",
    ],
    [
        "Article one states that all human beings are born free and equal in dignity",
        "and rights. They are endowed with reason and conscience and should act towards",
        "one another in a spirit of brotherhood. The inter-",
        "national community has since adopted many binding treaties.",
        "The Franco-",
        "German friendship treaty is an unrelated example of a real compound word.",
    ],
    [
        "Everyone has the right to life, liberty and security of person. No one shall",
        "be held in slavery or servitude; slavery and the slave trade shall be prohibited",
        "in all their forms. Everyone has the right to recognition everywhere as a person",
        "before the law.",
    ],
]
# the words the hyphenation repair must produce, and must not
HYPHEN_REPAIRED = ["cultural", "protected", "international", "Franco-German"]
HYPHEN_BROKEN = ["cul-", "pro-", "inter-"]

# UDHR article 1 (Unicode UDHR project texts)
JAPANESE_TEXT = (
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。"
    "人間は、理性と良心とを授けられており、互いに同胞の精神をもって行動しなければならない。"
)
CHINESE_TEXT = "人人生而自由,在尊严和权利上一律平等。他们赋有理性和良心,并应以兄弟关系的精神相对待。"
ARABIC_TEXT = (
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. "
    "وقد وهبوا عقلاً وضميرًا وعليهم أن يعامل بعضهم بعضًا بروح الإخاء."
)


def _pdf(**kw):
    from fpdf import FPDF

    pdf = FPDF(format="A4", **kw)
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 20, 20)
    pdf.add_font("NotoSans", fname=str(LATIN_FONT))
    pdf.add_font("NotoSansSC", fname=str(CJK_FONT))
    pdf.add_font("NotoSansArabic", fname=str(ARABIC_FONT))
    return pdf


def _lines(pdf, lines: list[str], font: str = "NotoSans", size: int = 11, width: float = 0) -> None:
    pdf.set_font(font, size=size)
    for line in lines:
        pdf.cell(width, 7, line, new_x="LMARGIN", new_y="NEXT")


def english_pdf(path: Path, *, title: str = "UDHR overview", password: str | None = None) -> Path:
    """Three pages of hard-wrapped English with hyphenated line breaks (optionally encrypted)."""
    pdf = _pdf()
    pdf.set_title(title)
    for lines in ENGLISH_PAGES:
        pdf.add_page()
        _lines(pdf, lines)
    if password is not None:
        pdf.set_encryption(owner_password="owner-" + password, user_password=password, encryption_method="RC4")
    pdf.output(str(path))
    return path


def multilingual_pdf(path: Path) -> Path:
    """Page 1 Japanese, page 2 Chinese, page 3 Arabic (right-to-left, unshaped: no uharfbuzz)."""
    pdf = _pdf()
    for font, text, align in (("NotoSansSC", JAPANESE_TEXT, "L"), ("NotoSansSC", CHINESE_TEXT, "L"),
                              ("NotoSansArabic", ARABIC_TEXT, "R")):
        pdf.add_page()
        pdf.set_font(font, size=12)
        pdf.multi_cell(0, 8, text, align=align)
    pdf.output(str(path))
    return path


def long_pdf(path: Path, pages: list[str | None]) -> Path:
    """One page per given text (Latin font), wrapped by fpdf2; None makes an image-only page."""
    pdf = _pdf()
    for text in pages:
        pdf.add_page()
        if text is None:
            pdf.image(_png(), x=20, y=20, w=160)
            continue
        pdf.set_font("NotoSans", size=10)
        pdf.multi_cell(0, 5, text)
    pdf.output(str(path))
    return path


def _png(shift: int = 0) -> io.BytesIO:
    from PIL import Image, ImageDraw

    img = Image.new("L", (400, 200), 255)
    ImageDraw.Draw(img).rectangle((20 + shift, 20, 380, 60), fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    return buf


def scanned_pdf(path: Path) -> Path:
    """Two pages that carry only an image (what a scanner makes): no text layer."""
    pdf = _pdf()
    for n in range(2):
        pdf.add_page()
        pdf.image(_png(10 * n), x=20, y=20, w=160)
    pdf.output(str(path))
    return path


def truncated_pdf(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def binary_file(path: Path, size: int = 4096) -> Path:
    """Compressed (high-entropy) bytes, as a binary renamed to .pdf would be."""
    path.write_bytes(zlib.compress(os.urandom(size)))
    return path


def docx_file(path: Path, paragraphs: list[str], *, title: str | None = None, table: list[list[str]] | None = None) -> Path:
    import docx

    d = docx.Document()
    if title:
        d.core_properties.title = title
        d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    if table:
        t = d.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                t.cell(r, c).text = cell
    d.save(str(path))
    return path


NOISY_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Rights &amp; Freedoms</title>
<style>body { color: red; }</style><script>var tracking = "SCRIPT-NOISE";</script></head>
<body>
<header><div class="logo">HEADER-NOISE</div></header>
<nav><ul><li><a href="/">NAV-NOISE Home</a></li><li>About</li></ul></nav>
<main>
<h1>Article 1</h1>
<p>All human beings are born
free and equal in dignity and rights.</p>
<p>They are endowed with reason and conscience.<br>They should act in a spirit of brotherhood.</p>
<h2>Article 2</h2>
<ul><li>Everyone is entitled to all the rights and freedoms.</li><li>No distinction of any kind.</li></ul>
</main>
<aside>ASIDE-NOISE related links</aside>
<footer>FOOTER-NOISE copyright</footer>
<script>console.log("SCRIPT-NOISE-2")</script>
</body></html>
"""
HTML_NOISE = ["SCRIPT-NOISE", "HEADER-NOISE", "NAV-NOISE", "ASIDE-NOISE", "FOOTER-NOISE", "color: red"]


# ---- encrypted, scanned and paginated PDFs (issue 14) ------------------------------------------------------
def encrypted_copy(src: Path, dst: Path, *, user_password: str = "", algorithm: str = "AES-128") -> Path:
    """``src`` encrypted by pypdf: 'RC4-40', 'RC4-128', 'AES-128', 'AES-256'. An empty user password is the usual
    "no copy / no print" restriction: every viewer opens it without asking."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(src))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    with open(dst, "wb") as f:
        writer.write(f)
    return dst


def render_pages(src: Path, dpi: int = 200) -> list:
    """Each page of ``src`` as a greyscale PIL image, as a scanner would see it."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(src))
    try:
        return [doc[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for i in range(len(doc))]
    finally:
        doc.close()


def scanned_copy(src: Path, dst: Path, *, dpi: int = 200, blank_pages: int = 0) -> Path:
    """``src`` printed and scanned: each page rendered to an image and wrapped back into an image-only PDF
    (Pillow's PDF writer), with ``blank_pages`` white pages appended (a blank scan)."""
    from PIL import Image

    images = render_pages(src, dpi)
    images += [Image.new("L", images[0].size, 255) for _ in range(blank_pages)]
    images[0].save(dst, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return dst


def text_pdf(path: Path, paragraphs: list[str], *, font: str = "NotoSans", size: int = 16) -> Path:
    """One page per paragraph, large type (what a clean scan of a printed page reads like)."""
    pdf = _pdf()
    for text in paragraphs:
        pdf.add_page()
        pdf.set_font(font, size=size)
        pdf.multi_cell(0, size * 0.6, text)
    pdf.output(str(path))
    return path


def book_pdf(path: Path, pages: list[str], *, title: str = "The Universal Declaration: A Study Guide") -> Path:
    """A book layout: the book's title on even pages and the chapter's on odd ones (a running header), and
    "N / total" at the foot of every page (a running footer)."""
    from fpdf import FPDF

    class Book(FPDF):
        def header(self):
            self.set_font("NotoSans", size=9)
            chapter = f"Chapter {1 + (self.page_no() - 1) // 4}. Rights and freedoms"
            self.cell(0, 6, title if self.page_no() % 2 == 0 else chapter, new_x="LMARGIN", new_y="NEXT")
            self.ln(4)

        def footer(self):
            self.set_y(-15)
            self.set_font("NotoSans", size=9)
            self.cell(0, 6, f"{self.page_no()} / {{nb}}", align="C")

    pdf = Book(format="A4")
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 20, 20)
    pdf.add_font("NotoSans", fname=str(LATIN_FONT))
    for text in pages:
        pdf.add_page()
        pdf.set_font("NotoSans", size=11)
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path
