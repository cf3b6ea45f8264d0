# The two set-up commands of README.md:
#   make run    install, start the local stack and run the demo (`newsflow demo --quick`)
#   make test   install, start the local stack and run the whole test suite
# CI (.ci/run) calls `make test`.
SHELL := /bin/bash
NEWSFLOW := .venv/bin/newsflow
export NEWSFLOW_DATA_DIR ?= $(abspath ../shared/data)
# Python caches compiled modules (.pyc) beside their sources, .venv included. Where the
# environment turns that off (PYTHONDONTWRITEBYTECODE), every worker, CLI and test process
# would compile torch, transformers and MLflow again: about 20 s of each training process.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint stack-up stack-down

install:
	bash infra/install.sh

stack-up: install
	$(NEWSFLOW) stack up

stack-down:
	$(NEWSFLOW) stack down

DEMO_FLAGS ?= --quick
run: stack-up
	$(NEWSFLOW) demo $(DEMO_FLAGS)

# Two parts at the same time (infra/test.sh): the tests that share the stack peacefully on
# TEST_WORKERS processes (pytest-xdist; the MiniLM-training tests share one worker,
# `--dist loadgroup`), and the `serial` ones (they stop Kafka or PostgreSQL, or time
# latencies) one after another on a private second stack.
export TEST_WORKERS ?= 2
test: stack-up
	bash infra/test-deps.sh
	bash infra/test.sh

lint: install
	.venv/bin/ruff check pipeline retraining monitoring tests infra
	.venv/bin/ruff format --check pipeline retraining monitoring tests infra
	.venv/bin/mypy
	.venv/bin/lint-imports
