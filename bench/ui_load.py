"""50 concurrent searches through gradio_client against the web app: errors, p50/p95 latency, throughput.

    .venv/bin/python bench/ui_load.py                      # starts its own apps (e5-small, sample corpus, tmp store)
    .venv/bin/python bench/ui_load.py --url http://127.0.0.1:7860/ [--auth user:password]

Without ``--url`` the same load runs against three apps on the same store, one after the other, for a before/after
in one run: the previous defaults (every request embeds its query and highlight sentences alone, 4 searches at
a time), one-at-a-time embedding with the new concurrency (32), and the new defaults (dynamic batching: concurrent
requests share forward passes, embedder/queue.py); each app gets two bursts of different queries, the second
with the passages of the first already in the app's highlight-sentence cache. Latency is what a client sees: submit → result, queue wait
included. Exit code 1 if any search failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import table  # noqa: E402



def queries(n: int) -> list[str]:
    """n distinct real queries: the first clause of UDHR articles in 20 languages (tests/data/udhr), so no
    search is answered from the retriever's query cache."""
    import json
    import re

    texts = []
    for path in sorted((ROOT / "tests" / "data" / "udhr").glob("*.json")):
        articles = json.loads(path.read_text(encoding="utf-8"))["articles"]
        texts += [re.split(r"[.;。,،]", articles[str(a)])[0][:120] for a in range(1, 31)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    step = max(1, len(texts) // n)
    return texts[::step][:n]


@contextlib.contextmanager
def own_app(tmp: str, concurrency: int, batching: bool):
    """An app on a free port: e5-small, the sample corpus in an embedded store under ``tmp``."""
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.app.ui import build_app, launch
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.settings import Settings
    import socket

    settings = Settings.from_env(env={}, store=f"{tmp}/store", data_dir=Path(tmp), collection="bench",
                                 embed_queue=batching)
    with open_store_from(settings) as store:
        t0 = time.time()
        service = RagService(settings, store, options=AppOptions(search_concurrency=concurrency))
        report = service.ingest_sample()
        print(f"setup: {report.summary()} (with model load: {time.time() - t0:.1f}s)", file=sys.stderr)
        demo = build_app(service)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch(demo, service, port=port, block=False, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/", service
        finally:
            demo.close()


def run(url: str, n: int, k: int, auth: tuple[str, str] | None, highlight: bool = True, offset: int = 0) -> dict:
    """n searches at once; ``offset`` picks other queries (a second burst after the first: the app's sentence cache
    then holds the passages the first burst highlighted, as in steady use)."""
    from gradio_client import Client

    client = Client(url, auth=auth, verbose=False)
    client.predict("warm-up", [], [], k, api_name="/search")  # the first search estimates language means
    qs = queries(offset + n)[offset:]

    def one(i: int) -> tuple[float, str | None]:
        t = time.perf_counter()
        try:
            hits = client.submit(qs[i % len(qs)], [], [], k, highlight, api_name="/search").result(timeout=600)
            err = None if isinstance(hits, list) and hits else f"unexpected result {hits!r:.80}"
        except Exception as e:  # counted and shown, the run goes on
            err = f"{type(e).__name__}: {e}"
        return time.perf_counter() - t, err

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    lat = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    p50 = statistics.median(lat)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    print(f"{n} concurrent searches (k={k}, highlight={highlight}): {len(errors)} errors; latency p50 {p50 * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; wall {wall:.2f}s ({n / wall:.1f} searches/s)",
          file=sys.stderr)
    for e in errors[:5]:
        print("  error:", e, file=sys.stderr)
    return {"errors": len(errors), "p50 s": p50, "p95 s": p95, "max s": lat[-1], "searches/s": n / wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running app (default: start one)")
    p.add_argument("--auth", help="user:password for an app with basic auth")
    p.add_argument("-n", type=int, default=50, help="concurrent searches (default 50)")
    p.add_argument("-k", type=int, default=5, help="results per search")
    p.add_argument("--no-highlight", action="store_true", help="skip the best-sentence highlight")
    p.add_argument("--concurrency", type=int, default=32, help="search concurrency of the new-default apps")
    args = p.parse_args()
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.url:
        row = run(args.url, args.n, args.k, auth, not args.no_highlight)  # type: ignore[arg-type]
        table([{"app": args.url, **row}])
        return 1 if row["errors"] else 0
    from _common import header

    header(f"ui_load: {args.n} concurrent searches, k={args.k}, highlight={not args.no_highlight}, e5-small")
    rows = []
    configs = [("previous defaults: one at a time, 4 concurrent", 4, False),
               ("one at a time, 32 concurrent", args.concurrency, False),
               ("batched (default), 32 concurrent", args.concurrency, True)]
    with tempfile.TemporaryDirectory() as tmp:
        for label, concurrency, batching in configs:
            with own_app(tmp, concurrency, batching) as (url, service):
                row = run(url, args.n, args.k, None, not args.no_highlight)
                rows.append({"embedding": label, "burst": "first", **row})
                row = run(url, args.n, args.k, None, not args.no_highlight, offset=args.n)
                rows.append({"embedding": label, "burst": "second", **row})
                if batching:
                    from lusifer_rag.embedder.queue import queue_for

                    st = queue_for(service.embedder).stats
                    print(f"queue: {st.requests} requests in {st.rounds} rounds (largest {st.largest_round}), "
                          f"{st.texts} texts, {st.unique_texts} embedded after de-duplication", file=sys.stderr)
    for r in rows:
        base = next(b for b in rows if b["burst"] == r["burst"])["searches/s"]
        r["throughput vs previous"] = f"{r['searches/s'] / base:.1f}x"
    table(rows)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
