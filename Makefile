# The two commands on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_STAMP := $(VENV)/.installer
UV_INSTALL := $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode
INSTALLER ?= uv

.PHONY: dev test install lint lock clean bench bench-micro bench-profile bench-ledger fuzz sbom soak wrk deploy-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The installer: uv, pinned with its hashes in requirements/bootstrap.txt and installed by pip, which checks them.
$(UV_STAMP): $(BIN)/python requirements/bootstrap.txt
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/bootstrap.txt
	touch $(UV_STAMP)

# Hash-locked install of every dependency, then the package itself without dependencies (docs/setup.md). uv checks
# every hash as pip does, several times faster; its cache is uv's default (~/.cache/uv, or UV_CACHE_DIR). Bytecode is
# compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, boot would otherwise recompile LiteLLM.
# `make install INSTALLER=pip` is the slower fallback with pip alone, for a platform uv publishes no wheel for.
ifeq ($(INSTALLER),pip)
$(STAMP): $(BIN)/python requirements/dev.txt pyproject.toml
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)
else
$(STAMP): $(UV_STAMP) requirements/dev.txt pyproject.toml
	$(UV_INSTALL) --quiet --require-hashes --no-deps -r requirements/dev.txt
	$(UV_INSTALL) --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)
endif

install: $(STAMP)

# The deployment artifacts' checkers (kubernetes-validate, checkov, hadolint) in their own virtualenv, from their own
# hash-locked file: checkov's dependency tree would conflict with the gateway's pins in requirements/dev.txt.
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
# The Kubernetes release whose schemas (bundled in kubernetes-validate) the manifests are validated against.
KUBERNETES_VERSION := 1.33.0

$(DEPLOY_VENV)/bin/python:
	$(PYTHON) -m venv $(DEPLOY_VENV)

ifeq ($(INSTALLER),pip)
$(DEPLOY_STAMP): $(DEPLOY_VENV)/bin/python requirements/deploy-checks.txt
	$(DEPLOY_VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements/deploy-checks.txt
	touch $(DEPLOY_STAMP)
else
$(DEPLOY_STAMP): $(UV_STAMP) $(DEPLOY_VENV)/bin/python requirements/deploy-checks.txt
	$(BIN)/uv pip install --python $(DEPLOY_VENV)/bin/python --compile-bytecode --quiet --require-hashes --no-deps -r requirements/deploy-checks.txt
	touch $(DEPLOY_STAMP)
endif

# Static checks of the Dockerfile and deploy/kubernetes/ (no container engine or cluster needed): every manifest
# against the Kubernetes schemas, strictly (no unknown field); checkov's policies over both (--skip-download: no call
# to its vendor's service); hadolint over the Dockerfile. Each fails on any finding; a finding is fixed or skipped
# inline with its reason (docs/deployment.md#containers-and-kubernetes).
deploy-check: $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/kubernetes-validate --strict --quiet --kubernetes-version $(KUBERNETES_VERSION) deploy/kubernetes/*.yaml
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework kubernetes dockerfile -f Dockerfile deploy/kubernetes/*.yaml
	$(DEPLOY_VENV)/bin/hadolint Dockerfile

dev: install
	$(BIN)/gateway dev

test: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --durations=30
	$(BIN)/bandit -q -c pyproject.toml -r gateway --severity-level medium
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory deploy-check

lint: install
	$(BIN)/ruff check gateway tests bench

# CycloneDX SBOM of the installed environment (every package, pinned by the hash-locked requirements).
sbom: install
	$(BIN)/cyclonedx-py environment --output-format JSON --output-file sbom.cdx.json $(BIN)/python
	@echo "wrote sbom.cdx.json"

# A longer fuzzing run than the one in `make test` (ten times the cases), the differential property included.
fuzz: install
	GATEWAY_FUZZ_SCALE=10 $(BIN)/python -m pytest -q tests/security/test_fuzz.py tests/security/test_differential.py

# Ten minutes at 50 requests/s with a streaming mix; reports RSS growth, errors, parity (not a CI test).
soak: install
	$(BIN)/python bench/soak.py --seconds 600 --rate 50 --warmup 60

# wrk drives the side-by-side benchmark; installed from Debian's packages when missing.
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

# Not part of `make test`. The comparison at equal cores (bench/compare.py): stock LiteLLM with one worker per core,
# the two-process shape (the gateway's pre-flight forwarding over HTTP), `gateway serve --workers <cores>`, LiteLLM
# with the gateway's trims and the bare stand-in; rewrites the measured section of docs/benchmarks.md and writes the
# raw rounds and the median ratios to var/bench.json.
bench: install wrk
	mkdir -p var
	$(BIN)/python bench/compare.py --rounds 5 --seconds 10 --json var/bench.json

# Not part of `make test`: pytest-benchmark microbenchmarks of the pre-flight's parts.
bench-micro: install
	$(BIN)/python -m pytest -q -p no:cacheprovider bench/micro --benchmark-only --benchmark-columns=min,median,max,ops,rounds

# Not part of `make test`: py-spy samples of the gateway under load, bucketed; flame graph in var/profile/.
bench-profile: install wrk
	$(BIN)/python bench/profile.py --seconds 20

# Not part of `make test`: throughput of reserve+settle on SQLite and the machine's Postgres.
bench-ledger: install
	$(BIN)/python bench/ledger_bench.py --seconds 8

# Re-lock after editing requirements/*.in (needs network access to the package index).
lock: $(UV_STAMP)
	$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header -o requirements/bootstrap.txt requirements/bootstrap.in
	$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header -o requirements/runtime.txt requirements/runtime.in
	$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header -o requirements/dev.txt requirements/dev.in
	$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header -o requirements/image-build.txt requirements/image-build.in
	$(BIN)/uv pip compile --python-version 3.11 --generate-hashes --no-header -o requirements/deploy-checks.txt requirements/deploy-checks.in

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) var .pytest_cache
