# Two entry points: `make run` and `make test`.  Both set up ./.venv first
# (Python 3.11 or newer), so they work from a fresh clone.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := setup.cfg pyproject.toml $(shell find gateway twisted -name '*.py')

.PHONY: run test bench bench-versus clean

$(VENV)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[test]'
	touch $@

# Run the gateway in the foreground; extra twistd plugin options go in ARGS,
# e.g. make run ARGS="--config /etc/xmpp-gateway/gateway.toml".
run: $(VENV)/.installed
	$(VENV)/bin/twistd --nodaemon --pidfile= xmpp-gateway $(ARGS)

# SSLyze, for the TLS scan test, in a virtualenv of its own: it pins an
# older cryptography than the gateway runs with.
SCAN_VENV ?= .venv-scan
$(SCAN_VENV)/.installed:
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet 'sslyze>=6.0'
	touch $@

# Run the whole test suite (trial), from the checkout.
test: $(VENV)/.installed $(SCAN_VENV)/.installed
	GATEWAY_SSLYZE_PYTHON=$(abspath $(SCAN_VENV))/bin/python $(PY) -m tests $(TESTS)

bench: $(VENV)/.installed
	$(PY) bench/federation.py $(ARGS)

# The gateway, Debian's Prosody and Debian's ejabberd side by side
# (docs/performance.md); needs the prosody and ejabberd packages
# (tools/install-peers installs them).
bench-versus: $(VENV)/.installed
	$(PY) bench/versus_servers.py $(ARGS)

clean:
	rm -rf $(VENV) $(SCAN_VENV) build *.egg-info _trial_temp
