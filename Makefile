# Two commands do all set-up on a fresh machine:
#   make demo   -> create .venv from pyproject.toml, then run the main job on the embedded default
#   make test   -> create .venv from pyproject.toml, then run the fast test suite
SHELL  := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
DEMO_OUT ?= runs/demo

.PHONY: venv demo test test-all bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c requirements.lock -e '.[test]' 2>&1 | grep -v 'is ignored: it is neither' ; test $${PIPESTATUS[0]} -eq 0
	rm -f $(VENV)/.installed-*
	touch $(STAMP) $(VENV)/.installed

demo: $(STAMP)
	RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/layerlab demo --out $(DEMO_OUT)
	$(BIN)/python -m layerlab.report.render_check $(DEMO_OUT)/report

test: $(STAMP)
	RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test-all: $(STAMP)
	RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m ''

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
