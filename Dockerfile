# syntax=docker/dockerfile:1
# rollback-bot: the Slack bot server (HTTP mode on $PORT, Socket Mode when SLACK_APP_TOKEN is set).
# Secrets (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DATABASE_URL, *_env targets) come from the
# runtime environment only; nothing secret is baked into the image.

# ---- build: install the package and its dependencies into a self-contained virtualenv ----
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot/ bot/
COPY handlers/ handlers/
COPY platforms/ platforms/
# The product only: sandbox/ (emulators, development-only) is neither packaged nor copied.
RUN pip install --no-cache-dir .

# ---- runtime: the virtualenv, the example catalog, an unprivileged user ----
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 rollback \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/rollback --create-home \
        --shell /usr/sbin/nologin rollback \
    && install -d -o 10001 -g 10001 /var/lib/rollback-bot

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY rollback.example.yml /app/rollback.example.yml

# ROLLBACK_CONFIG points at the bundled example until you mount your own catalog and set it
# (deploy/deployment.yaml mounts /etc/rollback-bot/rollback.yml). ROLLBACK_DATA_DIR is the only
# path the process writes (embedded PostgreSQL when DATABASE_URL is unset); mount a volume there.
# MPLCONFIGDIR: matplotlib (the stability chart) keeps its font cache under /tmp, writable
# even with a read-only root filesystem (deploy/deployment.yaml mounts an emptyDir there);
# otherwise it warns at every start and makes a new temporary directory.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 \
    ROLLBACK_CONFIG=/app/rollback.example.yml \
    ROLLBACK_DATA_DIR=/var/lib/rollback-bot \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/rollback

USER 10001:10001
EXPOSE 3000

# slim has no curl: probe /healthz with the standard library; any non-2xx or error exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1

ENTRYPOINT ["rollback-bot"]
CMD ["serve"]
