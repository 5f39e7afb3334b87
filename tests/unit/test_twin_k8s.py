"""The pure parts of the twin's real cluster: the kubeadm, join and CNI configs it renders, the
join command it reads from kubeadm, its hosts, and the build's pins, cache key and Go check."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from labtwin.hosts import cluster, inventory
from labtwin.hosts.config import TwinConfig, TwinError
from labtwin.k8s import build, images

DATA = Path(__file__).resolve().parents[1] / "data" / "twin"


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


def test_kubeadm_config_is_what_a_kubeadm_user_writes_for_this_lab():
    docs = list(yaml.safe_load_all(cluster.kubeadm_config(cfg(kubeadm=True), "v1.37.2")))
    init, clus, kubelet, proxy = docs
    assert init["kind"] == "InitConfiguration" and init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.213.40.6", "bindPort": 6443}
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.213.40.6"}]
    assert init["skipPhases"] == ["preflight", "addon/coredns"]
    assert clus["kubernetesVersion"] == "v1.37.2" and clus["controlPlaneEndpoint"] == "10.213.40.6:6443"
    assert clus["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    assert kubelet["kind"] == "KubeletConfiguration"
    assert (kubelet["cgroupDriver"], kubelet["failCgroupV1"], kubelet["failSwapOn"]) == ("systemd", False, False)
    assert proxy["conntrack"] == {"maxPerCore": 0} and proxy["mode"] == "iptables"


def test_join_config_names_the_node_its_address_and_the_discovery_pins():
    c = cfg(kubeadm=True)
    j = json.loads(cluster.join_config(c, c.hosts[2], "abcdef.0123456789abcdef", "sha256:" + "a" * 64))
    assert j["kind"] == "JoinConfiguration"
    assert j["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "10.213.40.6:6443", "token": "abcdef.0123456789abcdef",
        "caCertHashes": ["sha256:" + "a" * 64]}
    assert j["nodeRegistration"]["name"] == "node02"
    assert j["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.213.40.8"}]


def test_cni_config_is_a_bridge_over_the_nodes_pod_cidr():
    conf = json.loads(cluster.cni_config("10.244.3.0/24"))
    bridge, portmap = conf["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"]) == ("bridge", "cni0", True)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert portmap["type"] == "portmap"


def test_the_join_command_kubeadm_printed_gives_token_and_ca_hash():
    out = (DATA / "kubeadm-token-create-print-join-command.txt").read_text()
    token, ca_hash = cluster.parse_join_command(out)
    assert len(token) == 23 and token[6] == "."
    assert ca_hash.startswith("sha256:") and len(ca_hash) == 71


def test_a_join_command_without_token_is_a_clear_error():
    with pytest.raises(TwinError, match="could not read a join command from kubeadm"):
        cluster.parse_join_command("failed to create or update bootstrap token\n")


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
