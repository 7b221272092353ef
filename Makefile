# Two commands on a fresh clone: `make run` and `make test`. Nothing else needs installing:
# without DATABASE_URL both use an embedded PostgreSQL under .pgdata/ (the pgserver package).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint format bench profile backup restore db-url db-stop verify migrate check-deploy clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Embedded PostgreSQL unless DATABASE_URL is set; the server keeps running (and its data) after Ctrl-C.
define with_database
	if [ -z "$${DATABASE_URL:-}" ]; then export DATABASE_URL="$$($(PY) -m config.db.embedded_postgres url)"; fi;
endef

# First run: a git-ignored .env with DEBUG=true and a generated SECRET_KEY, so that the README's
# commands in a second terminal (manage.py seed_demo, ...) see the same settings as the server.
.env: | $(PY)
	@umask 077; printf '# Written by the first `make run` (git-ignored): development settings for every command here.\nDEBUG=true\nSECRET_KEY=%s\n' \
		"$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@
	@echo "Wrote .env (DEBUG=true, a generated SECRET_KEY) for this checkout; edit or delete it as you like."

# collectstatic writes the hashed files and their manifest too (STATIC_MANIFEST=true), so that
# `make check-deploy` and a DEBUG=false run find them (config.checks refuses to start without).
run: $(VENV)/.runtime .env ## Serve the API and admin with gunicorn on 127.0.0.1:$(PORT)
	@export DEBUG="$${DEBUG:-true}" PORT=$(PORT); \
	$(with_database) \
	$(PY) manage.py migrate --noinput && \
	STATIC_MANIFEST=true $(PY) manage.py collectstatic --noinput -v 0 && \
	$(PY) manage.py bootstrap_admin --url "http://127.0.0.1:$(PORT)" && \
	echo "API: http://127.0.0.1:$(PORT)/api/v1/  docs: http://127.0.0.1:$(PORT)/api/docs/  health: http://127.0.0.1:$(PORT)/health" && \
	echo "Ctrl-C stops the server; the database keeps its data (make db-stop stops it too)." && \
	exec $(VENV)/bin/gunicorn -c config/gunicorn.conf.py config.wsgi

test: $(VENV)/.dev ## Run the whole suite against a real PostgreSQL
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev ## Load and cost-growth benchmarks with wrk (bench/README.md)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || { echo "install wrk: apt-get install wrk"; exit 2; }
	$(PY) bench/run.py $(BENCH_ARGS)

profile: $(VENV)/.dev ## Per-request cost of each benchmark scenario, in process, with pyinstrument call trees
	$(PY) bench/profile.py $(PROFILE_ARGS)

lint: $(VENV)/.dev ## ruff (lint and format) and mypy (types), as CI runs them
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SECRET_KEY=mypy-only DATABASE_URL=postgresql://mypy@127.0.0.1:1/unused $(VENV)/bin/mypy

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(VENV)/.runtime
	@$(with_database) $(PY) manage.py migrate --noinput

verify: $(VENV)/.runtime ## Check connectivity, migrations, tables, indexes, pool
	@$(with_database) $(PY) manage.py verify_database

check-deploy: $(VENV)/.runtime
	@$(with_database) DEBUG=false $(PY) manage.py check --deploy --fail-level WARNING

BACKUP_DIR ?= backups

backup: $(VENV)/.runtime ## pg_dump (custom format) the configured database to $(BACKUP_DIR)/<db>-<timestamp>.dump
	@$(with_database) $(PY) -m config.db.backup dump --dir "$(BACKUP_DIR)"

restore: $(VENV)/.runtime ## Restore FILE=... into the configured database (must be empty; CLEAN=1 replaces)
	@if [ -z "$(FILE)" ]; then echo "usage: make restore FILE=backups/<db>-<timestamp>.dump [CLEAN=1] [DATABASE_URL=...]" >&2; exit 2; fi; \
	$(with_database) $(PY) -m config.db.backup restore "$(FILE)" $(if $(CLEAN),--clean)

db-url: $(VENV)/.runtime ## Print the embedded database's URL (starting it if needed)
	@$(PY) -m config.db.embedded_postgres url

db-stop: $(VENV)/.runtime
	@$(PY) -m config.db.embedded_postgres stop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
