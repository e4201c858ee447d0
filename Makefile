# quietcore — `make test` and `make demo` are the whole set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The controller needs Python >= 3.12: take the first interpreter that has it.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 \
	$$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -r); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
DEMO_PROFILE ?= trading
DEMO_TARGET ?= @local

.PHONY: venv test lint demo clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: quietcore needs Python 3.12 or newer and none was found"; \
	  echo "       (looked for python3.13, python3.12, python3 and ~/.pyenv/versions/3.12+)."; \
	  echo "       Install one (e.g. 'pyenv install 3.12') or run: make PYTHON=/path/to/python3.12"; \
	  exit 1; fi
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q

demo: venv
	@echo "== topology of $(DEMO_TARGET)"
	$(VENV)/bin/quietcore topology $(DEMO_TARGET)
	@echo "== profile '$(DEMO_PROFILE)' resolved for $(DEMO_TARGET)"
	$(VENV)/bin/quietcore profiles show $(DEMO_PROFILE) --resolved-for $(DEMO_TARGET)
	@echo "== verify: declared vs actual (exit 1 = drift, expected on an untuned host)"
	$(VENV)/bin/quietcore verify --profile $(DEMO_PROFILE) --problems-only $(DEMO_TARGET); \
	  rc=$$?; [ $$rc -le 1 ] || exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
