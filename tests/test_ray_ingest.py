"""Ray Data ingestion on a local Ray (2 CPUs, CPU actors): the same points and payloads as the single-machine
pipeline, re-run = no-op, resume after a partial write, replace on change; both a qdrant-client local-mode store
(the server's stand-in) and the embedded Qdrant Edge default, each written by the driver as the single writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import pdf_factory  # noqa: E402
from lusifer_rag.ingest.chunking import ChunkingParams  # noqa: E402
from lusifer_rag.ingest.pipeline import Ingestor, doc_id_for  # noqa: E402
from lusifer_rag.embedder.base import weightless  # noqa: E402
from lusifer_rag.ingest.ray_ingest import ingest_with_ray  # noqa: E402
from lusifer_rag.ingest.scale import ScaleSettings, is_deferred  # noqa: E402
from lusifer_rag.errors import ConfigError  # noqa: E402
from lusifer_rag.store import Filter, open_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHUNKING = ChunkingParams(max_tokens=96, overlap_tokens=12)
LANGS = ("en", "ja", "ar", "hi", "sw")


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, udhr):
    """UDHR articles 1-4 in five scripts as .txt, plus a 3-page English PDF."""
    root = tmp_path_factory.mktemp("ray-docs")
    for lang in LANGS:
        (root / f"udhr_{lang}.txt").write_text("\n\n".join(udhr(lang)[:4]), encoding="utf-8")
    pdf_factory.english_pdf(root / "overview.pdf")
    return root


def snapshot(store, collection: str) -> dict[str, tuple]:
    """id -> (payload without its timestamp, dense vector, sparse indices, sparse values)."""
    out = {}
    for p in store.iter_points(collection, with_vectors=True):
        md = {k: v for k, v in p.payload["metadata"].items() if k != "ingested_at"}
        out[p.id] = ({**p.payload, "metadata": md}, p.vector, p.sparse.indices, p.sparse.values)
    return out


def statuses(report) -> dict[str, str]:
    return {Path(r.source).name: r.status for r in report.results}


def assert_same_points(got: dict, want: dict) -> None:
    assert set(got) == set(want)  # same deterministic point ids
    for pid, (payload, dense, sp_i, sp_v) in want.items():
        g_payload, g_dense, g_i, g_v = got[pid]
        assert g_payload == payload
        # same model, different batch composition: padding changes float summation order only
        np.testing.assert_allclose(g_dense, dense, atol=1e-5)
        np.testing.assert_array_equal(g_i, sp_i)
        np.testing.assert_allclose(g_v, sp_v, rtol=1e-6)


def run_ray(corpus, location, emb, **kw):
    return ingest_with_ray([corpus], "c", location, emb, chunking=CHUNKING, workers=1, progress_mode="off", **kw)


@pytest.mark.parametrize("backend", ["qdrant-local", "edge"])
def test_ray_matches_single_machine_and_rerun_is_noop(local_ray, corpus, tmp_path, tiny_hf_embedder, backend):
    emb = tiny_hf_embedder
    loc = {"qdrant-local": lambda d: f"qdrant-local:{d}", "edge": str}[backend]
    with open_store(loc(tmp_path / "ref")) as ref:
        want_report = Ingestor(ref, "c", emb, CHUNKING, workers=1, progress_mode="off").ingest([corpus])
        want = snapshot(ref, "c")
        want_meta = ref.open_collection("c").meta
    assert want_report.exit_code == 0 and len(want) > len(LANGS) + 1  # several chunks per document

    r1 = run_ray(corpus, loc(tmp_path / "ray"), emb)
    assert r1.exit_code == 0, r1.to_json()
    assert statuses(r1) == statuses(want_report) and set(statuses(r1).values()) == {"ingested"}
    assert r1.embedded_chunks == want_report.embedded_chunks == len(want)
    assert r1.embedded_tokens == want_report.embedded_tokens
    assert {r.source: r.chunks for r in r1.results} == {r.source: r.chunks for r in want_report.results}
    with open_store(loc(tmp_path / "ray")) as s:
        assert_same_points(snapshot(s, "c"), want)
        assert s.open_collection("c").meta == want_meta  # same embedder fingerprint + chunking recorded
        assert not is_deferred(s.open_collection("c"))  # bulk-load deferral (if any) was restored
    # the JSON report has the single-machine layout
    assert set(r1.to_json()) == set(want_report.to_json())

    r2 = run_ray(corpus, loc(tmp_path / "ray"), emb)
    assert r2.embedded_chunks == 0 and set(statuses(r2).values()) == {"skipped"}
    with open_store(loc(tmp_path / "ray")) as s:
        assert s.count("c") == len(want)


@pytest.mark.slow
def test_resume_replace_prune_and_bad_files(local_ray, corpus, tmp_path, tiny_hf_embedder, udhr):
    """A killed job's leftovers (a half-written document, stale points of an older state) are finished by a rerun
    without duplicates; a changed file is replaced, a removed one pruned, a broken one reported."""
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(corpus, docs)
    loc = f"qdrant-local:{tmp_path / 'ray'}"
    # the first run through the CLI (the module's Ray is reused), with its JSON report
    from lusifer_rag.cli import main

    report = tmp_path / "report.json"
    rc = main(["ingest", str(docs), "--ray", "--store", loc, "--collection", "c", "--embedder", tiny_hf_embedder.spec,
               "--max-tokens", str(CHUNKING.max_tokens), "--overlap", str(CHUNKING.overlap_tokens), "--report", str(report)])
    first = json.loads(report.read_text(encoding="utf-8"))
    assert rc == 0 and len(first["ingested"]) == len(LANGS) + 1 and first["embedded_chunks"] > len(LANGS) + 1
    en = doc_id_for(str((docs / "udhr_en.txt").resolve()))
    ja = doc_id_for(str((docs / "udhr_ja.txt").resolve()))
    with open_store(loc) as s:
        before = snapshot(s, "c")
        n_ja = s.count("c", Filter(must={"metadata.doc_id": ja}))
        # as if killed mid-write: only chunk 0 of the Japanese document made it
        s.delete("c", Filter(must={"metadata.doc_id": ja}, must_not={"metadata.chunk_no": 0}))
    assert n_ja > 1

    (docs / "udhr_en.txt").write_text("\n\n".join(udhr("en")[4:8]), encoding="utf-8")  # changed
    (docs / "udhr_sw.txt").unlink()  # gone
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage that is no pdf")
    r2 = run_ray(docs, loc, tiny_hf_embedder, prune=True)
    st = statuses(r2)
    assert st["udhr_ja.txt"] == "ingested" and st["udhr_en.txt"] == "replaced" and st["udhr_sw.txt"] == "pruned"
    assert st["broken.pdf"] == "failed" and r2.exit_code == 1
    assert "broken.pdf" in r2.by_status("failed")[0].message
    assert {st[n] for n in ("udhr_ar.txt", "udhr_hi.txt", "overview.pdf")} == {"skipped"}
    with open_store(loc) as s:
        after = snapshot(s, "c")
        ja_ids = {pid for pid, v in after.items() if v[0]["metadata"]["doc_id"] == ja}
        assert ja_ids == {pid for pid, v in before.items() if v[0]["metadata"]["doc_id"] == ja}  # same ids, restored
        en_states = {v[0]["metadata"]["state"] for v in after.values() if v[0]["metadata"]["doc_id"] == en}
        assert len(en_states) == 1  # the old state was deleted after the new one was written
        counts = {}
        for v in after.values():
            md = v[0]["metadata"]
            counts.setdefault(md["doc_id"], []).append(md["chunk_no"])
        for chunk_nos in counts.values():  # every document complete, no duplicates
            assert sorted(chunk_nos) == list(range(len(chunk_nos)))


@pytest.mark.slow
def test_a_file_past_its_time_cap_fails_alone_on_ray(local_ray, tmp_path, tiny_hf_embedder, udhr):
    """Ray's parse actors keep the single-machine caps: a file that parses past ingest_file_timeout is stopped and
    reported by name (its worker replaced), the others are ingested."""
    import random

    from adversarial import WORDS
    from lusifer_rag.ingest.bounded_pool import FileLimits

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(udhr("en")[0], encoding="utf-8")
    (docs / "b-long.md").write_text(" ".join(random.Random(3).choices(WORDS, k=1_200_000)), encoding="utf-8")
    (docs / "c.txt").write_text(udhr("sw")[0], encoding="utf-8")
    report = run_ray(docs, f"qdrant-local:{tmp_path / 'ray'}", tiny_hf_embedder, limits=FileLimits(timeout=2))
    got = {Path(r.source).name: r for r in report.results}
    assert got["a.txt"].status == got["c.txt"].status == "ingested"
    assert got["b-long.md"].status == "failed" and got["b-long.md"].reason == "timeout"
    assert "b-long.md" in got["b-long.md"].message and "ingest_file_timeout" in got["b-long.md"].message


def test_weightless_view_chunks_like_the_model(tiny_hf_embedder):
    view = weightless(tiny_hf_embedder)
    assert view.replicas == () and view.fingerprint == tiny_hf_embedder.fingerprint
    texts = ["Habari ya asubuhi", "全ての人間は、生まれながらにして自由"]
    assert view.count_tokens(texts) == tiny_hf_embedder.count_tokens(texts)
    assert tiny_hf_embedder.replicas  # the original keeps its model


def test_scale_settings_validate_and_shape_the_collection():
    s = ScaleSettings(shards=6, replication_factor=2, on_disk=True, quantization="int8", hnsw_m=32)
    spec = s.creation_spec(384, {"embedder": "x"})
    assert (spec.hnsw_m, spec.shard_number, spec.replication_factor, spec.on_disk, spec.quantization) == (0, 6, 2, True, "int8")
    assert is_deferred(spec) and not is_deferred(s.indexed_spec(spec)) and s.indexed_spec(spec).hnsw_m == 32
    assert s.writer_count(spec) == 6
    t = ScaleSettings(defer_index="threshold0").creation_spec(384, {})
    assert t.indexing_threshold_kb == 0 and t.hnsw_m == 16 and s.indexed_spec(t).indexing_threshold_kb is None
    assert not is_deferred(s.creation_spec(384, {}, defer=False))
    for bad in ({"defer_index": "later"}, {"shards": 0}, {"hnsw_m": 0}, {"writers": True}):
        with pytest.raises(ConfigError):
            ScaleSettings(**bad)


def test_deferred_index_is_restored_on_a_server_style_store(tmp_path):
    """The index tuner of the server backend (qdrant-client local mode accepts the same calls) records the restored
    HNSW config, so a rerun after a killed bulk load knows whether to restore."""
    from lusifer_rag.ingest.scale import finish_bulk_load

    s = ScaleSettings(shards=2, quantization="binary")
    with open_store(f"qdrant-local:{tmp_path / 's'}") as store:
        store.create_collection("big", s.creation_spec(8, {"embedder": "x"}))
        assert is_deferred(store.open_collection("big"))
        assert finish_bulk_load(store, "big", s) is True
        spec = store.open_collection("big")
        assert spec.hnsw_m == 16 and spec.quantization == "binary" and spec.shard_number == 2
        assert finish_bulk_load(store, "big", s) is False  # nothing left to restore
    assert os.path.isdir(tmp_path / "s")
