"""NFS server and package installs as data (tests/data/operations/{nfs,packages}/*.json): facts in ->
exact changes out, "already right" -> nothing. Plus setup-nfs's kernel step fed with recorded facts.

The older NFS cases are in tests/data/operations/host/ (test_host_operations.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import flows
from labkit.errors import OperationError
from labkit.facts import nfs as nfs_facts, os as os_facts, services
from labkit.facts.base import FactResult
from labkit.inventory import load
from labkit.operations import cluster, nfs, packages
from labkit.operations.base import Command, PutFile

TESTS = Path(__file__).resolve().parents[1]
OPS = TESTS / "data" / "operations"
FACTS = TESTS / "data" / "facts"
CASES = sorted(p for d in ("nfs", "packages") for p in (OPS / d).glob("*.json"))
MODULES = {"nfs": nfs, "packages": packages}


def as_data(change):
    if isinstance(change, PutFile):
        return {"put": change.path, "content": change.content}
    assert isinstance(change, Command)
    return {"command": change.command}


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_operation(path):
    case = json.loads(path.read_text())
    module, name = case["operation"].split(".")
    op = getattr(MODULES[module], name)
    if "error" in case:
        with pytest.raises(OperationError) as exc:
            list(op(**case["kwargs"]))
        assert case["error"] in str(exc.value)
        return
    assert [as_data(c) for c in op(**case["kwargs"])] == case["changes"]


def test_already_right_cases_are_empty():
    right = [p for p in CASES if "already-right" in p.stem]
    assert len(right) >= 4
    assert all(json.loads(p.read_text())["changes"] == [] for p in right)


def recorded(concept: str, name: str):
    """A recorded fact case parsed by its fact, as the runner would hand it to an operation."""
    case = json.loads((FACTS / concept / f"{name}.json").read_text())
    fact = getattr({"nfs": nfs_facts, "os": os_facts, "services": services}[concept], case["fact"])(
        *[tuple(a) if isinstance(a, list) else a for a in case["args"]])
    return fact.process(FactResult(case["stdout"], case["stderr"], case["exited"]))


def test_alias_is_not_enabled_but_its_real_unit_is():
    # Debian 12: `systemctl is-enabled nfs-kernel-server` says "alias" even with nfs-server disabled.
    assert not services.is_enabled(recorded("services", "nfs-kernel-server-alias-debian12"))
    assert not services.is_enabled(recorded("services", "nfs-server-disabled-debian12"))
    assert services.is_enabled(recorded("services", "nfs-server-enabled-debian12"))


def test_kernel_server_units_are_real_units():
    assert nfs.KERNEL_SERVICES == {"rhel": ["rpcbind", "nfs-server"], "debian": ["rpcbind", "nfs-server"]}


def test_cluster_installs_wait_for_the_dpkg_lock_like_packages():
    assert cluster.APT_INSTALL == packages.APT_INSTALL
    assert "-o DPkg::Lock::Timeout=300 " in packages.APT_INSTALL


@pytest.mark.parametrize("fact, command", [
    (nfs_facts.LiveExports(), "exportfs -v"),
    (os_facts.AptIndex(("nfs-common", "nfs-utils")),
     "command -v apt-cache >/dev/null 2>&1 || exit 0; set -- /var/lib/apt/lists/*_Packages*; "
     "if [ -e \"$1\" ]; then echo lists=yes; else echo lists=no; fi; "
     "missing=; for p in nfs-common nfs-utils; do dpkg-query -W -f='${db:Status-Status}\\n' \"$p\" 2>/dev/null "
     "| grep -qx installed || { missing=$p; break; }; done; [ -n \"$missing\" ] || { echo installed=all; exit 0; }; "
     "apt-cache -o Dir::State::Lists=/var/lib/apt/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "
     "policy nfs-common nfs-utils"),
    (services.Firewalld(),
     "command -v firewall-cmd >/dev/null 2>&1 || { echo state=absent; exit 0; }; "
     "systemctl is-active --quiet firewalld || { echo state=inactive; exit 0; }; "
     "printf 'state=%s\\n' \"$(firewall-cmd --state 2>&1)\"; "
     "printf 'runtime=%s\\n' \"$(firewall-cmd --list-services 2>/dev/null)\"; "
     "printf 'permanent=%s\\n' \"$(firewall-cmd --permanent --list-services 2>/dev/null)\""),
])
def test_fact_commands_are_exact(fact, command):
    assert fact.build() == command


def test_apt_index_refuses_hostile_names():
    with pytest.raises(ValueError):
        os_facts.AptIndex(("nfs-common", "x;reboot")).build()


# ---- setup-nfs's kernel step on the seed inventory, its facts from recordings


SEED = load(TESTS.parent / "hosts.yaml")
RIGHT_EXPORTS = "/nfsdata *(rw,sync,no_root_squash)\n"


def kernel_facts(**changed) -> dict:
    f = {"os": {"family": "debian"}, "nfsd": {"available": True, "evidence": ["filesystems"]},
         "packages": dict(recorded("os", "packages-debian12-rpm-empty-rpmdb")),
         "apt": recorded("os", "apt-index-debian12"), "exports": RIGHT_EXPORTS, "export_dir": True,
         "live": [{"path": "/nfsdata", "client": "*", "options": []}],
         "firewall": recorded("services", "firewalld-absent"),
         "svc:rpcbind": {"active": "active", "enabled": "enabled"},
         "svc:nfs-server": {"active": "active", "enabled": "enabled"}}
    f.update(changed)
    return f


def kernel_plan(facts: dict) -> list[str]:
    step = flows.nfs_steps(SEED)["master"][0]
    assert set(step.facts) == set(kernel_facts())  # every fact the planner reads is gathered
    return [c.command for c in step.plan(facts)]


def test_seed_kernel_step_right_host_changes_nothing():
    assert kernel_plan(kernel_facts()) == []


def test_seed_kernel_step_enables_nfs_server_not_its_alias():
    state = recorded("services", "nfs-server-disabled-debian12") | {"active": "active"}
    assert kernel_plan(kernel_facts(**{"svc:nfs-server": state})) == ["systemctl enable nfs-server"]


def test_seed_kernel_step_exports_what_the_live_table_lacks():
    live = recorded("nfs", "live-exports-empty-after-file-written")
    assert kernel_plan(kernel_facts(live=live)) == ["exportfs -ra"]


def test_seed_kernel_step_updates_apt_without_lists():
    installed = dict(recorded("os", "packages-debian12-rpm-empty-rpmdb"), **{"nfs-kernel-server": False})
    plan = kernel_plan(kernel_facts(packages=installed, apt=recorded("os", "apt-index-no-lists"),
                                    live=recorded("nfs", "live-exports-not-installed")))
    assert plan == [f"{packages.APT_GET} update", f"{packages.APT_INSTALL} nfs-kernel-server", "exportfs -ra"]


def test_seed_kernel_step_opens_firewalld_on_rhel():
    installed = {"nfs-utils": True, "rpcbind": True}
    plan = kernel_plan(kernel_facts(os={"family": "rhel"}, packages=installed,
                                    apt=recorded("os", "apt-index-no-apt"),
                                    firewall=recorded("services", "firewalld-running-default-public")))
    assert plan == ["firewall-cmd --permanent --add-service=nfs --add-service=rpc-bind --add-service=mountd",
                    "firewall-cmd --reload"]
    open_ = recorded("services", "firewalld-running-nfs-open")
    assert kernel_plan(kernel_facts(os={"family": "rhel"}, packages=installed, firewall=open_)) == []
