"""Patch semantics of the API twin, as data: (original, patch, expected). Cases follow the
behaviour documented for k8s.io/apimachinery strategicpatch, RFC 6902 and RFC 7386."""

import pytest

from labtwin.kube import patch as P

POD_SPEC = {"containers": [
    {"name": "web", "image": "web:v1", "env": [{"name": "A", "value": "1"},
                                              {"name": "B", "value": "2"}],
     "volumeMounts": [{"name": "www", "mountPath": "/www"}]},
    {"name": "side", "image": "side:v1"}]}

SMP_CASES = [
    ("container merged by name, others kept",
     {"spec": POD_SPEC},
     {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}},
     {"spec": {"containers": [dict(POD_SPEC["containers"][0], image="web:v2"),
                              POD_SPEC["containers"][1]]}}),
    ("new container appended",
     {"spec": {"containers": [{"name": "a", "image": "a"}]}},
     {"spec": {"containers": [{"name": "b", "image": "b"}]}},
     {"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}),
    ("env merged by name inside a container, null deletes a key",
     {"spec": POD_SPEC},
     {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "3"}],
                               "image": None}]}},
     {"spec": {"containers": [
         {"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
          "volumeMounts": [{"name": "www", "mountPath": "/www"}]},
         POD_SPEC["containers"][1]]}}),
    ("$patch: delete removes one element by merge key",
     {"spec": POD_SPEC},
     {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}},
     {"spec": {"containers": [POD_SPEC["containers"][0]]}}),
    ("$patch: replace on a list replaces it",
     {"spec": POD_SPEC},
     {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}},
     {"spec": {"containers": [{"name": "only", "image": "o"}]}}),
    ("$patch: replace on a map replaces it",
     {"metadata": {"labels": {"a": "1", "b": "2"}}},
     {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
     {"metadata": {"labels": {"c": "3"}}}),
    ("$patch: delete on a map removes it",
     {"metadata": {"labels": {"a": "1"}, "name": "x"}},
     {"metadata": {"labels": {"$patch": "delete"}}},
     {"metadata": {"name": "x"}}),
    ("atomic list without merge key is replaced",
     {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}},
     {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "c"}}]}},
     {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "c"}}]}}),
    ("primitive list with merge strategy: finalizers are a set",
     {"metadata": {"finalizers": ["a", "b"]}},
     {"metadata": {"finalizers": ["b", "c"]}},
     {"metadata": {"finalizers": ["a", "b", "c"]}}),
    ("$deleteFromPrimitiveList",
     {"metadata": {"finalizers": ["a", "b", "c"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
     {"metadata": {"finalizers": ["a", "c"]}}),
    ("$setElementOrder orders the merged list",
     {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
     {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
               "containers": [{"name": "a", "image": "x"}]}},
     {"spec": {"containers": [{"name": "b"}, {"name": "a", "image": "x"}]}}),
    ("$retainKeys drops keys not listed (strategy type change)",
     {"spec": {"strategy": {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": "25%"}}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     {"spec": {"strategy": {"type": "Recreate"}}}),
    ("service ports merged by port, container ports by containerPort",
     {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}},
     {"spec": {"ports": [{"port": 443, "name": "tls"}]}},
     {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "tls"}]}}),
    ("volumeMounts merged by mountPath",
     {"c": {"containers": [{"name": "a", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]}},
     {"c": {"containers": [{"name": "a", "volumeMounts": [{"name": "y", "mountPath": "/y"}]}]}},
     {"c": {"containers": [{"name": "a", "volumeMounts": [{"name": "x", "mountPath": "/x"},
                                                          {"name": "y", "mountPath": "/y"}]}]}}),
]


@pytest.mark.parametrize("name,orig,patch,expected", SMP_CASES, ids=[c[0] for c in SMP_CASES])
def test_strategic_merge_patch(name, orig, patch, expected):
    before = repr(orig)
    assert P.strategic_merge_patch(orig, patch) == expected
    assert repr(orig) == before  # the original is not modified


def test_smp_element_without_merge_key_is_refused():
    with pytest.raises(P.PatchError, match="does not contain declared merge key: name"):
        P.strategic_merge_patch({"spec": POD_SPEC}, {"spec": {"containers": [{"image": "x"}]}})


# RFC 7386 appendix A examples
MERGE_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("orig,patch,expected", MERGE_CASES)
def test_merge_patch_rfc7386(orig, patch, expected):
    assert P.merge_patch(orig, patch) == expected


def test_json_patch_rfc6902_operations():
    doc = {"spec": {"replicas": 1, "list": ["a", "b"]}, "metadata": {"labels": {"x/y": "1"}}}
    out = P.json_patch(doc, [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/list/1", "value": "z"},
        {"op": "add", "path": "/spec/list/-", "value": "end"},
        {"op": "remove", "path": "/metadata/labels/x~1y"},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
        {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/moved", "value": 3},
    ])
    assert out == {"spec": {"replicas": 3, "list": ["a", "z", "b", "end"], "moved": 3},
                   "metadata": {"labels": {}}}
    assert doc["spec"]["replicas"] == 1


@pytest.mark.parametrize("ops,msg", [
    ([{"op": "test", "path": "/a", "value": 2}], "test failed"),
    ([{"op": "remove", "path": "/nope"}], "missing path"),
    ([{"op": "replace", "path": "/b/c", "value": 1}], "missing path"),
    ([{"op": "frobnicate", "path": "/a"}], "Unexpected kind"),
])
def test_json_patch_errors(ops, msg):
    with pytest.raises(P.PatchError, match=msg):
        P.json_patch({"a": 1}, ops)


def _sts(image="web:v1", replicas=6, extra_env=None):
    c = {"name": "web", "image": image}
    if extra_env:
        c["env"] = extra_env
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [c]}}}}


def test_server_side_apply_records_and_removes_owned_fields():
    live = P.server_side_apply(None, _sts(extra_env=[{"name": "A", "value": "1"}]), "kubectl",
                               False, "apps/v1")
    mf = live["metadata"]["managedFields"]
    assert [m["manager"] for m in mf] == ["kubectl"] and mf[0]["operation"] == "Apply"
    fs = mf[0]["fieldsV1"]
    c = fs["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "f:image" in c and 'k:{"name":"A"}' in c["f:env"]
    # applying again without env removes the env this manager owned
    again = P.server_side_apply(live, _sts(), "kubectl", False, "apps/v1")
    assert "env" not in again["spec"]["template"]["spec"]["containers"][0]


def test_server_side_apply_conflict_and_force():
    live = P.server_side_apply(None, _sts(), "kubectl", False, "apps/v1")
    # another writer (kubectl scale, an Update) takes spec.replicas
    scaled = dict(live, spec=dict(live["spec"], replicas=10))
    P.record_update(live, scaled, "kubectl-scale", "apps/v1")
    assert any(m["manager"] == "kubectl-scale" for m in scaled["metadata"]["managedFields"])
    with pytest.raises(P.PatchError) as e:
        P.server_side_apply(scaled, _sts(replicas=6), "kubectl", False, "apps/v1")
    assert e.value.code == 409 and str(e.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: '
        '.spec.replicas')
    forced = P.server_side_apply(scaled, _sts(replicas=6), "kubectl", True, "apps/v1")
    assert forced["spec"]["replicas"] == 6
    assert all(m["manager"] != "kubectl-scale" for m in forced["metadata"]["managedFields"])


def test_server_side_apply_keeps_fields_of_other_managers():
    live = P.server_side_apply(None, _sts(), "a", False, "apps/v1")
    live = P.server_side_apply(live, {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "metadata": {"name": "web", "labels": {"b": "1"}}},
                               "b", False, "apps/v1")
    assert live["metadata"]["labels"] == {"b": "1"} and live["spec"]["replicas"] == 6
    # manager a re-applies without labels: b's label stays
    live = P.server_side_apply(live, _sts(), "a", False, "apps/v1")
    assert live["metadata"]["labels"] == {"b": "1"}


def test_conflicts_with_fields_client_side_apply_set_do_not_block_the_move_to_ssa():
    import json
    cfg = _sts()
    live = json.loads(json.dumps(cfg))
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(cfg)}
    P.record_update(None, live, "kubectl-client-side-apply", "apps/v1")
    # a field client-side apply never set (replicas changed by kubectl scale) still conflicts
    scaled = json.loads(json.dumps(live))
    scaled["spec"]["replicas"] = 3
    P.record_update(live, scaled, "kubectl-scale", "apps/v1")
    out = P.server_side_apply(live, _sts(image="web:v2"), "kubectl", False, "apps/v1")
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "web:v2"
    with pytest.raises(P.PatchError) as e:
        P.server_side_apply(scaled, _sts(image="web:v2"), "kubectl", False, "apps/v1")
    assert '"kubectl-scale" using apps/v1: .spec.replicas' in str(e.value)
    assert "image" not in str(e.value)


def test_conflict_paths_name_list_elements_by_key():
    live = P.server_side_apply(None, _sts(), "a", False, "apps/v1")
    with pytest.raises(P.PatchError) as e:
        P.server_side_apply(live, _sts(image="web:v2", replicas=3), "b", False, "apps/v1")
    assert str(e.value) == ('Apply failed with 2 conflicts: conflicts with "a" using apps/v1:\n'
                            '- .spec.replicas\n'
                            '- .spec.template.spec.containers[name="web"].image')
