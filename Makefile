# collectd-cgroups: `make run` runs the plugin under a real collectd, `make test` runs the whole suite
# (tests/unit, tests/kernel, tests/e2e). Both install what they need on a fresh Debian 12 machine (as root).
# `make test-unit` runs only tests/unit: no root needed (given the .venv).

SHELL      := /bin/bash
SRC        := $(CURDIR)
VENV       := $(SRC)/.venv
PY         := $(VENV)/bin/python
BUILD      := $(SRC)/build
# Debian's interpreter: the one collectd embeds (libpython3.11), not whatever python3 is first on PATH.
SYSPY      := /usr/bin/python3
APT_PKGS   := collectd-core collectd-utils libpython3.11 libyajl2 python3-venv iproute2 procps qemu-system-x86 busybox-static python3-cffi runc docker.io podman lxc crun containerd containernetworking-plugins graphite-carbon graphite-web python3-whisper tmux
PYTEST_ARGS ?=

.PHONY: deps venv run demo graphite test test-unit clean bench bench-deps deb soak

# Debian packages, installed only when missing.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml | deps
	$(SYSPY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

$(BUILD)/collectd.conf: conf/collectd.conf.in | venv
	mkdir -p $(BUILD)/csv
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	sed -e "s|@BUILD@|$(BUILD)|g" -e "s|@SRC@|$(SRC)|g" -e "s|@SITE@|$$site|g" $< > $@

run: venv $(BUILD)/collectd.conf
	@echo "collectd in the foreground with $(BUILD)/collectd.conf (Ctrl-C stops it)."
	@echo "No containers on this host? Run 'make demo' in another terminal."
	exec /usr/sbin/collectd -f -C $(BUILD)/collectd.conf

# `make run` with Graphite: Debian's carbon-cache and graphite-web on 127.0.0.1 (private configuration and
# storage under build/graphite), collectd writing to them with write_graphite.  Lab code, from the checkout.
graphite: venv $(BUILD)/collectd.conf
	cd $(SRC) && $(PY) -m ccg_lab.graphite $(BUILD) $(BUILD)/collectd.conf

# The demo is lab code (ccg_lab/, not installed): run from the checkout so that the package is found.
demo: venv
	cd $(SRC) && $(PY) -m ccg_lab.demo

test: venv bench-deps
	cd $(SRC) && $(PY) -m pytest $(PYTEST_ARGS)

# The unit tier alone: no root, no real cgroups, namespaces or daemons. Needs the .venv (make venv, as root,
# once); it does not install anything itself.
test-unit:
	@test -x $(PY) || { echo "no $(PY): run 'make venv' (as root) first"; exit 1; }
	cd $(SRC) && $(PY) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

# The benchmark (tests/bench/): prints figures, never fails on time. `make test` runs it small
# (tests/e2e/test_bench.py), hence bench-deps there too. It compiles its C floor and its container
# processes with gcc at run time. --peers measures collectd's C cgroups plugin and Netdata (Debian's
# netdata, started by the benchmark itself in its lab, never as a service) beside the plugin.
BENCH_PKGS := gcc libc6-dev util-linux iproute2 collectd-core libpython3.11 netdata
BENCH_ARGS ?= --peers

bench-deps:
	@missing=""; for p in $(BENCH_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench: venv bench-deps
	$(PY) tests/bench/run.py $(BENCH_ARGS)
	$(PY) tests/bench/naming.py

# The churn soak (tests/soak/run.py): containers with their own network namespaces started and stopped
# under two real collectd (without and with CollectOnExit), and a third with a reference module instead of the
# plugin, for SOAK_ARGS' minutes; prints the sampled series
# and their slopes, fails if one grows after the warm-up or anything is left behind. Not part of `make test`
# (tests/e2e/test_soak.py runs it for 1.5 minutes). Compiles tests/bench/box.c, hence bench-deps.
SOAK_ARGS ?= --minutes 60 --reference

soak: venv bench-deps
	$(PY) tests/soak/run.py $(SOAK_ARGS)

# The Debian package (packaging/debian/: debhelper + dh-python), checked by lintian; installs its build
# dependencies (as root) and prints the path of the .deb.
deb:
	packaging/build-deb.sh $(BUILD)/deb

clean:
	rm -rf $(BUILD) $(VENV) *.egg-info
