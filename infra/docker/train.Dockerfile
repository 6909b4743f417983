# syntax=docker/dockerfile:1
# srlm training image for the remote training backends (compute.training.kind "sagemaker" or
# "kubernetes"): CUDA base, Python 3.11 with compute/ and its pinned requirements (torch,
# transformers, TRL; no vLLM), Node 20 and the TypeScript entrypoint backends/train-entry.ts, which
# implements both container contracts (backends/sagemaker-train.ts, backends/k8s-train.ts):
# it fetches the inputs (Kubernetes: from S3 through the project's S3 store; SageMaker: its
# channels), resumes from the newest complete checkpoint, runs
# `python -m srlm_compute.launch <torchrun options> -m srlm_compute train --job ...` and puts
# checkpoints and the model where the platform expects them.
#
#   docker build -f infra/docker/train.Dockerfile -t srlm-train:0.1.0 .        (from the repo root)
#
# SageMaker starts it as `<image> train`; a Kubernetes pod with no arguments. It runs as root:
# SageMaker mounts /opt/ml/model, /opt/ml/checkpoints and /opt/ml/output owned by root, and a
# non-root user could not write them. On Kubernetes a pod may set securityContext.runAsUser: the
# work and cache directories below are writable by any user.
#
# Not built in srlm's tests (no Docker, no GPU there); test/infra/deploy.test.ts lints it with
# hadolint and checks its COPY sources, base tags, pins and entrypoint against the repository, and
# test/infra/train-entry.test.ts runs the entrypoint itself.

# --- python: compute/'s virtual environment ------------------------------------------------
FROM python:3.11.14-slim-bookworm AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY compute/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/srlm/venv \
 && /opt/srlm/venv/bin/pip install --no-input -r /tmp/requirements.txt

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
 && mkdir -p /var/lib/srlm/train /var/cache/srlm \
 && chmod 1777 /var/lib/srlm /var/lib/srlm/train /var/cache/srlm
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
    SRLM_PYTHON=/opt/srlm/venv/bin/python \
    SRLM_COMPUTE_DIR=/app/compute \
    SRLM_TRAIN_WORK_DIR=/var/lib/srlm/train \
    SRLM_CACHE_DIR=/var/cache/srlm \
    HF_HOME=/var/cache/srlm/hf
WORKDIR /app
COPY --from=node /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY core ./core
COPY store ./store
COPY backends ./backends
COPY compute ./compute
ENTRYPOINT ["node_modules/.bin/tsx", "backends/train-entry.ts"]
