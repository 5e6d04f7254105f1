# syntax=docker/dockerfile:1
#
# Two images from one file (docs/deployment.md):
#
#   serving   the FastAPI service: `softsensor serve`, base dependencies only (no torch, no
#             compilers, no pip), non-root, read-only root file system friendly.
#               docker build --target serving -t softsensor:serving .
#   training  the retraining job: the `train` extra (torch 2.13.0) for `softsensor retrain`.
#               docker build --target training -t softsensor:training .
#
# BASE is any Debian-like image. With a Python in it (the default) that Python is used; a
# bare Debian bookworm gets its python3 (3.11) from apt, which is how scripts/container_test.sh
# builds here without a registry (BASE=localhost/bookworm-min:local).
#
# pip settings come from build arguments, so a plant mirror or wheel directory works as is:
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST, and PIP_CERT (a CA
# bundle mounted into the build, e.g. `-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
# --build-arg PIP_CERT=/run/host-ca.crt`). Build with `--format docker` under podman/buildah:
# the OCI format has no HEALTHCHECK.

ARG BASE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- python: runtime base
FROM ${BASE} AS python
# The one user both images run as, uid/gid 10001: numeric in USER, so Kubernetes'
# runAsNonRoot can check it.
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3; \
        apt-get clean; rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'; \
    groupadd --system --gid 10001 softsensor; \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/softsensor \
        --no-create-home --shell /usr/sbin/nologin softsensor; \
    mkdir -p /models /var/lib/softsensor; \
    chown 10001:10001 /var/lib/softsensor
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# ---------------------------------------------------------------- build: pip + sources
FROM python AS build
RUN set -eu; \
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; \
        apt-get clean; rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/pip
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY training ./training

# ---------------------------------------------------------------- wheelhouses (network here only)
FROM build AS wheels-serving
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
# The project without extras: its base dependencies are the serving dependencies.
RUN /opt/pip/bin/pip wheel --wheel-dir /wheels -c constraints.txt .

FROM build AS wheels-training
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
# constraints.txt pins torch==2.13.0+cpu, the CPU wheel, which PyPI does not carry.
# TORCH=cpu keeps that pin: give an index or wheel directory holding it (PIP_EXTRA_INDEX_URL=
# https://download.pytorch.org/whl/cpu, or PIP_FIND_LINKS). TORCH=pypi (default) installs
# PyPI's torch==2.13.0 instead, which on x86_64 is the CUDA build (a few GB of downloads).
ARG TORCH=pypi
RUN set -eu; \
    case "$TORCH" in \
        cpu) cp constraints.txt /tmp/constraints.txt ;; \
        pypi) sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' constraints.txt > /tmp/constraints.txt ;; \
        *) echo "TORCH must be cpu or pypi, got $TORCH" >&2; exit 2 ;; \
    esac; \
    /opt/pip/bin/pip wheel --wheel-dir /wheels -c /tmp/constraints.txt ".[train]"

# ---------------------------------------------------------------- virtual environments (offline)
FROM build AS venv-serving
COPY --from=wheels-serving /wheels /wheels
RUN set -eu; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-index --find-links /wheels -c constraints.txt softsensor; \
    /opt/venv/bin/pip uninstall -y pip setuptools >/dev/null; \
    if /opt/venv/bin/python -c 'import torch' >/dev/null 2>&1; then \
        echo 'torch must not be in the serving image' >&2; exit 1; \
    fi; \
    /opt/venv/bin/python -c 'import service.api.app, onnxruntime, uvicorn'

FROM build AS venv-training
COPY --from=wheels-training /wheels /wheels
RUN set -eu; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-index --find-links /wheels "softsensor[train]"; \
    /opt/venv/bin/pip uninstall -y pip >/dev/null; \
    /opt/venv/bin/python -c 'import torch, training.retrain'

# ---------------------------------------------------------------- training: the retraining job
FROM python AS training
COPY --from=venv-training /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    SOFTSENSOR_REGISTRY=/models \
    HOME=/var/lib/softsensor
WORKDIR /var/lib/softsensor
USER 10001:10001
ENTRYPOINT ["/opt/venv/bin/softsensor"]
CMD ["retrain", "--help"]

# ---------------------------------------------------------------- serving: the service (default)
FROM python AS serving
# A registry to bake in (a directory of the build context, laid out as models/README.md says);
# the default `models` holds none, and a registry is mounted at /models instead.
ARG MODELS=models
COPY --from=venv-serving /opt/venv /opt/venv
COPY ${MODELS}/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/softsensor \
    SOFTSENSOR_HOST=0.0.0.0 \
    SOFTSENSOR_PORT=8000 \
    SOFTSENSOR_REGISTRY=/models \
    SOFTSENSOR_STATE_DIR=/var/lib/softsensor
LABEL org.opencontainers.image.title="softsensor" \
      org.opencontainers.image.description="Column soft sensor service (ONNX Runtime, no torch)"
# Lab results (SQLite, WAL) live here: give it a volume. /models is read only to the service.
VOLUME ["/var/lib/softsensor"]
WORKDIR /var/lib/softsensor
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('SOFTSENSOR_PORT', '8000') + '/v2/health/ready', timeout=4)"]
ENTRYPOINT ["/opt/venv/bin/softsensor", "serve"]
