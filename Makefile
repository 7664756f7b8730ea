# qfstack's developer entry points. `make demo` and `make test` are the two
# commands a newcomer needs (see README.md).

PYTHON ?= python3
# Tools the set-up runs (dockerd, debootstrap and the chroot it calls) live in
# sbin, which a non-login root shell may not have on its PATH.
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin
VENV   := .venv
PY     := $(VENV)/bin/python
QFSTACK := $(VENV)/bin/qfstack

.PHONY: install docker images demo demo-down test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing python3-venv" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

docker: install
	@PYTHON=$(PY) bash scripts/ensure-docker.sh

images: docker
	@bash scripts/ensure-build-tools.sh
	$(PY) tests/images/build.py

# A bundled demo stack on local stand-in images, brought up healthy.
demo: images
	$(PY) scripts/demo.py

demo-down: install
	$(QFSTACK) --dir demo down

lint: install
	$(VENV)/bin/ruff check qfstack tests scripts benchmarks

typecheck: install
	$(VENV)/bin/mypy

pytest: docker
	@bash scripts/ensure-build-tools.sh
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: images
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info
