# pgbourse: the exchange (ASGI server + matching worker, supervised by manage.py runexchange).
# PostgreSQL is external here (docker-compose.yml runs one); DATABASE_URL must be set.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=exchange_project.settings \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json

WORKDIR /app
# A C compiler for the matching engine's mypyc build (matching/_build.py); without one the
# engine runs interpreted, about a third as fast.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Compile the engine from the sources just copied (build/ is never copied in: .dockerignore).
RUN PGBOURSE_ENGINE=python python -m matching.engine._build

RUN useradd --create-home --uid 1000 exchange && chown -R exchange /app
USER exchange

EXPOSE 8000
# Readiness: PostgreSQL, the matching worker (heartbeat and ownership lock), the LISTEN hub, the
# inbox backlog. /readyz answers within a second whatever PostgreSQL does; curl is not in the
# slim image, Python is.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=2)"]
# runexchange migrates, creates BTC-USD if missing, then runs and supervises the worker and server.
CMD ["python", "manage.py", "runexchange"]
