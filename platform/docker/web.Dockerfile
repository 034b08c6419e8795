# syntax=docker/dockerfile:1
# mynah-web: the API (gunicorn + Uvicorn workers), and the processes that
# need no models: the webhooks worker, migrations, repair and
# purge_expired. No torch, onnxruntime or PyAV: it installs
# requirements-web.txt only (tests/project/test_platform.py checks that this is all
# the web process imports).
#
#   docker build -f platform/docker/web.Dockerfile -t mynah-web .   # from the repository root
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MYNAH_VAR_DIR=/var/lib/mynah \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 mynah \
    && useradd --system --uid 10001 --gid mynah --create-home --home-dir /home/mynah mynah

WORKDIR /app
COPY requirements-web.txt constraints.txt ./
RUN pip install -r requirements-web.txt -c constraints.txt

COPY manage.py ./
COPY config/ config/
COPY core/ core/
COPY tenants/ tenants/
COPY audit/ audit/
COPY voices/ voices/
COPY jobs/ jobs/
COPY webhooks/ webhooks/
COPY engines/ engines/
COPY templates/ templates/
COPY static/ static/

# Static files (admin, dashboard, Swagger UI) are collected here, at build
# time, into STATIC_ROOT = $MYNAH_VAR_DIR/static, and WhiteNoise serves them:
# do not mount a volume over /var/lib/mynah. The key only lets settings load.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /var/lib/mynah/media \
    && chown -R mynah:mynah /var/lib/mynah

USER 10001
EXPOSE 8000
CMD ["gunicorn", "config.asgi:application", "-c", "config/gunicorn.conf.py"]
