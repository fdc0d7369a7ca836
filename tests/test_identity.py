"""Document identity: same-named uploads never collide, the same bytes are one document, originals live and die
with their document. Real e5-small, real embedded store, the real app service."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_fixtures import app_settings
from lusifer_rag.app.access import LOCAL
from lusifer_rag.errors import RagError
from lusifer_rag.ingest.identity import assign_sources, numbered, upload_name

ALPHA = ("The observatory on the northern ridge records meteor showers every August; volunteers count the streaks "
         "by hand and send the tallies to the regional astronomy club.")
BETA = ("Our bakery opens at six. The sourdough rests for eighteen hours before baking, and rye loaves are only "
        "sold on Saturdays at the market stall by the river.")
GAMMA = ("Die Bibliothek verleiht Brettspiele für drei Wochen; wer ein Spiel beschädigt, ersetzt die fehlenden Teile "
         "oder zahlt eine kleine Gebühr an der Ausleihtheke.")


def test_upload_names_are_cleaned():
    assert upload_name("../../etc/passwd") == "etc/passwd"
    assert upload_name("C:\\Users\\ann\\report.txt") == "Users/ann/report.txt"
    assert upload_name("/abs/./a//b.txt") == "abs/a/b.txt"
    assert upload_name("bad\x00name\n.txt") == "badname.txt"
    assert upload_name("") == upload_name("..") == "upload"


def test_sources_are_unique_within_an_upload_and_replace_or_keep_outside_it():
    assert numbered("report.txt", 2) == "report (2).txt" and numbered("a/b.tar.gz", 3) == "a/b.tar (3).gz"
    assert numbered("README", 2) == "README (2)"
    assert assign_sources(["report.txt", "report.txt", "x/report.txt"], []) == [
        "report.txt", "report (2).txt", "x/report.txt"]
    assert assign_sources(["report.txt"], ["report.txt"], "replace") == ["report.txt"]
    assert assign_sources(["report.txt", "report.txt"], ["report.txt", "report (2).txt"], "keep") == [
        "report (3).txt", "report (4).txt"]
    with pytest.raises(RagError, match="on_conflict 'merge' is not valid; allowed: replace, keep"):
        assign_sources(["a"], [], "merge")


@pytest.fixture()
def service(tmp_path, e5):
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.runtime import open_store_from

    settings = app_settings(tmp_path, collection="ident")
    with open_store_from(settings) as store:
        yield RagService(settings, store, embedder=e5, options=AppOptions(ingest_workers=0))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _top_source(service, query: str) -> str:
    return service.search(query, k=1, highlight=False, principal=LOCAL)[0].chunk.source


def test_same_named_files_of_one_upload_are_both_found(service, tmp_path):
    a = _write(tmp_path / "a" / "report.txt", ALPHA)
    b = _write(tmp_path / "b" / "report.txt", BETA)
    report = service.ingest([("report.txt", a), ("report.txt", b)], principal=LOCAL)
    assert sorted(r.source for r in report.by_status("ingested")) == ["report (2).txt", "report.txt"]
    docs = {d["source"]: d for d in service.documents(principal=LOCAL)}
    assert set(docs) == {"report.txt", "report (2).txt"} and len({d["doc_id"] for d in docs.values()}) == 2
    assert _top_source(service, "meteor showers counted by volunteers") == "report.txt"
    assert _top_source(service, "when are rye loaves sold") == "report (2).txt"
    # the originals are kept under the data dir, not left in the upload's temp place
    assert not a.exists() and not b.exists()
    kept = {d["source"]: service.uploads().original(d["doc_id"]) for d in docs.values()}
    assert kept["report.txt"].read_text(encoding="utf-8") == ALPHA
    assert kept["report (2).txt"].read_text(encoding="utf-8") == BETA
    assert Path(service.settings.data_dir) in kept["report.txt"].parents


def test_a_new_version_replaces_by_default_and_is_kept_beside_when_asked(service, tmp_path):
    service.ingest([("notes.txt", _write(tmp_path / "1" / "notes.txt", ALPHA))], principal=LOCAL)
    report = service.ingest([("notes.txt", _write(tmp_path / "2" / "notes.txt", BETA))], principal=LOCAL)
    assert [r.source for r in report.by_status("replaced")] == ["notes.txt"]
    (doc,) = service.documents(principal=LOCAL)
    assert service.uploads().original(doc["doc_id"]).read_text(encoding="utf-8") == BETA
    assert _top_source(service, "sourdough bakery") == "notes.txt"

    report = service.ingest([("notes.txt", _write(tmp_path / "3" / "notes.txt", GAMMA))], on_conflict="keep",
                            principal=LOCAL)
    assert [r.source for r in report.by_status("ingested")] == ["notes (2).txt"]
    assert {d["source"] for d in service.documents(principal=LOCAL)} == {"notes.txt", "notes (2).txt"}
    assert _top_source(service, "Brettspiele ausleihen") == "notes (2).txt"
    assert _top_source(service, "sourdough bakery") == "notes.txt"


def test_the_same_bytes_from_the_ui_and_the_cli_are_one_document(service, tmp_path):
    from lusifer_rag.ingest.pipeline import Ingestor

    original = _write(tmp_path / "cli" / "eau_fr.txt", GAMMA)
    upload = _write(tmp_path / "upload" / "eau_fr.txt", GAMMA)
    service.ingest([("eau_fr.txt", upload)], principal=LOCAL)
    ing = Ingestor(service.store, service.collection, service.embedder, workers=0, progress_mode="off")
    report = ing.ingest([original, tmp_path / "cli"])
    (dup,) = report.by_status("duplicate")
    assert dup.source == str(original.resolve()) and "eau_fr.txt" in dup.message and not report.by_status("ingested")
    assert [d["source"] for d in service.documents(principal=LOCAL)] == ["eau_fr.txt"]
    hits = service.search("Brettspiele", k=5, highlight=False, principal=LOCAL)
    assert len({h.chunk.text for h in hits}) == len(hits)  # no passage twice
    # two copies in one batch: one document
    copy = _write(tmp_path / "cli2" / "copy.txt", ALPHA)
    copy2 = _write(tmp_path / "cli2" / "sub" / "copy.txt", ALPHA)
    report = ing.ingest([tmp_path / "cli2"])
    assert len(report.by_status("ingested")) == 1 and len(report.by_status("duplicate")) == 1
    assert report.by_status("duplicate")[0].doc_id == report.by_status("ingested")[0].doc_id
    # pruning the indexed copy lets the other one in on the same run (prune runs first)
    indexed = Path(report.by_status("ingested")[0].source)
    indexed.unlink()
    report = ing.ingest([tmp_path / "cli2"], prune=True)
    assert [Path(r.source) for r in report.by_status("pruned")] == [indexed]
    assert [Path(r.source) for r in report.by_status("ingested")] == [({copy, copy2} - {indexed}).pop().resolve()]


def test_delete_several_removes_originals_and_keeps_counts_true(service, tmp_path):
    files = [(f"d{i}.txt", _write(tmp_path / f"d{i}.txt", text)) for i, text in enumerate((ALPHA, BETA, GAMMA))]
    service.ingest(files, principal=LOCAL)
    docs = service.documents(principal=LOCAL)
    gone = [d for d in docs if d["source"] in ("d0.txt", "d2.txt")]
    originals = [service.uploads().original(d["doc_id"]) for d in gone]
    out = service.delete([gone[0]["doc_id"], gone[1]["source"]], principal=LOCAL)
    assert sorted(d["source"] for d in out["deleted"]) == ["d0.txt", "d2.txt"]
    assert not any(p.exists() for p in originals)
    left = service.documents(principal=LOCAL)
    stats = service.stats(principal=LOCAL)
    assert [d["source"] for d in left] == ["d1.txt"] and stats["documents"] == 1
    assert stats["points"] == left[0]["chunks"] and all(n > 0 for n in stats["languages"].values())
    assert set(stats["languages"]) == {left[0]["language"]}
    with pytest.raises(RagError, match="no document 'nope'"):  # nothing deleted when one is unknown
        service.delete(["d1.txt", "nope"], principal=LOCAL)
    assert len(service.documents(principal=LOCAL)) == 1


def test_error_messages_name_the_file_not_the_server_path(service, tmp_path):
    bad = tmp_path / "upload-tmp-xyz" / "holiday_photo.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (failed,) = service.ingest([("holiday_photo.png", bad)], principal=LOCAL).by_status("failed")
    assert failed.message.startswith("holiday_photo.png")
    assert str(tmp_path) not in failed.message and "staging" not in failed.message
