"""Shared fixtures. `twin`: a running labtwin for the session (tests/twin, tests/e2e).

Instance: env LABTWIN_NAME (default "lttest", so tests never take down a developer's
`labtwin`), LABTWIN_STATE, LABTWIN_SUBNET (default 10.213.29.0/24). Bare hosts (no cluster): tests/e2e and tests/cluster
bring up kubeadm twins of their own.
LABTWIN_REUSE=1 reuses that instance when it is already up and healthy. Torn down at the end
of the session in every case.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_TWIN_NAME = "lttest"
TEST_TWIN_SUBNET = "10.213.29.0/24"


@dataclass
class Twin:
    cfg: object  # labtwin.hosts.config.TwinConfig

    @property
    def inventory_path(self) -> Path:
        return self.cfg.inventory_path

    @property
    def state_dir(self) -> Path:
        return self.cfg.state_dir

    @property
    def hosts(self) -> dict[str, str]:
        """name -> address"""
        return {h.name: str(h.address) for h in self.cfg.hosts}

    def reset(self) -> None:
        """A fresh twin (same name, subnet, addresses) in ~2-3 s: for tests that need untouched hosts.
        Host keys and the client key are regenerated; labkit's known_hosts file is removed."""
        from labtwin.hosts import lab

        lab.down(self.cfg)
        lab.up(self.cfg)

    def init_pid(self, host: str) -> int:
        from labtwin.hosts import lab

        pid = lab.init_pid(self.cfg, self.cfg.host(host))
        if pid is None:
            raise RuntimeError(f"twin host {host} is not running")
        return pid

    def ssh(self, host: str, cmd: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run `cmd` with /bin/sh inside `host` (nsenter into its namespaces; not SSH, not labkit)."""
        from labtwin.hosts.host import run_in

        return run_in(self.init_pid(host), cmd, timeout=timeout)


def twin_config():
    """The session twin's settings; without LABTWIN_SUBNET, the default subnet if it is free
    (or already this twin's), else the first free one after it (other twins may be running)."""
    from labtwin.hosts import lab, network
    from labtwin.hosts.config import TwinConfig
    name = os.environ.get("LABTWIN_NAME") or TEST_TWIN_NAME
    subnet = os.environ.get("LABTWIN_SUBNET")
    if not subnet:
        probe = TwinConfig.from_env(name=name)  # a running twin of that name keeps its subnet
        subnet = str(probe.subnet) if lab.is_up(probe) else network.free_subnet(TEST_TWIN_SUBNET)
    # Host steps need no control plane: bare hosts.
    return TwinConfig.from_env(name=name, subnet=subnet, kubeadm=False)


@pytest.fixture(scope="session")
def twin():
    if os.geteuid() != 0:
        pytest.fail("the twin needs root (namespaces, mounts, cgroups): run the tests as root")
    from labtwin.hosts import lab

    cfg = twin_config()
    reuse = os.environ.get("LABTWIN_REUSE") == "1" and lab.is_up(cfg)
    try:
        if not reuse:
            lab.down(cfg)  # a fresh twin, whatever was there
            lab.up(cfg)
        yield Twin(cfg)
    finally:
        lab.down(cfg)
