# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv when it is missing (or older than pyproject.toml) and installs the
# package into it with the extras it needs.
# pip -qq: errors only, so that `make demo` prints the demo, not the build backend's
# notices about the (compat) editable install or the machine's index settings.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test proactor-suite lint soak bench docs clean

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV) (once; installs the package and its test extras)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m wsp_async demo

# The suite fails on any warning (pyproject), on the Proactor too: its transports close
# their sockets themselves now that every socket answers shutdown() as on Windows
# (docs/proactor.md, "What differs").
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider
	$(BIN)/python -m pytest -q -p no:cacheprovider --asyncio-proactor
	$(MAKE) --no-print-directory proactor-suite

# CPython's own Proactor tests on wsp_async's ProactorEventLoop (SPEC S17): prints pass,
# fail and skip per class and the pass rate; fails under 90% or on an unexpected failure.
proactor-suite: $(STAMP)
	$(BIN)/python -m wsp_async cpython-suite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The models and the hostile probes, longer: the send path's model, the completion surfaces'
# model (descriptor counts, a log handler that fails on any ERROR record), the stress runs
# and the hostile tests of the surfaces; warnings are errors (pyproject), pytest-timeout is
# the watchdog for hangs (with every thread's stack on expiry).  Then the whole suite with
# the interpreter switching threads every 10 us instead of 5 ms (tests/conftest.py).
soak: $(STAMP)
	WSP_SOAK=1 $(BIN)/python -X dev -m pytest -q -p no:cacheprovider tests/test_stateful.py \
		tests/test_stateful_surfaces.py tests/test_surfaces_hostile.py tests/test_surfaces_fuzz.py \
		tests/test_stress.py tests/test_aio_cancel_fuzz.py \
		--timeout=3600 -s
	WSP_SWITCH=1e-5 $(BIN)/python -m pytest -q -p no:cacheprovider

# The API reference and the guide (docs/), built from the docstrings with warnings as
# errors; open docs/_build/html/index.html.  docs/api/ is written at each build from the
# modules' __all__ (docs/apipages.py).
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	@$(BIN)/python -m pip install -qq -e '.[test,docs]' --config-settings editable_mode=compat
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python -m wsp_async bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache docs/_build docs/api
