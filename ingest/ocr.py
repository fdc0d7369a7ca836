"""OCR with Tesseract 5 (Debian's ``tesseract-ocr`` and its ``tesseract-ocr-<lang>`` data packs).

The ``tesseract`` program is run as a subprocess, one per page, several at a time: each page gets its own time
cap (a page that hangs is killed and reported, the rest go on), and nothing of Tesseract runs in this process.
Which language packs read a page: Tesseract's own script detection (OSD, ``--psm 0``) names the script, and the
script's packs that are installed are used (Latin: a few common languages at once); when the language identifier
then recognises a language whose pack is installed but was not used, the page is read again with it. A
configured list (``ocr_languages="eng+swa"``) skips all of that.

A user adds a language by installing its pack (``apt-get install tesseract-ocr-<code>``, e.g. ``-swa``): the
script table below picks it up for its script; a language outside the table is read with an explicit list.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, Sequence

from lusifer_rag.errors import IngestError

INSTALL_HINT = ("install Tesseract 5 and the language packs you need, e.g. `apt-get install tesseract-ocr "
                "tesseract-ocr-osd tesseract-ocr-fra` (scripts/setup.sh does it)")
#: script (as OSD names it) -> packs to read it with, most common first; only installed ones are used
SCRIPT_PACKS: dict[str, tuple[str, ...]] = {
    "Latin": ("eng",),  # other Latin-script languages: the second reading (each pack costs ~40% more time)
    "Cyrillic": ("rus", "ukr", "bul", "srp"),
    "Arabic": ("ara", "fas", "urd"),
    "Hebrew": ("heb",),
    "Devanagari": ("hin", "mar", "nep"),
    "Bengali": ("ben",),
    "Tamil": ("tam",),
    "Telugu": ("tel",),
    "Kannada": ("kan",),
    "Malayalam": ("mal",),
    "Gujarati": ("guj",),
    "Gurmukhi": ("pan",),
    "Thai": ("tha",),
    "Korean": ("kor",),
    "Hangul": ("kor",),
    "Han": ("chi_sim", "chi_tra", "jpn"),
    "HanS": ("chi_sim",),
    "HanT": ("chi_tra",),
    "Japanese": ("jpn",),
    "Katakana": ("jpn",),
    "Hiragana": ("jpn",),
    "Greek": ("ell",),
    "Ethiopic": ("amh",),
    "Georgian": ("kat",),
    "Armenian": ("hye",),
    "Khmer": ("khm",),
    "Lao": ("lao",),
    "Myanmar": ("mya",),
    "Sinhala": ("sin",),
}
#: ISO 639-1 (the language identifier's codes) -> Tesseract pack, for the second reading
LANGUAGE_PACKS: dict[str, str] = {
    "en": "eng", "fr": "fra", "de": "deu", "es": "spa", "pt": "por", "it": "ita", "nl": "nld", "sv": "swe",
    "da": "dan", "no": "nor", "nb": "nor", "fi": "fin", "pl": "pol", "cs": "ces", "sk": "slk", "hu": "hun",
    "ro": "ron", "tr": "tur", "vi": "vie", "id": "ind", "ms": "msa", "sw": "swa", "tl": "tgl", "ca": "cat",
    "hr": "hrv", "sl": "slv", "et": "est", "lv": "lav", "lt": "lit", "is": "isl", "ga": "gle", "cy": "cym",
    "eu": "eus", "gl": "glg", "af": "afr", "yo": "yor", "ha": "hau", "zu": "zul", "xh": "xho", "so": "som",
    "ru": "rus", "uk": "ukr", "bg": "bul", "sr": "srp", "mk": "mkd", "be": "bel", "kk": "kaz",
    "ar": "ara", "fa": "fas", "ur": "urd", "he": "heb", "hi": "hin", "mr": "mar", "ne": "nep", "bn": "ben",
    "ta": "tam", "te": "tel", "kn": "kan", "ml": "mal", "gu": "guj", "pa": "pan", "th": "tha", "ko": "kor",
    "zh": "chi_sim", "ja": "jpn", "el": "ell", "am": "amh", "ka": "kat", "hy": "hye", "km": "khm", "lo": "lao",
    "my": "mya", "si": "sin",
}
_OSD_SCRIPT = re.compile(r"^Script:\s*(\S+)", re.M)
_OSD_ROTATE = re.compile(r"^Rotate:\s*(\d+)", re.M)
_LETTERS = re.compile(r"\w", re.UNICODE)


class OcrUnavailable(IngestError):
    """Tesseract (or the language packs asked for) is not installed."""


@dataclass(frozen=True)
class OcrResult:
    text: str
    languages: str  # the packs the text was read with, "" when it was not read
    error: str = ""  # why the page has no text: "timed out after 120 s", "tesseract failed: …"


@lru_cache(maxsize=1)
def installed_packs() -> frozenset[str]:
    """Tesseract's installed language packs ('osd' included); empty when Tesseract is not installed."""
    exe = shutil.which("tesseract")
    if exe is None:
        return frozenset()
    out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60)
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def require_tesseract(languages: str = "auto") -> None:
    packs = installed_packs()
    if not packs:
        raise OcrUnavailable(f"Tesseract is not installed: {INSTALL_HINT}")
    if languages != "auto":
        missing = [p for p in languages.split("+") if p not in packs]
        if missing:
            raise OcrUnavailable(f"Tesseract language packs {missing} are not installed (installed: "
                                 f"{sorted(packs - {'osd'})}); apt-get install "
                                 + " ".join(f"tesseract-ocr-{m.replace('_', '-')}" for m in missing))


class Tesseract:
    """Reads page images with the ``tesseract`` program. ``languages``: 'auto' (script detection) or 'eng+fra'."""

    def __init__(self, languages: str = "auto", timeout: float = 120.0, threads_per_page: int = 1):
        require_tesseract(languages)
        self.languages, self.timeout = languages, timeout
        self.packs = installed_packs()
        #: script -> the packs a second reading chose on an earlier page: the document's later pages start there
        self.learned: dict[str, str] = {}
        # one OpenMP thread per page: pages run side by side, and Tesseract's own threads would oversubscribe
        self.env = {**os.environ, "OMP_THREAD_LIMIT": str(threads_per_page)}

    def _run(self, args: list[str], budget: float) -> str:
        out = subprocess.run(["tesseract", *args], capture_output=True, text=True, timeout=budget, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
        return out.stdout

    def script(self, image: str, budget: float) -> tuple[str | None, int]:
        """(script, degrees to rotate) from OSD; (None, 0) when it cannot tell (too little text, no osd pack)."""
        if "osd" not in self.packs:
            return None, 0
        try:
            out = self._run([image, "stdout", "--psm", "0"], budget)
        except (RuntimeError, subprocess.TimeoutExpired):
            return None, 0
        script, rotate = _OSD_SCRIPT.search(out), _OSD_ROTATE.search(out)
        return (script.group(1) if script else None), (int(rotate.group(1)) if rotate else 0)

    def packs_for(self, script: str | None) -> list[str]:
        wanted = SCRIPT_PACKS.get(script or "", ()) or SCRIPT_PACKS["Latin"]
        have = [p for p in wanted if p in self.packs]
        return have or sorted(self.packs - {"osd"})[:1]

    def read(self, image: str) -> OcrResult:
        """OCR one page image file (PNG); never raises for a bad page: the error is in the result."""
        import time

        deadline = time.monotonic() + self.timeout

        def left() -> float:  # the page's time cap covers all of its Tesseract runs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired("tesseract", self.timeout)
            return remaining

        try:
            if self.languages != "auto":
                langs = self.languages
                text = self._run([image, "stdout", "-l", langs], left())
                return OcrResult(text, langs)
            script, rotate = self.script(image, left())
            if rotate:
                image = _rotated(image, rotate)
            langs = self.learned.get(script or "") or "+".join(self.packs_for(script))
            text = self._run([image, "stdout", "-l", langs], left())
            better = self._second_reading(text, langs)
            if better:
                text, langs = self._run([image, "stdout", "-l", better], left()), better
                self.learned[script or ""] = better
            return OcrResult(text, langs)
        except subprocess.TimeoutExpired:
            return OcrResult("", "", f"timed out after {self.timeout:g} s")
        except (RuntimeError, OSError) as e:
            return OcrResult("", "", f"tesseract failed: {e}")

    def _second_reading(self, text: str, used: str) -> str | None:
        """A pack the text's language calls for that the first reading did not use (Swahili read with the
        default Latin packs, say), with the first pack of the first reading as a companion."""
        if len(_LETTERS.findall(text)) < 40:
            return None
        from .langid import detect_language

        lang, conf = detect_language(text)
        pack = LANGUAGE_PACKS.get(lang)
        if conf < 0.5 or pack is None or pack not in self.packs or pack in used.split("+"):
            return None
        return f"{pack}+{used.split('+')[0]}"


def _rotated(image: str, degrees: int) -> str:
    from PIL import Image

    out = image[:-4] + f"-r{degrees}.png"
    with Image.open(image) as im:
        im.rotate(-degrees, expand=True).save(out)  # OSD's "Rotate: 90" means turn 90° clockwise
    return out


class PageOcr:
    """OCR of a document's pages in parallel: ``submit(page_no, render)`` writes the page image (``render()`` must
    return a PIL image; it runs in the caller's thread, so a non-thread-safe renderer is fine) and queues it;
    ``results()`` yields ``(page_no, OcrResult)`` in page order. At most ``2 × workers`` images wait on disk."""

    def __init__(self, engine: Tesseract, workers: int | None = None, on_done: Callable[[], None] | None = None):
        self.engine, self.on_done = engine, on_done
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self._dir = tempfile.TemporaryDirectory(prefix="lusifer-ocr-")
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lusifer-ocr")
        self._futures: list = []
        self._slots = threading.Semaphore(2 * self.workers)

    def submit(self, page_no: int, render: Callable[[], object]) -> None:
        self._slots.acquire()
        path = os.path.join(self._dir.name, f"p{page_no:06d}.png")
        try:
            render().save(path)
        except Exception:
            self._slots.release()
            raise
        self._futures.append((page_no, self._pool.submit(self._read, path)))

    def _read(self, path: str) -> OcrResult:
        try:
            return self.engine.read(path)
        finally:
            for p in (path, *(path[:-4] + f"-r{d}.png" for d in (90, 180, 270))):
                if os.path.exists(p):
                    os.unlink(p)
            self._slots.release()
            if self.on_done:
                self.on_done()

    def results(self) -> Iterator[tuple[int, OcrResult]]:
        for page_no, fut in self._futures:
            yield page_no, fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._dir.cleanup()

    def __enter__(self) -> "PageOcr":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ocr_images(engine: Tesseract, renders: Sequence[Callable[[], object]], workers: int | None = None,
               on_done: Callable[[], None] | None = None) -> list[OcrResult]:
    """OCR several page images (callables returning PIL images), in order."""
    with PageOcr(engine, workers, on_done) as ocr:
        for i, render in enumerate(renders, 1):
            ocr.submit(i, render)
        return [result for _, result in ocr.results()]


def letters(text: str) -> int:
    return len(_LETTERS.findall(text))


__all__: Iterable[str] = ("Tesseract", "PageOcr", "OcrResult", "OcrUnavailable", "installed_packs", "letters",
                          "ocr_images", "require_tesseract")
