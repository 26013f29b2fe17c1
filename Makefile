# hypoderm: `make run` sets up what the app needs and serves it; `make test` sets up everything and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hypoderm-installed
SERVE_STAMP := $(VENV)/.hypoderm-serve-installed

.PHONY: setup serve-setup web run bench bundled-model test test-fast lint wheel-check clean

# Everything: the app, the training stack (PyTorch, ...: the `train` extra) and the test tools (`test`).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing PyTorch and the other dependencies (about 1–2 minutes)"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(STAMP)

# What `hypoderm serve` and `hypoderm predict` (ONNX) import, no PyTorch (pyproject.toml's dependencies), into the same
# venv; nothing to do when `make setup` has installed everything already. When $(PYTHON) has a pip that can install
# into another environment (pip >= 22.3: --python), the venv gets no pip of its own (ensurepip took 23 s on the busy
# 2-core VM); `make setup` adds it. --no-compile: Python compiles what the app imports when it first imports it, not
# all of numpy, ONNX, ... now (8 of pip's 20 s of CPU time there).
$(SERVE_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ ! pyproject.toml -nt $(STAMP) ]; then \
		echo "$(VENV) has everything already (make setup)"; \
	else \
		echo "installing the app's dependencies: ONNX Runtime, FastAPI, ... (no PyTorch; about a minute)"; \
		$(PYTHON) -m venv --without-pip $(VENV) && \
		if $(PYTHON) -m pip --python $(PY) --version >/dev/null 2>&1; then \
			$(PYTHON) -m pip --python $(PY) install -q --no-compile -e . ; \
		else \
			$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --no-compile -e . ; \
		fi \
	fi
	touch $@

serve-setup: $(SERVE_STAMP)

# onnxruntime-web for the in-browser app, from the npm registry (package-lock.json pins it)
# `npm ci` is skipped when node_modules was installed from this very package-lock.json (hash recorded).
WEB_LOCK := node_modules/.hypoderm-lock.sha256
web:
	@if [ ! -f package-lock.json ] || ! command -v npm >/dev/null; then \
		echo "npm or package-lock.json missing: the app will fall back to server inference"; \
	elif [ -f $(WEB_LOCK) ] && [ -f node_modules/onnxruntime-web/dist/ort.wasm.min.mjs ] && \
		sha256sum --status -c $(WEB_LOCK) 2>/dev/null; then \
		echo "web assets: node_modules matches package-lock.json (npm ci skipped)"; \
	else bash scripts/install_web_assets.sh && sha256sum package-lock.json > $(WEB_LOCK); fi

# The main job: the diagnosis app with the bundled model (Ctrl-C to stop). HOST/PORT to change where.
HOST ?= 127.0.0.1
PORT ?= 8000
# The Python set-up and `npm ci` run side by side (-j2).
run:
	@$(MAKE) --no-print-directory -j2 serve-setup web
	$(VENV)/bin/hypoderm serve --host $(HOST) --port $(PORT)

# The model-zoo benchmark table (issue 2's first main job).
bench: setup
	$(VENV)/bin/hypoderm bench --models mnv3s,hypodermnet,resnet50 --size 224

# Retrain and re-export the bundled model (MODEL_CARD.md); DATA defaults to the multisource manifest.
DATA ?= ../shared/data/multisource/index-v2.csv
bundled-model: setup
	bash scripts/train_bundled_model.sh $(DATA)

test: setup web
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not e2e"

# ruff (E, F, W, I, B, UP, SIM at 120 columns) and mypy, both configured in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy

# A built wheel is the whole app: it carries its own onnxruntime-web (setup.py). Build it, install it into a fresh
# venv outside the repository, serve it and check that on-device inference is offered and its runtime answers.
wheel-check: setup web
	bash scripts/wheel_check.sh $(PY)

clean:
	rm -rf $(VENV) node_modules build dist src/*.egg-info .pytest_cache
