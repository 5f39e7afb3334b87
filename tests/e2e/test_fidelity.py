"""Fidelity of the twin where the seed depends on it, checked against documented Kubernetes
behaviour (DESIGN.md section 2), as a real client sees it: ordered creation, top-down rollout
stopping at the partition, reverse-order scale-down, `kubectl rollout status` text, PVC Pending
without a provisioner, ImagePullBackOff on a node that does not trust the registry.

The tests build on each other in file order on one fresh twin."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from e2ekit import NS, STS, image_tag, is_ready, ordinal

pytestmark = pytest.mark.e2e

PROVISIONER = "k8s-sigs.io/nfs-subdir-external-provisioner"
HTTPS_ERROR = "http: server gave HTTP response to HTTPS client"  # docker's own words (DESIGN.md 2)


@pytest.fixture(scope="module")
def t(e2e):
    return e2e


def apply(t, obj: dict) -> str:
    return t.sh("master", f"printf '%s' {shlex.quote(yaml.safe_dump(obj))} | kubectl apply -f -")


def timeline(events):
    """Per pod uid: ordinal, index of ADDED, of first Ready, of first sign of termination; and the tag."""
    seen: dict[str, dict] = {}
    for i, (etype, pod) in enumerate(events):
        uid = pod["metadata"]["uid"]
        rec = seen.setdefault(uid, {"ordinal": ordinal(pod), "added": None, "ready": None, "gone": None,
                                    "tag": image_tag(pod)})
        if etype == "ADDED" and rec["added"] is None:
            rec["added"] = i
        if rec["ready"] is None and is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            rec["ready"] = i
        if rec["gone"] is None and (etype == "DELETED" or pod["metadata"].get("deletionTimestamp")):
            rec["gone"] = i
    return list(seen.values())


# ---------------------------------------------------------------- before the provisioner runs


def test_pvc_stays_pending_without_a_running_provisioner(t):
    apply(t, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "e2e-sc"},
              "provisioner": PROVISIONER, "reclaimPolicy": "Delete"})
    apply(t, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
              "metadata": {"name": "e2e-early-claim", "namespace": NS},
              "spec": {"storageClassName": "e2e-sc", "accessModes": ["ReadWriteOnce"],
                       "resources": {"requests": {"storage": "1Mi"}}}})

    def waiting_event():
        evs = t.kubectl_json(f"get events -n {NS} --field-selector involvedObject.name=e2e-early-claim")["items"]
        return [e for e in evs if e["reason"] == "ExternalProvisioning"]

    evs = t.wait_for("the ExternalProvisioning event", waiting_event, timeout=60)
    assert f"Waiting for a volume to be created either by the external provisioner '{PROVISIONER}'" \
        in evs[0]["message"]
    assert evs[0]["source"]["component"] == "persistentvolume-controller"
    pvc = t.kubectl_json(f"get pvc e2e-early-claim -n {NS}")
    assert pvc["status"]["phase"] == "Pending" and not pvc["spec"].get("volumeName")
    assert t.kubectl_json("get pv")["items"] == []


def _pull_pod(t, name: str, node: str) -> None:
    apply(t, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
              "spec": {"nodeName": node, "containers": [{
                  "name": "web", "image": f"{t.addr['master']}:5000/ljz:v1"}]}})


def _waiting_reason(t, name: str) -> str | None:
    st = t.kubectl_json(f"get pod {name} -n {NS}")["status"].get("containerStatuses") or [{}]
    return (st[0].get("state") or {}).get("waiting", {}).get("reason")


def test_image_pull_backoff_on_a_node_without_registry_config(t, tmp_path: Path):
    # The registry and the images through an inventory that leaves node02 out: node02's docker
    # never learns that the registry speaks plain HTTP.
    inv = yaml.safe_load(Path(t.inventory).read_text())
    inv["hosts"] = [h for h in inv["hosts"] if h["name"] != "node02"]
    partial = tmp_path / "without-node02.yaml"
    partial.write_text(yaml.safe_dump(inv))
    t.invoke("setup-registry", inventory=str(partial))
    t.invoke("build-images", inventory=str(partial))

    _pull_pod(t, "e2e-pull-node01", "node01")
    _pull_pod(t, "e2e-pull-node02", "node02")
    t.wait_for("the pod on node01 running", lambda: is_ready(t.kubectl_json(f"get pod e2e-pull-node01 -n {NS}")))
    t.wait_for("ImagePullBackOff on node02", lambda: _waiting_reason(t, "e2e-pull-node02") == "ImagePullBackOff",
               timeout=90)
    table = t.kubectl(f"get pod e2e-pull-node02 -n {NS}")
    assert "ImagePullBackOff" in table.splitlines()[1], table
    msgs = [e["message"] for e in t.kubectl_json(
        f"get events -n {NS} --field-selector involvedObject.name=e2e-pull-node02")["items"]]
    assert any(m.startswith("Failed to pull image") and HTTPS_ERROR in m for m in msgs), msgs

    # The whole inventory now: node02 trusts the registry and the same pod spec runs there.
    t.invoke("setup-registry")
    t.kubectl(f"delete pod e2e-pull-node02 -n {NS} --wait=true")
    _pull_pod(t, "e2e-pull-node02", "node02")
    t.wait_for("the pod on node02 running", lambda: is_ready(t.kubectl_json(f"get pod e2e-pull-node02 -n {NS}")),
               timeout=90)
    t.kubectl(f"delete pod e2e-pull-node01 e2e-pull-node02 -n {NS} --wait=true")


# ---------------------------------------------------------------- the StatefulSet controller


def test_ordered_creation_one_at_a_time(t):
    t.invoke("setup-nfs")
    t.invoke("mirror-images")  # an offline lab: the provisioner's image reaches the nodes through the registry
    watch = t.watch_pods()
    try:
        t.invoke("deploy")
    finally:
        events = watch.stop()
    pods = sorted(timeline(events), key=lambda r: r["added"])
    assert [p["ordinal"] for p in pods] == list(range(6)), "pods were not created 0..5 in order"
    for prev, cur in zip(pods, pods[1:]):
        # OrderedReady: each pod is created only once the previous one is Running and Ready
        assert prev["ready"] is not None and prev["ready"] < cur["added"], (prev, cur)
    assert all(p["gone"] is None and p["tag"] == "v1" for p in pods)


def test_claim_binds_once_the_provisioner_runs(t):
    pvc = t.wait_for("e2e-early-claim Bound", lambda: (c := t.kubectl_json(f"get pvc e2e-early-claim -n {NS}"))
                     ["status"].get("phase") == "Bound" and c, timeout=60)
    pv = t.kubectl_json(f"get pv {pvc['spec']['volumeName']}")
    assert pv["spec"]["nfs"]["path"].startswith(f"/nfsdata/{NS}-e2e-early-claim-")
    t.kubectl(f"delete pvc e2e-early-claim -n {NS} --wait=true")


def test_rollout_top_down_stopping_at_the_partition(t):
    first = {o: p["metadata"]["uid"] for o, p in t.pods().items()}
    watch = t.watch_pods()
    try:
        t.invoke("scale", "--replicas", "10")
    finally:
        events = watch.stop()
    recs = timeline(events)
    old = {r["ordinal"]: r for r in recs if r["tag"] == "v1"}  # the 6 pods of the deploy (listed first)
    new = [r for r in recs if r["tag"] == "v2"]
    terminated = sorted((r for r in old.values() if r["gone"] is not None), key=lambda r: r["gone"])
    # only the ordinals at or above the partition left v1, from the highest down
    assert [r["ordinal"] for r in terminated] == [5, 4]
    assert {o: p["metadata"]["uid"] for o, p in t.pods().items() if o < 4} == {o: first[o] for o in range(4)}
    created = sorted(new, key=lambda r: r["added"])
    assert [r["ordinal"] for r in created] == [6, 7, 8, 9, 5, 4]
    for prev, cur in zip(created, created[1:]):
        assert prev["ready"] is not None and prev["ready"] < cur["added"], (prev, cur)
    new5 = next(r for r in new if r["ordinal"] == 5)
    # pod 4 is replaced only after the new pod 5 is Ready
    assert new5["ready"] < old[4]["gone"]
    pods = t.pods()
    assert {o: image_tag(p) for o, p in pods.items()} == {o: "v1" if o < 4 else "v2" for o in range(10)}
    revs = {o: p["metadata"]["labels"]["controller-revision-hash"] for o, p in pods.items()}
    sts = t.kubectl_json(f"get statefulset {STS} -n {NS}")
    assert all(revs[o] == sts["status"]["currentRevision"] for o in range(4))
    assert all(revs[o] == sts["status"]["updateRevision"] for o in range(4, 10))


def test_rollout_status_text(t):
    out = t.kubectl(f"rollout status statefulset/{STS} -n {NS} --timeout=60s")
    assert out.strip().splitlines()[-1] == "partitioned roll out complete: 6 new pods have been updated..."
    obj = t.kubectl_json(f"get statefulset {STS} -n {NS}")
    sts = obj["status"]
    assert (sts["updatedReplicas"], sts["currentReplicas"], sts["readyReplicas"]) == (6, 4, 10)
    # labkit's polling wait decides "done" as kubectl's status viewer does, on the same object
    from labkit.facts.kube import rollout_of
    assert rollout_of(obj).done and (rollout_of(obj).ready, rollout_of(obj).desired) == (10, 10)


def test_scale_down_in_reverse_order(t):
    watch = t.watch_pods()
    try:
        t.invoke("scale", "--replicas", "6")
        t.wait_for("pods 6-9 gone", lambda: sorted(t.pods()) == list(range(6)), timeout=120)
    finally:
        events = watch.stop()
    recs = [r for r in timeline(events) if r["gone"] is not None]
    assert [r["ordinal"] for r in sorted(recs, key=lambda r: r["gone"])] == [9, 8, 7, 6]
    # one at a time: the next one starts terminating only after the previous one is gone
    deleted = {ordinal(p): i for i, (e, p) in enumerate(events) if e == "DELETED"}
    for higher, lower in ((9, 8), (8, 7), (7, 6)):
        lower_rec = next(r for r in recs if r["ordinal"] == lower)
        assert deleted[higher] < lower_rec["gone"], (higher, lower)
