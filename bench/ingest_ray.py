"""Throughput of the Ray Data ingest (``lusifer_rag.ingest.ray_ingest``) with 1 and 2 embedding workers, next to the
single-machine pipeline, on the same files, the same embedder and a fresh store each run.

    .venv/bin/python bench/ingest_ray.py                      # e5-small, UDHR x 20 languages x 3 copies
    .venv/bin/python bench/ingest_ray.py --workers 1 2 4 --copies 10 --store-kind edge
    .venv/bin/python bench/ingest_ray.py --address auto       # on a Ray cluster (GPU actors if it has GPUs)

Ray's start-up (cluster, actor processes, one model load per actor) is included in each run's seconds, as a user
sees it; ``embed s`` is the part of the single-machine run spent in the embedder, for scale. On a CPU box the
workers share the same cores, so more workers only help while cores are idle; the number that matters for the
design is GPU actor throughput, which needs a GPU node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
sys.path.append(str(ROOT / "bench"))
from _common import scratch_dir  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write_corpus(root: Path, copies: int) -> int:
    from conftest import UDHR_DIR, udhr_articles

    n = 0
    for copy in range(copies):
        for path in sorted(UDHR_DIR.glob("*.json")):
            (root / f"udhr_{path.stem}_{copy}.txt").write_text("\n\n".join(udhr_articles(path.stem)), encoding="utf-8")
            n += 1
    return n


def location(kind: str, d: Path) -> str:
    return {"qdrant-local": f"qdrant-local:{d}", "edge": str(d)}[kind]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="e5-small")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="embedding actor counts to measure")
    ap.add_argument("--copies", type=int, default=3, help="copies of the 20-language UDHR corpus")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--store-kind", choices=["qdrant-local", "edge"], default="qdrant-local")
    ap.add_argument("--address", help="Ray cluster address; default: a local Ray")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    import ray

    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.ingest.chunking import ChunkingParams
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.ingest.ray_ingest import ingest_with_ray
    from lusifer_rag.store import open_store

    tmp = scratch_dir("bench-ray-")
    docs = tmp / "docs"
    docs.mkdir()
    n_files = write_corpus(docs, args.copies)
    emb = load_embedder(args.embedder, device="cpu")
    chunking = ChunkingParams(max_tokens=args.max_tokens)
    rows = []

    # single-machine baseline (its embedder is already loaded: no start-up in its seconds)
    with open_store(location(args.store_kind, tmp / "single")) as store:
        ing = Ingestor(store, "bench", emb, chunking, progress_mode="off")
        t0 = time.perf_counter()
        t_embed = _timed_embedder(emb)
        report = ing.ingest([docs])
        secs = time.perf_counter() - t0
    rows.append(_row("single-machine", "-", report, secs, embed_s=t_embed()))
    del emb.embed_documents  # drop the timing wrapper: the Ray job ships this embedder (weightless) to workers

    cpus = max(os.cpu_count() or 2, max(args.workers) + 1)  # logical CPUs: one parser + the embedding actors
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
    gpus = int(ray.cluster_resources().get("GPU", 0))
    for w in args.workers:
        t0 = time.perf_counter()
        report = ingest_with_ray([docs], "bench", location(args.store_kind, tmp / f"ray{w}"), emb,
                                 chunking=chunking, workers=w, progress_mode="off")
        secs = time.perf_counter() - t0
        assert report.exit_code == 0 and report.embedded_chunks == rows[0]["chunks"], report.summary()
        rows.append(_row("ray", f"{w} {'GPU' if gpus else 'CPU'}", report, secs))
    ray.shutdown()

    print(f"# {n_files} files, embedder {args.embedder}, max_tokens {args.max_tokens}, store {args.store_kind}, "
          f"{os.cpu_count()} cores, GPUs: {gpus}")
    print("| path | workers | files | chunks | tokens | seconds | chunks/s | tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['workers']} | {r['files']} | {r['chunks']} | {r['tokens']} | {r['seconds']:.1f} | "
              f"{r['chunks_per_s']:.1f} | {r['tokens_per_s']:,.0f} |")
    if rows[0].get("embed_s"):
        print(f"single-machine: {rows[0]['embed_s']:.1f}s of {rows[0]['seconds']:.1f}s in the embedder")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _row(path: str, workers: str, report, secs: float, **extra) -> dict:
    return {"path": path, "workers": workers, "files": len(report.results), "chunks": report.embedded_chunks,
            "tokens": report.embedded_tokens, "seconds": secs, "chunks_per_s": report.embedded_chunks / secs,
            "tokens_per_s": report.embedded_tokens / secs, **extra}


def _timed_embedder(emb):
    """Wrap ``emb.embed_documents`` to add up its wall time; returns a function reading the total."""
    total = [0.0]
    inner = emb.embed_documents

    def timed(texts, instruction=None, **kw):
        t = time.perf_counter()
        try:
            return inner(texts, instruction, **kw)
        finally:
            total[0] += time.perf_counter() - t

    emb.embed_documents = timed
    return lambda: total[0]


if __name__ == "__main__":
    sys.exit(main())
