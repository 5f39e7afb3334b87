"""`twin up --kubeadm --workers 4`: a twin process killed while it makes its hosts, then a clean
start of a bigger lab, made a cluster from bare hosts by labkit's setup-cluster, where a
DaemonSet puts one web pod on every worker and master curls each of them."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clusterkit import FIRST_SUBNET, Cluster, cluster_config, invoke

pytestmark = pytest.mark.cluster
WORKERS = 4
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg():
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (the twin uses namespaces, mounts, cgroups)")
    from labtwin.hosts import lab, network

    lab.down(cluster_config())
    c = cluster_config(workers=WORKERS, subnet=network.free_subnet(FIRST_SUBNET))
    yield c
    lab.down(c)


def test_a_twin_killed_while_making_its_hosts_is_cleaned_by_the_next_up(cfg):
    from labtwin.hosts import lab

    proc = subprocess.Popen(
        [sys.executable, "-m", "labtwin", "--name", cfg.name, "--state", str(cfg.state_dir), "up",
         "--kubeadm", "--workers", str(WORKERS), "--subnet", str(cfg.subnet)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "loading images" in line or "images imported" in line:  # hosts up, their images under way
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any("loading images" in l or "images imported" in l for l in seen), "".join(seen)
    left = lab.leftovers(cfg)
    assert any(x.startswith("netns") for x in left) and any(x.startswith("process") for x in left), left

    lab.up(cfg)  # cleans what the killed run left, then a whole new lab
    assert lab.is_up(cfg)
    out = invoke(Cluster(cfg), "setup-cluster")  # four workers joined from bare hosts
    assert f"{WORKERS + 1} node(s) Ready" in out, out[-3000:]


def test_four_workers_are_real_nodes_and_each_runs_a_pod_master_can_reach(cfg):
    from labkit import flows
    from labkit.inventory import load

    c = Cluster(cfg)
    nodes = c.kubectl_json("get nodes")["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == ["master", "node01", "node02", "node03", "node04"]
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
    assert len(set(cidrs.values())) == 5

    image = c.registry_by_hand()
    inv = yaml.safe_load(Path(cfg.inventory_path).read_text())
    assert [h["runtime"] for h in inv["hosts"]] == ["docker"] + ["containerd"] * WORKERS
    inv["ssh"]["known_hosts"] = str(cfg.state_dir / "known_hosts.test")
    mine = cfg.state_dir / "inventory.test.yaml"
    mine.write_text(yaml.safe_dump(inv))
    checks = flows.setup_registry(load(mine)).checks  # raises HostsFailed if a host failed
    assert [row[2] for row in checks] == ["ok"] * (WORKERS + 1), checks

    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "web"},
          "spec": {"selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "web", "image": image}]}}}}
    c.sh("master", f"echo '{json.dumps(ds)}' | kubectl apply -f -")
    c.kubectl("rollout status daemonset/web --timeout=120s", timeout=150)
    pods = c.kubectl_json("get pods -l app=web")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node01", "node02", "node03", "node04"]
    for p in pods:
        node, ip = p["spec"]["nodeName"], p["status"]["podIP"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidrs[node]), (node, ip)
        assert "It works!" in c.sh("master", f"curl -sf -m 5 http://{ip}/"), node
