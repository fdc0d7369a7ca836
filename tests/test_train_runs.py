"""Whole training runs of tiny real models through the real command line: two gloo processes under torchrun
equal one process, a run killed with SIGKILL and rerun equals an uninterrupted one exactly, a toy task learns,
the result loads with ``lusifer:`` giving the trained model's embeddings, and the smoke preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "train" / "sample"


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from lusifer_rag.train.presets import _tiny_bases

    return _tiny_bases(tmp_path_factory.mktemp("bases"), seed=0)


def write_config(path: Path, bases, stage: str, out: Path, **over) -> Path:
    learner, target = bases
    raw = {"stage": stage, "output_dir": str(out), "seed": 3, "save_every": 2, "log_every": 1,
           "model": {"universal_learner": str(learner), "target": str(target), "max_length": 48,
                     "target_max_length": 48, "lora_dropout": 0.0, "hidden_dropout": 0.0},
           "global_batch_size": 4, "micro_batch_size": 2, "gc_chunk_size": 2,
           "data": {"train": [str(SAMPLE / ("align.jsonl" if stage == "align" else "pairs.jsonl"))],
                    "positives": 1, "negatives": 1},
           "optim": {"lr": 5e-4, "min_lr": 1e-5, "max_steps": 6, "warmup_steps": 2}}
    for key, value in over.items():
        node = raw
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def env(threads: int = 1) -> dict[str, str]:
    """One thread per process where two share the CI's 2 cores; a lone process (same count in runs compared
    bit for bit) may take both."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "LUSIFER_RAG_PROGRESS": "off"}


def run(args: list[str], threads: int = 1, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env(threads), cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def final_tensors(out: Path, stage: str) -> dict[str, torch.Tensor]:
    return weights(out / "model.safetensors") if stage == "finetune" else {
        **weights(out / "learner" / "model.safetensors"), **weights(out / "connector.safetensors")}


TRAIN = [sys.executable, "-m", "lusifer_rag", "train"]


@pytest.mark.slow
@pytest.mark.parametrize("stage,strategy", [("align", "ddp"), ("finetune", "ddp"), ("finetune", "fsdp")])
def test_two_processes_equal_one(tmp_path, bases, stage, strategy):
    """Same global batch: 2 gloo processes (DDP, or FSDP2 sharding the model) give the losses and weights of 1."""
    one = tmp_path / "one"
    cfg1 = write_config(tmp_path / "one.yaml", bases, stage, one)
    two = tmp_path / "two"
    cfg2 = write_config(tmp_path / "two.yaml", bases, stage, two, strategy=strategy)
    r1 = run(TRAIN + [str(cfg1)])
    assert r1.returncode == 0, r1.stderr[-3000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    r2 = run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lusifer_rag", "train", str(cfg2)])
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads((two / "run.json").read_text())["processes"] == 2
    m1, m2 = metrics(one), metrics(two)
    assert [m["step"] for m in m1] == [m["step"] for m in m2] == list(range(1, 7))
    for a, b in zip(m1, m2):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), (a, b)
        assert a["lr"] == b["lr"]
    w1, w2 = final_tensors(one, stage), final_tensors(two, stage)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5, rtol=1e-4), k


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(tmp_path, bases):
    full = tmp_path / "full"
    run_ok = run(TRAIN + [str(write_config(tmp_path / "full.yaml", bases, "finetune", full,
                                           optim__max_steps=8, model__lora_dropout=0.1))], threads=2)
    assert run_ok.returncode == 0, run_ok.stderr[-3000:]
    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "killed.yaml", bases, "finetune", out, optim__max_steps=8, model__lora_dropout=0.1)
    proc = subprocess.Popen(TRAIN + [str(cfg)], env=env(2), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() == "step-0000004"):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, after the step-4 checkpoint
    proc.wait()
    assert latest.read_text().strip() == "step-0000004" and not (out / "model.safetensors").exists()
    resumed = run(TRAIN + [str(cfg)], threads=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["resumed_from"] == 4
    a, b = metrics(full), metrics(out)
    assert [(m["step"], m["loss"], m["lr"]) for m in a] == [(m["step"], m["loss"], m["lr"]) for m in b]
    wa, wb = weights(full / "model.safetensors"), weights(out / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # bit for bit


@pytest.mark.slow
def test_a_toy_task_learns_and_the_result_loads_with_lusifer(tmp_path, bases):
    from lusifer_rag.embedder import load_embedder

    pairs = tmp_path / "toy.jsonl"
    topics = ["files", "network", "memory", "threads", "json", "math", "time", "strings"]
    pairs.write_text("".join(json.dumps({"query": f"about {t}", "positive": [f"A text all about {t} and {t}."],
                                         "negative": [f"A recipe for soup number {i}."], "dataset": "toy"}) + "\n"
                             for i, t in enumerate(topics * 2)))
    beir = tmp_path / "toy-beir"  # a dev split to evaluate on while training (the project's eval code)
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"A text all about {t} and {t}."})
                                               + "\n" for i, t in enumerate(topics)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"about {t}"}) + "\n"
                                                for i, t in enumerate(topics)))
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                            + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics))))
    out = tmp_path / "toy"
    cfg = write_config(tmp_path / "toy.yaml", bases, "finetune", out, data__train=[str(pairs)], optim__max_steps=40,
                       optim__lr=2e-3, global_batch_size=8, gc_chunk_size=8, save_every=100, miner_epsilon=None,
                       eval_dir=str(beir), eval_every=20, eval_metric="ndcg@10")
    r = run(TRAIN + [str(cfg)], threads=2)
    assert r.returncode == 0, r.stderr[-3000:]
    losses = [m["loss"] for m in metrics(out)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [20, 40] and evals[-1]["ndcg@10"] > 0.5
    best = json.loads((out / "best" / "score.json").read_text())
    assert best["score"] == max(e["ndcg@10"] for e in evals) and (out / "best" / "model.safetensors").is_file()
    emb = load_embedder(f"lusifer:{out}", device="cpu")
    q = emb.embed_queries(["about network"], instruction="Given a question, retrieve passages that answer the question.")
    d = emb.embed_documents([f"A text all about {t} and {t}." for t in topics],
                            instruction="Given a question, retrieve passages that answer the question.")
    assert int((q @ d.T).argmax()) == topics.index("network")


@pytest.mark.slow
@pytest.mark.parametrize("connection", ["ff", "fusion-transformer"])
def test_checkpoint_round_trip_gives_the_trained_models_embeddings(tmp_path, bases, connection):
    """The in-memory model right after training and ``lusifer:DIR`` embed the same texts the same."""
    from lusifer_rag.embedder import load_embedder
    from lusifer_rag.train.config import load_config
    from lusifer_rag.train.model import build
    from lusifer_rag.train.steps import pad_batch, tokenize
    from lusifer_rag.train.tokenizers import learner_tokenizer

    out = tmp_path / connection
    cfg_path = write_config(tmp_path / "rt.yaml", bases, "finetune", out, model__connection_type=connection,
                            optim__max_steps=3, save_every=100)
    r = run(TRAIN + [str(cfg_path)], threads=2)
    assert r.returncode == 0, r.stderr[-3000:]
    emb = load_embedder(f"lusifer:{out}", device="cpu")
    texts = ["A short text.", "Ein etwas längerer deutscher Satz über Dateien.", "ファイルを開く"]
    got = emb.embed_documents(texts, instruction="Find it")
    # the same weights rebuilt from the exported checkpoint's tensors through the training model
    cfg = load_config(cfg_path)
    built = build(cfg, torch.device("cpu"), torch.float32)
    from lusifer_rag.embedder.lusifer.checkpoint import Layout
    from lusifer_rag.train.model import layout_config

    layout = Layout(layout_config(cfg, built.sources, lora=True), built.ul_shape, built.target_shape)
    exported = weights(out / "model.safetensors")
    core = built.model.core.eval()
    with torch.no_grad():
        params = dict(core.named_parameters())
        for ours, key in layout.plain.items():
            params[ours].copy_(exported[key])
        for ours, parts in layout.linears.items():
            m = core.get_submodule(ours)
            base = getattr(m, "base", m)
            base.weight.copy_(torch.cat([exported[p.weight] for p in parts]))
            if parts[0].bias:
                base.bias.copy_(torch.cat([exported[p.bias_key] for p in parts]))
            if hasattr(m, "lora_A"):
                for i, p in enumerate(parts):
                    m.lora_A[i].copy_(exported[f"{p.path}.lora_A.{p.lora}.weight"])
                    m.lora_B[i].copy_(exported[f"{p.path}.lora_B.{p.lora}.weight"])
    tok = learner_tokenizer(cfg, built.sources)
    formatted = [f"<s>Find it. Candidate:\n{t}</s>" for t in texts]
    ids, lengths = pad_batch(tokenize(tok, formatted, 512), 1, 8, torch.device("cpu"))
    with torch.no_grad():
        want = core.forward_padded(ids, lengths).numpy()
    import numpy as np

    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(got, want, atol=1e-5)
    if connection != "ff":
        assert any(k.startswith("connection_module.fusion.") for k in exported)


@pytest.mark.slow
def test_smoke_preset_runs_both_stages_into_a_loadable_checkpoint(tmp_path):
    from lusifer_rag.embedder import load_embedder

    out = tmp_path / "smoke"
    # the preset as shipped, 8 steps a stage instead of 30 (stage 1's 250k-word softmax is most of the suite's time
    # here); `--set` reaches both stages of a preset
    r = run(TRAIN + ["--preset", "smoke", "--output", str(out), "--set", "optim.max_steps=8"], threads=2)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage_out in (out / "stage1", out):
        records = metrics(stage_out)
        assert [m["step"] for m in records] == list(range(1, 9)) and all("loss" in m for m in records)
    config = json.loads((out / "config.json").read_text())
    assert config["universal_learner_name_or_path"] == "./learner" and (out / "learner" / "tokenizer.json").is_file()
    assert (out / "target" / "config.json").is_file() and not (out / "learner" / "model.safetensors").exists()
    vecs = load_embedder(f"lusifer:{out}", device="cpu").embed_queries(["Habari dunia", "Hello world"])
    assert vecs.shape == (2, 64) and torch.isfinite(torch.from_numpy(vecs)).all()
