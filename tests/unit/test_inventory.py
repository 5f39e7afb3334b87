"""Inventory: the seed file loads; each invalid/hostile file in tests/data/inventory/ fails with
its recorded message fragment, field and line (headers `# expect:`, `# field:`, `# line:`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from labkit import inventory, validate
from labkit.errors import InventoryError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "inventory"
CASES = sorted(DATA.glob("*.yaml"))


def test_there_are_at_least_15_bad_inventories():
    assert len(CASES) >= 15


def test_seed_inventory_loads_with_accessors():
    inv = inventory.load(ROOT / "hosts.yaml")
    assert [h.name for h in inv.hosts] == ["master", "node01", "node02"]
    assert inv.control_plane.name == inv.registry_host.name == inv.nfs_server.name == "master"
    assert [h.name for h in inv.workers] == ["node01", "node02"]
    assert [h.address for h in inv.hosts] == ["192.168.20.6", "192.168.20.7", "192.168.20.8"]
    assert inv.registry_address == "192.168.20.6:5000"
    assert inv.image_ref("v2") == "192.168.20.6:5000/ljz:v2"
    assert inv.nfs.options == ["rw", "sync", "no_root_squash"]
    k = inv.kubernetes
    assert (k.statefulset.replicas, k.rollout.replicas, k.rollout.partition) == (6, 10, 4)
    assert k.statefulset.storage == "100Mi" and k.storage_class.reclaim_policy == "Retain"
    # known_hosts is relative to the inventory's directory, the key has ~ expanded
    assert inv.ssh.known_hosts == str(ROOT / ".labkit" / "known_hosts")
    assert inv.ssh.key == os.path.expanduser("~/.ssh/id_ed25519")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_inventory(case):
    text = case.read_text()
    expect = re.search(r"^# expect: (.*)$", text, re.M).group(1)
    field = re.search(r"^# field: (.*)$", text, re.M)
    line = re.search(r"^# line: (\d+)$", text, re.M)
    with pytest.raises(InventoryError) as info:
        inventory.load(case)
    err = info.value
    assert err.path == str(case)
    assert expect in str(err)
    assert str(case) in str(err)  # the message names the file
    if field:
        assert field.group(1) in [p[0] for p in err.problems], err.problems
    if line:
        assert int(line.group(1)) in [p[1] for p in err.problems], err.problems


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="file not found: pass the inventory with -i/--inventory"):
        inventory.load(tmp_path / "nope.yaml")


def test_directory_is_not_an_inventory(tmp_path):
    with pytest.raises(InventoryError, match="is a directory"):
        inventory.load(tmp_path)


def test_unreadable_file(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_bytes(b"\xff\xfe not utf-8 \x80")
    with pytest.raises(InventoryError, match="cannot read the file"):
        inventory.load(p)


def test_relative_key_and_known_hosts_follow_the_inventory_dir(tmp_path):
    text = (ROOT / "hosts.yaml").read_text().replace("key: ~/.ssh/id_ed25519", "key: ssh/id")
    (tmp_path / "lab").mkdir()
    p = tmp_path / "lab" / "hosts.yaml"
    p.write_text(text)
    inv = inventory.load(p)
    assert inv.ssh.key == str(tmp_path / "lab" / "ssh" / "id")
    assert inv.ssh.known_hosts == str(tmp_path / "lab" / ".labkit" / "known_hosts")
    assert inv.path == str(p)


def test_all_problems_reported_at_once(tmp_path):
    text = (ROOT / "hosts.yaml").read_text()
    text = text.replace("port: 5000", "port: 0").replace("export: /nfsdata", "export: /a b")
    p = tmp_path / "h.yaml"
    p.write_text(text)
    with pytest.raises(InventoryError) as info:
        inventory.load(p)
    assert {f for f, _, _ in info.value.problems} == {"registry.port", "nfs.export"}


def test_ipv6_registry_address_is_bracketed(tmp_path):
    text = (ROOT / "hosts.yaml").read_text().replace("address: 192.168.20.6", "address: fd00::6")
    p = tmp_path / "h.yaml"
    p.write_text(text)
    inv = inventory.load(p)
    assert inv.registry_address == "[fd00::6]:5000"
    assert inv.image_ref("v1") == "[fd00::6]:5000/ljz:v1"


@pytest.mark.parametrize("func,good,bad", [
    (validate.hostname, ["master", "node-01", "a"], ["-a", "a-", "A", "a.b", "a b", "", "x" * 64]),
    (validate.address, ["192.168.20.6", "::1", "master.lab", "Node01"], ["1.2.3.400", "a b", "$(x)", "", "a..b"]),
    (validate.abs_path, ["/nfsdata", "/usr/local/apache2/htdocs"], ["/", "rel", "/a/", "/a//b", "/a/./b", "/a;b", "/a*"]),
    (validate.quantity, ["100Mi", "1Gi", "1.5G", "500"], ["100MB", "0", "-1Gi", "Mi", "1e3"]),
    (validate.image_ref, ["registry:2", "httpd:2.4", "10.0.0.1:5000/ljz:v1",
                          "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"],
     ["Registry:2", "a b", "x:;", "x:v1 y", ":v1"]),
    (validate.dns1123_subdomain, ["test-sc", "a.b-c"], ["Test", "a_b", "-a", "a..b"]),
    (validate.nfs_clients, ["*", "192.168.20.0/24", "10.0.0.1", "*.lab"], ["a b", "1.2.3.4/99", "$(x)"]),
])
def test_validators(func, good, bad):
    for value in good:
        func(value)
    for value in bad:
        with pytest.raises(ValueError):
            func(value)


def test_port_and_nfs_options():
    assert validate.port(65535) == 65535
    for p in (0, 65536, -1):
        with pytest.raises(ValueError, match="use 1-65535"):
            validate.port(p)
    assert validate.nfs_options(["rw", "sync", "anonuid=65534", "fsid=0"])
    with pytest.raises(ValueError, match="repeated"):
        validate.nfs_options(["rw", "rw"])
    with pytest.raises(ValueError, match="unknown NFS export option"):
        validate.nfs_options(["anonuid=x"])


def test_huge_file_is_refused_before_parsing(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text("# padding\n" * 200_000)
    with pytest.raises(InventoryError, match="an inventory is at most"):
        inventory.load(p)


def test_twin_inventory_satisfies_the_schema(tmp_path):
    # contract with labtwin: its generated inventory is a valid labkit inventory
    import yaml

    from labtwin.hosts import inventory as twin_inventory
    from labtwin.hosts.config import TwinConfig

    cfg = TwinConfig.from_env(name="h1schema", state=str(tmp_path / "state"))
    inv = inventory.parse(yaml.safe_dump(twin_inventory.render(cfg), sort_keys=False), tmp_path / "inv.yaml")
    assert inv.nfs.server == "ganesha"
    assert inv.control_plane.name == "master" and len(inv.workers) == 2


# ---- kubernetes.cluster (setup-cluster) -----------------------------------------------------


def _with_cluster(section: str) -> str:
    """The seed inventory with a kubernetes.cluster section (indented under kubernetes:)."""
    return (ROOT / "hosts.yaml").read_text() + "  cluster:\n" + "".join(f"    {line}\n" for line in section.splitlines())


def test_cluster_defaults_are_the_twins_build():
    c = inventory.load(ROOT / "hosts.yaml").kubernetes.cluster
    assert (c.create, c.version, c.pod_subnet, c.service_subnet) == \
        (False, "v1.37.2", "10.244.0.0/16", "10.96.0.0/12")
    assert (c.image_repository, c.cni_manifest, c.skip_phases) == (None, None, [])
    assert (c.kubelet.fail_swap_on, c.kubelet.fail_cgroup_v1, c.kubelet.disk_eviction) == (True, True, True)
    assert c.kube_proxy.set_conntrack_max is True


def test_cluster_settings_of_an_offline_twin(tmp_path):
    text = _with_cluster("create: true\nimage_repository: 192.168.20.6:5000/k8s\ncni_manifest: cni/flannel.yaml\n"
                         "skip_phases: [preflight, addon/coredns]\n"
                         "kubelet: {fail_swap_on: false, fail_cgroup_v1: false, disk_eviction: false}\n"
                         "kube_proxy: {set_conntrack_max: false}")
    c = inventory.parse(text, tmp_path / "hosts.yaml").kubernetes.cluster
    assert c.create and c.image_repository == "192.168.20.6:5000/k8s"
    assert c.cni_manifest == str(tmp_path / "cni" / "flannel.yaml")  # relative to the inventory's directory
    assert c.skip_phases == ["preflight", "addon/coredns"]
    assert not (c.kubelet.fail_swap_on or c.kubelet.fail_cgroup_v1 or c.kubelet.disk_eviction)


@pytest.mark.parametrize("section,field,message", [
    ("version: 1.37.2", "kubernetes.cluster.version", "is not a Kubernetes release: use vMAJOR.MINOR.PATCH"),
    ("version: stable-1", "kubernetes.cluster.version", "need the internet"),
    ("pod_subnet: 10.244.1.0/16", "kubernetes.cluster.pod_subnet", "has host bits set"),
    ("pod_subnet: fd00::/64", "kubernetes.cluster.pod_subnet", "is not an IPv4 network"),
    ("pod_subnet: 10.244.0.0/25", "kubernetes.cluster.pod_subnet", "each node gets a /24"),
    ("pod_subnet: 10.244.0.0/24", "kubernetes.cluster.pod_subnet", "holds 1 node range(s) of /24, for 3 hosts"),
    ("service_subnet: 10.0.0.0/8", "kubernetes.cluster.service_subnet", "kube-apiserver takes at most a /12"),
    ("service_subnet: 10.244.0.0/20", "kubernetes.cluster.service_subnet", "overlaps pod_subnet 10.244.0.0/16"),
    ("pod_subnet: 192.168.0.0/16", "kubernetes.cluster.pod_subnet", "contains hosts[0].address 192.168.20.6"),
    ("image_repository: 'reg:5000/k8s:v1'", "kubernetes.cluster.image_repository", "is not an image repository"),
    ("image_repository: 'reg;reboot'", "kubernetes.cluster.image_repository", "is not an image repository"),
    ("skip_phases: [preflght]", "kubernetes.cluster.skip_phases", "unknown kubeadm phase(s) 'preflght'"),
    ("skip_phases: [preflight, preflight]", "kubernetes.cluster.skip_phases", "phases are repeated"),
    ("ignore_preflight_errors: ['CRI; reboot']", "kubernetes.cluster.ignore_preflight_errors",
     "not a kubeadm preflight check name: 'CRI; reboot'"),
    ("ignore_preflight_errors: [Swap, Swap]", "kubernetes.cluster.ignore_preflight_errors", "checks are repeated"),
    ("create: 'yes'", "kubernetes.cluster.create", "Input should be a valid boolean"),
    ("kubelet: {fail_swap: false}", "kubernetes.cluster.kubelet.fail_swap", "unknown field; allowed fields: "
                                                                            "fail_swap_on, fail_cgroup_v1"),
])
def test_bad_cluster_settings(section, field, message):
    with pytest.raises(InventoryError) as info:
        inventory.parse(_with_cluster(section), "hosts.yaml")
    assert any(f == field and message in m for f, _, m in info.value.problems), info.value.problems


@pytest.mark.parametrize("nfs, warned", [
    ("", "Set nfs.clients: 192.168.20.0/24 in hosts.yaml"),  # the seed's values
    ("  clients: 192.168.20.0/24\n", None),
    ("  options: [rw, sync, root_squash]\n", None),
])
def test_an_export_giving_root_to_anyone_is_warned_with_the_fix(nfs, warned):
    text = (ROOT / "hosts.yaml").read_text()
    if nfs:
        key = nfs.split(":")[0].strip()
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"  {key}:")) + "\n"
        text = text.replace("nfs:\n", "nfs:\n" + nfs, 1)
    got = inventory.parse(text, "hosts.yaml").open_root_export()
    if warned is None:
        assert got is None
    else:
        assert "/nfsdata is exported to * with no_root_squash" in got and warned in got


@pytest.mark.parametrize("fn, value, ok", [
    (validate.replicas, 10, True), (validate.replicas, 0, True), (validate.replicas, 1001, False),
    (validate.replicas, -1, False), (validate.replicas, True, False), (validate.replicas, "6", False),
    (validate.partition, 1000, True), (validate.partition, 4.0, False),
])
def test_one_validator_per_count(fn, value, ok):
    if ok:
        assert fn(value) == value
    else:
        with pytest.raises(ValueError, match="must be a whole number 0-1000"):
            fn(value)
