"""The seed flow in another namespace (the issue: `kubernetes.namespace: lab` failed at deploy with
`namespaces "lab" not found`), on a fresh kubeadm twin through the user's commands.

A copy of the twin's inventory says `kubernetes.namespace: lab`. deploy's plan names the namespace it
would create and changes nothing; `invoke up` creates it (labelled as labkit's) and everything the
set needs lives there: the provisioner's ServiceAccount, Role and RoleBinding, the claims, and the
PV directories the provisioner names `<ns>-<pvc>-<pv>`. `teardown --purge --yes` deletes the namespace
labkit made, last; `default` is untouched throughout, and a purge in it says it keeps it.

The tests build on each other in file order (one fresh twin for the module)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from e2ekit import changed_lines

pytestmark = pytest.mark.e2e

NS, STS, CLAIM, SA = "lab", "statefulset", "test", "nfs-client-provisioner"
LABEL = "app.kubernetes.io/managed-by"
CLAIMS = [f"{CLAIM}-{STS}-{o}" for o in range(10)]  # after the seed flow: 10 replicas


@pytest.fixture(scope="module")
def lab(e2e):
    """The twin plus a copy of its inventory in namespace lab, and what `default` held before."""
    data = yaml.safe_load(Path(e2e.inventory).read_text())
    data["kubernetes"]["namespace"] = NS
    path = Path(e2e.inventory).parent / "inventory-namespace-lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    e2e.lab_inventory = str(path)
    e2e.default_before = _default_namespace(e2e)
    return e2e


def _default_namespace(t) -> dict:
    """`default` as the tests compare it: its identity, labels, phase and what it holds."""
    ns = t.kubectl_json("get namespace default")
    held = t.kubectl("get all,pvc,serviceaccounts,roles,rolebindings,configmaps -n default -o name").split()
    return {"uid": ns["metadata"]["uid"], "labels": ns["metadata"].get("labels"),
            "phase": ns["status"]["phase"], "deleting": "deletionTimestamp" in ns["metadata"], "held": sorted(held)}


def _namespace(t, name: str) -> dict | None:
    out = t.kubectl(f"get namespace {shlex.quote(name)} -o json --ignore-not-found").strip()
    return json.loads(out) if out else None


def _lab_pv_dirs(t) -> dict[str, str]:
    """claim -> spec.nfs.path of every PV claimed in lab (read from the PVs)."""
    return {v["spec"]["claimRef"]["name"]: v["spec"]["nfs"]["path"]
            for v in t.kubectl_json("get pv")["items"]
            if (v["spec"].get("claimRef") or {}).get("namespace") == NS}


def test_deploy_plan_names_the_namespace_and_creates_nothing(lab):
    p = lab.invoke("deploy", "--plan", inventory=lab.lab_inventory)
    out = " ".join(p.output.split())
    assert "Traceback" not in p.output, p.output[-4000:]
    assert f"create namespace {NS} ({LABEL}=labkit)" in out, p.output[-4000:]
    assert "deploy: plan (plan mode: nothing will be changed)" in out
    assert _namespace(lab, NS) is None  # plan mode changed nothing
    assert _default_namespace(lab) == lab.default_before


def test_up_in_namespace_lab_is_green(lab):
    p = lab.invoke("up", inventory=lab.lab_inventory)
    out = " ".join(p.output.split())
    assert f"create namespace {NS}" in out, p.output[-4000:]
    assert "verify: 10/10 pods ok" in out, p.output[-4000:]
    assert "Traceback" not in p.output
    # verify again on its own: green
    assert "verify: 10/10 pods ok" in lab.invoke("verify", inventory=lab.lab_inventory).output


def test_the_namespace_is_labkits(lab):
    ns = _namespace(lab, NS)
    assert ns is not None and ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"].get(LABEL) == "labkit"


def test_everything_of_the_set_lives_in_lab(lab):
    # the provisioner and its leader election's RBAC, the Service and the StatefulSet
    names = set(lab.kubectl(f"get serviceaccounts,roles,rolebindings,deployments,services,statefulsets -n {NS} "
                            "-o name").split())
    for ref in (f"serviceaccount/{SA}", f"role.rbac.authorization.k8s.io/leader-locking-{SA}",
                f"rolebinding.rbac.authorization.k8s.io/leader-locking-{SA}", f"deployment.apps/{SA}",
                f"statefulset.apps/{STS}"):
        assert ref in names, (ref, sorted(names))
    for binding in (f"rolebinding leader-locking-{SA} -n {NS}", f"clusterrolebinding run-{SA}"):
        subjects = lab.kubectl_json(f"get {binding}")["subjects"]
        assert [{k: s.get(k) for k in ("kind", "name", "namespace")} for s in subjects] == \
            [{"kind": "ServiceAccount", "name": SA, "namespace": NS}], binding
    # the claims of the volumeClaimTemplates: in lab, Bound; none in default
    pvcs = {c["metadata"]["name"]: c for c in lab.kubectl_json(f"get pvc -n {NS}")["items"]}
    assert sorted(pvcs) == sorted(CLAIMS)
    assert {c["status"]["phase"] for c in pvcs.values()} == {"Bound"}
    assert not [c for c in lab.kubectl_json("get pvc -n default")["items"] if c["metadata"]["name"] in CLAIMS]
    # the set's pods run in lab
    pods = lab.kubectl_json(f"get pods -n {NS} -l app={STS}")["items"]
    assert len(pods) == 10 and all(p["metadata"]["namespace"] == NS for p in pods)


def test_pv_directories_on_master_start_with_lab(lab):
    dirs = _lab_pv_dirs(lab)
    assert sorted(dirs) == sorted(CLAIMS)
    on_export = set(lab.sh("master", "ls /nfsdata").split())
    for claim, path in dirs.items():
        base = path.rsplit("/", 1)[1]
        assert path.startswith("/nfsdata/") and base.startswith(f"{NS}-{claim}-"), path
        assert base in on_export, (base, sorted(on_export))


def test_deploy_again_changes_nothing(lab):
    out = lab.invoke("deploy", inventory=lab.lab_inventory).output
    assert changed_lines(out) == [], "the re-run changed something:\n" + "\n".join(changed_lines(out))
    assert "create namespace" not in out


def test_teardown_purge_removes_labs_namespace_and_leaves_default(lab):
    dirs = _lab_pv_dirs(lab)
    p = lab.invoke("teardown", "--purge", "--yes", inventory=lab.lab_inventory)
    out = " ".join(p.output.split())
    assert f"delete namespace {NS} (labkit created it)" in out, p.output[-4000:]
    assert "Traceback" not in p.output
    assert _namespace(lab, NS) is None, "the namespace labkit created is still there"
    assert _lab_pv_dirs(lab) == {}  # the set's PVs went too (Retain keeps them otherwise)
    on_export = set(lab.sh("master", "ls /nfsdata").split())
    assert not [d for d in dirs.values() if d.rsplit("/", 1)[1] in on_export]
    for cluster_ref in (f"clusterrole/{SA}-runner", f"clusterrolebinding/run-{SA}", "storageclass/test-sc"):
        assert lab.kubectl(f"get {cluster_ref} -o name --ignore-not-found").strip() == "", cluster_ref
    assert _default_namespace(lab) == lab.default_before


def test_purge_in_default_says_it_keeps_default(lab):
    p = lab.invoke("teardown", "--purge", "--plan")  # the twin's own inventory: namespace default
    out = " ".join(p.output.split())
    assert ("namespace default: kept - namespace default stays: labkit did not create it "
            f"(no {LABEL}=labkit label), so teardown --purge never deletes it") in out, p.output[-4000:]
    assert "delete namespace" not in out
    assert _default_namespace(lab) == lab.default_before
