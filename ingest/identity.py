"""Document identity for uploads: names that never collide, and where an upload's original is kept.

A document is its ``source`` within a collection: the CLI's absolute path, or for an upload the path relative to
what was uploaded (``reports/q3.pdf``), cleaned of anything that could name a place outside it. Two files of one
upload never share a name (``report (2).txt``), and an upload whose name a document already has replaces it only
when asked (the default: a new version of the same path); otherwise it is kept beside it under a new name. The
same bytes under another name are one document (the pipeline reports ``duplicate``).

Originals of uploads are kept under ``<data dir>/uploads/<collection>/<doc id>/`` and removed with their document.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Sequence

from lusifer_rag.errors import RagError

#: what happens when an upload has the name of a document already in the collection
ON_CONFLICT = ("replace", "keep")
MAX_NAME_CHARS = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def upload_name(name: str) -> str:
    """A client-given file name or relative path as a document source: '/'-separated, NFC, no drive, root, '.',
    '..' or control characters; 'upload' when nothing is left."""
    text = unicodedata.normalize("NFC", _CONTROL.sub("", str(name or ""))).replace("\\", "/")
    text = re.sub(r"^[A-Za-z]:", "", text)  # C:\\Users\\...
    parts = [p.strip() for p in text.split("/") if p.strip() not in ("", ".", "..")]
    out = "/".join(parts)[-MAX_NAME_CHARS:].lstrip("/")
    return out or "upload"


def numbered(name: str, n: int) -> str:
    """``report.txt`` → ``report (2).txt`` (n ≥ 2); the suffix goes before the last extension."""
    p = PurePosixPath(name)
    stem, ext = (p.stem, p.suffix) if p.stem else (p.name, "")
    return str(p.with_name(f"{stem} ({n}){ext}"))


def assign_sources(names: Sequence[str], existing: Iterable[str], on_conflict: str = "replace") -> list[str]:
    """A unique source for each upload name, in order. Names repeated within the upload get numbered; a name a
    document of the collection already has is kept (that document is replaced) with ``on_conflict="replace"``,
    numbered with ``"keep"``."""
    if on_conflict not in ON_CONFLICT:
        raise RagError(f"on_conflict {on_conflict!r} is not valid; allowed: {', '.join(ON_CONFLICT)}")
    existing = set(existing)
    taken: set[str] = set()  # sources given in this upload
    out = []
    for raw in names:
        name = upload_name(raw)
        busy = taken | (existing if on_conflict == "keep" else set())
        candidate, n = name, 1
        while candidate in busy:
            n += 1
            candidate = numbered(name, n)
        taken.add(candidate)
        out.append(candidate)
    return out


MAX_PATH_CHARS = 4096


def path_sources(names: Sequence[str]) -> list[str]:
    """The names of a command-line ingest sent through a server (``lusifer-rag ingest`` while ``serve`` runs):
    the files' absolute paths on the client, kept as the sources exactly as an ingest in this process names them,
    so that the same file is the same document whichever way it came. Each must be absolute, without '.' or '..'
    parts or control characters; they only name documents (nothing on the server is read at them)."""
    out = []
    for raw in names:
        text = str(raw or "")
        parts = re.split(r"[\\/]", text)
        absolute = PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()
        if (not absolute or len(text) > MAX_PATH_CHARS or _CONTROL.search(text)
                or any(part in (".", "..") for part in parts)):
            raise RagError(f"{text[:100]!r} is not a file's absolute path; with paths_as_sources every name must "
                           "be one (as `lusifer-rag ingest` names documents: no '.' or '..' parts, no control "
                           f"characters, at most {MAX_PATH_CHARS} characters)")
        out.append(text)
    return out


class Uploads:
    """Originals of uploaded documents, under ``root/<collection>/<doc id>/<file name>``."""

    def __init__(self, root: str | Path, collection: str):
        self.root = Path(root)
        self.dir = self.root / collection
        self.staging = self.root / ".staging"

    def stage(self, path: str | Path, index: int, token: str) -> Path:
        """Move an uploaded temp file into this data dir (out of the web server's file cache, where every signed-in
        user could fetch it) for the ingest; returns where it now is."""
        dest = self.staging / token / str(index)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            shutil.move(str(path), dest)
        except OSError:  # a read-only source (tests, a mounted dir): copy instead
            shutil.copyfile(path, dest)
        return dest

    def keep(self, staged: Path, doc_id: str, source: str) -> Path:
        """The original of document ``doc_id`` becomes ``staged`` (replacing an older version)."""
        target_dir = self.dir / doc_id
        if target_dir.exists():
            shutil.rmtree(target_dir)
        target_dir.mkdir(parents=True, mode=0o700)
        target = target_dir / (PurePosixPath(source).name or "original")
        shutil.move(str(staged), target)
        return target

    def original(self, doc_id: str) -> Path | None:
        """The kept original of a document, or None (ingested by the CLI, or before originals were kept)."""
        if not re.fullmatch(r"[0-9a-f-]{36}", doc_id or ""):
            return None
        d = self.dir / doc_id
        files = sorted(d.iterdir()) if d.is_dir() else []
        return files[0] if files else None

    def remove(self, doc_id: str) -> None:
        if re.fullmatch(r"[0-9a-f-]{36}", doc_id or ""):
            shutil.rmtree(self.dir / doc_id, ignore_errors=True)

    def clear_staging(self, token: str) -> None:
        shutil.rmtree(self.staging / token, ignore_errors=True)
