# Lumi: the two promised commands (`make dev`, `make test`) and the tools around them.
# Everything a target needs is installed by the target itself: nothing by hand.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export CARGO_TERM_COLOR ?= auto

# One Lambda per crate under functions/, its binary named after it.
FUNCTIONS := $(notdir $(wildcard functions/*))
CARGO_LAMBDA := $(VENV)/bin/cargo-lambda lambda

.PHONY: help
help: ## This list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# libjpeg-turbo (the images function's JPEG codec) builds with cmake and nasm.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: native-tools
native-tools:
	@command -v cmake >/dev/null && command -v nasm >/dev/null || { \
		echo "installing cmake and nasm (libjpeg-turbo's build) with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake nasm; }

$(STAMP): infra/requirements.txt | native-tools
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Python tools: moto, cfn-lint, sam, cargo-lambda, openapi validator (pinned)

# The API reference at /docs: Redoc's bundle, pinned and checked (infra/src/api_docs.rs).
REDOC_VERSION   := 2.5.4
REDOC_INTEGRITY := sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==
REDOC           := .tools/redoc-$(REDOC_VERSION)/redoc.standalone.js

$(REDOC): | $(STAMP)
	$(PY) infra/scripts/fetch_redoc.py $(REDOC_VERSION) $(REDOC_INTEGRITY) $@

# The headless browser that checks the /docs page renders (tests/tests/api_docs.rs).
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium (the API reference's rendering test) with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

.PHONY: dev
# The Python tools and Redoc install while cargo compiles (neither needs the other): on a fresh
# clone that is the venv's minute off the time to the first request.
dev: native-tools ## Serve the whole API on http://127.0.0.1:3000 (reference at /docs) against a local AWS stack
	$(MAKE) --no-print-directory $(STAMP) $(REDOC) & tools=$$!; \
		cargo build -p lumi-infra --bin lumi && wait $$tools
	target/debug/lumi dev --port 3000

.PHONY: backup
backup: $(STAMP) ## Run the backup job now against the `make dev` stack (make dev must be running)
	cargo build -p lumi-infra --bin lumi
	target/debug/lumi backup run --env-file target/local-env/backup.env

.PHONY: restore-check
restore-check: $(STAMP) ## Restore the newest backup into temporary tables and verify it (make dev running)
	cargo build -p lumi-infra --bin lumi
	target/debug/lumi backup restore-check --env-file target/local-env/backup.env

.PHONY: test
test: $(STAMP) $(REDOC) chromium lint ## Formatting, clippy, template and OpenAPI lint, then every test
	LUMI_REQUIRE_LOCALSTRIPE=1 LUMI_REQUIRE_CHROMIUM=1 cargo test --workspace --all-targets --no-fail-fast

.PHONY: fuzz
fuzz: $(STAMP) ## Schemathesis against a stack of its own, unseeded: make fuzz [FUZZ_SECONDS=900] (per role)
	LUMI_FUZZ_SECONDS=$(or $(FUZZ_SECONDS),900) cargo test -p lumi-tests --test schemathesis -- --ignored --nocapture

.PHONY: soak
soak: $(STAMP) ## Long commerce history check: make soak SEED=7,8 OPS=2000 (SEED=random by default)
	LUMI_HISTORY_SEEDS=$(or $(SEED),random) LUMI_HISTORY_OPS=$(or $(OPS),1000) \
		cargo test -p lumi-tests --test commerce_history -- --nocapture

.PHONY: lint
lint: $(STAMP) ## rustfmt, one feature set for dev and test, clippy -D warnings, cfn-lint, sam validate --lint, OpenAPI
	cargo fmt --all --check
	$(PY) infra/scripts/check_features.py
	@# unsafe_code is denied workspace-wide; the exceptions: imaging/src/webp.rs (libwebp) and
	@# imaging/src/scaled_jpeg/avx2.rs (the decoder's MCU compiled for AVX2, vector loads).
	@! grep -rln --include='*.rs' 'allow(unsafe_code)' shared commerce functions infra tests bench imaging \
		| grep -vx -e 'imaging/src/webp.rs' -e 'imaging/src/scaled_jpeg/avx2.rs' | grep . \
		|| { echo 'unsafe_code allowed outside imaging/src/webp.rs and imaging/src/scaled_jpeg/avx2.rs' >&2; false; }
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --template template.yaml
	$(VENV)/bin/openapi-spec-validator docs/openapi.yaml

.PHONY: build
build: $(STAMP) ## cargo lambda build --release for every function (target/lambda/<name>/bootstrap)
	$(CARGO_LAMBDA) build --release $(addprefix -p ,$(FUNCTIONS))

.PHONY: sam-build
sam-build: $(STAMP) ## sam build (BuildMethod rust-cargolambda) into .aws-sam/
	$(VENV)/bin/sam build --template template.yaml

# The event each function's cold start is measured with: one that needs no AWS call, since
# the bench serves only the Lambda Runtime API.
BENCH_EVENT_health := events/health/live.json
BENCH_EVENT_auth   := events/auth/03-me.401.json
BENCH_EVENT_orders := events/orders/02-cart.401.json
BENCH_EVENT_admin  := events/admin/01-orders.401.json
BENCH_EVENT_refund-email := events/refund-email/empty-batch.json
BENCH_EVENT_images := events/images/03-admin-images.401.json
# Scheduled jobs' cold starts cost nobody a wait (nor do Secrets Manager's rotation steps, nor the
# health probe's, which calls the API itself and has no sample event): not
# benchmarked.
BENCH_FUNCTIONS := $(filter-out backup secret-rotation health-probe,$(FUNCTIONS))
bench_event = $(or $(BENCH_EVENT_$(1)),$(firstword $(sort $(wildcard events/$(1)/*.json))))

.PHONY: bench
# GNU time: the images bench's cold path reads each process's peak memory from it.
.PHONY: bench-tools
bench-tools:
	@test -x /usr/bin/time || { \
		echo "installing GNU time (the images bench's peak memory) with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq time; }

bench: $(STAMP) | bench-tools ## Cold start and size of every function next to hello-world; images against sharp (warm, and the cold path as a fresh process); the signed image GET's overhead; AWS calls; load
	$(CARGO_LAMBDA) build --release $(addprefix -p ,$(FUNCTIONS)) -p hello-lambda
	cargo build --release -p lumi-bench
	target/release/lumi-bench cold-start --lambda-dir target/lambda --reference hello-lambda \
		$(foreach f,$(BENCH_FUNCTIONS),--function $(f)=$(call bench_event,$(f))) \
		--runs 30 --json target/bench-cold-start.json
	cargo build -p lumi-infra --bin lumi
	target/debug/lumi bench aws-calls --requests 200
	target/release/lumi-bench $(BENCH_LOAD)
	bash imaging/bench/run.sh
	GLIBC_TUNABLES=$(IMAGES_GLIBC_TUNABLES) target/release/lumi-bench $(BENCH_IMAGE_GET)

# The local stack under load: `lumi dev` (what `make dev` serves, debug build) driven by
# CLIENTS concurrent customers for DURATION seconds; p50, p99 and 5xx against the goal (8
# clients: p99 under 1 s, no 5xx). `make bench` runs it too; this runs it alone.
BENCH_LOAD = load --lumi target/debug/lumi --clients $(or $(CLIENTS),8) \
	--duration $(or $(DURATION),30) --json target/bench-load.json

# The signed image GET's own overhead (signature, S3 read from moto, rate limiter, headers) over
# the bare resize800_jpeg transform, in one release process against a stack of its own (goal:
# under 5 %). `make bench` runs it too; this runs it alone.
BENCH_IMAGE_GET = image-get --runs 30 --warmup 3 --json target/bench-image-get.json
# It runs with the images function's glibc tunables from template.yaml, as Lambda runs that
# function and imaging/bench/run.sh runs the transform (moto, its child, without them).
IMAGES_GLIBC_TUNABLES = $(shell sed -n 's/^ *GLIBC_TUNABLES: *//p' template.yaml)

.PHONY: bench-image-get
bench-image-get: $(STAMP) ## Only the signed image GET's overhead over the bare transform (release build)
	cargo build --release -p lumi-bench
	GLIBC_TUNABLES=$(IMAGES_GLIBC_TUNABLES) target/release/lumi-bench $(BENCH_IMAGE_GET)

.PHONY: bench-load
bench-load: $(STAMP) ## Only the load figures: make bench-load [CLIENTS=8] [DURATION=30]
	cargo build -p lumi-infra --bin lumi
	cargo build -p lumi-bench
	target/debug/lumi-bench $(BENCH_LOAD)

# The monthly dependency audit (the runbook's "Dependency audit"; CI runs it monthly and on every
# change to Cargo.lock, never as part of `make test`: it needs the network). cargo-deny is pinned
# and installed by the target into .tools/ (built with --locked). Licenses, bans and sources are
# checked from Cargo.lock alone; advisories need the RustSec database from GitHub, so they are
# checked when it is reachable and skipped, saying so, when not.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := .tools/cargo-deny-$(CARGO_DENY_VERSION)/bin/cargo-deny
ADVISORY_DB := https://github.com/rustsec/advisory-db

$(CARGO_DENY):
	cargo install --locked --quiet cargo-deny@$(CARGO_DENY_VERSION) --root $(abspath $(dir $@)..)

.PHONY: audit
audit: $(CARGO_DENY) ## Dependency audit: cargo deny (licenses, bans, sources; advisories when reachable)
	$(CARGO_DENY) --all-features check licenses bans sources
	@if timeout 30 git ls-remote --exit-code $(ADVISORY_DB) HEAD >/dev/null 2>&1; then \
		$(CARGO_DENY) --all-features check advisories; \
	else \
		echo "advisories skipped: database unreachable ($(ADVISORY_DB))"; \
	fi

# `make deploy ENV=staging|prod [REGION=...]`: ENV picks a config env of samconfig.toml (stack,
# stage, rollout, alarm email). Only a make argument or a staging/prod value counts as ENV, since
# some shells export ENV for their own use. The region is REGION, else AWS_REGION or an
# AWS_DEFAULT_REGION of your own, else your AWS profile's: never the local stack's default above.
DEPLOY_ENV := $(if $(or $(filter command line,$(origin ENV)),$(filter staging prod,$(ENV))),$(ENV),staging)
REGION ?= $(or $(AWS_REGION),$(if $(filter-out file default undefined,$(origin AWS_DEFAULT_REGION)),$(AWS_DEFAULT_REGION)))
ifneq ($(filter deploy,$(MAKECMDGOALS)),)
ifeq ($(filter staging prod,$(DEPLOY_ENV)),)
$(error ENV must be staging or prod (a config env of samconfig.toml), not "$(DEPLOY_ENV)")
endif
endif

.PHONY: deploy
deploy: sam-build ## sam deploy --config-env ENV (ENV=staging|prod, default staging), then complete the config secret
	env -u AWS_DEFAULT_REGION $(VENV)/bin/sam deploy --config-env $(DEPLOY_ENV) $(if $(REGION),--region $(REGION))
	@echo "First deploy of this stack? Now run: cargo run -p lumi-infra --bin lumi -- secrets init --secret-id <ConfigSecretArn output>"

.PHONY: clean
clean: ## Remove build outputs (keeps .venv)
	cargo clean
	rm -rf .aws-sam
