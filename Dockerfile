# syntax=docker/dockerfile:1
# Multi-stage build: the wheel is built in one stage, installed with CPU-only torch in the next.
#
# Build arguments (docs/deploying.md), for machines without the public registries:
#   BASE_IMAGE   any Debian-like image with Python 3.11 and its venv module (docker/make-base makes one)
#   TORCH_INDEX  where the CPU torch wheel comes from; empty: pip's own configuration decides
# A proxy's CA bundle and a pip configuration can be passed as build secrets `cacert` and
# `pipconf` (used by pip, never written to a layer).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=secret,id=cacert --mount=type=secret,id=pipconf \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# OMP/MKL threads match ANIMEGAN_THREADS (T), so W x T never oversubscribes the container's cores:
# change them together. GLIBC_TUNABLES puts malloc on transparent huge pages from the first
# instruction (serve would otherwise restart itself once to set it; docs/performance.md).
# XDG_CACHE_HOME: with the root read-only, libraries' caches (ONNX Runtime's) go to the /tmp tmpfs
# instead of failing with a raw, non-JSON warning on stderr.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    ANIMEGAN_WEIGHTS_DIR=/weights \
    ANIMEGAN_JOB_DIR=/jobs \
    ANIMEGAN_HOST=0.0.0.0 \
    ANIMEGAN_LOG_FORMAT=json \
    ANIMEGAN_WORKERS=1 \
    ANIMEGAN_THREADS=2 \
    OMP_NUM_THREADS=2 \
    MKL_NUM_THREADS=2
# CPU-only torch from the PyTorch wheel index keeps CUDA out of the image.
RUN --mount=type=secret,id=cacert --mount=type=secret,id=pipconf \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    if [ -n "$TORCH_INDEX" ]; then export PIP_INDEX_URL="$TORCH_INDEX"; fi; \
    python3 -m venv /opt/venv \
    && pip install torch==2.13.0
COPY --from=build /wheels /wheels
# face_recognition_models carries 120 MB of dlib models the service never loads: only the 5-point
# landmark model (avatars) stays.
RUN --mount=type=secret,id=cacert --mount=type=secret,id=pipconf \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    pip install /wheels/*.whl && rm -rf /wheels \
    && models="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/face_recognition_models/models" \
    && find "$models" -name '*.dat' ! -name shape_predictor_5_face_landmarks.dat -delete \
    && groupadd --system --gid 10001 animegan \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin animegan \
    && mkdir -p /weights /jobs /app && chown animegan /weights /jobs
WORKDIR /app
USER 10001
# /jobs: job inputs, results and their SQLite store (docs/jobs.md); mount a volume to keep them across restarts.
VOLUME ["/weights", "/jobs"]
EXPOSE 8000
STOPSIGNAL SIGTERM
# The check finds the port the server was given (--port or ANIMEGAN_PORT), not a fixed 8000.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["animegan-api", "healthcheck"]
ENTRYPOINT ["animegan-api", "serve", "--host", "0.0.0.0"]
