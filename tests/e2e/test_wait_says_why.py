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
