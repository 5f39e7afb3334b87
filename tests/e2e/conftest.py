"""End-to-end fixtures: a fresh kubeadm twin (a real cluster: kubeadm, kubelet, containerd,
upstream control plane) per test module.

The shared session `twin` (tests/conftest.py) has bare hosts for the host steps, so e2e modules
bring up their own instance: env LABTWIN_E2E_NAME (default `lte2e`) on
LABTWIN_E2E_SUBNET (default: the first free /24 from 10.213.39.0/24). Each module starts from a
fresh twin (tests inside a module build on each other, in file order) and takes it down at the
end, so groups never see each other's leftovers and no twin outlives the run.
Helpers live in e2ekit.py (imported by the test modules).
"""
from __future__ import annotations

import os

import pytest

from e2ekit import E2E

E2E_NAME = "lte2e"
E2E_FIRST_SUBNET = "10.213.39.0/24"


def _e2e_config(subnet: str = E2E_FIRST_SUBNET):
    """Name/state/subnet from LABTWIN_E2E_* only (LABTWIN_* belong to the developer's twin)."""
    from labtwin.hosts.config import STATE_ROOT, TwinConfig

    name = os.environ.get("LABTWIN_E2E_NAME") or E2E_NAME
    state = os.environ.get("LABTWIN_E2E_STATE") or str(STATE_ROOT / name)
    return TwinConfig.from_env(name=name, state=state, subnet=subnet, kubeadm=True)


@pytest.fixture(scope="module")
def e2e():
    """A fresh kubeadm twin with its cluster (made by `invoke setup-cluster`) for this module,
    down at its end whatever happened."""
    yield from _fresh_twin(cluster=True)


@pytest.fixture(scope="module")
def e2e_bare():
    """Fresh kubeadm-ready hosts without a cluster (labkit's setup-cluster makes it)."""
    yield from _fresh_twin(cluster=False)


def _fresh_twin(cluster: bool):
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root (the twin uses namespaces, mounts, cgroups): run them as root")
    from labtwin.hosts import lab, network

    # down finds a leftover by name and state dir whatever its subnet; a fresh twin takes the
    # first free one (other twins may be running)
    lab.down(_e2e_config())
    cfg = _e2e_config(os.environ.get("LABTWIN_E2E_SUBNET") or network.free_subnet(E2E_FIRST_SUBNET))
    try:
        lab.up(cfg)
        t = E2E(cfg)
        if cluster:  # the cluster, made as a user makes it: labkit's setup-cluster
            t.invoke("setup-cluster")
        yield t
    finally:
        lab.down(cfg)
