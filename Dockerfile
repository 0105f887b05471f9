FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY ymsync ./ymsync
COPY tasks ./tasks
COPY workers ./workers
RUN pip install . && useradd --create-home --uid 10001 ymsync && mkdir -p /app/reports && chown ymsync /app/reports
USER ymsync
CMD ["ymsync", "--help"]
