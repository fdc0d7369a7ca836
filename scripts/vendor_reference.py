"""Vendor a small parallel reference text into ``rag/data/reference_parallel.json.gz``.

The text is Django's user-interface messages (translation catalogs ``django.po`` / ``djangojs.po`` of the PyPI
package ``django``, BSD-3-Clause): the same English message translated into ~90 languages, so the mean difference
between a language's translations and the English originals is that language's direction in an embedder's space,
with no topic in it (:mod:`lusifer_rag.rag.reference_offsets`). Regenerate with::

    pip download --no-deps "django==5.2.*" -d /tmp/dj
    .venv/bin/python scripts/vendor_reference.py /tmp/dj/django-5.2.*.whl
    .venv/bin/python scripts/vendor_reference.py --shifts e5-small     # the default embedder's shifts, ahead

``--shifts EMBEDDER`` embeds the reference with that embedder (every language; a few minutes on CPU) and writes
``rag/data/language_shifts/<fingerprint>-<reference digest>.npz``, read when the cache dir has none: the default
embedder then never embeds the reference at search time.

Messages that bench/xling_data.py's ``django`` set can hold in its **test** split (>= 4 words, no placeholder or
markup, test by the hash of the message) are left out, so a reference made from this file never holds a test item
of any benchmark. Placeholders (``%(name)s``, ``{name}``, ``%s``) and markup are removed; a message needs >= 3 words
left. A language needs >= 20 translated messages; regional variants are skipped (``pt_BR`` is ``pt``, ``zh_Hans``
is ``zh``).

Format: ``{"source", "licence", "en": [message, ...], "languages": {code: [translation or null, ...]}}``, the lists
aligned with ``en``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from xling_data import po_entries, split_of  # noqa: E402  (the bench's own catalog reader and split rule)

OUT = Path(__file__).resolve().parents[1] / "rag" / "data" / "reference_parallel.json.gz"
#: Django locale -> our language code (ISO 639-1 as ingest/langid.py labels); locales not here keep their name
LOCALES = {"zh_Hans": "zh", "pt_BR": "pt"}
SKIP = {"ar_DZ", "en_AU", "en_GB", "es_AR", "es_CO", "es_MX", "es_VE", "sr_Latn", "zh_Hant", "pt", "en"}
MIN_WORDS = 3
MIN_MESSAGES = 20
_PLACEHOLDER = re.compile(r"%\(\w+\)[sdifr]|%[sdifr]|\{[^}]*\}|<[^>]+>")


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", _PLACEHOLDER.sub(" ", text)).strip()


def in_a_test_split(msgid: str) -> bool:
    """Whether bench/xling_data.py's django set could hold this message in its test split (same rules, same hash)."""
    if len(msgid.split()) < 4 or "%" in msgid or "{" in msgid or "<" in msgid:
        return False
    return split_of(f"m{hashlib.sha1(msgid.encode()).hexdigest()[:10]}") == "test"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wheel", type=Path, nargs="?", help="a django wheel (pip download --no-deps django)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--shifts", metavar="EMBEDDER", help="write this embedder's shifts for every language instead")
    args = ap.parse_args(argv)
    if args.shifts:
        return write_shifts(args.shifts)
    if args.wheel is None:
        ap.error("give a django wheel, or --shifts EMBEDDER")
    z = zipfile.ZipFile(args.wheel)
    catalogs = [n for n in z.namelist() if re.search(r"/locale/[^/]+/LC_MESSAGES/django(js)?\.po$", n)]
    per_locale: dict[str, dict[str, str]] = {}
    for n in catalogs:
        loc = n.split("/locale/")[1].split("/")[0]
        per_locale.setdefault(loc, {}).update(po_entries(z.read(n).decode("utf-8")))
    msgids = sorted({m for e in per_locale.values() for m in e
                     if not in_a_test_split(m) and len(clean(m).split()) >= MIN_WORDS})
    languages = {}
    for loc, entries in sorted(per_locale.items()):
        if loc in SKIP:
            continue
        row = [clean(entries[m]) if entries.get(m, "").strip() and clean(entries[m]) else None for m in msgids]
        if sum(t is not None for t in row) >= MIN_MESSAGES:
            languages[LOCALES.get(loc, loc)] = row
    record = {"source": f"Django {args.wheel.name.split('-')[1]} translation catalogs (django.po, djangojs.po)",
              "licence": "BSD-3-Clause, (c) Django Software Foundation and individual contributors",
              "en": [clean(m) for m in msgids], "languages": languages}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    args.out.write_bytes(gzip.compress(data, mtime=0))
    print(f"{len(msgids)} messages, {len(languages)} languages, {args.out.stat().st_size} bytes: "
          + " ".join(f"{k}:{sum(t is not None for t in v)}" for k, v in languages.items()))
    return 0


def write_shifts(spec: str) -> int:
    import tempfile

    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.rag.reference_offsets import SHIPPED, ReferenceShifts

    emb = load_embedder(spec, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        shifts = ReferenceShifts(emb, cache_dir=tmp)
        shifts.shifts, shifts._english_mean = {}, None  # not the shipped ones: computed afresh
        shifts.get(shifts.languages())
        shifts.save(SHIPPED / shifts.name)
    print(f"{len(shifts.shifts)} languages -> {SHIPPED / shifts.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
