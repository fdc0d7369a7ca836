"""50 concurrent searches through gradio_client against the web app: errors, p50/p95 latency.

    .venv/bin/python bench/ui_load.py                      # starts its own app (e5-small, sample corpus, tmp store)
    .venv/bin/python bench/ui_load.py --url http://127.0.0.1:7860/ [--auth user:password]

Latency is what a client sees: submit → result, queue wait included (searches run ``search_concurrency`` at a
time, LUSIFER_RAG_SEARCH_CONCURRENCY). Exit code 1 if any search failed.
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
def own_app(concurrency: int):
    """An app on a free port: e5-small, the sample corpus in a tmp embedded store."""
    from lusifer_rag.app.service import AppOptions, RagService
    from lusifer_rag.app.ui import build_app, launch
    from lusifer_rag.runtime import open_store_from
    from lusifer_rag.settings import Settings
    import socket

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(env={}, store=f"{tmp}/store", data_dir=Path(tmp), collection="bench")
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
                yield f"http://127.0.0.1:{port}/"
            finally:
                demo.close()


def run(url: str, n: int, k: int, auth: tuple[str, str] | None, highlight: bool = True) -> int:
    from gradio_client import Client

    client = Client(url, auth=auth, verbose=False)
    client.predict("warm-up", [], [], k, api_name="/search")  # the first search estimates language means
    qs = queries(n)

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
          f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; wall {wall:.2f}s ({n / wall:.1f} searches/s)")
    for e in errors[:5]:
        print("  error:", e)
    return 1 if errors else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running app (default: start one)")
    p.add_argument("--auth", help="user:password for an app with basic auth")
    p.add_argument("-n", type=int, default=50, help="concurrent searches (default 50)")
    p.add_argument("-k", type=int, default=5, help="results per search")
    p.add_argument("--no-highlight", action="store_true", help="skip the best-sentence highlight")
    p.add_argument("--concurrency", type=int, default=4, help="search concurrency of the app started here")
    args = p.parse_args()
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.url:
        return run(args.url, args.n, args.k, auth, not args.no_highlight)  # type: ignore[arg-type]
    with own_app(args.concurrency) as url:
        return run(url, args.n, args.k, None, not args.no_highlight)


if __name__ == "__main__":
    sys.exit(main())
