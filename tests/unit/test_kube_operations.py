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

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "operations" / "kube"
FACTS = ROOT / "tests" / "data" / "facts" / "kube"
CASES = sorted(p for p in DATA.glob("*.json") if p.name != "live-seed.json")


def _recorded_inventory():
    """hosts.yaml as it was when live-seed.json was recorded: the image was then named web-httpd."""
    import tempfile
    text = (ROOT / "hosts.yaml").read_text().replace("repository: ljz", "repository: web-httpd")
    path = Path(tempfile.mkdtemp()) / "hosts.yaml"
    path.write_text(text)
    return inventory.load(path)


INV = _recorded_inventory()


def live_objects(name, remove=(), sets=()):
    if name is None:
        return {}
    data = json.loads((DATA / name).read_text())
    for kind, path, value in sets:
        obj = next(o for o in data["items"] if o["kind"] == kind)
        *parents, last = path.split(".")
        for p in parents:
            obj = obj[int(p)] if p.isdigit() else obj[p]
        obj[int(last) if last.isdigit() else last] = value
    data["items"] = [o for o in data["items"] if o["kind"] not in remove]
    # through the real fact parser, as the runner would
    return kfacts.Objects(manifests.render(INV)).process(FactResult(json.dumps(data)))


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
    with pytest.raises(OperationError, match="partition must be a non-negative integer"):
        list(kube.scale_and_rollout(sts, 10, "x:v2", -1))
    with pytest.raises(OperationError, match="replicas must be a non-negative integer"):
        list(kube.scale_and_rollout(sts, -1, "x:v2", 0))


def test_patch_is_valid_json_and_strategic():
    (cmd,) = kube.scale_and_rollout(sts_fact("sts-initial"), 10, "192.168.20.6:5000/web-httpd:v2", 4)
    import shlex
    argv = shlex.split(cmd.command)
    assert argv[:6] == ["kubectl", "patch", "statefulset", "statefulset", "-n", "default"]
    assert argv[6] == "--type=strategic"
    patch = json.loads(argv[argv.index("-p") + 1])
    assert patch["spec"]["template"]["spec"]["containers"] == [{"image": "192.168.20.6:5000/web-httpd:v2", "name": "web"}]


def test_rollout_status():
    c = kube.rollout_status("statefulset", "statefulset", "default", timeout=300)
    assert c.command == "kubectl rollout status statefulset/statefulset -n default --timeout=300s"
    assert c.sudo is False
    with pytest.raises(OperationError):
        kube.rollout_status("pod", "x", "default")
    with pytest.raises(OperationError):
        kube.rollout_status("statefulset", "x", "default", timeout=0)


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
