# claude-code-proxy: the Anthropic Messages API on top of OpenAI-compatible providers.
#   docker build -t claude-code-proxy .
#   docker run --rm -p 127.0.0.1:8082:8082 --env-file .env -e HOST=0.0.0.0 -e PORT=8082 \
#       -e ALLOW_UNAUTHENTICATED=true claude-code-proxy
# (-e wins over --env-file: a .env written for running outside Docker says HOST=127.0.0.1.
# ALLOW_UNAUTHENTICATED=true only because the port is published on 127.0.0.1; set
# ANTHROPIC_API_KEY in .env instead when it is published wider. README, "Docker".)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The process runs as uid/gid 10001 and works in /data, the one directory it may write
# (relative paths such as CAPTURE_DIR=./captures land there).
RUN pip install . \
    && rm -rf /app/src \
    && groupadd --gid 10001 proxy \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin proxy \
    && mkdir -p /data \
    && chown 10001:10001 /data

# Numeric, not the name: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 10001:10001
WORKDIR /data

# Inside the container the proxy must listen on all interfaces to be reachable through the
# published port. In static mode (OPENAI_API_KEY set) it then refuses to start, saying why,
# unless ANTHROPIC_API_KEY is set (clients must send it) or ALLOW_UNAUTHENTICATED=true is
# set deliberately, e.g. when the port is published on 127.0.0.1 only (docker-compose.yml).
ENV HOST=0.0.0.0 \
    PORT=8082
EXPOSE 8082

# No curl in the slim image: probe /health with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8082') + '/health', timeout=4).read()"]

CMD ["claude-code-proxy"]
