"""The seed on the real cluster (issue 8, first steps): `invoke up` as a user runs it, against a
kubeadm twin. Every Kubernetes behaviour here is upstream's: the apiserver's RBAC, the
StatefulSet controller, the kubelet's nfs volume plugin (through the twin's FUSE mount.nfs helper,
NFSv3 to ganesha on master), and the NFS provisioner built from sig-storage-lib v13."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"
CHANGED_RE = re.compile(r"(?<![\w-])(changed|would change|written)(?![\w-])")
PROVISIONER = "k8s-sigs.io/nfs-subdir-external-provisioner"


def invoke(cluster, task: str, *args: str) -> str:
    p = subprocess.run([str(INVOKE), task, "-i", str(cluster.inventory_path), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"invoke {task} exited {p.returncode}:\n{out[-4000:]}"
    return out


def served(cluster) -> dict[int, str]:
    bodies = {}
    for p in cluster.kubectl_json("get pods -l app=statefulset")["items"]:
        o = int(p["metadata"]["name"].rsplit("-", 1)[1])
        bodies[o] = cluster.sh("master", f"curl -s -m 5 http://{shlex.quote(p['status']['podIP'])}/").strip()
    return bodies


def test_up_gives_pods_0_to_3_v1_and_4_to_9_v2_each_from_its_own_pv(cluster):
    invoke(cluster, "up")
    assert served(cluster) == {o: f"Version: --{'v1' if o < 4 else 'v2'}" for o in range(10)}
    pvs = {v["spec"]["claimRef"]["name"]: v for v in cluster.kubectl_json("get pv")["items"]}
    assert sorted(pvs) == sorted(f"test-statefulset-{o}" for o in range(10))
    for claim, pv in pvs.items():
        assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        path = pv["spec"]["nfs"]["path"]
        assert path == f"/nfsdata/default-{claim}-{pv['metadata']['name']}"
        mode = cluster.sh("master", f"stat -c %a {shlex.quote(path)}").strip()
        assert mode == "777", (path, mode)
    # the pods' volumes are NFS mounts made by the kubelet through mount.nfs (FUSE, NFSv3)
    mounts = cluster.sh("node01", "grep ' fuse.nfsfuse ' /proc/mounts")
    assert f"{cluster.hosts['master']}:/nfsdata/default-test-statefulset-" in mounts


def test_a_rerun_changes_nothing(cluster):
    out = invoke(cluster, "up")
    changed = [l for l in out.splitlines() if CHANGED_RE.search(l)]
    assert changed == [], "\n".join(changed)


def test_data_crosses_nfs_both_ways(cluster):
    path = next(v["spec"]["nfs"]["path"] for v in cluster.kubectl_json("get pv")["items"]
                if v["spec"]["claimRef"]["name"] == "test-statefulset-1")
    cluster.sh("master", f"echo from-master > {shlex.quote(path)}/from-master.txt")
    docroot = "/usr/local/apache2/htdocs"
    assert cluster.kubectl(f"exec statefulset-1 -- cat {docroot}/from-master.txt").strip() == "from-master"
    cluster.kubectl(f"exec statefulset-1 -- sh -c 'echo from-pod > {docroot}/from-pod.txt'")
    assert cluster.sh("master", f"cat {shlex.quote(path)}/from-pod.txt").strip() == "from-pod"
