# syntax=docker/dockerfile:1
# Multi-stage build: the wheel is built in one stage, installed with CPU-only torch in the next.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# OMP/MKL threads match ANIMEGAN_THREADS (T), so W x T never oversubscribes the container's cores:
# change them together. GLIBC_TUNABLES puts malloc on transparent huge pages from the first
# instruction (serve would otherwise restart itself once to set it; README, Performance).
ENV PYTHONDONTWRITEBYTECODE=1 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ANIMEGAN_WEIGHTS_DIR=/weights \
    ANIMEGAN_HOST=0.0.0.0 \
    ANIMEGAN_LOG_FORMAT=json \
    ANIMEGAN_WORKERS=1 \
    ANIMEGAN_THREADS=2 \
    OMP_NUM_THREADS=2 \
    MKL_NUM_THREADS=2
# CPU-only torch from the PyTorch wheel index keeps CUDA out of the image.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=build /wheels /wheels
# face_recognition_models carries 120 MB of dlib models the service never loads: only the 5-point
# landmark model (avatars) stays.
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && models="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/face_recognition_models/models" \
    && find "$models" -name '*.dat' ! -name shape_predictor_5_face_landmarks.dat -delete \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin animegan \
    && mkdir -p /weights && chown animegan /weights
WORKDIR /app
USER 10001
VOLUME ["/weights"]
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["animegan-api", "serve", "--host", "0.0.0.0"]
