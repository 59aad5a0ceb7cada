# The two commands of the README: `make report` (the conformance report over the
# bundled backends) and `make test` (every test). Both create .venv first.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: venv report test test-core test-keras test-floors lint chromium clean

venv: $(STAMP)

$(STAMP): requirements/ci.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/ci.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

report: venv
	$(PY) -m fusion_spec.conformance

# Keras reads KERAS_BACKEND once per process, so its tests run once per backend.
test: venv chromium lint test-core test-keras

# Debian's chromium for the headless render test of the docs site (no-op when present).
chromium:
	bash tools/install-chromium.sh || echo "WARNING: Debian's chromium could not be installed; tests/docs/test_render.py will skip"

lint: venv
	$(PY) -m ruff check .

test-core: venv
	$(PY) -m pytest -q -n 2 --ignore=tests/keras

test-keras: venv
	KERAS_BACKEND=jax $(PY) -m pytest -q tests/keras
	KERAS_BACKEND=torch $(PY) -m pytest -q tests/keras
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests/keras
	KERAS_BACKEND=numpy $(PY) -m pytest -q tests/keras

# The declared floors of the core dependencies (requirements/floors.txt) in a venv of
# their own: the spec and reference tests. A job of its own, not part of `make test`.
# numpy 1.24 has wheels up to Python 3.11: PYTHON_FLOORS is a 3.10 or 3.11 interpreter.
PYTHON_FLOORS ?= python3.11
FLOORS := .venv-floors/.installed

$(FLOORS): requirements/floors.txt pyproject.toml
	$(PYTHON_FLOORS) -m venv .venv-floors
	.venv-floors/bin/python -m pip install --quiet --upgrade pip
	.venv-floors/bin/python -m pip install --quiet -r requirements/floors.txt
	.venv-floors/bin/python -m pip install --quiet --no-deps -e .
	touch $(FLOORS)

test-floors: $(FLOORS)
	.venv-floors/bin/python -m pytest -q -n 2 tests/spec tests/reference

clean:
	rm -rf .venv .venv-floors site reports
