# codeengine: the two commands are `make run` and `make test`; both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_CLUSTERS := var/test-clusters
APT_PACKAGES := redis-server

.PHONY: help run test lint typecheck format screenshots bench bench-http bench-offline bench-records capacity bootstrap system-packages clean
BENCH_HTTP_ARGS ?=
BENCH_RECORDS_ARGS ?=

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-packages: ## Install redis-server, chromium, CJK fonts, promtool, openssl, wrk, nodejs (and python3-venv) with apt if absent
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

bootstrap: system-packages $(STAMP) ## Install everything the project needs

CITIES ?=
run: bootstrap ## Start cluster, dev keys, issuer (:8080) and verifier (:8081); CITIES=all adds every city's primary and backup
	$(VENV)/bin/codeengine run --cities "$(CITIES)"

test: bootstrap ## Run the whole suite against a throwaway Redis Cluster
	@mkdir -p $(TEST_CLUSTERS)
	CE_TEST_CLUSTER_DIR=$(TEST_CLUSTERS) $(PY) -m pytest; status=$$?; \
	$(PY) -m codeengine.ops.devcluster_reaper $(TEST_CLUSTERS); \
	if [ $$status -eq 5 ]; then echo "no tests ran"; fi; exit $$status

lint: bootstrap ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: bootstrap ## Apply ruff format and the safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: bootstrap ## mypy --strict on everything
	$(VENV)/bin/mypy

screenshots: bootstrap ## Screenshots of the pages at phone and desktop size into docs/screenshots/
	$(PY) -m tools.screenshots

bench: bootstrap ## Micro-benchmarks, timed for real
	$(PY) -m pytest bench --benchmark-enable --benchmark-only -p no:randomly

bench-http: bootstrap ## HTTP throughput under wrk beside the floors; JSON in bench/results/
	$(PY) -m bench.http $(BENCH_HTTP_ARGS)

bench-offline: bootstrap ## Offline verify rate beside the raw signature-verify rate
	$(PY) -m bench.offline

bench-records: bootstrap ## Topic library: stream to store on one core, 10^8 scans, the four questions
	$(PY) -m bench.records $(BENCH_RECORDS_ARGS)

capacity: bootstrap ## Write docs/capacity.md from bench/results/latest.json
	$(PY) -m bench.capacity

clean: ## Remove the venv and every generated file under var/ (stop `make run` first)
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
