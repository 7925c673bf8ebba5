# `make test`, `make bench`, `make docs` and `make wheel-test` each create/refresh
# .venv idempotently, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: test bench bench-full bench-sharding docs wheel-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# A stamp per extra set; re-installs only when pyproject.toml changes.
$(VENV)/.stamp-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $@

$(VENV)/.stamp-bench: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@

$(VENV)/.stamp-docs: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

$(VENV)/.stamp-release: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[release]"
	touch $@

# The type check (mypy, configured in pyproject.toml), doctests, the suite
# (float64 on), the table's value checks again in JAX's default float32 mode
# (JAXCONV_TEST_X64=0; float64-only tests skip there), then the sharding tests
# in their own process on 8 host devices.
test: $(VENV)/.stamp-test
	$(PY) -m mypy
	$(PY) -m pytest --doctest-modules jaxconv -q
	$(PY) -m pytest tests -q -n $(PYTEST_WORKERS) --ignore=tests/sharding
	JAXCONV_TEST_X64=0 $(PY) -m pytest -q -n $(PYTEST_WORKERS) \
	  tests/test_methods.py::test_values_and_derivatives_match_lax
	$(PY) -m pytest tests/sharding -q -n $(PYTEST_WORKERS)

bench: $(VENV)/.stamp-bench
	$(PY) -m bench --quick

bench-full: $(VENV)/.stamp-bench
	$(PY) -m bench --full

# 8 host CPU devices: `--sharding` re-runs itself in a child process with
# XLA_FLAGS=--xla_force_host_platform_device_count=8.
bench-sharding: $(VENV)/.stamp-bench
	$(PY) -m bench --sharding

# The site, into site/, strict (any warning fails; see mkdocs.yml). The
# notebooks are rendered from their saved outputs, not run.
docs: $(VENV)/.stamp-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# sdist + wheel into dist/, the wheel installed into a fresh venv and checked
# from outside the source tree (.ci/wheel_test.sh, .ci/wheel_check.py).
wheel-test: $(VENV)/.stamp-release
	bash .ci/wheel_test.sh $(PY) $(PYTHON)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist site .cache *.egg-info
