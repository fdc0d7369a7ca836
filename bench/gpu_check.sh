#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): every CUDA path, verified and measured in one cold run.
#   bench/gpu_check.sh --prepare     where pip reaches a package index: the wheels the GPU machine lacks -> .whl/
#   bench/gpu_check.sh [--out DIR]   on the GPU machine (its python3 holds CUDA torch; no network needed)
#   bench/gpu_check.sh --dry-run     the same steps at tiny shapes on the CPU (the suite runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ " $* " == *" --prepare "* ]]; then
  [[ -x .venv/bin/python ]] && PY=.venv/bin/python
  exec "$PY" bench/gpu_check.py --prepare
fi
if [[ " $* " == *" --dry-run "* ]]; then
  [[ -x .venv/bin/python ]] && PY=.venv/bin/python
  exec "$PY" bench/gpu_check.py "$@"
fi
# the GPU machine: our package and the carried wheels into a temporary site dir (nothing from the network)
SITE=${GPU_CHECK_SITE:-/tmp/lusifer-site}
mkdir -p "$SITE"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || echo "gpu_check: some carried wheels did not install; the steps that need them will SKIP" >&2
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . \
  || { echo "gpu_check: cannot install this project (setuptools missing?)" >&2; exit 2; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
