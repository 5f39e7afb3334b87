"""Data survives what a StatefulSet promises it survives: scale 10 -> 2 -> 10 (PVCs are kept and
come back to the same ordinals), and a teardown without --purge (PVs with reclaimPolicy Retain
and their NFS directories stay; deploy afterwards serves the old content). Data crosses NFS both
ways: a file written on master shows in the pod, one written in the pod shows on master."""
from __future__ import annotations

import shlex

import pytest

from e2ekit import CLAIM, NS, STS, is_ready, seed_flow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def t(e2e):
    seed_flow(e2e)
    e2e.before = e2e.served()  # what every pod serves after the seed: 0-3 v1, 4-9 v2
    e2e.dirs_before = e2e.pv_dirs()
    assert e2e.before == {o: f"Version: --v{1 if o < 4 else 2}" for o in range(10)}
    return e2e


def _settled(t, n):
    pods = t.pods()
    return sorted(pods) == list(range(n)) and all(is_ready(p) and not p["metadata"].get("deletionTimestamp")
                                                  for p in pods.values())


def test_data_crosses_nfs_both_ways(t):
    path = t.dirs_before[f"{CLAIM}-{STS}-1"]
    t.sh("master", f"echo from-master > {shlex.quote(path)}/from-master.txt")
    docroot = "/usr/local/apache2/htdocs"
    assert t.kubectl(f"exec {STS}-1 -n {NS} -- cat {docroot}/from-master.txt").strip() == "from-master"
    t.kubectl(f"exec {STS}-1 -n {NS} -- sh -c 'echo from-pod > {docroot}/from-pod.txt'")
    assert t.sh("master", f"cat {shlex.quote(path)}/from-pod.txt").strip() == "from-pod"
    # the pod's volume is an NFS mount the kubelet made through mount.nfs (FUSE, NFSv3)
    node = t.pods()[1]["spec"]["nodeName"]
    assert f"{t.addr['master']}:{path} " in t.sh(node, "grep ' fuse.nfsfuse ' /proc/mounts")


def test_scale_down_to_two_keeps_every_claim(t):
    t.invoke("scale", "--replicas", "2")
    t.wait_for("pods 2-9 gone", lambda: _settled(t, 2), timeout=180)
    assert t.served() == {o: t.before[o] for o in range(2)}
    # the claims of the removed pods are kept, still bound to the same PVs
    assert t.pv_dirs() == t.dirs_before
    phases = {c["metadata"]["name"]: c["status"]["phase"] for c in t.kubectl_json(f"get pvc -n {NS}")["items"]}
    assert phases == {f"{CLAIM}-{STS}-{o}": "Bound" for o in range(10)}


def test_scale_up_to_ten_serves_what_each_served_before(t):
    out = t.invoke("scale", "--replicas", "10").output
    assert "0 new PVC/PV pair(s)" in out
    t.wait_for("10 ready pods", lambda: _settled(t, 10), timeout=180)
    assert t.served() == t.before
    assert t.pv_dirs() == t.dirs_before
    assert "verify: 10/10 pods ok" in t.invoke("verify").output


def test_teardown_keeps_pvs_and_directories(t):
    t.invoke("teardown")
    t.wait_for("all pods gone", lambda: not t.pods(), timeout=180)
    assert t.kubectl(f"get statefulset {STS} -n {NS} --ignore-not-found").strip() == ""
    pvs = t.kubectl_json("get pv")["items"]
    assert len(pvs) == 10 and all(v["spec"]["persistentVolumeReclaimPolicy"] == "Retain" for v in pvs)
    assert t.pv_dirs() == t.dirs_before
    for claim, d in t.dirs_before.items():
        o = int(claim.rsplit("-", 1)[1])
        assert t.sh("master", f"cat {shlex.quote(d)}/index.html").strip() == t.before[o], claim


def test_deploy_after_teardown_serves_the_old_content(t):
    t.invoke("deploy")
    t.wait_for("6 ready pods", lambda: _settled(t, 6), timeout=180)
    # the seed's 6 replicas at v1 again, on their old volumes: 4 and 5 still hold the v2 page
    assert t.served() == {o: t.before[o] for o in range(6)}
    assert t.pv_dirs() == t.dirs_before
    # verify agrees: each pod runs its revision's image (v1) and serves what labkit last wrote to
    # its PV (v2 for 4 and 5, written by write-v2 before the teardown)
    out = t.invoke("verify").output
    assert "verify: 6/6 pods ok" in out, out[-3000:]


def test_teardown_purge_removes_what_it_says(t):
    out = " ".join(t.invoke("teardown", "--purge", "--yes").output.split())
    assert "delete 10 PVC(s)" in out and "delete 10 PV(s)" in out, out[-3000:]
    # the NFS data goes in a step of its own on the NFS server, planned and applied like any other
    assert "purge NFS data would change remove 10 PV directories (the purged PVs' data)" in out, out[-3000:]
    assert "purge NFS data changed 1 change(s)" in out
    t.wait_for("all pods gone", lambda: not t.pods(), timeout=180)
    left = t.kubectl("get statefulset,deployment,service,pvc -n default -o name; "
                     "kubectl get pv,storageclass,clusterrole,clusterrolebinding -o name")
    for name in ("statefulset.apps/statefulset", "deployment.apps/nfs-client-provisioner", "service/headless-svc",
                 "persistentvolumeclaim/", "persistentvolume/", "storageclass.storage.k8s.io/test-sc",
                 "clusterrole.rbac.authorization.k8s.io/nfs-client-provisioner-runner"):
        assert name not in left, (name, left)
    on_export = t.sh("master", "ls -A /nfsdata").split()
    assert not [d for d in t.dirs_before.values() if d.rsplit("/", 1)[1] in on_export], on_export
