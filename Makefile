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

FN ?= inventory-updater
EVENT ?= order-placed
PORT ?= 9000
ARGS ?= generate --orders 200 --keys 20

.PHONY: help tools bins build test test-template bench lint watch up down invoke produce demo dlq redrive snapshot stock order events chaos fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS): requirements-dev.txt
	@echo "installing the Python tools into $(VENV) (cargo-lambda, SAM CLI, zig, moto, cfn-lint): about a minute and a half, once"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# checkov pins its own boto3, which SAM CLI's does not allow: it gets a venv of its own, in .venv.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV := $(CHECKOV_VENV)/.installed
$(CHECKOV): requirements-checkov.txt
	@echo "installing checkov into $(CHECKOV_VENV): about a minute, once"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

tools: $(TOOLS) $(CHECKOV) ## install the Python tools (cargo-lambda, SAM CLI, zig, moto, cfn-lint, checkov) into .venv

bins: ## build the functions and the local tools (producer, local-esm, fanout) for local runs (debug)
	@[ -x "$(CARGO_TARGET_DIR)/debug/fanout" ] || echo "building the functions and the local tools (debug): the first build compiles the AWS SDK, several minutes on 2 cores, once"
	cargo build --workspace --bins

# `sam build` builds each function with cargo-lambda (release, zig as the linker) into .aws-sam/.
# Lambda runs arm64 by default; a machine without the aarch64 Rust target builds x86_64, and
# `sam deploy` must then be told the same: --parameter-overrides Architecture=x86_64.
ARCH ?= $(shell rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu && echo arm64 || echo x86_64)
SAM := SAM_CLI_TELEMETRY=0 SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 sam
build: $(TOOLS) ## sam build the functions (ARCH=arm64|x86_64; x86_64 when the arm64 target is missing)
	@echo "sam build for $(ARCH) (the template's default is arm64): each function compiled in release by cargo-lambda, several minutes, with no output while CargoLambdaBuild runs"
	$(SAM) build --parameter-overrides Architecture=$(ARCH)
	@# What was built is what `sam deploy` (and --guided) offers: its Architecture follows the build.
	@if [ ! -f samconfig.toml ]; then \
	  printf 'version = 0.1\n\n[default.deploy.parameters]\nparameter_overrides = "Architecture=%s"\n' "$(ARCH)" >samconfig.toml; \
	  echo "samconfig.toml: sam deploy now defaults to Architecture=$(ARCH), the architecture just built"; \
	elif ! grep -q "Architecture=$(ARCH)" samconfig.toml; then \
	  echo "built for $(ARCH): deploy with --parameter-overrides Architecture=$(ARCH) (samconfig.toml says otherwise)"; \
	fi

test: $(TOOLS) $(CHECKOV) ## run every test, and check the SAM template
	cargo test --workspace
	$(VENV)/bin/python -m unittest discover -s tests/python
	$(MAKE) --no-print-directory test-template

test-template: $(TOOLS) $(CHECKOV) ## cfn-lint, sam validate --lint and checkov on template.yaml
	cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1 --template-file template.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation \
	  --quiet --compact --skip-download

bench: $(TOOLS) ## the benchmarks against the peers: prints a table and writes BENCHMARKS.md (RUNS=21)
	$(VENV)/bin/python scripts/bench.py --runs $${RUNS:-21}

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

watch: $(TOOLS) ## run the functions under cargo lambda watch, no AWS endpoint (PORT=9000)
	cargo lambda watch --env-file local.env --invoke-port $(PORT)

up: $(TOOLS) bins ## start the local AWS-API server, the functions and the local event source mapping
	@scripts/stack.sh up

down: ## stop what 'make up' started
	@scripts/stack.sh down

invoke: $(TOOLS) bins ## invoke a function on the running stack and say what it did: make invoke FN=inventory-updater EVENT=order-placed (JSON=1: the raw response)
	@scripts/stack.sh invoke $(FN) $(EVENT)

produce: ## put events on the running stack's stream (ARGS="generate --orders 200 --keys 20", or "put FILE.jsonl")
	@scripts/stack.sh produce $(ARGS)

demo: $(TOOLS) bins ## the whole pipeline offline: producer -> stream -> event source mapping -> functions, a report
	@scripts/stack.sh demo

chaos: $(TOOLS) ## the full chaos replay: 10,000 events over 500 keys, a fifth of AWS calls failing
	CHAOS_EVENTS=$${CHAOS_EVENTS:-10000} cargo test -p integration-tests --test chaos -- --nocapture

FUZZ_SECONDS ?= 60
fuzz: ## fuzz the decoders (FUZZ_SECONDS per target; needs cargo-fuzz: cargo install cargo-fuzz)
	mkdir -p fuzz/corpus/decode && cp events/*.json fuzz/corpus/decode/
	cd fuzz && for target in decode kpl; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=512 -malloc_limit_mb=256; \
	done

# The dead-letter queue of the running local stack; for AWS, run target/debug/fanout (or a release
# build of tools/fanout) with DLQ_URL, FAILURE_BUCKET, STREAM_NAME and IDEMPOTENCY_TABLE set.
REDRIVE ?=
dlq: $(TOOLS) bins ## list the local stack's dead-letter queue and failure bucket
	@scripts/stack.sh dlq

redrive: $(TOOLS) bins ## put the local failures back on the stream (REDRIVE="--dry-run", "--only-reason TEXT", "--sequence N", "--all")
	@scripts/stack.sh redrive $(REDRIVE)

snapshot: $(TOOLS) ## print the running stack's stock, reservations, emails, ledger and dead-letter queue
	@scripts/stack.sh snapshot

SET ?=
ADD ?=
SKU ?=
stock: $(TOOLS) ## set or add units of stock, then print it: make stock SET=20 (or ADD=5; SKU=sku-apple for one product)
	@scripts/stack.sh stock $(if $(SET),--set $(SET)) $(if $(ADD),--add $(ADD)) $(foreach s,$(SKU),--sku $(s))

ID ?=
order: $(TOOLS) ## one order as the read API answers it, for a person: make order ID=<orderId>
	@scripts/stack.sh order $(ID)

events: $(TOOLS) ## write the sample events (events/*.json) and events/README.md, which decodes them
	$(VENV)/bin/python events/generate.py
	$(VENV)/bin/python events/generate_kpl.py
	$(VENV)/bin/python events/describe.py

clean: ## remove build output and the tools
	cargo clean
	rm -rf $(VENV) .local .aws-sam
