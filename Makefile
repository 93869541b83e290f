# Federation Core — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PORT

# The PostgreSQL + Redis run of the suite (DESIGN §10). Override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fcore
TEST_BROKER_URL   ?= redis://127.0.0.1:6379/15
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

.PHONY: install run test test-sqlite test-postgres lint wheel bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_seed
	$(BIN)/python manage.py serve --port $(PORT)

test: install lint test-sqlite test-postgres

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run > /dev/null

# Embedded default: SQLite, Celery eager inside the tests, then a real worker subprocess
# over the file-system broker for the end-to-end tests.
test-sqlite: install
	FCORE_VAR_DIR=var/test-sqlite $(PYTEST) -m "not postgres and not worker"
	rm -rf var/test-sqlite-worker
	FCORE_VAR_DIR=var/test-sqlite-worker FCORE_TEST_WORKER=1 \
	  FCORE_TEST_SQLITE_NAME=var/test-sqlite-worker/test.sqlite3 $(PYTEST) -m "worker and not postgres"

# PostgreSQL with real transactions, then a real Celery worker over Redis. Skipped when
# PostgreSQL is unreachable, unless FCORE_REQUIRE_SERVICES=1 (then it fails).
test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(TEST_DATABASE_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3).close()" 2>/dev/null \
	   || [ "$$FCORE_REQUIRE_SERVICES" = "1" ]; then \
	  set -e; \
	  DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	    FCORE_VAR_DIR=var/test-postgres $(PYTEST) --create-db -m "not worker"; \
	  DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	    FCORE_VAR_DIR=var/test-postgres FCORE_TEST_WORKER=1 $(PYTEST) --create-db -m worker; \
	else echo "PostgreSQL not reachable at $(TEST_DATABASE_URL): PostgreSQL run skipped"; fi

# The wheels of FC and of the offline verifier (fc-verify), in dist/ (docs/operations.md).
wheel: install
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist . ./verifier

bench: install
	@echo "benchmarks live in bench/ (see docs/operations.md)"

clean:
	rm -rf var/test-* .pytest_cache
