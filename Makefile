# quietcore — `make test` and `make demo` are the whole set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The controller needs Python >= 3.12: take the first interpreter that has it.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 \
	$$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -r); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
# A profile the lab can satisfy entirely (see its comments); `trading` also works as a target
# of verify/plan, but its 1G pages need boot-time allocation quietcore does not do yet.
DEMO_PROFILE ?= examples/lab-isolated.yaml
DEMO_TARGET ?= lab
# 6G: the trading profile wants 2x1G hugepages on node 0, i.e. more than 1G per node.
DEMO_LAB ?= --name demo --cpus 4 --numa-nodes 2 --memory 6G --nic-queues 4

.PHONY: venv test lint demo demo-down clean

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: quietcore needs Python 3.12 or newer and none was found"; \
	  echo "       (looked for python3.13, python3.12, python3 and ~/.pyenv/versions/3.12+)."; \
	  echo "       Install one (e.g. 'pyenv install 3.12') or run: make PYTHON=/path/to/python3.12"; \
	  exit 1; fi
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,molecule]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q

# The demo's default target is a lab VM (4 CPUs, 2 NUMA nodes, a 4-queue NIC) built and booted
# here; the first run builds the image (~2 min, needs root and the Debian mirror). The demo
# verifies (drift expected), plans, applies with a reboot where needed, and verifies again
# (zero drift expected), then measures jitter on the isolated CPUs. The lab stays up for you
# to explore (`quietcore lab ssh demo`,
# `quietcore history ...`, `quietcore rollback ...`); `make demo-down` stops it.
# DEMO_TARGET=@local (or user@host, or an inventory file) points the demo elsewhere: it then
# changes that host, after the plan, without asking (DEMO_APPLY=no stops after the plan).
DEMO_APPLY ?= yes
demo: venv
	@set -e; target='$(DEMO_TARGET)'; q=$(VENV)/bin/quietcore; \
	if [ "$$target" = lab ]; then \
	  echo "== lab up $(DEMO_LAB)"; target=$$($$q lab up $(DEMO_LAB)); fi; \
	echo "== topology of $$target"; \
	$$q topology "$$target"; \
	echo "== verify: declared vs actual (exit 1 = drift, expected on an untuned host)"; \
	rc=0; $$q verify --profile $(DEMO_PROFILE) --problems-only "$$target" || rc=$$?; \
	[ $$rc -le 1 ] || exit $$rc; \
	echo "== plan: what apply would change (nothing is touched)"; \
	rc=0; $$q plan --profile $(DEMO_PROFILE) "$$target" || rc=$$?; \
	[ $$rc -le 1 ] || exit $$rc; \
	[ '$(DEMO_APPLY)' = yes ] || exit 0; \
	echo "== apply, rebooting if needed, then verify (exit 0 = zero drift)"; \
	$$q apply --profile $(DEMO_PROFILE) --reboot if-needed --yes "$$target"; \
	echo "== verify again, every setting"; \
	$$q verify --profile $(DEMO_PROFILE) "$$target"; \
	echo "== history"; \
	$$q history "$$target"; \
	echo "== jitter on the profile's isolated CPUs (exit 1 = a CPU broke the profile's rules)"; \
	rc=0; $$q jitter --profile $(DEMO_PROFILE) --duration 10s "$$target" || rc=$$?; \
	[ $$rc -le 1 ]

demo-down: venv
	$(VENV)/bin/quietcore lab down demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
