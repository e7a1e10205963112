# syntax=docker/dockerfile:1
# rollback-bot: the Slack bot server (HTTP mode on $PORT, Socket Mode when SLACK_APP_TOKEN is set).
# Secrets (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DATABASE_URL, *_env targets) come from the
# runtime environment only; nothing secret is baked into the image.
#
#   docker build -t ghcr.io/<you>/rollback-bot:$(git describe --tags --always) .
#
# Debian trixie (13) is pinned: its postgresql-client is PostgreSQL 17, the newest client a
# Debian base offers (bookworm's is 15). pg_dump refuses to dump a server newer than itself
# (https://www.postgresql.org/docs/current/app-pgdump.html: "pg_dump cannot dump from PostgreSQL
# servers newer than its own major version"), so the client decides which targets `db` scope
# can back up. https://packages.debian.org/trixie/postgresql-client

# ---- build: install the package and its dependencies into a self-contained virtualenv ----
FROM python:3.11-slim-trixie AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot/ bot/
COPY handlers/ handlers/
COPY platforms/ platforms/
# The product only: sandbox/ (emulators, development-only) is neither packaged nor copied, and no
# extra is installed: not `sandbox` (moto, graphql-core), not `embedded` (pgserver, 34 MB of
# bundled PostgreSQL 16 whose pg_dump would be too old for a 17 target): the image needs
# DATABASE_URL and uses Debian's client tools below.
RUN pip install --no-cache-dir .

# ---- runtime: the virtualenv, the PostgreSQL client, the example catalog, an unprivileged user ----
FROM python:3.11-slim-trixie AS runtime

# pg_dump/pg_restore for `db` scope (bot/integrations/pg_tools.py finds them on PATH through
# Debian's pg_wrapper).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 rollback \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rollback-bot --no-create-home \
        --shell /usr/sbin/nologin rollback \
    && install -d -o 10001 -g 10001 /var/lib/rollback-bot

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY rollback.example.yml /app/rollback.example.yml

# ROLLBACK_CONFIG points at the bundled example until you mount your own catalog and set it
# (deploy/ mounts /etc/rollback-bot/rollback.yml). The root filesystem is read-only in
# deploy/: what the process writes goes under ROLLBACK_DATA_DIR (mount a volume there):
# post-mortem skeletons (aftercare.postmortem_dir defaults to <data dir>/post-mortems), HOME,
# and matplotlib's font cache (MPLCONFIGDIR; without a writable one it warns at every start).
# Database backups go to each service's `backup_location`: a ReadWriteMany volume every
# replica sees, mounted at a sub-path of the data dir (never deploy/'s small emptyDir). /tmp is scratch only (libraries' temporary files; an emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 \
    ROLLBACK_CONFIG=/app/rollback.example.yml \
    ROLLBACK_DATA_DIR=/var/lib/rollback-bot \
    MPLCONFIGDIR=/var/lib/rollback-bot/matplotlib \
    HOME=/var/lib/rollback-bot

USER 10001:10001
EXPOSE 3000

# slim has no curl: probe /healthz with the standard library; any non-2xx or error exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1

ENTRYPOINT ["rollback-bot"]
CMD ["serve"]
