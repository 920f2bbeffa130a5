# The two quick-start commands are `make run` and `make test`; everything else helps them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON_VERSIONS ?= 3.13 3.12 3.11
PY := $(VENV)/bin/python
# Extras installed into every venv; DJANGO pins the Django series (empty: newest allowed).
EXTRAS ?= redis,rabbitmq,postgres,metrics,test
DJANGO ?=
PYTEST_ARGS ?=
# Where `make run` serves the demo: `make run PORT=8123`.
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO := cd testproject && ../$(PY) manage.py

.PHONY: help install chromium rabbitmq-management run test lint types pytest pytest-postgres docs test-django52 screenshots bench soak clean

help:  ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $$(scripts/find-python $(PYTHON_VERSIONS)) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" $(if $(DJANGO),"Django$(DJANGO)")
	@touch $@

install: $(VENV)/.installed  ## Create .venv and install taskkit (editable) with its extras and test tools.

run: install  ## Install, migrate, print an admin login, start the demo: web + worker + Beat (PORT=8000).
	$(DEMO) migrate --noinput
	$(DEMO) ensure_admin --address $(HOST):$(PORT)
	cd testproject && { ../$(PY) manage.py taskworker --queues '*' --beat --pool threads & \
		worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
		../$(PY) manage.py runserver $(HOST):$(PORT); }

lint: install  ## ruff lint and format check.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: install  ## mypy, strict.
	$(VENV)/bin/mypy taskkit tests testproject bench

chromium:  ## Debian's chromium for the browser tests, installed with apt when missing.
	@command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; }

rabbitmq-management:  ## RabbitMQ's management plugin (the queue tests read its API), enabled when it does not answer.
	@curl -fso /dev/null -u guest:guest http://127.0.0.1:15672/api/overview || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo rabbitmq-plugins enable --quiet rabbitmq_management; \
		for _ in $$(seq 60); do \
			curl -fso /dev/null -u guest:guest http://127.0.0.1:15672/api/overview && exit 0; sleep 1; \
		done; echo "RabbitMQ's management API does not answer on 127.0.0.1:15672" >&2; exit 1; }

pytest: install chromium rabbitmq-management  ## The test suite with coverage.
	$(VENV)/bin/pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

pytest-postgres: install  ## The test suite again on PostgreSQL (127.0.0.1:5432, user postgres), on Redis only, reliability and browser tests aside.
	TASKKIT_TEST_DATABASE=postgres TASKKIT_TEST_BROKERS=redis $(VENV)/bin/pytest -m "not reliability" --ignore=tests/browser $(PYTEST_ARGS)

docs: install  ## Build the Sphinx docs, warnings as errors.
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: lint types pytest pytest-postgres docs  ## Install everything, run every check: ruff, mypy, pytest on SQLite and PostgreSQL, Sphinx.

test-django52:  ## The test suite once more on Django 5.2 LTS (with the django-tasks backport), on Redis.
	TASKKIT_TEST_BROKERS=redis $(MAKE) pytest VENV=.venv-django52 PYTHON_VERSIONS=3.11 DJANGO="~=5.2.0" \
		EXTRAS="redis,rabbitmq,postgres,metrics,test,backport" PYTEST_ARGS='-m "not reliability"'

screenshots: install chromium  ## Run the browser tests, then copy the pages the docs and README show into docs/_static/screenshots.
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/browser
	for shot in docs/_static/screenshots/*.png; do cp build/screenshots/$$(basename $$shot) $$shot; done

bench: install  ## Benchmarks against raw Celery on the local Redis (db 14); BENCH_ARGS=--quick.
	$(PY) bench/run.py $(BENCH_ARGS)

soak: install  ## Soak (not in CI): 100,000 runs over 5 min, 2 workers, 2 Beats, private redis-server and PostgreSQL database; SOAK_ARGS=--quick.
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:  ## Remove virtualenvs and build output.
	rm -rf .venv .venv-django52 docs/_build .coverage htmlcov .mypy_cache .ruff_cache .pytest_cache
