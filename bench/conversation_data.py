"""The documents of bench/conversation.py: the app's sample corpus and real PDF manuals from Debian's documentation
packages, fetched with ``apt-get download`` into the cache (bench/xling_data.py) and ingested by the app's own path
(a Workspace: the sample corpus into ``sample``, the manuals into ``manuals``) into an embedded store in the cache
dir; a rerun finds them ingested and embeds nothing.

Manuals (each a PDF as the package ships it, gunzipped where it is compressed):

- ``debian-faq``: the Debian FAQ, English (GPL-2+), ``debian-faq.en.pdf``.
- ``maint-guide-fr`` / ``maint-guide-de``: the Debian New Maintainers' Guide in French and German (GPL-2+),
  ``maint-guide.fr.pdf`` / ``maint-guide.de.pdf``.

The Debian Reference (``debian-reference-*``) is never used: it is the project's held-out evaluation.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xling_data as X  # noqa: E402

MANUALS = {  # package -> the PDF inside it
    "debian-faq": "usr/share/doc/debian/FAQ/debian-faq.en.pdf.gz",
    "maint-guide-fr": "usr/share/doc/maint-guide-fr/maint-guide.fr.pdf",
    "maint-guide-de": "usr/share/doc/maint-guide-de/maint-guide.de.pdf",
}
MANUALS_COLLECTION = "manuals"
#: bumped when ingestion changes what it stores (chunking, language labels), so that a rerun builds a fresh store
#: instead of measuring on one written by older code
STORE_VERSION = 1


def cache_root() -> Path:
    return X.cache_root().parent / "bench-conversation"


def manual_pdfs() -> list[Path]:
    """The manuals' PDFs, unpacked (and gunzipped) into the cache."""
    out_dir = cache_root() / "pdfs"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for package, inner in MANUALS.items():
        src = X.debian_package(package) / inner
        dst = out_dir / src.name.removesuffix(".gz")
        if not dst.is_file():
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as f, open(dst.with_suffix(".part"), "wb") as g:
                shutil.copyfileobj(f, g)
            dst.with_suffix(".part").rename(dst)
        out.append(dst)
    return out


def open_workspace(embedder):
    """(workspace, store): the app's Workspace over the bench's store, with the sample corpus and the manuals
    ingested (what is there already is skipped). The caller closes the store."""
    import tempfile

    from lusifer_rag.app.access import LOCAL
    from lusifer_rag.app.service import AppOptions
    from lusifer_rag.app.workspace import Workspace
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.settings import Settings

    root = cache_root()
    # env={}: a developer's LUSIFER_RAG_* (an LLM server, another store) must not change what is measured
    settings = Settings.from_env(env={}, store=str(root / f"store-v{STORE_VERSION}"),
                                 data_dir=root / f"app-v{STORE_VERSION}", collection="sample")
    store = open_store_from(settings)
    ws = Workspace(settings, store, embedder=embedder, options=AppOptions(ingest_workers=0))
    reports = [ws.ingest_sample(principal=LOCAL)]
    if MANUALS_COLLECTION not in ws.collection_names():
        ws.create_collection(MANUALS_COLLECTION, principal=LOCAL)
    with tempfile.TemporaryDirectory() as tmp:  # copies: ingest() moves what it is given
        copies = [(p.name, shutil.copyfile(p, Path(tmp) / p.name)) for p in manual_pdfs()]
        reports.append(ws.service(MANUALS_COLLECTION).ingest(copies, principal=LOCAL))
    for rep in reports:
        for failed in rep.by_status("failed"):
            raise SystemExit(f"ingest failed: {failed.source}: {failed.message}")
    return ws, store
