# Quick start: `make serve` runs the service on 127.0.0.1:8000, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEIGHTS_DIR ?= $(or $(ANIMEGAN_WEIGHTS_DIR),weights)
# Set to https://download.pytorch.org/whl/cpu for the small CPU-only torch wheel on Linux.
TORCH_INDEX ?=

TS_CLIENT := tests/live/typescript
NODE_STAMP := $(TS_CLIENT)/node_modules/.installed

.PHONY: install serve weights lint test image image-test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/pip install torch==2.13.0 --index-url $(TORCH_INDEX))
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# Download the official checkpoints only when the weights folder holds no model yet.
weights: $(STAMP)
	@if find "$(WEIGHTS_DIR)" -maxdepth 1 \( -name '*.pt' -o -name '*.onnx' \) 2>/dev/null | grep -q .; then \
		echo "models found in $(WEIGHTS_DIR)"; \
	else \
		$(BIN)/animegan-api weights pull --weights-dir "$(WEIGHTS_DIR)"; \
	fi

serve: weights
	mkdir -p jobs
	ANIMEGAN_WEIGHTS_DIR="$(WEIGHTS_DIR)" ANIMEGAN_JOB_DIR=jobs $(BIN)/animegan-api serve

# ruff (lint and format) on everything, mypy strict on the package, the import contracts; then the suite.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The TypeScript client test's packages (openapi-typescript, openapi-fetch, typescript), as package-lock.json pins them.
$(NODE_STAMP): $(TS_CLIENT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(TS_CLIENT) --no-audit --no-fund && touch $@; \
	else \
		echo "npm not found: the TypeScript client test will be skipped"; \
	fi

test: lint $(NODE_STAMP)
	$(BIN)/python -m pytest

# The container image with podman (or docker): see deploy/README.md for BASE_IMAGE and HOST_PIP.
IMAGE ?= animegan-api:local
image:
	IMAGE="$(IMAGE)" HOST_PIP="$(HOST_PIP)" BASE_IMAGE="$(BASE_IMAGE)" docker/build-image

# Only the image's tests (the full suite runs them too when the image exists).
image-test: $(STAMP)
	ANIMEGAN_IMAGE="$(IMAGE)" $(BIN)/python -m pytest -m container

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info $(TS_CLIENT)/node_modules
