# The two commands of the README: `make run` (the main job) and `make test`.
# Each creates the virtual environment on first use and installs what it needs, pinned.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench fuzz clean

# pip's own progress shows only under `make run` (PIP_QUIET keeps `make test`'s CI logs short).
PIP_QUIET ?= --quiet
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (first run: torch and friends take a few minutes)..."
	$(BIN)/python -m pip install $(PIP_QUIET) -c constraints.txt -e '.[models,test,workers]'
	@echo "dependencies installed"
	touch $(STAMP)

# The gateway's port: `make run PORT=8080`; default FLOW_PORT (shell or .env), else 8000.
PORT ?=
run: PIP_QUIET :=
run: $(STAMP)
	$(BIN)/flow serve$(if $(PORT), --port $(PORT))

test: $(STAMP)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)  # the worker tests' broker
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)  # the PostgreSQL job-store tests
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)  # the web tests' browser
	$(BIN)/python -m pytest

# The suite without the tests marked slow (real `flow serve` processes, the fuzz, the longest runs).
test-fast: $(STAMP)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)  # the worker tests' broker
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)  # the PostgreSQL job-store tests
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)  # the web tests' browser
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/engine.py

# The gateway fuzz of the test suite, long: a real `flow serve` fuzzed from its own /openapi.json
# until at least FUZZ_REQUESTS requests; prints requests, statuses by class, failures by check and
# the time taken; every distinct failure, with its reproduction, goes to outputs/fuzz_findings.md.
FUZZ_REQUESTS ?= 10000
FUZZ_EXAMPLES ?= 150
fuzz: $(STAMP)
	mkdir -p outputs
	FLOW_FUZZ_REQUESTS=$(FUZZ_REQUESTS) FLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FLOW_FUZZ_FINDINGS=outputs/fuzz_findings.md \
		$(BIN)/python -m pytest tests/gateway/test_fuzz.py -q -p no:cacheprovider

clean:
	rm -rf $(VENV) outputs .pytest_cache
