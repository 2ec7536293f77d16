# Tsunagu: `make run` starts the whole system, `make test` runs every test, `make status` shows
# the running stack. They install what is missing first: uv and the locked Python packages, Kafka's
# jars from Maven Central, PostgreSQL from Debian's packages, Jaeger built with Go from the Go
# module proxy; `make test` also the AsyncAPI parser and HTML generator (Node.js), which only the
# contracts' tests and `make docs` use.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.9.9
UV := var/tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
# The system's trust store (Debian's ca-certificates), as pip, Maven and Go use it.
export UV_NATIVE_TLS ?= 1
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
# Compiled bytecode is kept (in git-ignored __pycache__ folders): the tests start each service as a
# process about a hundred times, and recompiling every module at each start costs seconds.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: new-subscriber run test stop status infra python-deps deps browser-deps examples-deps clean help compose-env contracts docs bench bench-soak bench-intake bench-partners bench-held bench-housing bench-catch-up test-faults

help:
	@echo "make run    start Kafka, PostgreSQL, Jaeger and the four services (Ctrl-C stops them)"
	@echo "make test   start or reuse the infrastructure and run all tests"
	@echo "make stop   stop everything 'make run' started"
	@echo "make status the running stack on one screen (exit 1 when something needs a person)"
	@echo "make new-subscriber NAME=foodbank EVENTS=tsunagu.referral.requested.v1   a new subscriber service"
	@echo "make contracts  regenerate the AsyncAPI document, schemas, examples and each service's openapi.json"
	@echo "make docs   the AsyncAPI document as one HTML page, docs/asyncapi/index.html (works offline)"
	@echo "make bench   the whole loop at rising rates: counter POST -> partner's verified webhook, p50/p95/p99, knee"
	@echo "make bench-soak   ten minutes at SOAK_RATE (100/s): CPU per consultation and RSS per service, each minute"
	@echo "make bench-intake / make bench-partners   throughput figures (print, assert nothing)"
	@echo "make bench-held   referrals racing their consent at 40/s: posted, delivered, held, lost"
	@echo "make bench-housing   supports opened under load, and missed check-ins reaching the lead partner"
	@echo "make bench-catch-up  a consumer behind 100,000 events next to raw aiokafka, and the reports' rebuild"
	@echo "make compose-env   write .env for docker compose"

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv var/tools
	var/tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The environment follows the lock file exactly; a stale lock fails instead of changing silently.
.venv/.synced: $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

# The official AsyncAPI parser, for the contracts' tests.
contracts/tools/node_modules/.installed: contracts/tools/package-lock.json
	npm ci --prefix contracts/tools --no-audit --no-fund --loglevel=error
	@touch $@

# The official AsyncAPI generator and HTML template, for `make docs` and its test.
docs/asyncapi-tools/node_modules/.installed: docs/asyncapi-tools/package-lock.json
	npm ci --prefix docs/asyncapi-tools --no-audit --no-fund --loglevel=error
	@touch $@

python-deps: .venv/.synced

# axe-core, which the browser tests inject into every console page (accessibility).
tests/browser/node_modules/.installed: tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium and a Japanese font for the browser tests (Playwright's own browser download is
# not used). Installed with apt when missing and this runs as root; otherwise the README says how.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -q "Noto Sans CJK"; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
		else echo "[tsunagu] the browser tests need: sudo apt-get install chromium fonts-noto-cjk"; exit 1; fi; fi

# The examples' own packages (examples/), which their tests in `make test` run: the Node webhook
# receiver's standardwebhooks. The Go subscriber's modules come with its build (go.sum pins them).
examples/webhook-receiver-node/node_modules/.installed: examples/webhook-receiver-node/package-lock.json
	npm ci --prefix examples/webhook-receiver-node --no-audit --no-fund --loglevel=error
	@touch $@

examples-deps: examples/webhook-receiver-node/node_modules/.installed

deps: python-deps contracts/tools/node_modules/.installed docs/asyncapi-tools/node_modules/.installed \
	tests/browser/node_modules/.installed browser-deps examples-deps

# Regenerate contracts/asyncapi.yaml, schemas/ and examples/ from the code (the tests fail when they differ).
contracts: deps
	.venv/bin/tsunagu-contracts generate --contracts contracts
	@set -e; for s in $$(.venv/bin/python -c 'import tomllib; print(*(n + ":" + s["module"] for n, s in \
		tomllib.load(open("deploy/stack.toml", "rb"))["services"].items()))'); do \
		if [ -d services/$${s%%:*} ]; then .venv/bin/python -m $${s#*:} openapi > services/$${s%%:*}/openapi.json; fi; done
	@echo "services/*/openapi.json regenerated"
	.venv/bin/python -m tsunagu_servicehost.alerting > deploy/prometheus/alerts.yml

# A runnable subscriber service from the contracts: make new-subscriber NAME=foodbank EVENTS=tsunagu.referral.requested.v1[,...]
# (services/<name>/, or DEST=<folder>); registers it in the topic registry and deploy/stack.toml, then
# locks it into the workspace so the next `make run` installs and starts it.
new-subscriber: python-deps
	@.venv/bin/tsunagu-new-subscriber "$(NAME)" "$(EVENTS)" $(if $(DEST),--dest "$(DEST)")
	$(UV) lock --offline
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch .venv/.synced
	$(MAKE) contracts

# contracts/asyncapi.yaml as one self-contained HTML page (scripts and styles inside): built, not
# checked in; run `make contracts` first when the models changed.
docs: docs/asyncapi-tools/node_modules/.installed
	node docs/asyncapi-tools/generate-docs.mjs contracts/asyncapi.yaml docs/asyncapi

infra: python-deps
	$(PYTHON) deploy/stack.py infra

# Only what running needs: Node.js is for the contracts' tests.
run: python-deps
	@$(PYTHON) deploy/stack.py run

# Each service's /readyz and /metrics, judged by the alert rules' thresholds (docs/operations.md).
status: python-deps
	@.venv/bin/python -m tsunagu_servicehost.status --stack deploy/stack.toml

stop:
	@$(PYTHON) deploy/stack.py stop

# On a Docker host the tests start their own containers (testcontainers); elsewhere the native
# stack from deploy/ is started or reused first. TSUNAGU_TEST_KAFKA_BOOTSTRAP and
# TSUNAGU_TEST_POSTGRES_DSN point the tests at infrastructure of your own instead; on a SCRAM broker
# add its super user as TSUNAGU_TEST_KAFKA_USERNAME (default tsunagu-admin) and
# TSUNAGU_TEST_KAFKA_PASSWORD (in the environment, not on the command line).
# Jaeger, which the trace tests query, is built (the first time: minutes) while the other tests
# run; their fixture waits for that build (one build at a time) and reports its errors.
test: deps
	@mkdir -p var/log; setsid $(PYTHON) deploy/jaegerctl.py build >var/log/jaeger-build.log 2>&1 & jaeger=$$!; \
	if [ -z "$$TSUNAGU_TEST_KAFKA_BOOTSTRAP" ] && ! docker info >/dev/null 2>&1; then \
		$(PYTHON) deploy/stack.py infra || { kill -- -$$jaeger; exit 1; }; fi; \
	.venv/bin/pytest $(PYTEST_ARGS); status=$$?; kill -- -$$jaeger 2>/dev/null; exit $$status

# The fault matrix alone (it is part of `make test` too): services, a broker and PostgreSQL killed
# under load, then everything reconciled; figures in var/test-output/fault-matrix.txt.
test-faults: deps
	@if [ -z "$$TSUNAGU_TEST_KAFKA_BOOTSTRAP" ] && ! docker info >/dev/null 2>&1; then \
		$(PYTHON) deploy/stack.py infra; fi
	.venv/bin/pytest -m faults -s tests/faults $(PYTEST_ARGS)

clean: stop
	$(PYTHON) deploy/kafkactl.py reset
	$(PYTHON) deploy/pgctl.py reset
	rm -rf .venv var

# For docker compose: database passwords generated locally, never committed; .env is written with mode 0600,
# also when an older one was readable by others.
compose-env:
	@$(PYTHON) deploy/stack.py compose-env .env

# Consultations per second through intake -> Kafka -> referral (prints figures, asserts nothing).
# The whole loop, open loop at rising rates: latency from the counter's POST to the partner's
# verified webhook, the knee, CPU and RSS per service.
bench: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/whole_loop.py $(BENCH_ARGS)

# Ten minutes at one rate (SOAK_RATE, 100 by default): CPU per consultation and RSS per service, each minute.
SOAK_RATE ?= 100
bench-soak: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/whole_loop.py --rates $(SOAK_RATE) --soak-minutes 10 $(BENCH_ARGS)

# Consultations per second through intake -> Kafka -> referral (closed loop, a few clients).
bench-intake: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/intake_to_referral.py $(BENCH_ARGS)

# Webhook deliveries per second, and the delay a hanging receiver adds to the others.
bench-partners: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/partner_deliveries.py $(BENCH_ARGS)

# Referrals that race their consent, at a steady 40 consultations/s: posted, delivered, held, lost.
bench-held: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/held_referrals.py $(BENCH_ARGS)

# Supports opened from housing referrals at a steady rate, and missed check-ins to the lead partner.
bench-housing: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/housing_support.py $(BENCH_ARGS)

# A consumer started behind a backlog of 100,000 events: events/s applied, the ratio to raw aiokafka
# relaying the same records, and the report read model rebuilt from the log.
bench-catch-up: python-deps
	@if ! docker info >/dev/null 2>&1; then $(PYTHON) deploy/stack.py infra; fi
	.venv/bin/python tests/benchmarks/catch_up.py $(BENCH_ARGS)
