# Task entry points. CI (.ci/run) calls these unchanged.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test lint proto proto-check buf bench bench-cpu bench-scale faults demo clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

## make run: the whole stack on embedded PostgreSQL and Redis (Ctrl-C stops it all)
run: install
	$(BIN)/scoreboard run

## make demo: seed players and simulate activity on a running stack (or start one first)
demo: install
	$(BIN)/scoreboard demo $(DEMO_ARGS)

## make test: every test (uses SCOREBOARD_TEST_DATABASE_URL / _REDIS_URL, else embedded servers)
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

node_modules/.bin/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $@

buf: node_modules/.bin/buf
	cd protos && ../node_modules/.bin/buf lint
	@if git rev-parse --verify -q HEAD~1 >/dev/null && git cat-file -e HEAD~1:protos/buf.yaml 2>/dev/null; then \
		cd protos && ../node_modules/.bin/buf breaking --against '../.git#ref=HEAD~1,subdir=protos'; \
	fi

## make lint: ruff, mypy (strict), buf lint and breaking, generated code freshness
lint: install buf proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make bench: capacity benchmark (BENCH_ARGS="--seconds 20 --users 100000" for a short run)
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

## make bench-cpu: CPU ms per completion per process only (about 2 minutes, own stack)
bench-cpu: install
	$(BIN)/python -m bench --own-stack --phases idle,cpu-grpc,cpu-rest --seconds 20 --users 100000 $(BENCH_ARGS)

## make bench-scale: throughput with 1 and then 2 score_service replicas and edge processes
bench-scale: install
	$(BIN)/python -m bench --own-stack --replicas 1 2 --generators 2 --phases cpu-grpc,grpc-uniform,rest $(BENCH_ARGS)

## make faults: the fault suite (FAULTS_ARGS="--scenarios redis-pause kill-score --pause 3")
faults: install
	$(BIN)/python -m bench.faults $(FAULTS_ARGS)

proto: install
	$(BIN)/python tools/gen_protos.py

proto-check: install
	$(BIN)/python tools/gen_protos.py --check

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
