"""bench/gpu_check.sh --dry-run: every step of the GPU check runs (tiny shapes, CPU) and reports PASS."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_step_and_writes_its_report(tmp_path):
    scratch = tmp_path / "tmp"  # the steps' models and stores (hundreds of MB on a GPU) must not outlive the run
    scratch.mkdir()
    r = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "TMPDIR": str(scratch)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert list(report["steps"]) == ["env", "tests", "lusifer", "e5", "ingest", "train"]
    assert {s["status"] for s in report["steps"].values()} == {"PASS"}, report
    lus = report["steps"]["lusifer"]["result"]
    assert lus["ratio"] > 0 and lus["rows"][0]["tokens/s"] > 0
    assert report["steps"]["tests"]["result"]["padded vs CPU fp32 (max |diff|)"] < 1e-4
    md = (tmp_path / "gpu_report.md").read_text()
    assert "| lusifer | PASS |" in md and "| train | PASS |" in md
    for line in ("PASS  env", "PASS  train"):
        assert line in r.stdout
    # torch.compile's cache is meant to persist between runs; nothing else may stay
    assert sorted(p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")) == []
