"""The API twin's store and API logic without HTTP: resourceVersion, conflicts, finalizers,
watches (history, selectors, 410), persistence across a restart, defaulting and validation."""

import pytest

from labtwin.kube import resources as R
from labtwin.kube.apiserver import Api
from labtwin.kube.store import (Store, StatusError, labels_match, parse_field_selector,
                                parse_label_selector)

PODS = R.lookup("", "v1", "pods")
STS = R.lookup("apps", "v1", "statefulsets")
PVC = R.lookup("", "v1", "persistentvolumeclaims")


def pod(name, labels=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "x:1"}], **spec}}


def sts(name="web", replicas=2):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Mi"}}}}]}}


@pytest.fixture
def api(tmp_path):
    return Api(Store(tmp_path / "data"))


def test_create_stamps_metadata_and_global_resource_version(api):
    a = api.create(PODS, "default", pod("a"), "t")
    b = api.create(PODS, "default", pod("b"), "t")
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    assert a["metadata"]["creationTimestamp"].endswith("Z")
    with pytest.raises(StatusError) as e:
        api.create(PODS, "default", pod("a"), "t")
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"
    assert e.value.message == 'pods "a" already exists'


def test_create_in_missing_namespace_is_404(api):
    p = pod("a")
    p["metadata"]["namespace"] = "nope"
    with pytest.raises(StatusError) as e:
        api.create(PODS, "nope", p, "t")
    assert e.value.code == 404 and e.value.message == 'namespaces "nope" not found'


def test_update_with_stale_resource_version_conflicts(api):
    a = api.create(PODS, "default", pod("a"), "t")
    a["metadata"]["labels"] = {"x": "1"}
    b = api.replace(PODS, "default", "a", a, "t")
    assert b["metadata"]["resourceVersion"] != a["metadata"]["resourceVersion"]
    a["metadata"]["labels"] = {"x": "2"}
    with pytest.raises(StatusError) as e:
        api.replace(PODS, "default", "a", a, "t")  # still carries the old resourceVersion
    assert e.value.code == 409 and e.value.reason == "Conflict"


def test_statefulset_defaults_generation_and_status_subresource(api):
    s = api.create(STS, "default", sts(), "t")
    spec = s["spec"]
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                            "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert s["metadata"]["generation"] == 1
    # a status write does not bump generation, a main-resource write cannot change status
    s["status"] = {"replicas": 2, "observedGeneration": 1}
    st = api.replace(STS, "default", "web", s, "ctl", subresource="status")
    assert st["status"]["replicas"] == 2 and st["metadata"]["generation"] == 1
    st["status"] = {"replicas": 99}
    st["spec"]["replicas"] = 5
    up = api.replace(STS, "default", "web", st, "t")
    assert up["status"]["replicas"] == 2 and up["metadata"]["generation"] == 2


def test_statefulset_immutable_fields_refused(api):
    s = api.create(STS, "default", sts(), "t")
    s["spec"]["serviceName"] = "other"
    with pytest.raises(StatusError) as e:
        api.replace(STS, "default", "web", s, "t")
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert "updates to statefulset spec for fields other than 'replicas', 'ordinals', " \
           "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and " \
           "'minReadySeconds' are forbidden" in e.value.message


def test_validation_causes(api):
    bad = sts()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(StatusError) as e:
        api.create(STS, "default", bad, "t")
    causes = e.value.details["causes"]
    assert causes == [{"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
                       "message": 'Invalid value: map[string]string{"app":"other"}: `selector` '
                                  'does not match template `labels`'}]


def test_pvc_protection_finalizer_and_deletion(api):
    claim = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": "1Mi"}}}}
    c = api.create(PVC, "default", claim, "t")
    assert c["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert c["spec"]["volumeMode"] == "Filesystem" and c["status"]["phase"] == "Pending"
    d = api.delete(PVC, "default", "c", {})
    assert d["metadata"]["deletionTimestamp"]  # still there: the finalizer holds it
    cur = api.get(PVC, "default", "c")
    cur["metadata"]["finalizers"] = []
    api.replace(PVC, "default", "c", cur, "pvc-protection-controller")
    with pytest.raises(StatusError) as e:
        api.get(PVC, "default", "c")
    assert e.value.code == 404


def test_scheduled_pod_deletion_is_graceful(api):
    api.create(PODS, "default", pod("a"), "t")
    api.bind("default", "a", {"target": {"kind": "Node", "name": "node01"}})
    d = api.delete(PODS, "default", "a", {})
    assert d["metadata"]["deletionTimestamp"] and d["metadata"]["deletionGracePeriodSeconds"] == 30
    assert api.get(PODS, "default", "a")["spec"]["nodeName"] == "node01"
    api.delete(PODS, "default", "a", {"gracePeriodSeconds": 0})  # the kubelet's final delete
    with pytest.raises(StatusError):
        api.get(PODS, "default", "a")


def test_pod_node_name_changes_only_through_binding(api):
    """As ValidatePodUpdate: spec.nodeName is not among the updatable pod fields, neither to set
    it on an unscheduled pod nor to clear it on a bound one (only pods/binding sets it)."""
    cur = api.create(PODS, "default", pod("a"), "t")
    cur["spec"]["nodeName"] = "node01"
    with pytest.raises(StatusError) as e:
        api.replace(PODS, "default", "a", cur, "t")
    assert e.value.code == 422 and "pod updates may not change fields" in e.value.message
    api.bind("default", "a", {"target": {"kind": "Node", "name": "node01"}})
    cur = api.get(PODS, "default", "a")
    cur["spec"]["nodeName"] = ""
    with pytest.raises(StatusError) as e:
        api.replace(PODS, "default", "a", cur, "t")
    assert e.value.code == 422 and "pod updates may not change fields" in e.value.message
    cur["spec"]["nodeName"] = "node01"
    cur["spec"]["containers"][0]["image"] = "x:2"  # an allowed change still goes through
    assert api.replace(PODS, "default", "a", cur, "t")["spec"]["nodeName"] == "node01"


def test_watch_from_resource_version_and_selector_transitions(api):
    first = api.create(PODS, "default", pod("a", {"app": "web"}), "t")
    rv = first["metadata"]["resourceVersion"]
    pred = api.predicate(PODS, "app=web", "")
    b = api.create(PODS, "default", pod("b", {"app": "web"}), "t")
    api.create(PODS, "default", pod("c", {"app": "db"}), "t")
    b["metadata"]["labels"] = {"app": "db"}
    api.replace(PODS, "default", "b", b, "t")
    w, events, _ = api.store.watch(PODS, "default", pred, rv, initial=False)
    # b ADDED, then leaving the selection is a DELETED for this watcher; c is never seen
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "b"), ("DELETED", "b")]
    api.create(PODS, "default", pod("d", {"app": "web"}), "t")
    t, o = w.queue.get(timeout=1)
    assert (t, o["metadata"]["name"]) == ("ADDED", "d")
    api.store.unwatch(w)


def test_watch_from_compacted_resource_version_is_410(tmp_path):
    s = Store(tmp_path / "d")
    api = Api(s)
    api.create(PODS, "default", pod("a"), "t")
    api2 = Api(Store(tmp_path / "d"))  # restart: history is gone
    with pytest.raises(StatusError) as e:
        api2.store.watch(PODS, None, lambda o: True, "1", initial=False)
    assert e.value.code == 410 and e.value.reason == "Expired"


def test_persistence_survives_restart(tmp_path):
    api = Api(Store(tmp_path / "d"))
    a = api.create(PODS, "default", pod("a"), "t")
    api.delete(PODS, "default", "a", {})
    api.create(STS, "default", sts(), "t")
    api2 = Api(Store(tmp_path / "d"))
    assert api2.get(STS, "default", "web")["spec"]["replicas"] == 2
    with pytest.raises(StatusError):
        api2.get(PODS, "default", "a")
    # the counter never goes back, even though the deleted object's version is not on disk
    b = api2.create(PODS, "default", pod("b"), "t")
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"]) + 2


@pytest.mark.parametrize("sel,labels,ok", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "fe"}, True),
    ("app!=web", {}, True),
    ("app in (web, api)", {"app": "api"}, True),
    ("app notin (web,api)", {"app": "web"}, False),
    ("app", {"app": ""}, True),
    ("!app", {"app": "x"}, False),
    ("app,env in (prod)", {"app": "x", "env": "dev"}, False),
])
def test_label_selectors(sel, labels, ok):
    assert labels_match(parse_label_selector(sel), labels) is ok


def test_field_selectors_supported_per_kind():
    assert parse_field_selector("spec.nodeName=node01,status.phase!=Running", "Pod")
    with pytest.raises(StatusError) as e:
        parse_field_selector("spec.nodeName=x", "Service")
    assert e.value.code == 400 and "field label not supported: spec.nodeName" in e.value.message


def test_list_with_field_selector(api):
    api.create(PODS, "default", pod("a"), "t")
    api.create(PODS, "default", pod("b"), "t")
    api.bind("default", "b", {"target": {"name": "node02"}})
    items, _ = api.list(PODS, None, "", "spec.nodeName=node02")
    assert [i["metadata"]["name"] for i in items] == ["b"]


def test_terminating_pod_with_finalizer_goes_when_finalizer_removed_after_grace_zero(api):
    p = pod("a")
    p["metadata"]["finalizers"] = ["example.com/hold"]
    api.create(PODS, "default", p, "t")
    api.bind("default", "a", {"target": {"name": "node01"}})
    api.delete(PODS, "default", "a", {})
    api.delete(PODS, "default", "a", {"gracePeriodSeconds": 0})
    cur = api.get(PODS, "default", "a")
    assert cur["metadata"]["deletionGracePeriodSeconds"] == 0
    cur["metadata"]["finalizers"] = []
    api.replace(PODS, "default", "a", cur, "t")
    with pytest.raises(StatusError):
        api.get(PODS, "default", "a")


def test_foreground_deletion_adds_finalizer_for_the_garbage_collector(api):
    api.create(STS, "default", sts(), "t")
    d = api.delete(STS, "default", "web", {"propagationPolicy": "Foreground"})
    assert d["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert d["metadata"]["deletionTimestamp"] and d["metadata"]["generation"] == 2


def test_namespace_deletion_removes_content(api):
    ns = R.lookup("", "v1", "namespaces")
    api.create(ns, "", {"metadata": {"name": "tmp"}}, "t")
    assert api.get(R.lookup("", "v1", "serviceaccounts"), "tmp", "default")
    p = pod("a")
    p["metadata"]["namespace"] = "tmp"
    api.create(PODS, "tmp", p, "t")
    api.delete(ns, "", "tmp", {})
    with pytest.raises(StatusError):
        api.get(ns, "", "tmp")
    with pytest.raises(StatusError):
        api.get(PODS, "tmp", "a")


def test_create_resets_status_of_pods_and_claims_but_not_nodes(api):
    p = pod("a")
    p["status"] = {"phase": "Running", "podIP": "1.2.3.4"}
    assert api.create(PODS, "default", p, "t")["status"] == {"phase": "Pending",
                                                             "qosClass": "BestEffort"}
    node = {"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready",
                                                                   "status": "True"}]}}
    n = api.create(R.lookup("", "v1", "nodes"), "", node, "kubelet")
    assert n["status"]["conditions"][0]["status"] == "True"  # kubelets register with status


def test_volume_mounts_must_name_a_volume(api):
    p = pod("a")
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/w"}]
    with pytest.raises(StatusError) as e:
        api.create(PODS, "default", p, "t")
    assert e.value.details["causes"] == [{
        "reason": "FieldValueNotFound", "field": "spec.containers[0].volumeMounts[0].name",
        "message": 'Not found: "www"'}]
    p["spec"]["volumes"] = [{"name": "www", "persistentVolumeClaim": {"claimName": "c"}}]
    assert api.create(PODS, "default", p, "t")
    s = sts()  # the claim template's volume exists only in the pods
    s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "www", "mountPath": "/w"}]
    assert api.create(STS, "default", s, "t")


@pytest.mark.parametrize("status,deleting,cells", [
    ({"phase": "Pending"}, False, ["0/1", "Pending", "0"]),
    ({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": False, "restartCount": 0,
                                                 "state": {"waiting": {"reason":
                                                                       "ErrImagePull"}}}]},
     False, ["0/1", "ErrImagePull", "0"]),
    ({"phase": "Running", "containerStatuses": [{"name": "c", "ready": True, "restartCount": 1,
                                                 "state": {"running": {}}, "lastState": {
                                                     "terminated": {"finishedAt":
                                                                    "2026-01-01T00:00:00Z"}}}]},
     False, ["1/1", "Running", "1 (5m ago)"]),
    ({"phase": "Running"}, True, ["0/1", "Terminating", "0"]),
])
def test_pod_table_cells(status, deleting, cells):
    o = {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"containers": [{"name": "c"}]}, "status": status}
    if deleting:
        o["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    now = R.parse_time("2026-01-01T00:05:00Z")
    assert PODS.cells(o, now)[1:4] == cells
    assert PODS.cells(o, now)[4] == "5m"


def test_human_duration_matches_apimachinery():
    assert [R.human_duration(s) for s in (0, 119, 121, 605, 3600 * 5 + 60, 3600 * 30,
                                          86400 * 3 + 3600, 86400 * 400)] == \
        ["0s", "119s", "2m1s", "10m", "5h1m", "30h", "3d1h", "400d"]


def test_claim_without_class_gets_the_default_one(api):
    sc = R.lookup("storage.k8s.io", "v1", "storageclasses")
    api.create(sc, "", {"metadata": {"name": "fast", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "x"}, "t")
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
    a = api.create(PVC, "default", {"metadata": {"name": "a"}, "spec": dict(spec)}, "t")
    b = api.create(PVC, "default", {"metadata": {"name": "b"},
                                    "spec": dict(spec, storageClassName="")}, "t")
    assert a["spec"]["storageClassName"] == "fast" and b["spec"]["storageClassName"] == ""


def test_owner_references_need_uid(api):
    p = pod("a")
    p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": "web"}]
    with pytest.raises(StatusError) as e:
        api.create(PODS, "default", p, "t")
    assert e.value.details["causes"][0]["field"] == "metadata.ownerReferences[0].uid"


def test_service_keeps_allocated_values_on_update(api):
    svc = R.lookup("", "v1", "services")
    body = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "selector": {"a": "b"},
                                                "ports": [{"port": 80}]}}
    s = api.create(svc, "default", body, "t")
    ip, np_ = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]
    assert ip.startswith("10.96.") and 30000 <= np_ <= 32767
    body["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"]
    u = api.replace(svc, "default", "s", body, "t")
    assert u["spec"]["clusterIP"] == ip and u["spec"]["ports"][0]["nodePort"] == np_
    other = api.create(svc, "default", {"metadata": {"name": "t"}, "spec": {
        "type": "NodePort", "ports": [{"port": 81}]}}, "t")
    assert other["spec"]["clusterIP"] != ip and other["spec"]["ports"][0]["nodePort"] != np_


@pytest.mark.parametrize("given,stored", [
    ("100Mi", "100Mi"), ("1024Mi", "1Gi"), ("0.5Gi", "512Mi"), ("0.5Ki", "512"),
    ("0.5", "500m"), ("1000m", "1"), ("1500m", "1500m"), ("2000", "2k"), ("1500", "1500"),
    ("129e6", "129e6"), ("2G", "2G"), (1, "1"),
])
def test_quantities_read_back_canonical(api, given, stored):
    claim = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": given}}}}
    c = api.create(PVC, "default", claim, "t")
    assert c["spec"]["resources"]["requests"]["storage"] == stored


def test_bad_quantity_is_refused(api):
    claim = {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": "1XB"}}}}
    with pytest.raises(StatusError) as e:
        api.create(PVC, "default", claim, "t")
    assert e.value.code == 400 and "quantities must match the regular expression" in e.value.message


@pytest.mark.parametrize("key,ok", [
    ("app", True), ("app.kubernetes.io/name", True), ("a_b.c-d", True),
    ("-app", False), ("Bad_Prefix/x", False), ("a/", False), ("x" * 64, False),
])
def test_label_keys_are_qualified_names(api, key, ok):
    p = pod("a", {key: "v"})
    if ok:
        assert api.create(PODS, "default", p, "t")["metadata"]["labels"] == {key: "v"}
    else:
        with pytest.raises(StatusError) as e:
            api.create(PODS, "default", p, "t")
        assert e.value.code == 422 and e.value.details["causes"][0]["field"] == \
            "metadata.labels"
