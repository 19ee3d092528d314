# Two entry points: `make run` and `make test`.  Both set up ./.venv first
# (Python 3.11 or newer), so they work from a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := setup.cfg pyproject.toml $(shell find gateway twisted -name '*.py')

.PHONY: run test bench clean

$(VENV)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[test]'
	touch $@

# Run the gateway in the foreground; extra twistd plugin options go in ARGS,
# e.g. make run ARGS="--config /etc/xmpp-gateway/gateway.toml".
run: $(VENV)/.installed
	$(VENV)/bin/twistd --nodaemon --pidfile= xmpp-gateway $(ARGS)

# Run the whole test suite (trial), from the checkout.
test: $(VENV)/.installed
	$(PY) -m tests $(TESTS)

bench: $(VENV)/.installed
	$(PY) bench/federation.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp
