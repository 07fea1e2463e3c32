# syntax=docker/dockerfile:1
# The mlevents worker. Build: docker build -t mlevents .
# Run: docker run -e EVENTHUB_CONNECTION_STRING=... -v "$PWD/config.toml:/app/config.toml:ro" mlevents
# The config's [http] host must be "0.0.0.0" (as in the shipped config.toml) for probes and
# scrapes from outside the container.
# scripts/check-dockerfile lints this file and runs the build stage's install steps without Docker.

# uv, pinned like the Makefile's.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# Build: the locked runtime dependencies and mlevents itself (a wheel, not editable) in /opt/venv.
FROM python:3.11-slim AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
# Dependencies first: this layer is reused while only the source changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
COPY README.md ./
COPY rules ./rules
COPY consumer ./consumer
COPY emulator ./emulator
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# Runtime: the interpreter, the venv, the config and the rule files it names; no uv, no pip.
FROM python:3.11-slim
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 mlevents \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /app \
       --shell /usr/sbin/nologin mlevents \
    && mkdir -p /app/.mlevents \
    && chown 10001:10001 /app/.mlevents
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config.toml ./
COPY consumer/examples ./consumer/examples
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLEVENTS_LOG_FORMAT=json
# Numeric, so Kubernetes runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["mlevents"]
CMD ["run", "--config", "/app/config.toml"]
