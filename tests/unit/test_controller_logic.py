"""Pure decisions of the scheduler, PV binder, provisioner, Deployment and ReplicaSet controllers."""
import pytest

from labtwin.kube.controllers import deployment as dep
from labtwin.kube.controllers import replicaset as rs
from labtwin.kube.controllers.provisioner import LocalDirBackend, running_provisioners, volume_for
from labtwin.kube.controllers.pv_binder import find_volume, quantity
from labtwin.kube.controllers.scheduler import choose_node


def node(name, ready=True, unschedulable=False, taints=None):
    return {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name, node_name=None, claims=(), phase="Pending", ready=False, labels=None, ns="default"):
    p = {"metadata": {"name": name, "namespace": ns, "uid": f"u-{name}", "labels": labels or {}},
         "spec": {"containers": [{"name": "c", "image": "i"}],
                  "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]},
         "status": {"phase": phase}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return p


def pvc(name, volume=None, cls="nfs-client", size="100Mi", ns="default"):
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "7"},
            "spec": {"storageClassName": cls, "accessModes": ["ReadWriteOnce"], "volumeName": volume,
                     "resources": {"requests": {"storage": size}}}}


def pv(name, size="1Gi", cls="nfs-client", claim_ref=None, modes=("ReadWriteOnce",)):
    return {"metadata": {"name": name}, "spec": {"capacity": {"storage": size}, "storageClassName": cls,
                                                 "accessModes": list(modes), "claimRef": claim_ref}}


class TestScheduler:
    def test_spreads_by_pod_count_and_skips_unready_and_cordoned(self):
        nodes = [node("node01"), node("node02"), node("node03", ready=False), node("node04", unschedulable=True)]
        pods = [pod("a", "node01", phase="Running"), pod("b", "node01", phase="Running"), pod("c", "node02", phase="Running")]
        assert choose_node(pod("x"), nodes, pods, {}, {}) == ("node02", "")
        n, msg = choose_node(pod("x"), [node("node03", ready=False), node("node04", unschedulable=True)], [], {}, {})
        assert n is None
        assert msg == ("0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, "
                       "1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not "
                       "helpful for scheduling.")

    def test_unbound_immediate_claim_blocks_with_the_real_message(self):
        claims = {("default", "www-web-0"): pvc("www-web-0")}
        classes = {"nfs-client": {"metadata": {"name": "nfs-client"}, "volumeBindingMode": "Immediate"}}
        n, msg = choose_node(pod("web-0", claims=["www-web-0"]), [node("node01"), node("node02")], [], claims, classes)
        assert n is None and msg == ("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
                                     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
        claims[("default", "www-web-0")]["spec"]["volumeName"] = "pvc-1"
        assert choose_node(pod("web-0", claims=["www-web-0"]), [node("node01")], [], claims, classes)[0] == "node01"
        _, msg = choose_node(pod("web-1", claims=["missing"]), [node("node01")], [], claims, classes)
        assert 'persistentvolumeclaim "missing" not found' in msg

    def test_control_plane_taint_is_respected_unless_tolerated(self):
        t = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        assert choose_node(pod("x"), [node("master", taints=t)], [], {}, {})[0] is None
        p = pod("x")
        p["spec"]["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]
        assert choose_node(p, [node("master", taints=t)], [], {}, {})[0] == "master"


class TestBinder:
    def test_smallest_fitting_volume_of_the_same_class(self):
        vols = [pv("big", "10Gi"), pv("small", "200Mi"), pv("tiny", "50Mi"), pv("other", "200Mi", cls="x"),
                pv("taken", "100Mi", claim_ref={"name": "z", "namespace": "default", "uid": "u"})]
        assert find_volume(pvc("c"), vols)["metadata"]["name"] == "small"
        assert find_volume(pvc("c", size="20Gi"), vols) is None

    def test_prebound_volume_wins(self):
        vols = [pv("small", "200Mi"), pv("mine", "10Gi", claim_ref={"name": "c", "namespace": "default"})]
        assert find_volume(pvc("c"), vols)["metadata"]["name"] == "mine"

    @pytest.mark.parametrize("q,v", [("100Mi", 100 * 2**20), ("1Gi", 2**30), ("2G", 2e9), ("512", 512)])
    def test_quantities(self, q, v):
        assert quantity(q) == v


class TestProvisioner:
    DEPLOY = {"metadata": {"name": "nfs-client-provisioner", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "nfs"}},
                       "template": {"spec": {"containers": [{"name": "p", "env": [
                           {"name": "PROVISIONER_NAME", "value": "example/nfs"},
                           {"name": "NFS_SERVER", "value": "10.0.0.6"}, {"name": "NFS_PATH", "value": "/nfsdata"}]}]}}}}

    def test_only_a_running_and_ready_pod_makes_a_provisioner_live(self):
        assert running_provisioners([self.DEPLOY], [pod("p1", "n", labels={"app": "nfs"})]) == {}
        assert running_provisioners([self.DEPLOY], [pod("p1", "n", phase="Running", ready=True, labels={"app": "other"})]) == {}
        live = running_provisioners([self.DEPLOY], [pod("p1", "n", phase="Running", ready=True, labels={"app": "nfs"})])
        assert live == {"example/nfs": {"server": "10.0.0.6", "path": "/nfsdata", "pod": "p1",
                                        "deployment": "nfs-client-provisioner"}}

    def test_volume_and_directory_names(self):
        sc = {"metadata": {"name": "nfs-client"}, "reclaimPolicy": "Retain"}
        v, d = volume_for(pvc("www-web-4"), sc, {"server": "10.0.0.6", "path": "/nfsdata"}, "example/nfs")
        assert v["metadata"]["name"] == "pvc-uid-www-web-4"
        assert d == "default-www-web-4-pvc-uid-www-web-4"
        assert v["spec"]["nfs"] == {"server": "10.0.0.6", "path": f"/nfsdata/{d}"}
        assert v["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and v["spec"]["capacity"] == {"storage": "100Mi"}
        assert v["spec"]["claimRef"]["uid"] == "uid-www-web-4"
        assert v["metadata"]["annotations"] == {"pv.kubernetes.io/provisioned-by": "example/nfs"}

    def test_local_backend_refuses_an_unknown_server(self, tmp_path):
        b = LocalDirBackend({"10.0.0.6:/nfsdata": str(tmp_path)})
        b.mkdir("10.0.0.6", "/nfsdata", "d")
        assert (tmp_path / "d").is_dir()
        b.rename("10.0.0.6", "/nfsdata", "d", "archived-d")
        assert (tmp_path / "archived-d").is_dir()
        with pytest.raises(OSError):
            b.mkdir("10.0.0.7", "/nfsdata", "d")


def deployment(replicas=3, strategy="RollingUpdate", image="i:1"):
    return {"metadata": {"name": "d", "namespace": "default", "uid": "du", "generation": 1},
            "spec": {"replicas": replicas, "strategy": {"type": strategy},
                     "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}}


class TestDeployment:
    def test_replicaset_name_and_hash_label(self):
        r = dep.new_replicaset(deployment(), 1, None)
        h = r["spec"]["template"]["metadata"]["labels"]["pod-template-hash"]
        assert r["metadata"]["name"] == f"d-{h}" and r["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
        assert dep.new_replicaset(deployment(image="i:2"), 1, None)["metadata"]["name"] != r["metadata"]["name"]
        assert dep.is_new(deployment(), r) and not dep.is_new(deployment(image="i:2"), r)

    def test_recreate_scales_old_down_before_new_up(self):
        d = deployment(2, "Recreate", "i:2")
        old = dep.new_replicaset(deployment(2, "Recreate"), 1, None)
        old["spec"]["replicas"], old["status"] = 2, {"replicas": 2, "availableReplicas": 2}
        new = dep.new_replicaset(d, 2, None)
        assert [(r["metadata"]["name"], n) for r, n in dep.plan_scale(d, new, [old])] == [(old["metadata"]["name"], 0)]
        old["spec"]["replicas"] = 0
        assert dep.plan_scale(d, new, [old]) == []  # old pods still there
        old["status"] = {"replicas": 0}
        assert [(r["metadata"]["name"], n) for r, n in dep.plan_scale(d, new, [old])] == [(new["metadata"]["name"], 2)]

    def test_rolling_update_respects_surge(self):
        d = deployment(4, image="i:2")
        old = dep.new_replicaset(deployment(4), 1, None)
        old["spec"]["replicas"], old["status"] = 4, {"replicas": 4, "availableReplicas": 4}
        new = dep.new_replicaset(d, 2, None)
        ch = {r["metadata"]["name"]: n for r, n in dep.plan_scale(d, new, [old])}
        assert ch[new["metadata"]["name"]] == 1 and ch[old["metadata"]["name"]] == 3  # 25% surge, 25% unavailable

    def test_status_conditions_for_rollout_status(self):
        d = deployment(1)
        r = dep.new_replicaset(d, 1, None)
        r["spec"]["replicas"], r["status"] = 1, {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
        st = dep.compute_status(d, r, [r], {})
        assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (1, 1, 1)
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                         "Progressing": ("True", "NewReplicaSetAvailable")}


class TestReplicaSet:
    def test_creates_missing_and_deletes_unready_first(self):
        r = {"metadata": {"name": "d-abc", "namespace": "default", "uid": "ru", "generation": 2},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                      "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": []}}}}
        actions, st = rs.plan(r, [])
        assert [a for a, _ in actions] == ["create", "create"] and st["replicas"] == 0
        name = actions[0][1]["metadata"]["name"]
        assert name.startswith("d-abc-") and len(name) == len("d-abc-") + 5
        pods = [pod("a", "n", phase="Running", ready=True), pod("b", "n", phase="Running", ready=True), pod("c", None)]
        actions, st = rs.plan(r, pods)
        assert [(a, p["metadata"]["name"]) for a, p in actions] == [("delete", "c")]
        assert st["readyReplicas"] == 2 and st["observedGeneration"] == 2


class TestNodeLifecycle:
    def test_stale_heartbeat_goes_unknown_and_tainted_then_recovers(self):
        import datetime as dt

        from labtwin.kube.controllers.node_lifecycle import plan_node
        at = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
        n = {"metadata": {"name": "node01"}, "spec": {},
             "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T11:59:30Z"}]}}
        assert plan_node(n, at) is None
        n["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T11:59:00Z"
        out = plan_node(n, at)
        c = out["status"]["conditions"][0]
        assert (c["status"], c["reason"], c["message"]) == ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert out["spec"]["taints"][0]["key"] == "node.kubernetes.io/unreachable"
        out["status"]["conditions"][0].update(status="True", lastHeartbeatTime="2026-01-01T12:00:00Z")
        assert plan_node(out, at)["spec"]["taints"] == []


def test_deployment_progress_deadline():
    d = deployment(1)
    d["spec"]["progressDeadlineSeconds"] = 60
    r = dep.new_replicaset(d, 1, None)
    r["spec"]["replicas"], r["status"] = 1, {"replicas": 1}
    st = dep.compute_status(d, r, [r], {}, at="2026-01-01T00:00:00Z")
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Progressing"] == "NewReplicaSetCreated"
    st = dep.compute_status(d, r, [r], st, at="2026-01-01T00:00:30Z")  # no progress yet, within the deadline
    assert {c["type"]: c["status"] for c in st["conditions"]}["Progressing"] == "True"
    st = dep.compute_status(d, r, [r], st, at="2026-01-01T00:01:01Z")
    prog = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert prog["message"] == f'ReplicaSet "{r["metadata"]["name"]}" has timed out progressing.'
    r["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}  # it finally runs
    st = dep.compute_status(d, r, [r], st, at="2026-01-01T00:02:00Z")
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Progressing"] == "NewReplicaSetAvailable"
