"""labkit's rollout waits say why they do not finish, with the cluster's own words: a provisioner
whose RBAC refuses it, no provisioner running, an NFS server that is down. Each fault is made
with kubectl or systemctl on the real cluster (never through labkit), labkit's command fails
naming the object, the real event and the fix, and the fix labkit names repairs it.

While it waits, labkit shows ready/desired and the reason; a known cause that stays for
`kubernetes.stuck_after` seconds fails the wait early, long before --timeout.

The tests build on each other in file order on one fresh twin that ran the seed flow."""
from __future__ import annotations

import json
import shlex
import time

import pytest
import yaml

from e2ekit import CLAIM, NS, STS, is_ready, seed_flow

pytestmark = pytest.mark.e2e

CLUSTER_ROLE = "nfs-client-provisioner-runner"
PROVISIONER = "nfs-client-provisioner"


STUCK_AFTER = 45  # kubernetes.stuck_after here (default 60); the provisioner says "forbidden" after ~35 s


@pytest.fixture(scope="module")
def t(e2e):
    seed_flow(e2e)
    return e2e


@pytest.fixture(scope="module")
def impatient(t, tmp_path_factory):
    """The twin's inventory with a short kubernetes.stuck_after: a wait with a known cause fails
    that long after labkit first sees it, long before --timeout."""
    inv = yaml.safe_load(open(t.inventory))
    inv["kubernetes"]["stuck_after"] = STUCK_AFTER
    path = tmp_path_factory.mktemp("inv") / "impatient.yaml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def _fails_early(t, inventory, *args):
    start = time.monotonic()
    res = t.invoke(*args, "--timeout", "600", inventory=inventory, check=False)
    took = time.monotonic() - start
    out = _one_line(res.output)
    assert res.returncode == 1, out[-3000:]
    assert f"is stuck: the same cause for {STUCK_AFTER}s" in out, out[-3000:]
    assert took < 150, f"failed after {took:.0f}s, not early"
    assert "Traceback" not in res.output
    return out


def _claim(t, o: int) -> dict:
    return t.kubectl_json(f"get pvc {CLAIM}-{STS}-{o} -n {NS}")


def _events(t, name: str) -> list[dict]:
    return t.kubectl_json(f"get events -n {NS} --field-selector involvedObject.name={shlex.quote(name)}")["items"]


def _all_ready(t, n: int) -> bool:
    pods = t.pods()
    return sorted(pods) == list(range(n)) and all(is_ready(p) for p in pods.values())


def _one_line(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines without a terminal


def test_rbac_refusal_leaves_the_claim_pending_and_the_wait_names_the_permission(t, impatient):
    rules = t.kubectl_json(f"get clusterrole {CLUSTER_ROLE}")["rules"]
    pv_rule = next(i for i, r in enumerate(rules) if r["resources"] == ["persistentvolumes"])
    t.kubectl(f"patch clusterrole {CLUSTER_ROLE} --type=json -p "
              + shlex.quote(json.dumps([{"op": "remove", "path": f"/rules/{pv_rule}"}])))
    out = _fails_early(t, impatient, "scale", "--replicas", "11")
    assert f"pvc {CLAIM}-{STS}-10 Pending: ProvisioningFailed: " in out, out[-3000:]
    assert ('User "system:serviceaccount:default:nfs-client-provisioner" cannot create resource '
            '"persistentvolumes"') in out
    assert "-> the provisioner's RBAC refuses it: `invoke deploy` puts labkit's ClusterRole and Role back" in out
    # the cluster's own view: no PV, the claim Pending, the provisioner's real event
    assert _claim(t, 10)["status"]["phase"] == "Pending"
    assert not [v for v in t.kubectl_json("get pv")["items"]
                if v["spec"]["claimRef"]["name"] == f"{CLAIM}-{STS}-10"]
    assert any(e["reason"] == "ProvisioningFailed" and "forbidden" in e["message"]
               for e in _events(t, f"{CLAIM}-{STS}-10"))

    # the fix labkit named
    out = " ".join(t.invoke("deploy").output.split())
    assert f"kubectl apply: ClusterRole/{CLUSTER_ROLE} (rules)" in out, out[-3000:]
    t.wait_for("pod 10 ready", lambda: _all_ready(t, 11), timeout=120)
    assert _claim(t, 10)["status"]["phase"] == "Bound"


def test_no_provisioner_running_shows_the_external_provisioning_event(t, impatient):
    t.kubectl(f"scale deployment {PROVISIONER} -n {NS} --replicas=0")
    t.wait_for("the provisioner pod gone", lambda: not [
        p for p in t.kubectl_json(f"get pods -n {NS} -l app={PROVISIONER}")["items"]], timeout=90)
    out = _fails_early(t, impatient, "scale", "--replicas", "12")
    assert (f"pvc {CLAIM}-{STS}-11 Pending: ExternalProvisioning: Waiting for a volume to be created either by "
            "the external provisioner 'k8s-sigs.io/nfs-subdir-external-provisioner'") in out, out[-3000:]
    assert "-> no provisioner acts for this StorageClass" in out
    ev = [e for e in _events(t, f"{CLAIM}-{STS}-11") if e["reason"] == "ExternalProvisioning"]
    assert ev and ev[0]["source"]["component"] == "persistentvolume-controller"

    # deploy puts the provisioner's Deployment back as labkit renders it (1 replica)
    t.invoke("deploy")
    t.wait_for("pod 11 ready", lambda: _all_ready(t, 12), timeout=180)


def test_nfs_server_stopped_fails_the_mount_and_the_wait_shows_it(t, impatient):
    t.sh("master", "systemctl stop nfs-ganesha")
    try:
        # the top pod, deleted at once: the StatefulSet makes it again while the others are Ready
        t.kubectl(f"delete pod {STS}-11 -n {NS} --force --grace-period=0")
        t.wait_for("FailedMount", lambda: [e for e in _events(t, f"{STS}-11") if e["reason"] == "FailedMount"],
                   timeout=90)
        out = _fails_early(t, impatient, "deploy")
        # while waiting, labkit showed progress and the reason (a line every 10 s without a terminal)
        assert "wait: 11/12 ready - wait for statefulset/statefulset" in out
        assert f"pod {STS}-11 ContainerCreating: FailedMount: MountVolume.SetUp failed" in out, out[-3000:]
        assert "mount failed: exit status 32" in out
        assert "-> the node cannot mount the NFS export" in out
    finally:
        t.sh("master", "systemctl start nfs-ganesha")
    t.wait_for("every pod ready again", lambda: _all_ready(t, 12), timeout=240, interval=3)
    assert "verify: 12/12 pods ok" in t.invoke("verify").output


@pytest.fixture(scope="module")
def three(t, impatient, tmp_path_factory):
    """``impatient`` with a third web tag (v3): the last tests roll it out to ordinal 12 only."""
    return _with(t, impatient, tmp_path_factory.mktemp("inv3"), "three-tags.yaml",
                 lambda inv: inv["images"]["web"].update(tags=["v1", "v2", "v3"]))


def _with(t, source: str, tmp_path, name: str, change) -> str:
    inv = yaml.safe_load(open(source))
    change(inv)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def _record_blockers(t, tmp_path, name: str) -> None:
    """What labkit read while it waited, kept beside the test's output (pytest keeps the last runs'
    tmp directories): the source of tests/data/facts/kube/blockers-*.json."""
    (tmp_path / f"{name}.json").write_text(t.kubectl(f"get pods,pvc,events -n {NS} -o json"))


def test_a_node_without_registry_trust_fails_the_pull_and_the_wait_names_setup_registry(t, three, tmp_path):
    # a new tag only ordinal 12 runs, so its node must pull it; only node02 takes new pods
    t.invoke("build-images", inventory=three)
    registry = t.pods()[0]["spec"]["containers"][0]["image"].split("/")[0]
    certs = f"/etc/containerd/certs.d/{registry}"
    t.sh("node02", f"mv {shlex.quote(certs)} /root/labkit-test-certs.d")  # node02 forgets the registry
    t.kubectl("cordon master node01")
    try:
        out = _fails_early(t, three, "scale", "--replicas", "13", "--image-tag", "v3", "--partition", "12")
        _record_blockers(t, tmp_path, "blockers-no-registry-trust")
        # the kubelet's own cause of the failed pull, and labkit's fix for it
        assert f"pod {STS}-12 " in out and "server gave HTTP response to HTTPS client" in out, out[-3000:]
        assert "-> the node's container runtime does not trust the lab registry: run `invoke setup-registry`" in out
        pod = t.pods()[12]
        assert pod["spec"]["nodeName"] == "node02"
        waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting") or {}
        assert waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"), waiting
    finally:
        t.kubectl("uncordon master node01")

    # the fix labkit named: node02's containerd trusts the registry again
    out = " ".join(t.invoke("setup-registry", inventory=three).output.split())
    assert "node02" in out and "containerd trusts registry" in out, out[-3000:]
    assert t.sh("node02", f"test -f {shlex.quote(certs)}/hosts.toml && echo ok").strip() == "ok"
    # the kubelet retries after its back-off (up to 5 minutes); a new pod pulls at once
    t.kubectl(f"delete pod {STS}-12 -n {NS}")
    t.wait_for("pod 12 ready", lambda: _all_ready(t, 13), timeout=180, interval=3)
    assert t.pods()[12]["spec"]["containers"][0]["image"] == f"{registry}/ljz:v3"


def test_a_wrong_export_fails_the_provisioners_mount_and_the_wait_names_setup_nfs(t, three, tmp_path):
    moved = _with(t, three, tmp_path, "moved-export.yaml", lambda inv: inv["nfs"].update(export="/nfsdata-moved"))
    out = _fails_early(t, moved, "deploy")
    _record_blockers(t, tmp_path, "blockers-wrong-export")
    # the provisioner's pod cannot mount an export the server does not have
    assert f"wait for deployment/{PROVISIONER}" in out or f"deployment/{PROVISIONER} is stuck" in out, out[-3000:]
    assert f"pod {PROVISIONER}-" in out and "FailedMount: MountVolume.SetUp failed" in out, out[-3000:]
    assert "-> the node cannot mount the NFS export: check that the NFS server runs and exports nfs.export" in out
    env = t.kubectl_json(f"get deployment {PROVISIONER} -n {NS}")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "NFS_PATH", "value": "/nfsdata-moved"} in env  # what labkit applied from that inventory

    # the lab's inventory (with the v3 the set now runs) puts the provisioner back on the real export
    out = " ".join(t.invoke("deploy", inventory=three).output.split())
    assert f"Deployment/{PROVISIONER}" in out, out[-3000:]
    assert _all_ready(t, 13)
    # deploy gave pod 12 (made while the pull failed, so scale wrote nothing) its version's page
    assert t.served()[12] == "Version: --v3"
    assert "verify: 13/13 pods ok" in t.invoke("verify", inventory=three).output
