"""`invoke setup-cluster` from kubeadm-ready hosts (issue 10): the twin's `--no-cluster` hosts
have kubeadm, kubelet, kubectl and containerd installed and the images pre-pulled, as an offline
lab after its package step, and no cluster. labkit makes it: kubeadm init, join, the host-gw pod
network, every node Ready; a re-run changes nothing; `--plan` changes nothing; a host of another
cluster is refused; a worker whose containerd is stopped fails its join with kubeadm's error
while the others finish; the seed flow is green on the cluster labkit made.

The tests build on each other in file order on one fresh twin."""
from __future__ import annotations

import pytest
import yaml

from e2ekit import changed_lines

pytestmark = pytest.mark.e2e

HOSTS = ("master", "node01", "node02")
KUBE_FILES = "ls /etc/kubernetes /etc/cni/net.d 2>&1; ip -4 route show | grep 10.244 || true"


@pytest.fixture(scope="module")
def t(e2e_bare):
    return e2e_bare


def _state(t) -> dict[str, str]:
    return {h: t.sh(h, KUBE_FILES, check=False) for h in HOSTS}


def test_plan_on_bare_hosts_changes_nothing(t):
    before = _state(t)
    assert "admin.conf" not in before["master"]
    out = " ".join(t.invoke("setup-cluster", "--plan").output.split())
    assert "kubeadm init would change" in out, out[-3000:]
    assert "kubeadm join on the workers and the pod network follow kubeadm init" in out
    up = " ".join(t.invoke("up", "--plan").output.split())
    assert "deploy: would change (after setup-cluster)" in up, up[-3000:]
    assert _state(t) == before


def test_a_worker_whose_containerd_is_stopped_fails_its_join_and_the_others_finish(t):
    t.sh("node02", "systemctl stop containerd")
    try:
        res = t.invoke("setup-cluster", check=False)
        out = " ".join(res.output.split())
        assert res.returncode == 1 and "Traceback" not in res.output, out[-3000:]
        # the host and kubeadm's own preflight error, in the final line
        last = res.output.strip().splitlines()[-1]
        assert "workers failed on node02" in last and "[ERROR CRI]: could not connect to the container runtime" \
            in last, last
        assert "error execution phase preflight" in last
        assert "2 node(s) Ready" in out  # master and node01 finished all the same
        ready = {n["metadata"]["name"] for n in t.kubectl_json("get nodes")["items"]}
        assert ready == {"master", "node01"}
        # doctor says the same, from the log labkit kept on node02
        doctor = " ".join(t.invoke("doctor", check=False).output.split())
        assert "node02 joined the cluster failed not yet: kubeadm join failed: [ERROR CRI]" in doctor, doctor[-3000:]
        assert "node01 joined the cluster ok" in doctor and "master control plane ok" in doctor
    finally:
        t.sh("node02", "systemctl start containerd")


def test_setup_cluster_makes_every_node_ready(t):
    out = t.invoke("setup-cluster").output
    assert "3 node(s) Ready" in out, out[-3000:]
    nodes = t.kubectl_json("get nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == list(HOSTS)
    for n in nodes:
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", n["metadata"]["name"]
        assert n["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    # the pod network labkit laid: a bridge config per node for its podCIDR, routes to the others
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
    for h in HOSTS:
        assert cidrs[h] in t.sh(h, "cat /etc/cni/net.d/10-labkit.conflist")
        routes = t.sh(h, "ip -4 route show")
        for other in HOSTS:
            if other != h:
                assert f"{cidrs[other]} via {t.addr[other]}" in routes, (h, routes)
    # kubeadm's output went to a log on the host, not to the terminal
    assert "Your Kubernetes control-plane has initialized successfully" in \
        t.sh("master", "cat /var/log/labkit-kubeadm-init.log")
    assert "Your Kubernetes control-plane" not in out


def test_a_rerun_changes_nothing(t):
    out = t.invoke("setup-cluster").output
    assert changed_lines(out) == [], "\n".join(changed_lines(out))
    assert out.count("no change") >= 3 * 3  # every host in the hosts, join and network passes


def test_a_host_of_another_cluster_is_refused(t, tmp_path):
    # An inventory that makes node02 the control plane: master (and node01) belong to the
    # cluster at master:6443, which is another cluster for it. Nothing may change anywhere.
    inv = yaml.safe_load(open(t.inventory))
    for h in inv["hosts"]:
        if h["name"] == "master":
            h["roles"] = [r for r in h["roles"] if r != "control-plane"] + ["worker"]
        if h["name"] == "node02":
            h["roles"] = ["control-plane", "worker"]
    other = tmp_path / "node02-control-plane.yaml"
    other.write_text(yaml.safe_dump(inv))
    before = _state(t)
    res = t.invoke("setup-cluster", inventory=str(other), check=False)
    out = " ".join(res.output.split())
    assert res.returncode == 1, out[-3000:]
    assert "master belongs to another cluster: its /etc/kubernetes/admin.conf names the API server " \
           f"https://{t.addr['master']}:6443, this inventory's is https://{t.addr['node02']}:6443" in out, out[-3000:]
    assert "invoke setup-cluster --reset --yes" in out
    assert "Traceback" not in res.output
    assert _state(t) == before


def test_the_seed_flow_is_green_on_the_cluster_labkit_made(t):
    out = t.invoke("up").output
    assert "verify: 10/10 pods ok" in out, out[-3000:]
    assert "setup-cluster" in out  # `up` starts with it: the twin's inventory says cluster.create
