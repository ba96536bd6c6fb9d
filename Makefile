# make demo  - the gateway against simulated sensors (no hardware, no broker)
# make test  - the whole test suite (starts its own mosquitto, socat ptys, pymodbus servers)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := mosquitto socat

.PHONY: test demo bench deps venv check-demo install fuzz soak clean

# Debian packages the tests need: mosquitto (a real broker) and socat (pty pairs for RTU).
deps:
	@missing=""; for b in mosquitto socat; do \
	  p=$$b; [ $$b = mosquitto ] && p=/usr/sbin/mosquitto; \
	  command -v $$p >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

test: deps venv
	$(BIN)/python -m pytest -q

# the long fault-injection variants (100 kills, 10 min outage, 10 min RSS): tests/faults/README.md
soak: deps venv
	SOAK=1 $(BIN)/python -m pytest tests/faults -q -m soak

demo: venv
	$(BIN)/python -m gateway.sim.demo

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $(BENCH_STAMP)

# every figure of issues 5 and 7: a table, docs/benchmarks.md and docs/bench/*.png (~10 min)
bench: deps venv $(BENCH_STAMP)
	$(BIN)/python -m bench

check-demo: venv
	$(BIN)/gateway check -c config/demo.toml

# hypothesis at full strength: 10,000 generated configs and command payloads.
fuzz: venv
	FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q tests/test_fuzz_commands.py tests/test_fuzz_config.py tests/test_fuzz_centres.py

# On the Pi: user, venv in /opt/community-gateway, GPIO library, config (if none), systemd unit.
install:
	sudo systemd/install.sh

clean:
	rm -rf $(VENV) var .pytest_cache
