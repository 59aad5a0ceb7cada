# The two commands of the README: `make report` (the conformance report over the
# bundled backends) and `make test` (every test). Both create .venv first.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: venv report test test-core test-keras lint chromium clean

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

clean:
	rm -rf .venv site reports
