"""Kube task bodies wired end to end without hosts: each host is a local shell (the runner's real
batch scripts run in bash) with a fake ``kubectl`` on PATH answering the recorded outputs of
tests/data/facts/kube, and the content script writing into a temporary export. Checks: plan mode
changes nothing, SSH commands stay constant in the replica count, the right commands are sent."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from labkit import flows_content, flows_kube, flows_up, flows_verify, inventory
from labkit.errors import HostError, HostsFailed, OperationError
from labkit.remote import RunResult
from factdata import revisions_of

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "data" / "facts" / "kube"

FAKE_KUBECTL = r'''#!/usr/bin/env python3
"""Answers `kubectl get ...` from JSON files in $FAKE_KUBE; logs every other call."""
import json, os, sys
d = os.environ["FAKE_KUBE"]
args = sys.argv[1:]
with open(os.path.join(d, "calls.log"), "a") as f:
    f.write(json.dumps(args) + "\n")
def out(name):
    p = os.path.join(d, name)
    sys.stdout.write(open(p).read() if os.path.exists(p) else "")
if args[0] == "get":
    what = args[1].split("/")[0]
    named = {"deployment": "deployments.apps", "statefulset": "statefulsets.apps"}.get(what)
    f = os.path.join(d, {"statefulset": "sts.json"}.get(what, what + ".json"))
    empty = not os.path.exists(f) or not open(f).read()
    if "/" in args[1] and named and empty:  # as kubectl says it of an object that does not exist
        sys.stderr.write('Error from server (NotFound): %s "%s" not found\n' % (named, args[1].split("/")[1]))
        sys.exit(1)
    out({"pods": "pods.json", "pvc": "pvc.json", "pv": "pv.json", "statefulset": "sts.json",
         "nodes": "nodes.json", "deployment": "deployment.json",
         "namespace": "namespace.json", "controllerrevisions": "revisions.json"}.get(what, "objects.json"))
elif args[0] == "version":
    out("version.json")
elif args[0] == "rollout":
    print("partitioned roll out complete: 6 new pods have been updated...")
elif os.path.exists(os.path.join(d, args[0] + ".err")):  # this verb fails: <verb>.out, <verb>.err, exit 1
    out(args[0] + ".out")
    sys.stderr.write(open(os.path.join(d, args[0] + ".err")).read())
    sys.exit(1)
else:
    print("ok")
'''


class FakeHost:
    def __init__(self, name, env, curl_reply=None):
        self.name, self.env, self.commands, self.sent = name, env, 0, []
        self.curl_reply = curl_reply
        self.settings = type("S", (), {"user": "root"})()
        self.use_sudo = False

    def run(self, command, *, sudo=False, ok_exit_codes=(0,), timeout=None, check=True):
        self.commands += 1
        self.sent.append(command)
        if "curl -s" in command and self.curl_reply is not None:
            r = RunResult(self.name, command, self.curl_reply, "", 0)
        else:
            p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env, timeout=60)
            r = RunResult(self.name, command, p.stdout, p.stderr, p.returncode)
        if check and r.exited not in tuple(ok_exit_codes):
            from labkit.errors import HostError
            from labkit.remote import command_failure
            raise HostError(self.name, command_failure(r))  # as HostConnection.run says it
        return r

    def put_text(self, path, content, *, mode=0o644, backup_suffix=".labkit.bak"):
        self.commands += 1
        self.sent.append(f"PUT {path}")

    def close(self):
        pass


def stdout_of(name):
    return json.dumps(json.loads((FACTS / f"{name}.json").read_text())["stdout"], indent=4)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    kube_dir = tmp_path / "kube"
    kube_dir.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(FAKE_KUBECTL)
    (bindir / "kubectl").chmod(0o755)
    export = tmp_path / "nfsdata"
    export.mkdir()
    # the recorded PVs, with their NFS paths under the temporary export
    for name, fname in (("pods-rolled-out", "pods.json"), ("pvc-bound", "pvc.json"),
                        ("sts-rolled-out", "sts.json"), ("nodes", "nodes.json"),
                        ("namespace-default", "namespace.json")):
        (kube_dir / fname).write_text(stdout_of(name))
    pv = json.loads(stdout_of("pv-bound"))
    for item in pv["items"]:
        item["spec"]["nfs"]["path"] = item["spec"]["nfs"]["path"].replace("/nfsdata", str(export))
        if item["status"]["phase"] == "Bound":
            Path(item["spec"]["nfs"]["path"]).mkdir()
    (kube_dir / "pv.json").write_text(json.dumps(pv))
    (kube_dir / "revisions.json").write_text(json.dumps(revisions_of(json.loads(stdout_of("pods-rolled-out")))))
    live = json.loads((ROOT / "tests" / "data" / "operations" / "kube" / "live-seed.json").read_text())
    deployment = next(o for o in live["items"] if o["kind"] == "Deployment")
    # recorded right after an apply (generation 2, observed 1); here the controller has caught up
    deployment["status"]["observedGeneration"] = deployment["metadata"]["generation"]
    (kube_dir / "deployment.json").write_text(json.dumps(deployment))
    # tests/data/facts/kube was recorded when the image was named web-httpd
    text = (ROOT / "hosts.yaml").read_text().replace("export: /nfsdata", f"export: {export}") \
        .replace("repository: ljz", "repository: web-httpd")
    (tmp_path / "hosts.yaml").write_text(text)
    inv = inventory.load(tmp_path / "hosts.yaml")
    env = dict(os.environ, FAKE_KUBE=str(kube_dir), PATH=f"{bindir}:{os.environ['PATH']}")
    hosts = {h.name: FakeHost(h.name, env, (FACTS / "curl-rolled-out.txt").read_text()) for h in inv.hosts}
    for module in (flows_kube, flows_content, flows_verify):
        monkeypatch.setattr(module, "connect", lambda inv_, names=None: hosts)
    return {"inv": inv, "hosts": hosts, "kube": kube_dir, "export": export}


def calls(lab):
    log = lab["kube"] / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def mutating(lab):
    return [c for c in calls(lab) if c[0] not in ("get", "version")]


def test_verify_two_commands_on_master(lab):
    report = flows_verify.verify(lab["inv"])
    assert report.ok, report.to_dict()
    assert report.commands == {"master": 2, "node01": 0, "node02": 0}
    assert mutating(lab) == []


def test_write_v2_plan_then_apply(lab):
    master = lab["hosts"]["master"]
    res = flows_content.write_v2(lab["inv"], plan=True)
    assert res.details["ordinals"] == [4, 5, 6, 7, 8, 9]
    assert len(res.details["content"]["would write"]) == 6
    assert list(lab["export"].rglob("index.html")) == []  # plan mode wrote nothing
    # master: the set with its PVCs/PVs in one read; as the NFS server (also master here) what the
    # directories hold in one read
    assert master.commands == 2
    res = flows_content.write_v2(lab["inv"])
    assert len(res.details["content"]["written"]) == 6
    files = sorted(lab["export"].rglob("index.html"))
    assert len(files) == 6 and {f.read_text() for f in files} == {"Version: --v2\n"}
    assert master.commands == 2 + 3  # the same two reads, then one write for the six
    again = flows_content.write_v2(lab["inv"])
    assert len(again.details["content"]["unchanged"]) == 6 and not again.details["content"]["written"]
    assert master.commands == 2 + 3 + 2 and not again.report.changed_hosts


def test_deploy_plan_mode_changes_nothing(lab):
    (lab["kube"] / "objects.json").write_text("")  # fresh cluster: nothing applied yet
    res = flows_kube.deploy(lab["inv"], plan=True)
    plan = res.report.hosts["master"].plans[0]
    assert [type(c).__name__ for c in plan.changes] == ["PutFile", "Command", "Wait", "Wait"]
    # the waits are part of the plan: the provisioner first, then the set
    assert [w.description for w in plan.waits] == [
        "wait for deployment/nfs-client-provisioner -n default to roll out",
        "wait for statefulset/statefulset -n default to roll out"]
    assert mutating(lab) == []
    assert not any(s.startswith("PUT ") for s in lab["hosts"]["master"].sent)


def test_deploy_applies_waits_and_writes_content(lab):
    (lab["kube"] / "objects.json").write_text("")
    flows_kube.deploy(lab["inv"])
    m = mutating(lab)
    assert m[0] == ["apply", "-f", "/var/lib/labkit/manifests.yaml"]
    assert m[1:] == []  # the waits only read, in order: the provisioner, then the set
    reads = [c[1] for c in calls(lab) if c[0] == "get" and c[1].startswith(("deployment/", "statefulset/"))]
    # the plan reads the provisioner's rollout (the set's comes from the set it reads anyway); the
    # waits it planned then read both, in order
    assert reads == ["deployment/nfs-client-provisioner", "deployment/nfs-client-provisioner",
                     "statefulset/statefulset"]
    sets = [c for c in calls(lab) if c[:2] == ["get", "statefulset"]]
    assert len(sets) == 2  # deploy's plan and the content step: the set is not read twice for one plan
    files = sorted(lab["export"].rglob("index.html"))
    assert len(files) == 10  # the live set has 10 replicas: 0-3 v1, 4-9 v2
    assert sorted(f.read_text() for f in files) == ["Version: --v1\n"] * 4 + ["Version: --v2\n"] * 6


def test_deploy_refuses_to_roll_back_a_tag_the_inventory_does_not_list(lab, tmp_path):
    # the live set runs v2 above its partition; an inventory listing only v1 would render v1 there
    text = (tmp_path / "hosts.yaml").read_text().replace("tags: [v1, v2]", "tags: [v1]")
    text = text.replace("image_tag: v2", "image_tag: v1")
    assert "tags: [v1]" in text and "image_tag: v2" not in text
    (tmp_path / "v1-only.yaml").write_text(text)
    with pytest.raises(HostsFailed, match=r"runs image tag 'v2', which images.web.tags \(v1\) does not list: "
                                          r"deploy would roll its pods back"):
        flows_kube.deploy(inventory.load(tmp_path / "v1-only.yaml"))
    assert mutating(lab) == [] and not any(s.startswith("PUT ") for s in lab["hosts"]["master"].sent)


def test_redeploy_keeps_existing_content_unless_rewrite(lab):
    (lab["kube"] / "objects.json").write_text("")
    flows_kube.deploy(lab["inv"])
    f = next(p for p in lab["export"].rglob("index.html") if "statefulset-0-" in str(p))
    f.write_text("Version: --old\n")
    res = flows_kube.deploy(lab["inv"])
    assert f.read_text() == "Version: --old\n" and len(res.details["content"]["kept"]) == 1
    res = flows_kube.deploy(lab["inv"], rewrite_content=True)
    assert f.read_text() == "Version: --v1\n" and res.details["content"]["written"] == [str(f.parent)]


def test_scale_noop_when_already_scaled(lab):
    res = flows_kube.scale(lab["inv"])
    assert res.report.hosts["master"].plans[0].no_change
    assert mutating(lab) == []  # the wait only reads
    assert res.details["new_pvcs"] == []
    # replicas without content get theirs; none had any here
    assert len(res.details["content"]["written"]) == 10
    # the plan's read (the rollout is settled: no wait planned), the set's state for the new pairs
    # and the content step, what the PV directories hold, one write
    assert lab["hosts"]["master"].commands == 4
    assert res.report.waits("master") == []


def test_status_one_command_on_master(lab):
    st = flows_verify.status(lab["inv"])
    assert len(st["pods"]) == 10 and st["nodes"] and st["sts"].replicas == 10
    assert {n: h.commands for n, h in lab["hosts"].items()} == {"master": 1, "node01": 0, "node02": 0}


def test_scale_patches_from_initial(lab):
    (lab["kube"] / "sts.json").write_text(stdout_of("sts-initial"))
    flows_kube.scale(lab["inv"], plan=True)
    assert mutating(lab) == []
    with pytest.raises(OperationError, match="not one of images.web.tags"):
        flows_kube.scale(lab["inv"], image_tag="v9")


def test_teardown_purge_needs_yes(lab):
    with pytest.raises(OperationError, match="add --yes"):
        flows_kube.teardown(lab["inv"], purge=True)


# ---- up --plan: every step's plan in order, nothing changed

from labkit import flows  # noqa: E402
from labkit.operations.base import Command, HostPlan  # noqa: E402
from labkit.runner import HostOutcome, RunReport  # noqa: E402


def host_flows(monkeypatch, registry_running: bool):
    """The host flows (tested against the twin in tests/twin) as plan-mode fakes: setup-registry's
    plan for the registry container is empty only when the registry already runs."""
    seen = []

    def fake(name, operation, changes):
        def flow(inv, plan=False):
            seen.append((name, plan))
            report = RunReport(name, plan, {"master": HostOutcome("master", [HostPlan("master", operation, changes)])})
            return flows.FlowResult(report, [], {})
        return flow

    start = [] if registry_running else [Command("docker run -d --name registry ...", description="run registry")]
    monkeypatch.setattr(flows, "setup_registry", fake("setup-registry", "registry container", start))
    monkeypatch.setattr(flows, "setup_nfs", fake("setup-nfs", "NFS server (nfs-ganesha)", []))
    monkeypatch.setattr(flows, "build_images", fake("build-images", "images", []))
    return seen


def test_up_plan_on_a_fresh_lab_says_what_waits_on_what(lab, monkeypatch, capsys):
    seen = host_flows(monkeypatch, registry_running=False)
    for name in ("objects.json", "sts.json", "pvc.json", "pods.json"):
        (lab["kube"] / name).write_text("")  # a fresh cluster: no objects, no StatefulSet
    res = flows_up.up(lab["inv"], plan=True)
    out = capsys.readouterr().out
    assert res.verify is None
    assert res.steps == {"setup-registry": "would change", "setup-nfs": "no change",
                         "build-images": "after setup-registry", "deploy": "would change",
                         "scale": "after deploy", "write-v2": "after scale", "verify": "skipped"}
    # the registry cannot be asked for tags yet: build-images' own plan is not run
    assert seen == [("setup-registry", True), ("setup-nfs", True)]
    assert "plan depends on setup-registry being applied" in out
    # scale's patch computed against the StatefulSet deploy would create (6 x v1, partition 0)
    assert "statefulset/statefulset: replicas 6 -> 10, image 192.168.20.6:5000/web-httpd:v1 -> " \
           "192.168.20.6:5000/web-httpd:v2, partition 0 -> 4" in " ".join(out.split())
    assert "for ordinals 4-9" in out and "verify: skipped" in out
    assert mutating(lab) == [] and list(lab["export"].rglob("index.html")) == []
    assert not any(s.startswith("PUT ") for h in lab["hosts"].values() for s in h.sent)


def test_up_plan_on_a_deployed_lab_runs_every_steps_own_plan(lab, monkeypatch, capsys):
    seen = host_flows(monkeypatch, registry_running=True)
    (lab["kube"] / "sts.json").write_text(stdout_of("sts-initial"))  # deployed: 6 x v1
    res = flows_up.up(lab["inv"], plan=True)
    out = capsys.readouterr().out
    assert seen == [("setup-registry", True), ("setup-nfs", True), ("build-images", True)]
    assert res.steps["build-images"] == "no change" and res.steps["scale"] == "would change"
    assert res.steps["write-v2"] == "after scale" and res.verify is None
    assert "statefulset/statefulset: replicas 6 -> 10" in " ".join(out.split())
    assert mutating(lab) == [] and list(lab["export"].rglob("index.html")) == []


def test_up_plan_on_a_scaled_lab_plans_write_v2_without_writing(lab, monkeypatch):
    host_flows(monkeypatch, registry_running=True)
    res = flows_up.up(lab["inv"], plan=True)  # the recorded lab: rolled out, 10 replicas
    assert res.steps["scale"] == "no change" and res.steps["write-v2"] == "would change"
    assert mutating(lab) == [] and list(lab["export"].rglob("index.html")) == []


def test_scale_down_waits_until_the_top_pods_are_gone(lab):
    # the StatefulSet already says 3, but pods 3-9 are still there (OrderedReady removes them one by one):
    # kubectl rollout status is satisfied by 3 Ready pods; labkit's scale is not
    sts = json.loads(stdout_of("sts-rolled-out"))
    sts["spec"]["replicas"] = 3
    (lab["kube"] / "sts.json").write_text(json.dumps(sts))
    with pytest.raises(HostError, match=r"not have exactly 3 Ready pod\(s\) after 1s: 7 pod\(s\) above the 3 "
                                        r"asked still there \(3-9\)"):
        flows_kube.scale(lab["inv"], replicas=3, timeout=1)


# ---- kubernetes.namespace other than default: created by deploy, deleted by purge only when labkit's

NOT_FOUND = ('Error from server (NotFound): error when creating "/var/lib/labkit/manifests.yaml": '
             'namespaces "lab" not found')


def in_lab(lab, namespace_case):
    """The lab's inventory with kubernetes.namespace lab, its recorded objects, claims and volumes moved
    there (the provisioner names directories <ns>-<pvc>-<pv>), and the namespace as ``namespace_case``
    (tests/data/facts/kube) says."""
    for name in ("pods.json", "pvc.json", "pv.json", "sts.json", "objects.json"):
        f = lab["kube"] / name
        if f.exists():
            f.write_text(f.read_text().replace('"namespace": "default"', '"namespace": "lab"')
                         .replace("/default-test-statefulset-", "/lab-test-statefulset-"))
    (lab["kube"] / "namespace.json").write_text(
        stdout_of(namespace_case) if namespace_case != "namespace-absent" else "")
    p = Path(lab["inv"].path)
    lab_inv = p.with_name("lab.yaml")
    lab_inv.write_text(p.read_text().replace("namespace: default", "namespace: lab"))
    return inventory.load(lab_inv)


def live_seed(namespace="default"):
    text = (ROOT / "tests" / "data" / "operations" / "kube" / "live-seed.json").read_text()
    return text.replace('"namespace": "default"', f'"namespace": "{namespace}"')


def test_deploy_plan_creates_a_missing_namespace_first_and_changes_nothing(lab, capsys):
    (lab["kube"] / "objects.json").write_text("")
    inv = in_lab(lab, "namespace-absent")
    res = flows_kube.deploy(inv, plan=True)
    changes = res.report.hosts["master"].plans[0].changes
    assert [type(c).__name__ for c in changes] == ["Command", "PutFile", "Command", "Wait", "Wait"]
    assert changes[0].description == "create namespace lab (app.kubernetes.io/managed-by=labkit)"
    assert "create namespace lab" in capsys.readouterr().out
    assert mutating(lab) == [] and not any(s.startswith("PUT ") for s in lab["hosts"]["master"].sent)
    # every read of deploy's plan asks in lab
    reads = [c for c in calls(lab) if c[0] == "get"]
    assert ["get", "namespace", "lab", "-o", "json", "--ignore-not-found"] in reads
    assert all(c[c.index("-n") + 1] == "lab" for c in reads if "-n" in c)


@pytest.mark.parametrize("case", ["namespace-lab-labkit", "namespace-lab-admin"])
def test_deploy_into_an_existing_namespace_creates_none(lab, case):
    (lab["kube"] / "objects.json").write_text("")
    inv = in_lab(lab, case)
    res = flows_kube.deploy(inv, plan=True)
    changes = res.report.hosts["master"].plans[0].changes
    assert [type(c).__name__ for c in changes] == ["PutFile", "Command", "Wait", "Wait"]  # the manifests only
    assert not any("namespace" in c.description for c in changes)


def test_deploy_apply_failure_says_it_once(lab, capsys):
    (lab["kube"] / "objects.json").write_text("")
    inv = in_lab(lab, "namespace-lab-labkit")  # there when planned, gone when applied
    (lab["kube"] / "apply.out").write_text("clusterrole.rbac.authorization.k8s.io/nfs-client-provisioner-runner "
                                           "created\nstorageclass.storage.k8s.io/test-sc created\n")
    (lab["kube"] / "apply.err").write_text((NOT_FOUND + "\n") * 6)
    with pytest.raises(HostError) as exc:
        flows_kube.deploy(inv)
    assert str(exc.value) == (
        'master: kubectl apply failed: Error from server (NotFound): namespaces "lab" not found: the namespace lab '
        "does not exist (deleted while deploy ran?): run `invoke deploy` again, it creates kubernetes.namespace first "
        "when it is missing")
    assert [c[0] for c in mutating(lab)] == ["apply"]  # no wait after a failed apply
    # the runner's own lines: kubectl's error at most once in each, never the list of objects again
    out = capsys.readouterr().out
    assert all(line.count('namespaces "lab" not found') <= 1 for line in out.splitlines()), out
    failed = [line for line in out.splitlines() if 'namespaces "lab" not found' in line]
    assert failed and not any("ServiceAccount/" in line for line in failed), failed


def test_deploy_create_namespace_failure_says_what_to_do(lab):
    (lab["kube"] / "objects.json").write_text("")
    inv = in_lab(lab, "namespace-absent")
    (lab["kube"] / "create.err").write_text(
        'Error from server (Forbidden): error when creating "STDIN": namespaces is forbidden: User "lab" cannot '
        'create resource "namespaces" in API group "" at the cluster scope\n')
    with pytest.raises(HostError, match=r'^master: kubectl create namespace lab failed: Error from server '
                                        r'\(Forbidden\): namespaces is forbidden: .* or have a cluster admin '
                                        r'create the namespace lab once$'):
        flows_kube.deploy(inv)
    assert [c[:3] for c in mutating(lab)] == [["create", "-f", "-"]]  # nothing applied after it


def test_teardown_purge_plan_keeps_the_default_namespace_and_says_why(lab, capsys):
    (lab["kube"] / "objects.json").write_text(live_seed())
    res = flows_kube.teardown(lab["inv"], purge=True, plan=True)
    descriptions = [c.description for c in res.report.hosts["master"].plans[0].changes]
    assert len(descriptions) == 4 and not any("namespace" in d for d in descriptions)
    out = " ".join(capsys.readouterr().out.split())
    assert ("master namespace default: kept - namespace default stays: labkit did not create it (no "
            "app.kubernetes.io/managed-by=labkit label), so teardown --purge never deletes it") in out
    assert res.details["namespace_kept"] is True
    assert mutating(lab) == []
    # the purge of the NFS data is planned on the NFS server like any step: what it would remove
    purge = res.details["purge_report"].hosts["master"].plans[0]
    assert [c.description for c in purge.changes] == ["remove 10 PV directories (the purged PVs' data)"]
    assert len([d for d in lab["export"].iterdir() if d.is_dir()]) == 10  # plan mode removed nothing


def test_teardown_purge_deletes_labkits_namespace_last(lab, capsys):
    (lab["kube"] / "objects.json").write_text(live_seed("lab"))
    inv = in_lab(lab, "namespace-lab-labkit")
    res = flows_kube.teardown(inv, purge=True, yes=True)
    deletes = mutating(lab)
    assert [c[0] for c in deletes] == ["delete"] * 5
    assert deletes[0][-4:] == ["-n", "lab", "--ignore-not-found", "--wait=true"]
    assert deletes[1][1] == "pvc/test-statefulset-0" and deletes[1][-4:-2] == ["-n", "lab"]
    assert deletes[2][1].startswith("pv/")  # the set's volumes were claimed in lab
    assert deletes[-1] == ["delete", "namespace", "lab", "--ignore-not-found", "--wait=true", "--timeout=300s"]
    assert res.details["namespace_kept"] is False and "kept" not in capsys.readouterr().out
    # the NFS directories the provisioner named after lab
    assert res.details["directories"] and all("/lab-test-statefulset-" in d for d in res.details["directories"])


def test_teardown_without_purge_leaves_labkits_namespace(lab):
    (lab["kube"] / "objects.json").write_text(live_seed("lab"))
    inv = in_lab(lab, "namespace-lab-labkit")
    flows_kube.teardown(inv)
    assert mutating(lab) == [["delete", "statefulsets.apps/statefulset", "services/headless-svc", "-n", "lab",
                              "--ignore-not-found", "--wait=true"]]
