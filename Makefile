# kinesis-fanout: every command a developer or CI needs. Each target sets up what it uses.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON ?= python3
TOOLS := $(VENV)/.tools-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# One target dir for every build, test and cargo-lambda run.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

FN ?= email-notifier
EVENT ?= order-placed.json
PORT ?= 9000

.PHONY: help tools build test lint watch up down invoke demo dlq redrive chaos fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

tools: $(TOOLS) ## install the Python tools (cargo-lambda, moto, cfn-lint) into .venv

build: ## build both functions
	cargo build --workspace --bins

test: $(TOOLS) ## run every test, and lint the SAM template
	cargo test --workspace
	cfn-lint template.yaml

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

watch: $(TOOLS) ## run the functions under cargo lambda watch, no AWS endpoint (PORT=9000)
	cargo lambda watch --env-file local.env --invoke-port $(PORT)

up: $(TOOLS) build ## start the local AWS-API server and the functions, and leave them running
	scripts/stack.sh up

down: ## stop what 'make up' started
	scripts/stack.sh down

invoke: $(TOOLS) ## invoke a function on the running stack: make invoke FN=email-notifier EVENT=order-placed.json
	scripts/stack.sh invoke $(FN) $(EVENT)

demo: $(TOOLS) build ## the whole system offline: server, functions, every sample, a report
	scripts/stack.sh demo

chaos: $(TOOLS) ## the full chaos replay: 10,000 events over 500 keys, a fifth of AWS calls failing
	CHAOS_EVENTS=$${CHAOS_EVENTS:-10000} cargo test -p integration-tests --test chaos -- --nocapture

FUZZ_SECONDS ?= 60
fuzz: ## fuzz the decoders (FUZZ_SECONDS per target; needs cargo-fuzz: cargo install cargo-fuzz)
	mkdir -p fuzz/corpus/decode && cp events/*.json fuzz/corpus/decode/
	cd fuzz && for target in decode kpl; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=512 -malloc_limit_mb=256; \
	done

# The dead-letter queue of the running local stack; for AWS, run scripts/dlq.py with DLQ_URL set.
LOCAL_ENDPOINT = --endpoint http://127.0.0.1:$$(cat .local/moto.port)

dlq: $(TOOLS) ## list the poison records in the local stack's dead-letter queue
	.venv/bin/python scripts/dlq.py list $(LOCAL_ENDPOINT)

redrive: $(TOOLS) ## put the local dead-letter queue's records back on the stream
	.venv/bin/python scripts/dlq.py redrive $(LOCAL_ENDPOINT)

clean: ## remove build output and the tools
	cargo clean
	rm -rf $(VENV) .local
