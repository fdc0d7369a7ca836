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


def test_a_failed_step_prints_why_under_its_row(tmp_path, monkeypatch, capsys):
    """A CI log keeps stdout only (the report's directory is gone): a FAIL row is followed by the step's last lines."""
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu_check

    tail = "Traceback (most recent call last):\n" + "".join(f"  frame {i}\n" for i in range(40)) + "OSError: the cause"
    monkeypatch.setattr(gpu_check, "run_step",
                        lambda name, dry, env: {"status": "FAIL", "seconds": 1.0, "tail": tail})
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--dry-run", "--steps", "env", "--out", str(tmp_path)])
    assert gpu_check.main() == 1
    out = capsys.readouterr().out
    assert "FAIL  env" in out and "      OSError: the cause" in out
    assert "frame 39" in out and "frame 0\n" not in out  # its last 25 lines, not the whole log
