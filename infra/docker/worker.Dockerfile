# syntax=docker/dockerfile:1
# srlm worker image: Node 20, the TypeScript app, `tsx workers/main.ts`. No Python, no GPU.
# Serves the orchestration queue (workflows, validation, pair selection, summaries); the
# generation and training queues run the compute image (infra/docker/compute.Dockerfile).
#
#   docker build -f infra/docker/worker.Dockerfile -t srlm-worker:0.1.0 .      (from the repo root)
#
# Not built in srlm's tests (no Docker there); test/infra/deploy.test.ts lints it with hadolint
# and checks its COPY sources, base tags and command against the repository.

# --- deps: production node_modules from the lock file --------------------------------------
FROM node:20.20.2-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && npm cache clean --force

# --- runtime -------------------------------------------------------------------------------
FROM node:20.20.2-bookworm-slim
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
    SRLM_QUEUES=orchestration \
    SRLM_COMPUTE_CONCURRENCY=1 \
    SRLM_STATE_DIR=/var/lib/srlm \
    SRLM_CACHE_DIR=/var/cache/srlm \
    SRLM_PYTHON=python3 \
    SRLM_METRICS_BIND=127.0.0.1:9464
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY activities ./activities
COPY store ./store
COPY backends ./backends
COPY inputs ./inputs
COPY core ./core
COPY workflows ./workflows
COPY workers ./workers
COPY cli ./cli
COPY infra ./infra
# the node image's unprivileged user (uid 1000); state and object cache are its own
RUN mkdir -p /var/lib/srlm /var/cache/srlm && chown -R node:node /var/lib/srlm /var/cache/srlm
USER 1000:1000
EXPOSE 9464
ENTRYPOINT ["node_modules/.bin/tsx", "workers/main.ts"]
CMD ["--queues", "orchestration"]
