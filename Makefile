# xmc: `make run` runs the demo end to end; `make test` runs the whole suite.
# Both set everything up first (a venv under .venv/, nothing installed by hand).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
XMC    := $(VENV)/bin/xmc
STAMP  := $(VENV)/.stamp-install
DURATION ?= 30
RUN_DIR  ?= run
CONFIG   ?= configs/demo.toml
PYTEST_ARGS ?=

.PHONY: setup fix-peer run test test-fast bench demo-check clean

setup: $(STAMP)

# QuickFIX's own example FIX acceptor (Debian's libquickfix-doc ships it built): a real,
# independent FIX peer for the integration tests. Installed with apt when missing.
FIX_PEER_PKGS := libquickfix17 libquickfix-doc
fix-peer:
	@dpkg -s $(FIX_PEER_PKGS) >/dev/null 2>&1 || { \
	  echo "installing $(FIX_PEER_PKGS) (apt): QuickFIX's example executor for the FIX tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FIX_PEER_PKGS)) >/dev/null; }

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { \
	  echo "installing python3-venv (apt)"; \
	  (apt-get update -qq && apt-get install -y -qq python3-venv python3-pip) >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: setup
	$(XMC) check $(CONFIG)
	$(XMC) up $(CONFIG) --run-dir $(RUN_DIR) --duration $(DURATION) --live
	$(XMC) report --run-dir $(RUN_DIR)

test: setup fix-peer
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-fast: setup fix-peer
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf build run .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
