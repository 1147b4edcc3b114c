# claude-code-proxy: the Anthropic Messages API on top of OpenAI-compatible providers.
#   docker build -t claude-code-proxy .
#   docker run --rm -p 127.0.0.1:8082:8082 --env-file .env -e HOST=0.0.0.0 -e PORT=8082 \
#       claude-code-proxy
# (-e wins over --env-file: a .env written for running outside Docker says HOST=127.0.0.1.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install . \
    && rm -rf /app/src \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin proxy

USER proxy

# Inside the container the proxy must listen on all interfaces to be reachable through the
# published port. In static mode (OPENAI_API_KEY set) it then refuses to start unless
# ANTHROPIC_API_KEY is set (clients must send it) or ALLOW_UNAUTHENTICATED=true is set
# deliberately, e.g. when the port is published on 127.0.0.1 only.
ENV HOST=0.0.0.0 \
    PORT=8082
EXPOSE 8082

# No curl in the slim image: probe /health with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8082') + '/health', timeout=4).read()"]

CMD ["claude-code-proxy"]
