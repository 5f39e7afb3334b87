"""The NFS provisioner image on the real cluster (issue 8): labtwin's build of
nfs-subdir-external-provisioner (labtwin/k8s/provisioner, sig-storage-lib-external-provisioner
v13) run from labkit's own RBAC and Deployment manifests against the kubeadm cluster's apiserver,
its export mounted over NFS (labkit's `setup-nfs`: ganesha on master; the kubelet's nfs volume
through the twin's FUSE mount.nfs). Directories are checked on the export's own disk on master.

Own twin (env LABTWIN_CLUSTER_NAME, default `ltk8s`; the first free /24 from clusterkit's
FIRST_SUBNET, env LABTWIN_CLUSTER_SUBNET), one worker, taken down at the end.
"""
from __future__ import annotations

import json
import os
import shlex

import pytest

from clusterkit import FIRST_SUBNET, Cluster, cluster_config, invoke

pytestmark = pytest.mark.cluster

TAG = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
EXPORT = "/nfsdata"  # the twin inventory's nfs.export, on master
NODE = "node01"
REFUSED = 'cannot create resource "persistentvolumes" in API group "" at the cluster scope'


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (the twin uses namespaces, mounts, cgroups)")
    from labtwin.hosts import lab, network

    lab.down(cluster_config(workers=1))
    cfg = cluster_config(workers=1, subnet=network.free_subnet(FIRST_SUBNET))
    try:
        lab.up(cfg)
        c = Cluster(cfg)
        invoke(c, "setup-cluster")
        yield c
    finally:
        lab.down(cfg)


def apply(cluster: Cluster, *objs: dict) -> None:
    text = "\n".join(json.dumps(o) for o in objs)
    cluster.sh("master", f"printf '%s\\n' {shlex.quote(text)} | kubectl apply -f - >/dev/null")


def labkit_objects(cluster: Cluster) -> tuple[dict, list[dict]]:
    """labkit's provisioner RBAC and Deployment for the twin's inventory, as labkit renders them."""
    from labkit import inventory, manifests

    inv = inventory.load(cluster.inventory_path)
    objs = [o for o in manifests.render(inv) if o["kind"] in
            ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment")]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (vol,) = pod["volumes"]
    assert vol["nfs"] == {"server": cluster.hosts["master"], "path": inv.nfs.export} == \
        {"server": cluster.hosts["master"], "path": EXPORT}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    return env, objs


def storage_class(name: str, provisioner: str, reclaim: str = "Delete", **params: str) -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "reclaimPolicy": reclaim, "parameters": params}


def claim(cluster: Cluster, name: str, sc: str, annotations: dict | None = None) -> None:
    apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "annotations": annotations or {}},
                    "spec": {"storageClassName": sc, "accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Mi"}}}})


def bound_pv(cluster: Cluster, pvc: str) -> dict:
    def bound():
        c = cluster.kubectl_json(f"get pvc {pvc}")
        return c["spec"].get("volumeName") if c["status"].get("phase") == "Bound" else None
    return cluster.kubectl_json(f"get pv {cluster.wait_for(f'PVC {pvc} Bound', bound, timeout=60)}")


def on_export(cluster: Cluster, cmd: str) -> str:
    """On master, where the export's disk is (the provisioner wrote there over NFS)."""
    return cluster.sh("master", cmd).strip()


def delete_claim(cluster: Cluster, pvc: str, pv: str) -> None:
    cluster.kubectl(f"delete pvc {pvc} --wait=true")
    cluster.wait_for(f"PV {pv} deleted by the provisioner",
                     lambda: cluster.ssh("master", f"kubectl get pv {pv}")[0] != 0, timeout=60)


@pytest.fixture(scope="module")
def prov(cluster):
    """The provisioner running, leader; returns its env (PROVISIONER_NAME, NFS_SERVER, NFS_PATH)."""
    invoke(cluster, "setup-nfs")
    # the workers get the provisioner's image as an offline lab's do: from the lab registry
    invoke(cluster, "setup-registry")
    invoke(cluster, "mirror-images")
    env, objs = labkit_objects(cluster)
    apply(cluster, *objs)
    cluster.kubectl("rollout status deployment/nfs-client-provisioner --timeout=120s", timeout=150)
    lease = env["PROVISIONER_NAME"].replace("/", "-")
    holder = cluster.wait_for("the provisioner's Lease", lambda: cluster.ssh(
        "master", f"kubectl get lease {lease} -o jsonpath='{{.spec.holderIdentity}}'")[1].strip(), timeout=60)
    (pod,) = cluster.kubectl_json("get pods -l app=nfs-client-provisioner")["items"]
    sa = f"system:serviceaccount:{pod['metadata']['namespace']}:{pod['spec']['serviceAccountName']}"
    pod = pod["metadata"]["name"]
    assert holder.startswith(pod + "_")  # <hostname>_<uuid>: leader election on a Lease
    apply(cluster,
          storage_class("prov-delete", env["PROVISIONER_NAME"], archiveOnDelete="false"),
          storage_class("prov-archive", env["PROVISIONER_NAME"], archiveOnDelete="true"),
          storage_class("prov-retain", env["PROVISIONER_NAME"], onDelete="retain"),
          storage_class("prov-pattern", env["PROVISIONER_NAME"], onDelete="delete",
                        pathPattern="${.PVC.namespace}/${.PVC.annotations.nfs.io/storage-path}"))
    return env | {"pod": pod, "sa": sa}


def test_the_image_comes_from_where_an_offline_admin_has_it_through_the_lab_registry(cluster, prov):
    entry = cluster.sh("master", f"docker image inspect {TAG} --format '{{{{json .Config.Entrypoint}}}}'")
    assert json.loads(entry) == ["/nfs-subdir-external-provisioner"]  # the provisioner built from labtwin/k8s/provisioner
    # mirror-images pushed master's copy to the lab registry; the node pulled that, never the public name
    mirrored = f"{cluster.hosts['master']}:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
    node_images = cluster.sh(NODE, "ctr -n k8s.io images ls -q").split()
    assert mirrored in node_images and TAG not in node_images
    assert cluster.ssh(NODE, f"docker image inspect {TAG}")[0] != 0
    events = cluster.events_for(prov["pod"])
    assert any(r == "Pulled" and mirrored in m for r, m in events), events
    logs = cluster.kubectl(f"logs {prov['pod']}")
    assert 'version="v4.0.2-labtwin"' in logs and 'server="v1.37.2"' in logs, logs[-2000:]


def test_a_claim_is_bound_to_a_0777_directory_named_after_it_and_removed_with_archive_false(cluster, prov):
    claim(cluster, "claim-del", "prov-delete")
    pv = bound_pv(cluster, "claim-del")
    name = pv["metadata"]["name"]
    assert name.startswith("pvc-")
    d = f"default-claim-del-{name}"
    assert pv["spec"]["nfs"] == {"server": prov["NFS_SERVER"], "path": f"{prov['NFS_PATH']}/{d}"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["storageClassName"] == "prov-delete"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == prov["PROVISIONER_NAME"]
    assert on_export(cluster, f"stat -c '%F %a' {EXPORT}/{d}") == "directory 777"
    on_export(cluster, f"echo v1 > {EXPORT}/{d}/index.html")

    delete_claim(cluster, "claim-del", name)
    assert d not in on_export(cluster, f"ls {EXPORT}").split()
    assert f"archived-{d}" not in on_export(cluster, f"ls {EXPORT}").split()


def test_archive_on_delete_true_renames_the_directory_and_keeps_its_content(cluster, prov):
    claim(cluster, "claim-arch", "prov-archive")
    name = bound_pv(cluster, "claim-arch")["metadata"]["name"]
    d = f"default-claim-arch-{name}"
    on_export(cluster, f"echo kept > {EXPORT}/{d}/index.html")

    delete_claim(cluster, "claim-arch", name)
    entries = on_export(cluster, f"ls {EXPORT}").split()
    assert f"archived-{d}" in entries and d not in entries
    assert on_export(cluster, f"cat {EXPORT}/archived-{d}/index.html") == "kept"


def test_on_delete_retain_keeps_the_directory(cluster, prov):
    claim(cluster, "claim-ret", "prov-retain")
    name = bound_pv(cluster, "claim-ret")["metadata"]["name"]
    delete_claim(cluster, "claim-ret", name)
    assert f"default-claim-ret-{name}" in on_export(cluster, f"ls {EXPORT}").split()


def test_path_pattern_names_the_directory_from_the_claim(cluster, prov):
    claim(cluster, "claim-pat", "prov-pattern", {"nfs.io/storage-path": "web-data"})
    pv = bound_pv(cluster, "claim-pat")
    assert pv["spec"]["nfs"]["path"] == f"{prov['NFS_PATH']}/default/web-data"
    assert on_export(cluster, f"stat -c '%F %a' {EXPORT}/default/web-data") == "directory 777"
    delete_claim(cluster, "claim-pat", pv["metadata"]["name"])
    assert on_export(cluster, f"ls {EXPORT}/default") == ""  # onDelete: delete


def test_without_create_on_persistentvolumes_the_claim_stays_pending_with_the_refusal(cluster, prov):
    _, objs = labkit_objects(cluster)
    role = next(o for o in objs if o["kind"] == "ClusterRole")
    full = json.loads(json.dumps(role))
    for rule in role["rules"]:
        if rule["resources"] == ["persistentvolumes"]:
            rule["verbs"].remove("create")
    apply(cluster, role)
    try:
        sa = prov["sa"]
        assert cluster.ssh("master", f"kubectl auth can-i create persistentvolumes --as={sa}")[1].strip() == "no"
        claim(cluster, "claim-denied", "prov-delete")
        # lib v13 tries to save the PV 5 times, 10 s apart, then gives up with this event
        events = cluster.wait_for("ProvisioningFailed on claim-denied", lambda: [
            m for r, m in cluster.events_for("claim-denied") if r == "ProvisioningFailed"], timeout=150)
        assert REFUSED in events[0] and sa in events[0], events
        pvc = cluster.kubectl_json("get pvc claim-denied")
        assert pvc["status"]["phase"] == "Pending" and not pvc["spec"].get("volumeName")
        # the directory made before the refused save is cleaned up (archiveOnDelete "false")
        d = f"default-claim-denied-pvc-{pvc['metadata']['uid']}"
        cluster.wait_for(f"{d} removed", lambda: d not in on_export(cluster, f"ls {EXPORT}").split(), timeout=60)
    finally:
        apply(cluster, full)
