"""StatefulSet controller logic as data: objects in, ordered actions and status out (no server)."""
import copy
import itertools

import pytest

from labtwin.kube.controllers import revisions as rv
from labtwin.kube.controllers import statefulset as ss

_uid = itertools.count(1)


def make_set(replicas=3, image="reg:5000/web:v1", partition=None, policy=None, strategy=None):
    s = {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 1},
         "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "web", "image": image}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                            "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": "100Mi"}}}}],
                  "updateStrategy": {"type": strategy or "RollingUpdate",
                                     **({"rollingUpdate": {"partition": partition}} if partition is not None else {})}},
         "status": {}}
    if policy:
        s["spec"]["podManagementPolicy"] = policy
    return s


class Cluster:
    """Applies plans like the API would; `ready()` plays a kubelet that makes every pod Running+Ready."""

    def __init__(self, sset):
        self.set = sset
        self.pods, self.revs, self.claims = {}, {}, {}
        self.log = []

    def step(self):
        plan = ss.plan_sync(self.set, list(self.pods.values()), list(self.revs.values()), dict(self.claims))
        for a in plan.actions:
            o = copy.deepcopy(a.obj)
            name = o["metadata"]["name"]
            if a.verb in ("create_revision", "update_revision"):
                o["metadata"].setdefault("uid", f"rev-{next(_uid)}")
                self.revs[name] = o
            elif a.verb == "create_pvc":
                self.claims[name] = o
            elif a.verb == "create_pod":
                o["metadata"]["uid"] = f"pod-{next(_uid)}"
                o["status"] = {"phase": "Pending"}
                self.pods[name] = o
            elif a.verb == "delete_pod":
                self.pods[name]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            self.log.append((a.verb, name))
        self.set["status"] = ss.wire_status(ss.complete_rolling_update(self.set, plan.status))
        return plan

    def ready(self):
        for name, p in list(self.pods.items()):
            if p["metadata"].get("deletionTimestamp"):
                del self.pods[name]  # the kubelet finished terminating it
            else:
                p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}

    def converge(self, rounds=60):
        for _ in range(rounds):
            before = copy.deepcopy((self.set["status"], self.pods))
            if not self.step().actions:
                self.ready()
                if copy.deepcopy((self.set["status"], self.pods)) == before:
                    return
            self.ready()
        raise AssertionError("did not converge")

    def created(self):
        return [n for v, n in self.log if v == "create_pod"]

    def deleted(self):
        return [n for v, n in self.log if v == "delete_pod"]

    def revision_of(self, pod):
        return self.pods[pod]["metadata"]["labels"][rv.REVISION_LABEL]


def test_ordered_ready_creates_one_pod_at_a_time_and_waits_for_ready():
    c = Cluster(make_set(3))
    plan = c.step()
    verbs = [a.verb for a in plan.actions]
    assert verbs == ["create_revision", "create_pvc", "create_pod"]  # claim strictly before its pod
    assert c.created() == ["web-0"]
    c.step()  # web-0 is Pending: nothing more
    assert c.created() == ["web-0"]
    c.ready()
    c.step()
    assert c.created() == ["web-0", "web-1"]
    c.converge()
    assert c.created() == ["web-0", "web-1", "web-2"]
    assert sorted(c.claims) == ["www-web-0", "www-web-1", "www-web-2"]


def test_pod_identity_labels_volumes_and_events():
    c = Cluster(make_set(1))
    plan = c.step()
    pod = next(a for a in plan.actions if a.verb == "create_pod")
    md, spec = pod.obj["metadata"], pod.obj["spec"]
    assert md["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert md["labels"]["apps.kubernetes.io/pod-index"] == "0"
    assert md["labels"]["controller-revision-hash"] == plan.update_revision["metadata"]["name"]
    assert plan.update_revision["metadata"]["name"].startswith("web-")
    assert md["ownerReferences"][0]["uid"] == "set-uid" and md["ownerReferences"][0]["controller"]
    assert spec["hostname"] == "web-0" and spec["subdomain"] == "web"
    assert spec["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]
    assert pod.event == ("Normal", "SuccessfulCreate", "create Pod web-0 in StatefulSet web successful")
    claim = next(a for a in plan.actions if a.verb == "create_pvc")
    assert claim.event[2] == "create Claim www-web-0 Pod web-0 in StatefulSet web success"
    assert claim.obj["metadata"]["labels"] == {"app": "web"} and "ownerReferences" not in claim.obj["metadata"]


def test_scale_down_from_the_highest_ordinal_one_at_a_time_keeps_claims():
    c = Cluster(make_set(5))
    c.converge()
    c.set["spec"]["replicas"] = 2
    c.step()
    assert c.deleted() == ["web-4"]
    c.step()  # web-4 still terminating: wait
    assert c.deleted() == ["web-4"]
    c.converge()
    assert c.deleted() == ["web-4", "web-3", "web-2"]
    assert sorted(c.pods) == ["web-0", "web-1"]
    assert len(c.claims) == 5  # Retain: claims survive scale-down


def test_parallel_creates_all_at_once():
    c = Cluster(make_set(4, policy="Parallel"))
    c.step()
    assert c.created() == ["web-0", "web-1", "web-2", "web-3"]


def test_rolling_update_from_the_top_stops_at_partition_and_status_matches_upstream():
    c = Cluster(make_set(6))
    c.converge()
    v1 = c.set["status"]["currentRevision"]
    assert c.set["status"]["updateRevision"] == v1
    # the seed's step 7: replicas 10, image v2, partition 4
    c.set["spec"]["replicas"] = 10
    c.set["spec"]["template"]["spec"]["containers"][0]["image"] = "reg:5000/web:v2"
    c.set["spec"]["updateStrategy"]["rollingUpdate"] = {"partition": 4}
    c.set["metadata"]["generation"] = 2
    c.log.clear()
    c.converge()
    assert c.created() == ["web-6", "web-7", "web-8", "web-9", "web-5", "web-4"]
    assert c.deleted() == ["web-5", "web-4"]  # from the top down, never below the partition
    st = c.set["status"]
    v2 = st["updateRevision"]
    assert v2 != v1 and st["currentRevision"] == v1  # with a partition the current revision stays
    assert {p: c.revision_of(p) == v2 for p in c.pods} == {f"web-{i}": i >= 4 for i in range(10)}
    assert st["replicas"] == 10 and st["readyReplicas"] == 10 and st["availableReplicas"] == 10
    assert st["currentReplicas"] == 4 and st["updatedReplicas"] == 6
    assert st["observedGeneration"] == 2 and st["collisionCount"] == 0
    assert c.pods["web-9"]["spec"]["containers"][0]["image"].endswith(":v2")
    assert c.pods["web-3"]["spec"]["containers"][0]["image"].endswith(":v1")
    assert sorted(r["revision"] for r in c.revs.values()) == [1, 2]
    # partition 0 completes the rollout: currentRevision becomes the update revision
    c.set["spec"]["updateStrategy"]["rollingUpdate"] = {"partition": 0}
    c.log.clear()
    c.converge()
    assert c.deleted() == ["web-3", "web-2", "web-1", "web-0"]
    assert c.set["status"]["currentRevision"] == v2 and c.set["status"]["currentReplicas"] == 10


def test_rollout_waits_for_each_replaced_pod_to_be_ready():
    c = Cluster(make_set(3))
    c.converge()
    c.set["spec"]["template"]["spec"]["containers"][0]["image"] = "x:v2"
    c.log.clear()
    c.step()
    assert c.deleted() == ["web-2"]
    c.ready()  # web-2 gone
    c.step()
    assert c.created() == ["web-2"]
    c.step()
    c.step()  # web-2 Pending: web-1 must not be touched
    assert c.deleted() == ["web-2"]


def test_on_delete_strategy_never_deletes_for_update():
    c = Cluster(make_set(2, strategy="OnDelete"))
    c.converge()
    c.set["spec"]["template"]["spec"]["containers"][0]["image"] = "x:v2"
    c.log.clear()
    c.converge()
    assert c.deleted() == []
    assert c.set["status"].get("updatedReplicas", 0) == 0 and c.set["status"]["currentReplicas"] == 2


def test_rollback_reuses_the_old_revision_with_a_new_number():
    c = Cluster(make_set(1))
    c.converge()
    v1 = c.set["status"]["updateRevision"]
    c.set["spec"]["template"]["spec"]["containers"][0]["image"] = "x:v2"
    c.converge()
    c.set["spec"]["template"]["spec"]["containers"][0]["image"] = "reg:5000/web:v1"
    c.converge()
    assert c.set["status"]["updateRevision"] == v1
    assert c.revs[v1]["revision"] == 3 and len(c.revs) == 2


def test_revision_hash_is_deterministic_and_template_only():
    a, b = make_set(3), make_set(7)
    ra = rv.new_statefulset_revision(a, 1, 0)
    rb = rv.new_statefulset_revision(b, 1, 0)
    assert ra["metadata"]["name"] == rb["metadata"]["name"]  # replicas are not part of a revision
    b["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert rv.new_statefulset_revision(b, 1, 0)["metadata"]["name"] != ra["metadata"]["name"]
    assert rv.new_statefulset_revision(a, 1, 1)["metadata"]["name"] != ra["metadata"]["name"]
    h = ra["metadata"]["labels"][rv.HASH_LABEL]
    assert ra["metadata"]["name"] == f"web-{h}" and set(h) <= set(rv.ALPHANUMS)
    assert ra["data"]["spec"]["template"]["$patch"] == "replace"


def test_fnv_reference_values():
    # test vectors of Go's hash/fnv (FNV-1 and FNV-1a 32 of "a")
    assert rv.fnv1_32(b"a") == 0x050C5D7E
    assert rv.fnv1a_32(b"a") == 0xE40C292C
    assert rv.safe_encode("0") == rv.ALPHANUMS[ord("0") % 27]


def test_failed_pod_is_deleted_then_recreated():
    c = Cluster(make_set(2))
    c.converge()
    c.pods["web-0"]["status"]["phase"] = "Failed"
    c.log.clear()
    plan = c.step()
    assert [(a.verb, a.event[1]) for a in plan.actions] == [("delete_pod", "RecreatingFailedPod")]


@pytest.mark.parametrize("replicas", [0, 1])
def test_status_of_a_fresh_set(replicas):
    c = Cluster(make_set(replicas))
    c.step()
    st = c.set["status"]
    assert st["replicas"] == replicas and st["currentRevision"] == st["updateRevision"]


def test_claims_are_owned_by_the_set_only_with_when_deleted_delete():
    s = make_set(1)
    assert "ownerReferences" not in ss.persistent_volume_claims(s, 0)[0]["metadata"]
    s["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    refs = ss.persistent_volume_claims(s, 0)[0]["metadata"]["ownerReferences"]
    assert refs[0]["uid"] == "set-uid" and refs[0]["kind"] == "StatefulSet"
