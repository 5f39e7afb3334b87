"""The pure parts of the twin's real cluster: the kubeadm, join and CNI configs it renders, the
join command it reads from kubeadm, its hosts, and the build's pins, cache key and Go check."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from labtwin.hosts import inventory
from labtwin.hosts.config import TwinConfig, TwinError
from labtwin.k8s import build, images



def cfg(**kw) -> TwinConfig:
    return TwinConfig(name="t", state_dir=Path("/var/lib/labtwin/t"),
                      subnet=ipaddress.IPv4Network("10.213.40.0/24"), **kw)


def test_workers_make_hosts_after_master_on_the_seeds_octets():
    c = cfg(kubeadm=True, workers=4)
    assert [(h.name, str(h.address), h.roles) for h in c.hosts] == [
        ("master", "10.213.40.6", ("control-plane", "registry", "nfs-server")),
        ("node01", "10.213.40.7", ("worker",)), ("node02", "10.213.40.8", ("worker",)),
        ("node03", "10.213.40.9", ("worker",)), ("node04", "10.213.40.10", ("worker",))]


@pytest.mark.parametrize("kw, message", [
    ({"workers": 0}, "workers must be 1 to 8"),
    ({"workers": 9}, "workers must be 1 to 8"),
])
def test_bad_twin_settings_are_refused(kw, message):
    with pytest.raises(TwinError, match=message):
        cfg(**kw)


def test_the_twins_inventory_asks_labkit_for_the_cluster_with_the_twins_differences(tmp_path):
    """The twin makes no cluster: its inventory asks labkit's setup-cluster for one, with what a
    container-like cgroup v1 host needs (kind's settings), and labkit renders kubeadm's config from it."""
    import yaml as _yaml

    from labkit.inventory import load
    from labkit.operations import cluster as ops

    c = cfg(kubeadm=True)
    rendered = inventory.render(c)
    assert rendered["kubernetes"]["cluster"] == {
        "create": True, "version": "v1.37.2", "skip_phases": ["addon/coredns"],
        "ignore_preflight_errors": ["SystemVerification"],
        "kubelet": {"fail_swap_on": False, "fail_cgroup_v1": False, "disk_eviction": False},
        "kube_proxy": {"set_conntrack_max": False}}
    assert "cluster" not in inventory.render(cfg()).get("kubernetes", {})  # bare hosts
    path = tmp_path / "inventory.yaml"
    path.write_text(_yaml.safe_dump(rendered))
    inv = load(path)
    init, clus, kubelet, proxy = yaml.safe_load_all(ops.init_config(name="master", address="10.213.40.6",
                                                                    cluster=inv.kubernetes.cluster))
    assert init["skipPhases"] == ["addon/coredns"]
    assert init["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.213.40.6", "bindPort": 6443}
    assert clus["kubernetesVersion"] == "v1.37.2" and clus["controlPlaneEndpoint"] == "10.213.40.6:6443"
    assert (kubelet["cgroupDriver"], kubelet["failCgroupV1"], kubelet["failSwapOn"]) == ("systemd", False, False)
    assert proxy["conntrack"]["maxPerCore"] == 0


def test_the_twins_inventory_says_containerd_for_kubeadm_workers():
    hosts = inventory.render(cfg(kubeadm=True, workers=3))["hosts"]
    assert [h["runtime"] for h in hosts] == ["docker", "containerd", "containerd", "containerd"]
    assert {h["runtime"] for h in inventory.render(cfg())["hosts"]} == {"docker"}  # bare hosts


def test_versions_come_from_the_pinned_modules():
    assert build.versions() == {"kubernetes": "v1.37.2", "etcd": "v3.7.0", "containerd": "v2.2.9",
                                "runc": "v1.3.7", "cni-plugins": "v1.9.1"}
    ld = " ".join(next(c for c in build.components() if c.name == "kubernetes").ldflags)
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in ld
    assert "-X k8s.io/client-go/pkg/version.gitMinor=37" in ld


def test_cache_key_follows_recipe_and_go_version(monkeypatch):
    key = build.cache_key("go1.26.8")
    assert build.cache_key("go1.26.8") == key
    assert build.cache_key("go1.27.0") != key
    monkeypatch.setattr(build, "RECIPE", "other")
    assert build.cache_key("go1.26.8") != key


def _fake_go(tmp_path: Path, version: str | None, monkeypatch) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    if version:
        (d / "go").write_text(f"#!/bin/sh\necho {version}\n")
        (d / "go").chmod(0o755)
    monkeypatch.setenv("PATH", str(d))


def test_no_go_says_what_to_install(tmp_path, monkeypatch):
    _fake_go(tmp_path, None, monkeypatch)
    with pytest.raises(build.BuildError, match=r"Go is not installed: .*needs Go 1\.26 or newer"):
        build.go_version()


def test_an_old_go_says_which_is_needed(tmp_path, monkeypatch):
    _fake_go(tmp_path, "go1.19.8", monkeypatch)
    with pytest.raises(build.BuildError, match=r"is go1\.19\.8: building Kubernetes v1\.37\.2 needs Go 1\.26"):
        build.go_version()


def test_missing_build_points_at_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "CACHE_ROOT", tmp_path)
    monkeypatch.setattr(build, "go_version", lambda: (1, 26, "go1.26.8"))
    with pytest.raises(build.BuildError, match=r"python -m labtwin.k8s.build"):
        build.bin_dir()


@pytest.mark.parametrize("tag, entry, has_iptables", [
    ("registry.k8s.io/kube-apiserver:v1.37.2", None, False),
    ("registry.k8s.io/etcd:3.7.0-0", None, False),
    ("registry.k8s.io/kube-proxy:v1.37.2", None, True),
    ("registry.k8s.io/pause:3.10.2", ["/pause"], False),
])
def test_each_kubeadm_image_runs_its_command_from_the_built_binary(tmp_path, tag, entry, has_iptables):
    for f in ("k8s", "pause"):
        (tmp_path / f).write_bytes(b"\x7fELF")
    img = images.image_for(tag, tmp_path)
    assert img.tag == tag and img.config.get("Entrypoint") == entry
    if entry is None:  # kubeadm's static pods and kube-proxy's DaemonSet run the command by name
        name = tag.rsplit("/", 1)[1].split(":")[0]
        assert img.files[f"/usr/local/bin/{name}"] == ("link", "k8s")
    assert ("/usr/sbin/iptables-restore" in img.files) == has_iptables


def test_coredns_is_not_built():
    assert images.image_for("registry.k8s.io/coredns/coredns:v1.14.6", Path("/nonexistent")) is None
