"""Kube planners: facts + arguments in (tests/data/operations/kube/*.json), exact commands out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from labkit import inventory, manifests
from labkit.errors import OperationError
from labkit.facts import kube as kfacts
from labkit.facts.base import FactResult
from labkit.operations import kube
from labkit.operations.base import Command, PutFile
from labkit.remote import RunResult, command_failure

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "operations" / "kube"
FACTS = ROOT / "tests" / "data" / "facts" / "kube"
CASES = sorted(p for p in DATA.glob("*.json") if p.name != "live-seed.json")


def _recorded_inventory(namespace="default"):
    """hosts.yaml as it was when live-seed.json was recorded: the image was then named web-httpd.
    ``namespace``: the same lab in another kubernetes.namespace."""
    import tempfile
    text = (ROOT / "hosts.yaml").read_text().replace("repository: ljz", "repository: web-httpd") \
        .replace("namespace: default", f"namespace: {namespace}")
    path = Path(tempfile.mkdtemp()) / "hosts.yaml"
    path.write_text(text)
    return inventory.load(path)


INV = _recorded_inventory()


def in_namespace(text: str, namespace: str) -> str:
    """A recording of the seed's default namespace as the same lab in ``namespace`` would show it:
    the objects' and claims' namespaces, and the provisioner's directory names (<ns>-<pvc>-<pv>)."""
    if namespace == "default":
        return text
    return text.replace('"namespace": "default"', f'"namespace": "{namespace}"') \
        .replace("/nfsdata/default-", f"/nfsdata/{namespace}-")


def live_objects(name, remove=(), sets=(), inv=INV):
    if name is None:
        return {}
    data = json.loads(in_namespace((DATA / name).read_text(), inv.kubernetes.namespace))
    for kind, path, value in sets:
        obj = next(o for o in data["items"] if o["kind"] == kind)
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[int(p)] if p.isdigit() else obj[p]
        obj[int(last) if last.isdigit() else last] = value
    data["items"] = [o for o in data["items"] if o["kind"] not in remove]
    # through the real fact parser, as the runner would
    return kfacts.Objects(manifests.render(inv)).process(FactResult(json.dumps(data)))


def recorded(fact, name, namespace="default"):
    """A recorded fact (tests/data/facts/kube/<name>.json) through ``fact``'s parser."""
    stdout = json.loads((FACTS / f"{name}.json").read_text())["stdout"]
    return fact.process(FactResult(in_namespace(stdout if isinstance(stdout, str) else json.dumps(stdout, indent=4),
                                                namespace)))


def sts_fact(name):
    stdout = json.loads((FACTS / f"{name}.json").read_text())["stdout"]
    return kfacts.StatefulSetFact("default", "statefulset").process(FactResult(json.dumps(stdout)))


def describe(change):
    if isinstance(change, PutFile):
        objs = [f"{o['kind']}/{o['metadata']['name']}" for o in yaml.safe_load_all(change.content)]
        assert change.mode == 0o644
        return {"put": change.path, "objects": objs}
    assert isinstance(change, Command)
    return {"command": change.command, "sudo": change.sudo}


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_plan(case):
    data = json.loads(case.read_text())
    if data["op"] == "apply_manifests":
        objs = manifests.render(INV, **data["render"])
        current = live_objects(data["live"], data.get("remove", ()), data.get("set", ()))
        changes = list(kube.apply_manifests(objs, current))
    elif data["op"] == "deploy":
        ns = data["namespace"]
        inv = _recorded_inventory(ns)
        live_ns = recorded(kfacts.NamespaceFact(ns), data["live_namespace"])
        plan = lambda: list(kube.deploy(manifests.render_namespace(inv), live_ns,
                                        manifests.render(inv, **data["render"]), live_objects(data["live"], inv=inv)))
        if "raises" in data:
            with pytest.raises(OperationError, match=data["raises"]):
                plan()
            return
        changes = plan()
    elif data["op"] == "kubectl_failure":
        # the runner's failure for the command (remote.command_failure: each distinct line once)
        said = command_failure(RunResult("master", data["command"], data["stdout"], data["stderr"], 1))
        lines = said.split(f"{data['command'][:200]}: ", 1)[1].split(" | ")
        cmd = Command(data["command"], sudo=False, description=data["description"])
        got = kube.kubectl_failure(cmd, lines, data["namespace"], data["task"])
        assert got == data["expected"]
        # kubectl's own line(s) once each, and no manifest file name
        for line in kube.kubectl_error_lines(data["stderr"].splitlines()):
            assert got.count(line) == 1, line
        assert "/var/lib/labkit" not in got and "STDIN" not in got
        return
    elif data["op"] == "teardown":
        ns = data["namespace"]
        inv = _recorded_inventory(ns)
        changes = list(kube.teardown(
            manifests.render(inv), live_objects(data["live"], inv=inv),
            recorded(kfacts.PVCs(ns, "test-statefulset-"), data["pvcs"], ns), recorded(kfacts.PVs(), data["pvs"], ns),
            purge=data["purge"], namespace=ns,
            live_namespace=recorded(kfacts.NamespaceFact(ns), data["live_namespace"])))
    else:
        changes = list(kube.scale_and_rollout(sts_fact(data["sts"]), **data["args"]))
    assert [describe(c) for c in changes] == data["expected"]


def test_uploaded_manifest_is_the_rendered_object():
    objs = manifests.render(INV)
    put, _ = kube.apply_manifests(objs, {})
    assert list(yaml.safe_load_all(put.content)) == objs


def test_subset_differences():
    assert kube.subset_differences({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}) == []
    assert kube.subset_differences({"a": [{"n": 1}]}, {"a": [{"n": 1, "x": 0}]}) == []
    assert kube.subset_differences({"a": [1, 2]}, {"a": [1]}) == ["a"]
    assert kube.subset_differences({"a": {"b": "1"}}, {"a": {"b": 1}}) == ["a.b"]
    assert kube.subset_differences({"a": {"b": 1}}, {"a": {}}) == ["a.b"]


def test_scale_refuses_bad_input():
    sts = sts_fact("sts-initial")
    with pytest.raises(OperationError, match="run deploy first"):
        list(kube.scale_and_rollout(None, 10, "x:v2", 4))
    with pytest.raises(OperationError, match="partition must be a whole number 0-1000"):
        list(kube.scale_and_rollout(sts, 10, "x:v2", -1))
    with pytest.raises(OperationError, match="replicas must be a whole number 0-1000"):
        list(kube.scale_and_rollout(sts, -1, "x:v2", 0))


def test_patch_is_valid_json_and_strategic():
    (cmd,) = kube.scale_and_rollout(sts_fact("sts-initial"), 10, "192.168.20.6:5000/web-httpd:v2", 4)
    import shlex
    argv = shlex.split(cmd.command)
    assert argv[:6] == ["kubectl", "patch", "statefulset", "statefulset", "-n", "default"]
    assert argv[6] == "--type=strategic"
    patch = json.loads(argv[argv.index("-p") + 1])
    assert patch["spec"]["template"]["spec"]["containers"] == [{"image": "192.168.20.6:5000/web-httpd:v2", "name": "web"}]


def _pvcs_pvs():
    pvcs = kfacts.PVCs("default", "test-statefulset-").process(
        FactResult(json.dumps(json.loads((FACTS / "pvc-bound.json").read_text())["stdout"])))
    pvs = kfacts.PVs().process(FactResult(json.dumps(json.loads((FACTS / "pv-bound.json").read_text())["stdout"])))
    return pvcs, pvs


def test_teardown_keeps_volumes_and_provisioner():
    objs = manifests.render(INV)
    pvcs, pvs = _pvcs_pvs()
    cmds = [c.command for c in kube.teardown(objs, live_objects("live-seed.json"), pvcs, pvs)]
    assert cmds == ["kubectl delete statefulsets.apps/statefulset services/headless-svc -n default "
                    "--ignore-not-found --wait=true"]
    # nothing left to delete -> no commands
    assert list(kube.teardown(objs, live_objects("live-seed.json", remove=("StatefulSet", "Service")), pvcs, pvs)) == []


def test_teardown_purge():
    objs = manifests.render(INV)
    pvcs, pvs = _pvcs_pvs()
    cmds = [c.command for c in kube.teardown(objs, live_objects("live-seed.json"), pvcs, pvs, purge=True)]
    assert len(cmds) == 4
    assert cmds[0].startswith("kubectl delete statefulsets.apps/statefulset services/headless-svc "
                              "deployments.apps/nfs-client-provisioner rolebindings")
    assert cmds[1].startswith("kubectl delete pvc/test-statefulset-0 ") and cmds[1].count("pvc/") == 10
    assert cmds[2].count("pv/pvc-") == 10  # only the set's PVs, not the Released one of another claim
    assert cmds[3] == ("kubectl delete storageclasses.storage.k8s.io/test-sc "
                       "clusterrolebindings.rbac.authorization.k8s.io/run-nfs-client-provisioner "
                       "clusterroles.rbac.authorization.k8s.io/nfs-client-provisioner-runner --ignore-not-found")


INV_LAB = _recorded_inventory("lab")


def test_namespace_is_created_first_and_the_plan_says_so():
    objs = manifests.render(INV_LAB)
    changes = list(kube.deploy(manifests.render_namespace(INV_LAB), None, objs, {}))
    create, put, apply = changes
    assert create.description == "create namespace lab (app.kubernetes.io/managed-by=labkit)"
    assert create.sudo is False
    # what goes to `kubectl create -f -` is the rendered Namespace, labkit's label included
    import shlex
    argv = shlex.split(create.command)
    assert argv[:2] == ["printf", "%s\\n"] and argv[3:] == ["|", "kubectl", "create", "-f", "-"]
    assert json.loads(argv[2]) == manifests.render_namespace(INV_LAB)
    # the upload names every object; the apply says how many are new instead of naming them again
    assert put.description.startswith("upload manifests: ServiceAccount/nfs-client-provisioner (new), ")
    assert apply.description == "kubectl apply: 9 new objects"


def test_apply_names_what_drifted_and_counts_the_new():
    objs = manifests.render(INV)
    live = live_objects("live-seed.json", remove=("Service",),
                        sets=[("ClusterRole", "rules.0.verbs", ["get"])])
    *_, apply = kube.apply_manifests(objs, live)
    assert apply.description == ("kubectl apply: ClusterRole/nfs-client-provisioner-runner (rules[0].verbs), "
                                 "1 new object")


def test_purge_says_why_it_keeps_a_namespace():
    admin = recorded(kfacts.NamespaceFact("lab"), "namespace-lab-admin")
    default = recorded(kfacts.NamespaceFact("default"), "namespace-default")
    labkits = recorded(kfacts.NamespaceFact("lab"), "namespace-lab-labkit")
    assert kube.namespace_kept("lab", admin) == ("namespace lab stays: labkit did not create it (no "
                                                 "app.kubernetes.io/managed-by=labkit label), so teardown --purge "
                                                 "never deletes it")
    assert kube.namespace_kept("default", default).startswith("namespace default stays: labkit did not create it")
    assert kube.namespace_kept("lab", labkits) is None and kube.namespace_kept("lab", None) is None


def test_kubectl_error_lines_keep_plain_output_when_no_line_is_an_error():
    assert kube.kubectl_error_lines(["", "Warning: x", "something odd", "something odd"]) == ["something odd"]
    cmd = Command("kubectl delete pv/x --ignore-not-found --wait=true", sudo=False, description="delete 1 PV(s)")
    assert kube.kubectl_failure(cmd, [], "lab", "teardown") == \
        "kubectl delete failed: no output: fix what kubectl says, then run `invoke teardown` again"


# ---- the waits a plan asks for, from recorded rollouts and pods

def _recorded(name, fact):
    from labkit.facts.base import FactResult
    return fact.process(FactResult(json.dumps(json.loads((ROOT / "tests" / "data" / "facts" / "kube" /
                                                          f"{name}.json").read_text())["stdout"])))


@pytest.mark.parametrize("sts, pods, replicas, after_changes, waits", [
    ("sts-rolled-out", "pods-rolled-out", 10, False, False),   # settled, nothing changed: no wait
    ("sts-rolled-out", "pods-rolled-out", 10, True, True),     # a change before it: wait
    ("sts-rolling", "pods-rolled-out", None, False, True),     # a run that failed while waiting
    ("sts-seed-scaling-down", "pods-seed-scaling-down", 3, False, True),  # the top pods still there
    ("sts-absent", "pods-none", None, True, True),             # deploy creates it
])
def test_wait_for(sts, pods, replicas, after_changes, waits):
    from labkit.facts import kube as kf
    from labkit.operations.base import Wait

    rollout = _recorded(sts, kf.RolloutFact("statefulset", "statefulset", "default")) if sts != "sts-absent" else None
    wait = Wait("statefulset", "statefulset", "default", replicas)
    got = list(kube.wait_for(wait, rollout, after_changes=after_changes,
                                 pods=_recorded(pods, kf.StatefulSetPods("default", "statefulset", "statefulset"))))
    assert got == ([wait] if waits else [])
