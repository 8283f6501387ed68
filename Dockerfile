# syntax=docker/dockerfile:1
# qsite production image (README: Deploy). Two stages: the first installs the dependencies
# into a virtualenv, the second holds that virtualenv and only the files qsite runs from.
# tests/foundation/test_image.py rebuilds this image's file list from this file and
# .dockerignore and runs qsite from it, so a runtime file left out fails the suite.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies from pyproject.toml alone: a code change does not reinstall them. The
# embedded PostgreSQL/Redis (extra "embedded") stay out: production uses real servers.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app \
    QSITE_ENV=production QSITE_HOST=0.0.0.0 QSITE_PORT=8000 QSITE_DATA_DIR=/tmp/qsite
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin qsite
COPY --from=build /opt/venv /opt/venv
# qsite runs from /app: service/ beside db/ (the SQL it loads) and graphql/operations/ (the
# persisted operations it accepts by hash); the contracts travel with the code they describe.
WORKDIR /app
COPY service/ service/
COPY db/ db/
COPY graphql/ graphql/
COPY openapi/ openapi/
COPY --chmod=755 deploy/qsite.sh /opt/venv/bin/qsite
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["qsite"]
CMD ["serve"]
