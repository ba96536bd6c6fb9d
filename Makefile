# make demo  - the gateway against simulated sensors (no hardware, no broker)
# make test  - the whole test suite (starts its own mosquitto, socat ptys, pymodbus servers; a PostgreSQL
#              on 127.0.0.1:5432 when none answers)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := mosquitto socat debootstrap systemd-container strace espeak-ng alsa-utils

.PHONY: test demo bench deps venv check-demo install fuzz soak clean wheels

# Debian packages the tests need: mosquitto (a real broker), socat (pty pairs for RTU), debootstrap
# (the Bookworm root tests/test_installer_*.py run the installer in: built once per machine, ~2 min
# from Debian's mirror, cached in /var/cache/community-gateway-test), systemd-container (systemd-nspawn
# boots that root, so the unit runs under a real systemd), espeak-ng (Mandarin clips for the alsa voice
# backend) and alsa-utils (aplay). PostgreSQL for tests/platform_pg: tests/platform_pg/pg_server.sh
# installs Debian's postgresql and starts its cluster when nothing answers on 127.0.0.1:5432.
deps:
	@missing=""; for b in $(DEBS); do \
	  p=$$b; [ $$b = mosquitto ] && p=/usr/sbin/mosquitto; [ $$b = debootstrap ] && p=/usr/sbin/debootstrap; \
	  [ $$b = systemd-container ] && p=systemd-nspawn; [ $$b = alsa-utils ] && p=aplay; \
	  command -v $$p >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@bash tests/platform_pg/pg_server.sh
	@if [ "$$(id -u)" -eq 0 ]; then $(PY) tests/bookworm_root.py; \
	else echo "not root: no Bookworm test root (tests/test_installer_chroot.py will skip and say why)"; fi

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

# hypothesis at full strength: 10,000 generated configs, command payloads and numbers per config key,
# and 10,000 mutated Modbus replies per transport against a real TCP server and a real pty pair
# (measured here: TCP 350 s, RTU 523 s, config numbers 90 s).
fuzz: deps venv
	FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q tests/test_fuzz_commands.py tests/test_fuzz_config.py \
	  tests/hostile/test_frames_property.py tests/hostile/test_config_values.py \
	  tests/test_fuzz_centres.py

# On the Pi: user, venv in /opt/community-gateway, GPIO library, config (if none), systemd unit.
install:
	sudo systemd/install.sh

# On a connected machine: the gateway's wheel and every dependency's, for `install.sh --wheels DIR` on
# a Pi that reaches no package index (docs/install.md). For another platform than this machine's:
#   make wheels WHEEL_PLATFORM=manylinux_2_17_aarch64      (64-bit Raspberry Pi OS, Python 3.11)
# WHEEL_EXTRA adds requirements, e.g. WHEEL_EXTRA=RPi.GPIO (built here: run it on a Pi of that kind).
WHEELS ?= dist/wheels
WHEEL_PLATFORM ?=
WHEEL_EXTRA ?=
wheels: venv
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(BIN)/python -m pip wheel -q --no-deps --wheel-dir $(WHEELS) .
	@rm -rf build
ifeq ($(WHEEL_PLATFORM),)
	$(BIN)/python -m pip wheel -q --wheel-dir $(WHEELS) $(WHEELS)/community_gateway-*.whl $(WHEEL_EXTRA)
else
	$(BIN)/python -m pip download -q --dest $(WHEELS) --only-binary=:all: --platform $(WHEEL_PLATFORM) \
	  --python-version 3.11 --implementation cp $(WHEELS)/community_gateway-*.whl $(WHEEL_EXTRA)
endif
	@echo "$$(ls $(WHEELS) | wc -l) wheels in $(WHEELS): copy it to the Pi, then sudo systemd/install.sh --wheels DIR"

clean:
	rm -rf $(VENV) var .pytest_cache
