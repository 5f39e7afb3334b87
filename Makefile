# Two commands on a fresh Debian/Ubuntu machine, as root:
#   make demo   # install, bring up the twin lab, run the whole labkit flow on it
#   make test   # install, run every test (unit, twin, end to end)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What labtwin's hosts need. The hosts' root is an overlay of this machine's /,
# so these must be installed here before any host starts.
DEBS := openssh-server openssh-client docker.io docker-registry nfs-ganesha nfs-ganesha-vfs \
        rpcbind nfs-common libnfs-utils apache2 sudo iproute2 iptables dbus systemd curl \
        ca-certificates python3-venv util-linux procps libseccomp-dev pkg-config libfuse2

.PHONY: deps debs venv k8s demo test unit down bench

deps: debs venv k8s

debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[twin,test]'
	touch $@

venv: $(VENV)/.installed

# Upstream Kubernetes, etcd, containerd, runc and CNI plugins from their pinned Go modules, into
# /var/cache/labtwin/build (long the first time, a no-op while the pins are unchanged).
k8s: venv
	$(PY) -m labtwin.k8s.build

demo: deps
	$(VENV)/bin/invoke demo

test: deps
	cd labtwin/k8s/provisioner && GOTOOLCHAIN=local go test ./...
	$(VENV)/bin/pytest -ra

unit: venv
	$(VENV)/bin/pytest -q tests/unit

down: venv
	$(VENV)/bin/invoke twin.down

bench: deps
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
