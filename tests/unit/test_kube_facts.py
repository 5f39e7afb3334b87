"""kubectl facts: recorded outputs (tests/data/facts/kube/*.json) -> expected parse, and command quoting."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import inventory, manifests
from labkit.errors import OperationError
from labkit.facts import kube
from labkit.facts.base import FactResult
from factdata import plain

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "data" / "facts" / "kube").glob("*.json"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_recorded_output(case):
    data = json.loads(case.read_text())
    fact = getattr(kube, data["fact"])(**data["args"])
    assert fact.build() == data["command"]
    stdout = data["stdout"] if isinstance(data["stdout"], str) else json.dumps(data["stdout"], indent=4)
    assert data["exited"] in fact.ok_exit_codes
    result = fact.process(FactResult(stdout=stdout, stderr=data["stderr"], exited=data["exited"]))
    assert plain(result) == data["expected"]


def test_enough_recorded_cases():
    kinds = {json.loads(c.read_text())["fact"] for c in CASES}
    assert {"StatefulSetPods", "PVCs", "PVs", "StatefulSetFact", "Nodes", "KubectlVersionFact", "NamespaceFact"} <= kinds


def test_names_are_quoted():
    fact = kube.StatefulSetPods("default", "web", "we b;x")
    assert fact.build() == "kubectl get pods -n default -l 'app=we b;x' -o json"
    assert kube.StatefulSetFact("a'b", "s").build() == \
        "kubectl get statefulset s -n 'a'\"'\"'b' -o json --ignore-not-found"
    assert kube.PVCs("n s").build() == "kubectl get pvc -n 'n s' -o json"


def test_namespace_fact_quotes_and_refuses_another_kind():
    assert kube.NamespaceFact("a b").build() == "kubectl get namespace 'a b' -o json --ignore-not-found"
    other = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "lab"}}
    with pytest.raises(OperationError, match="returned a 'ServiceAccount', not a Namespace"):
        kube.NamespaceFact("lab").process(FactResult(json.dumps(other)))


def test_statefulset_settled():
    load = lambda name: json.loads((ROOT / "tests/data/facts/kube" / f"{name}.json").read_text())
    for name, settled in (("sts-initial", True), ("sts-rolled-out", True), ("sts-rolling", False)):
        d = load(name)
        sts = kube.StatefulSetFact("default", "statefulset").process(FactResult(json.dumps(d["stdout"])))
        assert sts.settled is settled, name


def test_objects_fact_command_and_parse():
    inv = inventory.load(ROOT / "hosts.yaml")
    objs = manifests.render(inv)
    fact = kube.Objects(objs)
    assert fact.build() == (
        "kubectl get serviceaccounts/nfs-client-provisioner "
        "clusterroles.rbac.authorization.k8s.io/nfs-client-provisioner-runner "
        "clusterrolebindings.rbac.authorization.k8s.io/run-nfs-client-provisioner "
        "roles.rbac.authorization.k8s.io/leader-locking-nfs-client-provisioner "
        "rolebindings.rbac.authorization.k8s.io/leader-locking-nfs-client-provisioner "
        "deployments.apps/nfs-client-provisioner storageclasses.storage.k8s.io/test-sc "
        "services/headless-svc statefulsets.apps/statefulset -n default -o json --ignore-not-found")
    live = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nfs-client-provisioner", "namespace": "default"}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "test-sc"}, "provisioner": "x"}]}
    got = fact.process(FactResult(json.dumps(live)))
    assert set(got) == {("ServiceAccount", "default", "nfs-client-provisioner"), ("StorageClass", "", "test-sc")}
    # one object found: kubectl prints the object itself, not a List
    single = fact.process(FactResult(json.dumps(live["items"][1])))
    assert set(single) == {("StorageClass", "", "test-sc")}
    assert fact.process(FactResult("")) == {}


def test_garbage_output_is_an_error():
    with pytest.raises(OperationError, match="kubectl returned no JSON for pods"):
        kube.StatefulSetPods("default", "statefulset", "statefulset").process(FactResult("error: You must be logged in"))


def test_image_tag():
    assert kube.image_tag("10.0.0.1:5000/web-httpd:v2") == "v2"
    assert kube.image_tag("10.0.0.1:5000/web-httpd") is None
    assert kube.image_tag("web@sha256:abc") is None
    assert kube.image_tag("[fd00::6]:5000/web:v1") == "v1"


def _blockers(name: str) -> list:
    d = json.loads((ROOT / "tests/data/facts/kube" / f"{name}.json").read_text())
    return getattr(kube, d["fact"])(**d["args"]).process(FactResult(json.dumps(d["stdout"])))


def test_wait_blockers_name_the_refused_permission_and_the_fix():
    lines = kube.describe_blockers(_blockers("blockers-rbac-forbidden"))
    assert len(lines) == 2
    assert lines[0].startswith("pod statefulset-10 Pending: FailedScheduling: ")
    assert lines[1].startswith("pvc test-statefulset-10 Pending: ProvisioningFailed: ")
    assert 'cannot create resource "persistentvolumes"' in lines[1]
    assert lines[1].endswith("-> the provisioner's RBAC refuses it: `invoke deploy` puts labkit's ClusterRole "
                             "and Role back")


def test_wait_blockers_group_alike_pods_and_show_the_failed_mount():
    lines = kube.describe_blockers(_blockers("blockers-nfs-server-stopped"))
    assert lines[0].startswith("pods statefulset-0, statefulset-1, ") and "statefulset-9, statefulset-10 (11) " \
        "Running, not Ready: Unhealthy: Readiness probe failed" in lines[0]
    assert lines[1].startswith("pod statefulset-11 ContainerCreating: FailedMount: MountVolume.SetUp failed")
    assert "mount failed: exit status 32" in lines[1] and "-> the node cannot mount the NFS export" in lines[1]


def test_wait_blockers_take_a_failed_pulls_cause_not_the_kubelets_summary():
    case = json.loads((ROOT / "tests/data/facts/kube/blockers-no-registry-trust.json").read_text())
    events = [e for e in case["stdout"]["items"] if e["kind"] == "Event"
              and e["involvedObject"]["name"] == "statefulset-12" and e["type"] == "Warning"]
    latest = max(events, key=lambda e: e["lastTimestamp"])
    assert latest["message"] == "Error: ImagePullBackOff"  # what the latest Warning alone would say
    [line] = kube.describe_blockers(_blockers("blockers-no-registry-trust"))
    assert line.startswith('pod statefulset-12 ErrImagePull: Failed: Failed to pull image "10.213.39.6:5000/ljz:v3"')
    assert "server gave HTTP response to HTTPS client" in line
    assert line.endswith("-> the node's container runtime does not trust the lab registry: "
                         "run `invoke setup-registry`")


def test_wait_blockers_of_a_wrong_export_name_the_provisioners_mount():
    [line] = kube.describe_blockers(_blockers("blockers-wrong-export"))
    assert line.startswith("pod nfs-client-provisioner-") and " ContainerCreating: FailedMount: " in line
    assert "mount.nfs: access denied by server while mounting 10.213.39.6:/nfsdata-moved" in line
    assert line.endswith("-> the node cannot mount the NFS export: check that the NFS server runs and exports "
                         "nfs.export (`invoke setup-nfs`, then `invoke doctor`)")


def test_wait_blockers_quote_the_namespace():
    assert kube.WaitBlockers("a b", ("x-",), "c-").build() == "kubectl get pods,pvc,events -n 'a b' -o json"


@pytest.mark.parametrize("reason, message, fix", [
    ("Failed", 'Failed to pull image "10.0.0.6:5000/web:v1": failed to resolve reference: http: server gave '
               "HTTP response to HTTPS client", "run `invoke setup-registry`"),
    ("ExternalProvisioning", "Waiting for a volume to be created either by the external provisioner "
                             "'k8s-sigs.io/nfs-subdir-external-provisioner' or manually", "no provisioner acts"),
    ("ProvisioningFailed", "failed to provision volume with StorageClass \"test-sc\": unable to create "
                           "directory to provision new pv: mkdir /persistentvolumes/x: permission denied",
     "provisioner's NFS_PATH"),
    ("Unhealthy", "Readiness probe failed", None),
])
def test_fix_for_each_blocking_reason(reason, message, fix):
    got = kube.fix_for(reason, message)
    assert (got is None) if fix is None else (fix in got)


def _recorded_pods(name: str) -> list:
    case = json.loads((ROOT / "tests" / "data" / "facts" / "kube" / f"{name}.json").read_text())
    return kube.StatefulSetPods(**case["args"]).process(FactResult(json.dumps(case["stdout"])))


@pytest.mark.parametrize("replicas, waiting", [
    (10, []),
    (3, ["7 pod(s) above the 3 asked still there (3-9)"]),
    (9, ["1 pod(s) above the 9 asked still there (9)"]),
    (12, ["pod(s) 10, 11 not created yet"]),
    (0, ["10 pod(s) above the 0 asked still there (0-9)"]),
])
def test_pods_not_yet_matching_a_scale(replicas, waiting):
    # ten Ready pods recorded after the seed's step 7 (pods-rolled-out)
    assert kube.pods_not_yet_matching(_recorded_pods("pods-rolled-out"), replicas) == waiting


def test_pods_not_yet_matching_names_pods_deleted_or_not_ready():
    pods = _recorded_pods("pods-old-cluster-mixed")  # -0 terminating, -2 in ImagePullBackOff
    assert kube.pods_not_yet_matching(pods, len(pods)) == ["pod(s) 0 being deleted", "pod(s) 2 not Ready"]


LIVE = json.loads((ROOT / "tests" / "data" / "operations" / "kube" / "live-seed.json").read_text())["items"]


def test_rollout_of_recorded_objects():
    deployment = next(o for o in LIVE if o["kind"] == "Deployment")
    sts = next(o for o in LIVE if o["kind"] == "StatefulSet")
    # recorded right after an apply: generation 2 not yet observed (1), so not done, as kubectl says
    assert kube.rollout_of(deployment) == kube.Rollout("deployment", "nfs-client-provisioner", 1, 1, False)
    observed = {**deployment, "status": {**deployment["status"], "observedGeneration": 2}}
    assert kube.rollout_of(observed).done
    state = kube.rollout_of(sts)
    assert (state.kind, state.name, state.done) == ("statefulset", "statefulset", kube.parse_statefulset(sts).settled)
    with pytest.raises(OperationError, match="not a Service"):
        kube.rollout_of(next(o for o in LIVE if o["kind"] == "Service"))


def test_rollout_fact_not_found_is_none_and_other_errors_name_the_object():
    fact = kube.RolloutFact("deployment", "nfs-client-provisioner", "lab ns")
    assert fact.build() == "kubectl get deployment/nfs-client-provisioner -n 'lab ns' -o json"
    # kubectl's own line for a missing object
    assert fact.process(FactResult("", 'Error from server (NotFound): deployments.apps "nfs-client-provisioner" '
                                       "not found\n", 1)) is None
    with pytest.raises(OperationError, match="kubectl get deployment/nfs-client-provisioner failed: error: "
                                             "You must be logged in"):
        fact.process(FactResult("", "error: You must be logged in to the server (Unauthorized)\n", 1))


def test_stuck_counts_only_known_causes_that_stay():
    blockers = _blockers("blockers-nfs-server-stopped")
    known = [b for b in blockers if b.fix]
    assert known, "the recording has FailedMount/Unhealthy blockers with a fix"
    seen: dict = {}
    assert kube.stuck(blockers, seen, now=100.0, after=60) == []
    assert kube.stuck(blockers, seen, now=159.0, after=60) == []
    assert kube.stuck(blockers, seen, now=160.0, after=60) == known
    # a blocker that went away is forgotten: it starts over when it comes back
    assert kube.stuck([], seen, now=161.0, after=60) == [] and seen == {}
    assert kube.stuck(blockers, seen, now=162.0, after=60) == []


def test_fixes_name_the_namespace_when_it_is_not_default():
    assert "kubectl get pods -n lab -l app=nfs-client-provisioner" in kube.fix_for(
        "ExternalProvisioning", "Waiting for a volume to be created", "lab")
    assert "kubectl logs deploy/nfs-client-provisioner -n lab" in kube.fix_for("ProvisioningFailed", "mkdir", "lab")
    assert "kubectl get pods -l app" in kube.fix_for("ExternalProvisioning", "Waiting", "default")
