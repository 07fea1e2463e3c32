# Two entry points for a fresh machine: `make run` and `make test`.
# Everything else is a step they call. uv pins Python packages from uv.lock; npm pins Azurite.

UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

.PHONY: run test setup lint typecheck unit bench

$(UV):
	python3 -m pip install --quiet --target .tools/lib 'uv==0.13.9'
	mkdir -p .tools/bin && ln -sf ../lib/bin/uv .tools/bin/uv

setup: $(UV)
	$(UV) sync --frozen --quiet
	npm ci --no-audit --no-fund --loglevel=error

## run: the worker on its embedded default: a local emulator, the example rules and sample events
run: $(UV)
	$(UV) sync --frozen --quiet --no-dev
	$(UV) run --frozen --no-dev mlevents test
	$(UV) run --frozen --no-dev mlevents dev

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	scripts/check-dockerfile

typecheck: setup
	$(UV) run --frozen mypy

## unit: the whole suite, two test files at a time (most tests wait on real peers, not on a core)
unit: setup
	$(UV) run --frozen pytest -n 2 --dist loadfile

## test: install what the tests need, then lint, type-check and run the whole suite
test: lint typecheck unit

bench: setup
	$(UV) run --frozen python -m bench
