# Compere production image: gunicorn + aiohttp workers, non-root, no secrets inside.
# Configuration (DATABASE_URL, SECRET_KEY, ...) comes from the environment at run time.
#   docker build -t compere .
#   docker run --rm --env-file .env compere python -m compere migrate   (see below)
#   docker run --env-file .env -p 8000:8000 compere
#   then, once: docker exec -it <container> python -m compere createsuperuser --username admin
#   (production refuses sign-up over HTTP until a superuser exists)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve and install the package and its pinned dependencies into a venv ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY compere ./compere
# The schema is installed inside the package (compere/sql/), so no COMPERE_SQL_DIR is needed.
COPY sql ./sql
# Every dependency is pinned in setup.cfg; all have binary wheels, so no compiler.
RUN pip install --no-cache-dir .

# --- runtime: the venv (with the schema inside the package) and the gunicorn config ---
FROM ${PYTHON_IMAGE} AS runtime
# GUNICORN_BIND: gunicorn.conf.py defaults to loopback, unreachable from outside a container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    GUNICORN_BIND=0.0.0.0:8000
RUN groupadd --system --gid 10001 compere \
    && useradd --system --uid 10001 --gid compere --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin compere
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root and read-only for the service user: the process cannot rewrite its code.
COPY gunicorn.conf.py ./
COPY docker/entrypoint.sh /usr/local/bin/compere-entrypoint
# Numeric, so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# /health is liveness only (no database round trip), so a slow database does not get
# healthy containers restarted; orchestrators should route on /health/ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# No arguments or options only: gunicorn (docker run compere -w 4). A Compere command
# runs the CLI (docker run compere migrate); anything else runs as given
# (docker run compere python -m compere migrate). See docker/entrypoint.sh.
ENTRYPOINT ["compere-entrypoint"]
