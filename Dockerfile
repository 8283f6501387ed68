# qsite application image. PostgreSQL and Redis come from docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY service/__init__.py service/__init__.py
RUN pip install --upgrade pip && pip install .

# The code runs from /app (service/ beside db/, which holds the SQL it loads).
COPY service service
COPY db db
ENV PYTHONPATH=/app

RUN useradd --system --uid 10001 qsite
USER qsite

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["python", "-m", "service", "serve"]
