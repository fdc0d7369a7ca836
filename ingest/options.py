"""Options of the loaders (PDF backend, passwords, OCR), from the settings; part of a document's state."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

OCR_MODES = ("auto", "off", "force")
EXTRACTION_VERSION = 2  # 1: pypdf only; 2: PDF backends, running headers and footers out, OCR


@dataclass
class LoadOptions:
    """What loaders may be told: PDF backend and passwords, OCR. Picklable: worker processes get a copy."""

    extractor: str = "pdfium"
    passwords: tuple[str, ...] = ()  # tried on every encrypted PDF, after the empty password
    password_map: dict[str, str] = field(default_factory=dict)  # glob on the path or file name -> password
    ocr: str = "auto"  # auto: pages without text; force: every page; off: never
    ocr_languages: str = "auto"
    ocr_timeout: float = 120.0  # seconds per page
    ocr_workers: int | None = None  # parallel Tesseract processes; None: one per core
    ocr_dpi: int = 300
    max_unpacked: int = 64 << 20  # bytes an archive (a .docx) may unpack, counted as they are unpacked

    def __post_init__(self) -> None:
        from lusifer_rag.errors import ConfigError

        from .pdf import EXTRACTORS

        if self.extractor not in EXTRACTORS:
            raise ConfigError(f"pdf_extractor {self.extractor!r} is not known; allowed: {sorted(EXTRACTORS)}")
        if self.ocr not in OCR_MODES:
            raise ConfigError(f"ocr {self.ocr!r} is not valid; allowed: {OCR_MODES}")
        if not 72 <= int(self.ocr_dpi) <= 1200:
            raise ConfigError(f"ocr_dpi must be between 72 and 1200, got {self.ocr_dpi}")
        if self.ocr_timeout <= 0:
            raise ConfigError(f"ocr_page_timeout must be positive seconds, got {self.ocr_timeout}")
        if self.ocr_languages != "auto" and not all(part.strip() for part in self.ocr_languages.split("+")):
            raise ConfigError(f"ocr_languages must be 'auto' or Tesseract packs joined by '+' (eng+fra), "
                              f"got {self.ocr_languages!r}")
        self.passwords = tuple(self.passwords)

    def passwords_for(self, source: str) -> list[str]:
        name = os.path.basename(source)
        mapped = [pw for pattern, pw in self.password_map.items()
                  if fnmatch.fnmatch(source, pattern) or fnmatch.fnmatch(name, pattern)]
        return list(dict.fromkeys(["", *mapped, *self.passwords]))

    def state_key(self) -> str:
        """What changes the text read out of a PDF or an image (part of a document's state)."""
        return f"pdf:{self.extractor}:{EXTRACTION_VERSION}:ocr={self.ocr}:{self.ocr_languages}:{self.ocr_dpi}"

    @classmethod
    def from_settings(cls, settings) -> "LoadOptions":
        passwords = (settings.pdf_password,) if settings.pdf_password else ()
        mapping = {}
        if settings.pdf_passwords_file:
            mapping = load_password_map(settings.pdf_passwords_file)
        return cls(extractor=settings.pdf_extractor, passwords=passwords, password_map=mapping, ocr=settings.ocr,
                   ocr_languages=settings.ocr_languages, ocr_timeout=settings.ocr_page_timeout,
                   ocr_workers=settings.ocr_workers, ocr_dpi=settings.ocr_dpi,
                   max_unpacked=int(settings.ingest_max_unpacked_mb * (1 << 20)))


def load_password_map(path: str | os.PathLike) -> dict[str, str]:
    """A JSON object ``{"glob on path or file name": "password"}``."""
    from lusifer_rag.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"pdf_passwords_file {path}: cannot read it as JSON ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"pdf_passwords_file {path}: must be a JSON object of glob -> password strings")
    return data
