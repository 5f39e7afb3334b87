"""Rendered manifests, parsed back and checked field by field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labkit import inventory, manifests
from labkit.errors import OperationError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inv():
    return inventory.load(ROOT / "hosts.yaml")


@pytest.fixture(scope="module")
def objs(inv):
    return manifests.render(inv)


def by_kind(objs, kind):
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_kinds_and_api_versions(objs):
    assert [(o["apiVersion"], o["kind"]) for o in objs] == [
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apps/v1", "Deployment"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("v1", "Service"),
        ("apps/v1", "StatefulSet"),
    ]


def test_no_removed_apis_or_deprecated_annotations(inv):
    text = manifests.render_yaml(inv)  # the objects as applied (template comments dropped)
    for banned in ("extensions/v1beta1", "v1beta1", "PodSecurityPolicy", "podsecuritypolicies",
                   "volume.beta.kubernetes.io", "nfs-client-provisioner:latest", "quay.io/external_storage"):
        assert banned not in text


def test_rbac(objs, inv):
    sa = by_kind(objs, "ServiceAccount")
    assert sa["metadata"] == {"name": "nfs-client-provisioner", "namespace": "default"}
    rules = {(tuple(r["apiGroups"]), r["resources"][0]): set(r["verbs"]) for r in by_kind(objs, "ClusterRole")["rules"]}
    assert rules[(("",), "persistentvolumes")] == {"get", "list", "watch", "create", "delete"}
    assert rules[(("",), "persistentvolumeclaims")] == {"get", "list", "watch", "update"}
    assert rules[(("storage.k8s.io",), "storageclasses")] == {"get", "list", "watch"}
    assert rules[(("",), "events")] == {"create", "update", "patch"}
    assert rules[(("",), "nodes")] == {"get", "list", "watch"}
    crb = by_kind(objs, "ClusterRoleBinding")
    assert crb["roleRef"] == {"kind": "ClusterRole", "name": by_kind(objs, "ClusterRole")["metadata"]["name"],
                              "apiGroup": "rbac.authorization.k8s.io"}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "nfs-client-provisioner", "namespace": "default"}]
    role = by_kind(objs, "Role")
    assert role["rules"][0]["resources"] == ["endpoints"]
    assert {"get", "create", "update"} <= set(role["rules"][0]["verbs"])
    # a provisioner on a newer client-go locks a Lease (no Endpoints lock there)
    assert role["rules"][1]["apiGroups"] == ["coordination.k8s.io"] and role["rules"][1]["resources"] == ["leases"]
    assert {"get", "create", "update"} <= set(role["rules"][1]["verbs"])
    rb = by_kind(objs, "RoleBinding")
    assert rb["roleRef"]["name"] == role["metadata"]["name"] and rb["roleRef"]["kind"] == "Role"
    assert rb["subjects"][0]["name"] == sa["metadata"]["name"]


def test_provisioner_deployment(objs, inv):
    dep = by_kind(objs, "Deployment")
    spec = dep["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == by_kind(objs, "ServiceAccount")["metadata"]["name"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"PROVISIONER_NAME": "k8s-sigs.io/nfs-subdir-external-provisioner",
                   "NFS_SERVER": "192.168.20.6", "NFS_PATH": "/nfsdata"}
    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == "/persistentvolumes"
    (vol,) = pod["volumes"]
    assert vol["name"] == mount["name"]
    assert vol["nfs"] == {"server": "192.168.20.6", "path": "/nfsdata"}


def test_storage_class_matches_provisioner(objs):
    sc = by_kind(objs, "StorageClass")
    env = {e["name"]: e["value"] for e in by_kind(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert sc["provisioner"] == env["PROVISIONER_NAME"]
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["parameters"] == {"archiveOnDelete": "false"}  # a string, as the provisioner reads it


def test_headless_service(objs):
    svc = by_kind(objs, "Service")
    sts = by_kind(objs, "StatefulSet")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 80
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"] == "headless-svc"


def test_statefulset_defaults(objs):
    sts = by_kind(objs, "StatefulSet")
    spec = sts["spec"]
    assert sts["metadata"]["name"] == "statefulset"
    assert spec["replicas"] == 6
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    (c,) = spec["template"]["spec"]["containers"]
    assert c["image"] == "192.168.20.6:5000/ljz:v1"
    assert c["ports"][0]["containerPort"] == 80
    assert c["readinessProbe"]["httpGet"] == {"path": "/", "port": 80}
    (vm,) = c["volumeMounts"]
    assert vm == {"name": "test", "mountPath": "/usr/local/apache2/htdocs"}
    (vct,) = spec["volumeClaimTemplates"]
    assert vct["metadata"] == {"name": "test"}  # no storage-class annotation
    assert vct["spec"]["storageClassName"] == "test-sc"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vct["spec"]["resources"] == {"requests": {"storage": "100Mi"}}


def test_rollout_values(inv):
    sts = by_kind(manifests.render(inv, replicas=10, image_tag="v2", partition=4), "StatefulSet")
    assert sts["spec"]["replicas"] == 10
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 4
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "192.168.20.6:5000/ljz:v2"


def test_render_yaml_round_trips(inv, objs):
    assert list(yaml.safe_load_all(manifests.render_yaml(inv))) == objs


@pytest.mark.parametrize("kwargs,msg", [
    ({"image_tag": "v9"}, "not one of images.web.tags"),
    ({"partition": -1}, "partition must be a whole number 0-1000"),
    ({"replicas": -1}, "replicas must be a whole number 0-1000"),
    ({"replicas": "6"}, "replicas must be a whole number 0-1000"),
])
def test_bad_render_arguments(inv, kwargs, msg):
    with pytest.raises(OperationError, match=msg):
        manifests.render(inv, **kwargs)


def test_values_from_another_inventory(tmp_path):
    text = (ROOT / "hosts.yaml").read_text()
    text = (text.replace("namespace: default", "namespace: lab")
                .replace("archive_on_delete: false", "archive_on_delete: true")
                .replace("name: test-sc", "name: nfs.lab")
                .replace("storage: 100Mi", "storage: 1Gi")
                .replace("export: /nfsdata", "export: /srv/nfs"))
    p = tmp_path / "hosts.yaml"
    p.write_text(text)
    objs = manifests.render(inventory.load(p))
    assert {o["metadata"].get("namespace") for o in objs} == {"lab", None}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert by_kind(objs, kind)["subjects"][0]["namespace"] == "lab"
    assert by_kind(objs, "StorageClass")["parameters"] == {"archiveOnDelete": "true"}
    sts = by_kind(objs, "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "nfs.lab"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    env = {e["name"]: e["value"] for e in by_kind(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NFS_PATH"] == "/srv/nfs"


def test_yaml_special_strings_stay_strings(tmp_path):
    # A tag like "1.10" or "yes" would become a float/bool if not quoted.
    text = (ROOT / "hosts.yaml").read_text().replace("tags: [v1, v2]", 'tags: ["1.10", "yes"]') \
        .replace("image_tag: v1", 'image_tag: "1.10"').replace("image_tag: v2", 'image_tag: "yes"')
    p = tmp_path / "hosts.yaml"
    p.write_text(text)
    inv = inventory.load(p)
    sts = by_kind(manifests.render(inv, image_tag="yes"), "StatefulSet")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "192.168.20.6:5000/ljz:yes"


def test_partition_above_replicas_is_legal(inv):
    # scaling 10 -> 3 keeps partition 4, as a real StatefulSet allows
    sts = by_kind(manifests.render(inv, replicas=3, image_tag="v2", partition=4), "StatefulSet")
    assert (sts["spec"]["replicas"], sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]) == (3, 4)


# Kinds whose objects live in a namespace (the others here are cluster-scoped).
NAMESPACED = {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "StatefulSet"}


def _inventory_in(tmp_path, namespace):
    p = tmp_path / "hosts.yaml"
    p.write_text((ROOT / "hosts.yaml").read_text().replace("namespace: default", f"namespace: {namespace}"))
    inv = inventory.load(p)
    assert inv.kubernetes.namespace == namespace
    return inv


def test_every_namespaced_object_and_subject_follows_the_namespace(tmp_path):
    inv = _inventory_in(tmp_path, "lab")
    objs = manifests.render(inv)
    assert {o["kind"] for o in objs} >= NAMESPACED
    for o in objs:
        if o["kind"] in NAMESPACED:
            assert o["metadata"]["namespace"] == "lab", o["kind"]
        else:
            assert "namespace" not in o["metadata"], o["kind"]
    # the provisioner's ServiceAccount is bound where it lives: its leader election (Role) and its
    # cluster-wide rights (ClusterRole) both name lab
    sa = by_kind(objs, "ServiceAccount")["metadata"]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        assert by_kind(objs, kind)["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": "lab"}]
    assert by_kind(objs, "RoleBinding")["metadata"]["namespace"] == by_kind(objs, "Role")["metadata"]["namespace"]
    assert by_kind(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]
    # the claim templates name no namespace: the PVCs are made in the StatefulSet's
    (vct,) = by_kind(objs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert "namespace" not in vct["metadata"]
    # nothing rendered falls back to `default`
    assert "default" not in manifests.render_yaml(inv)


def test_the_namespace_object_is_labkits_and_not_applied_with_the_others(tmp_path):
    ns = manifests.render_namespace(_inventory_in(tmp_path, "lab"))
    assert ns == {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "lab", "labels": {"app.kubernetes.io/managed-by": "labkit"}}}
    assert manifests.made_by_labkit(ns["metadata"]["labels"])
    assert not manifests.made_by_labkit({"kubernetes.io/metadata.name": "lab"}) and not manifests.made_by_labkit(None)
    # never part of the applied objects: `kubectl apply` would label an existing namespace as labkit's
    assert "Namespace" not in {o["kind"] for o in manifests.render(_inventory_in(tmp_path, "lab"))}
