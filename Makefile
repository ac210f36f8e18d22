# piimg: make demo | make test | make lint | make bench | make e2e
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := dosfstools mtools fdisk e2fsprogs xz-utils zstd openssh-server openssh-client openssl shellcheck systemd util-linux bmap-tools iproute2 frr gobgpd
# make e2e: debootstrap a Debian rootfs and boot images under qemu (root needed)
E2E_APT_PACKAGES := debootstrap qemu-system-x86 mtools e2fsprogs dosfstools fdisk coreutils openssl

.PHONY: help system-deps e2e-system-deps apt-install venv demo test test-fast e2e lint bench clean

help:
	@echo "make demo   install piimg; build + flash a generated Pi OS-style image, router-setup --dry-run/--export against a local RouterOS API peer"
	@echo "make test   install test dependencies and run the whole test suite"
	@echo "make lint   ruff + mypy on piimg/"
	@echo "make bench  run every bench/bench_*.py (slow; not part of make test)"
	@echo "make e2e    build images from a debootstrapped Debian and boot them under qemu (root, ~minutes)"

# Debian/Ubuntu system tools the builder and the tests use. Skipped when they
# are all present (and on machines without apt-get, e.g. macOS).
system-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_PACKAGES)"

e2e-system-deps:
	@$(MAKE) --no-print-directory apt-install PKGS="$(E2E_APT_PACKAGES)"

apt-install:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing:$$missing"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

venv: $(VENV)/.installed

demo: system-deps venv
	$(PY) -m tests.demo

test: system-deps venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not integration and not e2e"

# End-to-end: debootstrap (cached under ~/.cache/piimg/e2e; PIIMG_E2E_FRESH=1 rebuilds),
# piimg build, qemu boots. CI runs it after `make test`.
e2e: system-deps e2e-system-deps venv
	$(PY) -m pytest -m e2e tests/e2e $(E2E_ARGS)

lint: venv
	$(VENV)/bin/ruff check piimg tests
	$(VENV)/bin/mypy

# Benchmarks: every bench/bench_*.py, one after the other (not part of `make test`).
bench: system-deps venv
	@set -e; for f in bench/bench_*.py; do \
		echo "== $$f"; $(PY) -m bench.$$(basename $$f .py); \
	done

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
