# syntax=docker/dockerfile:1
# srlm compute image for GPU hosts: CUDA base, Python 3.11 with compute/ and its pinned
# requirements (torch, transformers, TRL), a second Python environment with vLLM, and the Node
# worker that runs them for the generation and training queues.
#
#   docker build -f infra/docker/compute.Dockerfile -t srlm-compute:0.1.0 .     (from the repo root)
#
# Two environments because vLLM pins its own torch and transformers (vllm 0.33.0: torch 2.14.0,
# transformers < 5.21), which differ from the training stack's (compute/requirements.txt): the
# worker runs `compute.engine.kind: "vllm"` jobs with SRLM_VLLM_PYTHON, everything else with
# SRLM_PYTHON. Keep VLLM_VERSION equal to VLLM_VERSION in compute/srlm_compute/vllm_engine.py
# (test/infra/deploy.test.ts checks it).
#
# Not built in srlm's tests (no Docker, no GPU there); test/infra/deploy.test.ts lints it with
# hadolint and checks its COPY sources, base tags, pins and command against the repository.

ARG VLLM_VERSION=0.33.0

# --- python: the two virtual environments --------------------------------------------------
FROM python:3.11.14-slim-bookworm AS python
ARG VLLM_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY compute/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/srlm/venv \
 && /opt/srlm/venv/bin/pip install --no-input -r /tmp/requirements.txt
RUN python -m venv /opt/srlm/vllm-venv \
 && /opt/srlm/vllm-venv/bin/pip install --no-input "vllm==${VLLM_VERSION}"

# --- node: production node_modules -----------------------------------------------------------
FROM node:20.20.2-bookworm-slim AS node
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && npm cache clean --force

# --- runtime -------------------------------------------------------------------------------
FROM nvidia/cuda:13.0.1-base-ubuntu24.04
# Python's shared libraries (the interpreter itself comes from the python stage); the driver
# is mounted by the NVIDIA container toolkit; CUDA user-space libraries come with the wheels.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates libssl3t64 libffi8 libsqlite3-0 zlib1g libbz2-1.0 liblzma5 \
      libncursesw6 libreadline8t64 libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=python /usr/local /usr/local
COPY --from=python /opt/srlm /opt/srlm
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN ldconfig \
 && groupadd --gid 10001 srlm \
 && useradd --uid 10001 --gid srlm --create-home --home-dir /home/srlm srlm \
 && mkdir -p /var/lib/srlm /var/cache/srlm \
 && chown -R srlm:srlm /var/lib/srlm /var/cache/srlm
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
    SRLM_QUEUES=generation,training \
    SRLM_COMPUTE_CONCURRENCY=1 \
    SRLM_STATE_DIR=/var/lib/srlm \
    SRLM_CACHE_DIR=/var/cache/srlm \
    SRLM_PYTHON=/opt/srlm/venv/bin/python \
    SRLM_VLLM_PYTHON=/opt/srlm/vllm-venv/bin/python \
    SRLM_METRICS_BIND=127.0.0.1:9464 \
    HF_HOME=/var/cache/srlm/hf
WORKDIR /app
COPY --from=node /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY activities ./activities
COPY store ./store
COPY backends ./backends
COPY inputs ./inputs
COPY core ./core
COPY workflows ./workflows
COPY workers ./workers
COPY cli ./cli
COPY compute ./compute
COPY infra ./infra
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["node_modules/.bin/tsx", "workers/main.ts"]
CMD ["--queues", "generation,training"]
