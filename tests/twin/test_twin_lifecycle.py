"""labtwin hosts: what labkit will see (SSH, systemd, dockerd, images, NFS disk, inventory) and
the lifecycle (down leaves nothing, up after a crash, subnet overlap refused)."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labtwin.cli import ssh_argv
from labtwin.hosts import lab, network
from labtwin.hosts.config import TwinConfig, TwinError

pytestmark = pytest.mark.twin

# A second instance for the destructive tests, next to the session twin (they must coexist);
# its subnet is the first free one (other twins may be running on this machine).
LIFE_NAME = "ltlife"


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def ssh_real(twin, host: str, cmd: str) -> subprocess.CompletedProcess:
    """Real ssh as `python -m labtwin ssh` / `invoke twin.ssh` run it: the twin's client key,
    strict checking of the host key the twin generated."""
    return run(ssh_argv(twin.cfg, host, [cmd]))


# --- the running twin ---------------------------------------------------------------------
def test_hosts_reachable_over_ssh_with_their_own_generated_keys(twin):
    keys = set()
    for name in twin.hosts:
        p = ssh_real(twin, name, "hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; ls /etc/ssh")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == name
        keys.add(lines[1].split()[1])
        # Only the host's own key: the machine's keys are not visible in a host.
        assert [x for x in lines[2:] if x.startswith("ssh_host_")] == [
            "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert len(keys) == 3
    machine_key = open("/etc/ssh/ssh_host_ed25519_key.pub").read().split()[1]
    assert machine_key not in keys


def test_ssh_refuses_a_host_key_that_does_not_match(twin, tmp_path):
    # Pin master's key under node01's address: strict checking must refuse node01.
    lines = twin.cfg.host_keys_file.read_text().splitlines()
    master_key = next(x for x in lines if x.startswith("master,")).split(None, 1)[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{twin.hosts['node01']} {master_key}\n")
    p = run(["ssh", "-i", str(twin.cfg.ssh_key), "-o", f"UserKnownHostsFile={wrong}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             f"root@{twin.hosts['node01']}", "true"])
    assert p.returncode != 0
    assert "HOST IDENTIFICATION HAS CHANGED" in p.stderr


def test_systemd_is_pid1_and_the_fresh_box_services(twin):
    for name in twin.hosts:
        rc, out, err = twin.ssh(name, "cat /proc/1/comm; systemctl is-system-running; hostname")
        assert out.split() == ["systemd", "running", name], (out, err)
        rc, out, _ = twin.ssh(name, "systemctl is-active systemd-journald ssh docker containerd")
        assert out.split() == ["active"] * 4
        # Installed but neither enabled nor running: labkit's setup-nfs turns them on.
        rc, out, _ = twin.ssh(name, "systemctl is-enabled nfs-ganesha rpcbind rpcbind.socket; "
                                    "systemctl is-active nfs-ganesha rpcbind")
        assert out.split() == ["disabled"] * 3 + ["inactive"] * 2
        rc, out, _ = twin.ssh(name, "journalctl -b -q --no-pager -u ssh | grep -c 'listening on'")
        assert int(out.strip() or 0) >= 1
        rc, out, _ = twin.ssh(name, "for t in showmount nfs-ls nfs-cat ganesha.nfsd rpcbind; do command -v $t || exit 1; done")
        assert rc == 0 and len(out.split()) == 5


def test_network_addresses_hosts_file_and_no_way_off_the_machine(twin):
    cfg = twin.cfg
    for h in cfg.hosts:
        rc, out, _ = twin.ssh(h.name, "ip -j -4 route show; ip -j -4 addr show dev eth0; cat /etc/hosts")
        routes_json, addr_json, hosts_file = out.split("\n", 2)
        routes = {r["dst"]: r.get("gateway") for r in json.loads(routes_json)}
        assert "default" not in routes
        assert routes[str(cfg.subnet)] is None  # the bridge subnet, connected
        assert not [r for r in routes if r.startswith("10.244.")]  # bare hosts: no pod routes
        assert json.loads(addr_json)[0]["addr_info"][0]["local"] == str(h.address)
        for o in cfg.hosts:
            assert f"{o.address}\t{o.name}" in hosts_file
        # Reaches its peers through the bridge; nothing beyond the machine.
        peer = cfg.hosts[(h.index + 1) % 3]
        rc, out, _ = twin.ssh(h.name, f"ssh-keyscan -T 2 -t ed25519 {peer.address}")
        assert rc == 0 and out.startswith(f"{peer.address} ssh-ed25519 ")
        rc, _, err = twin.ssh(h.name, "ip route get 1.1.1.1")
        assert rc != 0 and "unreachable" in err


def test_dockerd_with_preloaded_images_and_no_insecure_registry(twin):
    for name in twin.hosts:
        rc, out, err = twin.ssh(name, "docker images --format '{{.Repository}}:{{.Tag}}' | sort")
        assert out.split() == sorted(["httpd:2.4", "registry:2"]), err
        rc, out, _ = twin.ssh(name, "docker info --format '{{json .RegistryConfig.IndexConfigs}} {{.DockerRootDir}}'")
        index_configs, root_dir = out.rsplit(" ", 1)
        assert list(json.loads(index_configs)) == ["docker.io"]
        assert root_dir.strip() == "/var/lib/docker"
        rc, out, _ = twin.ssh(name, "cat /etc/docker/daemon.json")
        assert "insecure" not in out


def test_images_work_like_the_real_ones(twin):
    cmd = ("docker run -d --name t-web -p 8080:80 httpd:2.4 >/dev/null && "
           "docker run -d --name t-reg -p 5000:5000 registry:2 >/dev/null && "
           "for i in $(seq 50); do curl -sf localhost:8080/ && curl -sf localhost:5000/v2/ && break; sleep 0.1; done")
    try:
        rc, out, err = twin.ssh("master", cmd)
        assert "It works!" in out, err
        # The registry on master answers from the other hosts; the catalog API is there.
        rc, out, _ = twin.ssh("node01", f"curl -sf http://{twin.hosts['master']}:5000/v2/_catalog")
        assert json.loads(out) == {"repositories": []}
        # Containers live under the host's own cgroup (teardown is a plain rmdir).
        rc, out, _ = twin.ssh("master", "docker inspect -f '{{.Id}}' t-web")
        cid = out.strip()
        assert any(p.is_dir() for p in
                   Path("/sys/fs/cgroup/memory", twin.cfg.cgroup_name, "master").rglob(cid))
    finally:
        twin.ssh("master", "docker rm -f t-web t-reg")


def test_nfs_disk_is_master_export_dir_and_nodes_have_no_back_door(twin):
    token = os.urandom(6).hex()
    rc, _, err = twin.ssh("master", f"echo {token} > /nfsdata/probe-{token}")
    assert rc == 0, err
    assert (twin.cfg.nfs_disk / f"probe-{token}").read_text().strip() == token
    for node in ("node01", "node02"):  # nodes reach the export only over NFS
        rc, out, _ = twin.ssh(node, "ls /nfsdata /var/lib/labtwin-nfs 2>&1")
        assert f"probe-{token}" not in out, out
    twin.ssh("master", f"rm /nfsdata/probe-{token}")


def test_reset_gives_fresh_hosts_at_the_same_addresses(twin):
    rc, _, _ = twin.ssh("node02", "touch /root/dirty")
    old_pid = twin.init_pid("node02")
    twin.reset()
    assert twin.init_pid("node02") != old_pid
    rc, _, _ = twin.ssh("node02", "test -e /root/dirty")
    assert rc == 1
    assert lab.is_up(twin.cfg)


def test_inventory_is_labkit_schema_for_the_twin(twin):
    inv = yaml.safe_load(twin.inventory_path.read_text())
    seed = yaml.safe_load(open("hosts.yaml").read())
    assert set(inv) == set(seed)
    assert [(h["name"], h["address"]) for h in inv["hosts"]] == list(twin.hosts.items())
    assert [h["roles"] for h in inv["hosts"]] == [h["roles"] for h in seed["hosts"]]
    assert inv["nfs"]["server"] == "ganesha" and inv["nfs"]["export"] == "/nfsdata"
    assert inv["ssh"]["user"] == "root" and os.path.exists(inv["ssh"]["key"])
    assert inv["ssh"]["known_hosts"] == str(twin.state_dir / "known_hosts")
    assert not os.path.exists(inv["ssh"]["known_hosts"])  # labkit pins on first use
    assert inv["registry"] == seed["registry"] and inv["images"] == seed["images"]


# --- lifecycle (own instance; the session twin keeps running next to it) -------------------
@pytest.fixture
def life_cfg():
    cfg = TwinConfig.from_env(name=LIFE_NAME, subnet="10.213.28.0/24", state=f"/var/lib/labtwin/{LIFE_NAME}")
    lab.down(cfg)
    cfg = TwinConfig.from_env(name=LIFE_NAME, subnet=network.free_subnet("10.213.200.0/24"),
                              state=f"/var/lib/labtwin/{LIFE_NAME}")
    yield cfg
    lab.down(cfg)


def _recorded_pids(cfg: TwinConfig) -> list[int]:
    return [e["pid"] for roles in lab.read_pids(cfg).values() for e in roles.values()]


def _mounts_anywhere(path) -> list[str]:
    """Mounts of the state dir in any mount namespace on the machine."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = open(f"/proc/{d}/mountinfo").read()
            except OSError:
                continue
            found += [f"{d}: {line}" for line in text.splitlines() if f" {path}/" in line or line.split()[3].startswith(str(path))]
    return found


def test_down_leaves_nothing_behind_and_is_idempotent(life_cfg, twin):
    r = lab.up(life_cfg)
    assert lab.is_up(life_cfg) and not r.already_up
    pids = _recorded_pids(life_cfg)
    assert len(pids) == 6 and lab.leftovers(life_cfg)
    lab.down(life_cfg)  # wall time is measured by bench/twin_updown.py, not asserted here
    assert lab.leftovers(life_cfg) == []
    assert [p for p in pids if os.path.exists(f"/proc/{p}") and
            open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"] == []
    assert _mounts_anywhere(life_cfg.state_dir) == []
    assert [p.name for p in life_cfg.state_dir.iterdir()] == ["cache"]  # image cache kept
    assert lab.down(life_cfg) == []  # idempotent: nothing left to do
    assert lab.is_up(twin.cfg)  # the other twin is untouched


def test_up_after_crash_cleans_leftovers(life_cfg):
    lab.up(life_cfg)
    old = _recorded_pids(life_cfg)
    for pid in old:  # the crash: every process the twin started, killed by PID
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert not lab.is_up(life_cfg)
    assert any(x.startswith("netns") for x in lab.leftovers(life_cfg))
    r = lab.up(life_cfg)
    assert not r.already_up
    assert lab.is_up(life_cfg)
    assert set(_recorded_pids(life_cfg)).isdisjoint(old)
    lab.down(life_cfg)
    assert lab.leftovers(life_cfg) == []


def test_subnet_overlapping_an_existing_route_is_refused(twin, tmp_path):
    # The session twin's bridge route is a route like any LAN's: a second twin must not reuse it.
    inside = ipaddress.ip_network(f"{twin.cfg.subnet.network_address}/25")
    cfg = TwinConfig.from_env(name="ltover", subnet=str(inside), state=str(tmp_path / "state"))
    with pytest.raises(TwinError, match=f"overlaps the existing route {twin.cfg.subnet}"):
        lab.up(cfg)
    assert lab.leftovers(cfg) == [] and not network.link_exists(cfg.bridge)
    assert lab.is_up(twin.cfg)


def test_bad_names_and_subnets_are_refused_before_anything_starts():
    with pytest.raises(TwinError, match="not valid"):
        TwinConfig.from_env(name="Bad-Name", subnet="10.213.30.0/24")
    with pytest.raises(TwinError, match="not an IPv4 network"):
        TwinConfig.from_env(name="x", subnet="10.213.30.1/24")
    with pytest.raises(TwinError, match="too small"):
        TwinConfig.from_env(name="x", subnet="10.213.30.0/29")


