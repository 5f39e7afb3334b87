"""The twin's real cluster, as a kubeadm user checks theirs (issue 7), in file order: the control
plane and nodes, RBAC, registry trust through labkit on containerd, then teardown after a
`docker pause`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

HTTPS_TO_HTTP = "http: server gave HTTP response to HTTPS client"


def test_every_node_is_ready_with_the_built_versions(cluster):
    nodes = cluster.kubectl_json("get nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["master", "node01", "node02"]
    for n in nodes:
        name, info = n["metadata"]["name"], n["status"]["nodeInfo"]
        assert info["kubeletVersion"] == "v1.37.2", name
        assert info["containerRuntimeVersion"] == "containerd://2.2.9", name
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        assert {a["type"]: a["address"] for a in n["status"]["addresses"]}["InternalIP"] == cluster.hosts[name]
    # kubeadm's own marks: the control-plane label and taint on master only
    master = next(n for n in nodes if n["metadata"]["name"] == "master")
    assert "node-role.kubernetes.io/control-plane" in master["metadata"]["labels"]
    assert any(t["key"] == "node-role.kubernetes.io/control-plane" for t in master["spec"]["taints"])


def test_control_plane_is_kubeadms_static_pods_and_kube_proxy_runs_everywhere(cluster):
    pods = cluster.kubectl_json("get pods -n kube-system")["items"]
    by = {}
    for p in pods:
        by.setdefault(p["metadata"].get("labels", {}).get("component") or
                      p["metadata"].get("labels", {}).get("k8s-app"), []).append(p)
    for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (pod,) = by[comp]
        assert pod["spec"]["nodeName"] == "master"
        assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"  # static pod
    assert sorted(p["spec"]["nodeName"] for p in by["kube-proxy"]) == ["master", "node01", "node02"]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert {"registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/etcd:3.7.0-0"} <= images
    assert cluster.sh("master", "test -f /etc/kubernetes/pki/ca.crt && test -f /etc/kubernetes/admin.conf "
                                "&& cmp /etc/kubernetes/admin.conf /root/.kube/config && echo ok").strip() == "ok"


def test_livez_passes_every_check_and_kubectl_reports_the_release(cluster):
    out = cluster.kubectl("get --raw '/livez?verbose'")
    checks = [l for l in out.splitlines() if l.startswith("[")]
    assert len(checks) > 10 and all(l.startswith("[+]") for l in checks), out
    assert out.strip().endswith("livez check passed")
    v = json.loads(cluster.kubectl("version -o json"))
    assert v["clientVersion"]["gitVersion"] == v["serverVersion"]["gitVersion"] == "v1.37.2"
    # the etcd that kubeadm runs is the one k8s 1.37 pins
    assert "etcd Version: 3.7.0" in cluster.kubectl("exec -n kube-system etcd-master -- etcd --version")


def test_rbac_refuses_a_service_account_without_a_binding(cluster):
    cluster.kubectl("create serviceaccount nobody")
    rc, out, _ = cluster.ssh("master", "kubectl auth can-i list pods --as=system:serviceaccount:default:nobody")
    assert (rc, out.strip()) == (1, "no")
    rc, out, _ = cluster.ssh("master", "kubectl auth can-i list pods")
    assert (rc, out.strip()) == (0, "yes")
    cluster.kubectl("create rolebinding nobody-view --clusterrole=view --serviceaccount=default:nobody")
    rc, out, _ = cluster.ssh("master", "kubectl auth can-i list pods --as=system:serviceaccount:default:nobody")
    assert (rc, out.strip()) == (0, "yes")
    rc, out, _ = cluster.ssh("master", "kubectl auth can-i create pods --as=system:serviceaccount:default:nobody")
    assert (rc, out.strip()) == (1, "no")


def test_the_twins_inventory_says_containerd_where_the_kubelet_uses_it(cluster):
    inv = yaml.safe_load(Path(cluster.inventory_path).read_text())
    assert {h["name"]: h["runtime"] for h in inv["hosts"]} == {
        "master": "docker", "node01": "containerd", "node02": "containerd"}


def _web_pod(cluster, name: str, node: str, image: str) -> None:
    spec = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "trust"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": image}]}}
    cluster.sh("master", f"echo '{json.dumps(spec)}' | kubectl apply -f -")


def test_pods_pull_from_the_lab_registry_only_after_labkit_setup_registry(cluster):
    from labkit import flows
    from labkit.inventory import load

    image = cluster.registry_by_hand()
    for node in ("node01", "node02"):
        _web_pod(cluster, f"web-{node}", node, image)
    for node in ("node01", "node02"):
        events = cluster.wait_for(f"web-{node}'s pull failure", lambda: [
            m for r, m in cluster.events_for(f"web-{node}") if r == "Failed" and HTTPS_TO_HTTP in m])
        assert f'Head "https://{cluster.registry}/v2/web/manifests/v1"' in events[0]
        # the kubelet reports the pull failure in the pod's status too (right after the event)
        cluster.wait_for(f"web-{node} waiting on its image", lambda: cluster.kubectl_json(
            f"get pod web-{node}")["status"]["containerStatuses"][0]["state"].get("waiting", {}).get(
            "reason") in ("ErrImagePull", "ImagePullBackOff"), timeout=30)

    inv_path = Path(cluster.inventory_path)
    data = yaml.safe_load(inv_path.read_text())
    data["ssh"]["known_hosts"] = str(inv_path.parent / "known_hosts.test")
    mine = inv_path.parent / "inventory.test.yaml"
    mine.write_text(yaml.safe_dump(data))
    result = flows.setup_registry(load(mine))  # raises HostsFailed if a host failed
    assert sorted((row[0], row[2]) for row in result.checks) == [
        ("master", "ok"), ("node01", "ok"), ("node02", "ok")], result.checks
    for node in ("node01", "node02"):
        hosts_toml = cluster.sh(node, f"cat /etc/containerd/certs.d/{cluster.registry}/hosts.toml")
        assert f'server = "http://{cluster.registry}"' in hosts_toml
        cluster.kubectl(f"delete pod web-{node} --wait=true")  # no waiting out the pull back-off
        _web_pod(cluster, f"web-{node}", node, image)
    cluster.kubectl("wait --for=condition=Ready pod -l app=trust --timeout=90s")
    for p in cluster.kubectl_json("get pods -l app=trust")["items"]:
        ip = p["status"]["podIP"]
        assert "It works!" in cluster.sh("master", f"curl -sf -m 5 http://{ip}/"), p["metadata"]["name"]


def test_labkits_host_steps_work_on_kubeadm_hosts_and_a_rerun_changes_nothing(cluster):
    """setup-registry (already applied above), setup-nfs and build-images on hosts whose workers
    run the kubelet on containerd 2.x; then all three again: no host changes."""
    from labkit import flows
    from labkit.inventory import load

    inv = load(Path(cluster.inventory_path).parent / "inventory.test.yaml")
    flows.setup_nfs(inv)
    flows.build_images(inv)
    tags = json.loads(cluster.sh("master", f"curl -sf http://{cluster.registry}/v2/ljz/tags/list"))
    assert sorted(tags["tags"]) == ["v1", "v2"]
    config_before = {n: cluster.sh(n, "cat /etc/containerd/config.toml") for n in ("node01", "node02")}
    for step in (flows.setup_registry, flows.setup_nfs, flows.build_images):
        result = step(inv)
        assert result.report.changed_hosts == [], (step.__name__, result.report.hosts)
    assert {n: cluster.sh(n, "cat /etc/containerd/config.toml") for n in ("node01", "node02")} == config_before
    # the nodes still run the pods after labkit restarted their containerd once (setup-registry)
    for n in cluster.kubectl_json("get nodes")["items"]:
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]


def test_down_after_docker_pause_leaves_nothing_behind(cluster):
    from labtwin.hosts import lab
    from labtwin.hosts.config import SYSCTL_RECORD
    from labtwin.hosts.host import other_twins_running
    from labtwin.hosts.kubeadm_node import MACHINE_SYSCTLS

    saved = json.loads(SYSCTL_RECORD.read_text())
    assert int(Path("/proc/sys/fs/inotify/max_user_instances").read_text()) >= 512
    cluster.sh("node01", "docker run -d --name paused httpd:2.4 >/dev/null && docker pause paused")
    assert "FROZEN" in cluster.sh("node01", "cat /sys/fs/cgroup/freezer/docker/*/freezer.state")
    others = other_twins_running(cluster.cfg)
    lab.down(cluster.cfg)
    assert lab.leftovers(cluster.cfg) == []
    if not others:  # the machine's own values are back (another twin would still need them)
        assert {k: Path("/proc/sys", k).read_text().strip() for k in MACHINE_SYSCTLS} == saved
        assert not SYSCTL_RECORD.exists()
