"""tasks.py: typed options, inventory resolution (-i, config lab.inventory, INVOKE_LAB_INVENTORY),
preconditions before any host is touched, LabkitError -> clean Exit(code=1)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Config, Exit, MockContext, Program

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
tasks = importlib.import_module("tasks")

from labkit import flows  # noqa: E402
from labkit.errors import HostsFailed  # noqa: E402
from labkit.verify import Report, Row  # noqa: E402


@pytest.fixture
def inventory(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not used\n")
    text = (ROOT / "hosts.yaml").read_text().replace("key: ~/.ssh/id_ed25519", f"key: {key}")
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def calls(monkeypatch):
    seen = []
    for name in ("setup_registry", "setup_nfs", "build_images"):
        monkeypatch.setattr(flows, name, lambda inv, plan=False, _n=name: seen.append((_n, inv, plan)))
    monkeypatch.setattr(flows, "doctor", lambda inv: seen.append(("doctor", inv, None)))
    return seen


def ctx(**lab):
    return MockContext(config=Config(defaults=tasks.ns.configuration(), overrides={"lab": lab} if lab else None))


@pytest.mark.parametrize("task, flow", [(tasks.setup_registry, "setup_registry"), (tasks.setup_nfs, "setup_nfs"),
                                        (tasks.build_images, "build_images")])
def test_host_tasks_pass_inventory_and_plan(task, flow, inventory, calls):
    task(ctx(), inventory=str(inventory), plan=True)
    (name, inv, plan), = calls
    assert (name, plan) == (flow, True)
    assert inv.registry_address == "192.168.20.6:5000" and inv.path == str(inventory)


def test_inventory_from_config_when_no_option(inventory, calls):
    tasks.doctor(ctx(inventory=str(inventory)))
    assert calls[0][1].path == str(inventory)


def test_inventory_env_var_overrides_the_default(inventory, calls, monkeypatch, tmp_path):
    monkeypatch.setenv("INVOKE_LAB_INVENTORY", str(inventory))
    monkeypatch.chdir(tmp_path)
    Program(namespace=tasks.ns).run(["invoke", "setup-nfs", "--plan"], exit=False)
    assert calls == [("setup_nfs", calls[0][1], True)] and calls[0][1].path == str(inventory)


def test_missing_inventory_is_a_clean_exit_before_any_host(calls, tmp_path):
    with pytest.raises(Exit) as exc:
        tasks.setup_registry(ctx(), inventory=str(tmp_path / "nope.yaml"))
    assert exc.value.code == 1 and "nope.yaml: file not found" in str(exc.value.message)
    assert calls == []


def test_missing_ssh_key_is_refused_before_any_host(inventory, calls):
    inventory.write_text(inventory.read_text().replace(str(inventory.parent / "id_ed25519"), "/nonexistent/key"))
    with pytest.raises(Exit) as exc:
        tasks.setup_nfs(ctx(), inventory=str(inventory))
    assert "ssh.key: /nonexistent/key does not exist" in exc.value.message
    assert calls == []


def test_hosts_failed_becomes_exit_1_with_the_host_named(inventory, monkeypatch):
    def boom(inv, plan=False):
        raise HostsFailed("setup-registry", {"node02": "cannot connect to 192.168.20.8:22"})

    monkeypatch.setattr(flows, "setup_registry", boom)
    with pytest.raises(Exit) as exc:
        tasks.setup_registry(ctx(), inventory=str(inventory))
    assert exc.value.code == 1
    assert exc.value.message == ("labkit: setup-registry failed on node02 "
                                 "(node02: cannot connect to 192.168.20.8:22)")


def test_list_and_help_document_the_tasks(capsys):
    Program(namespace=tasks.ns).run(["invoke", "--list"], exit=False)
    out = capsys.readouterr().out
    for name in ("setup-registry", "setup-nfs", "build-images", "doctor"):
        assert name in out
    Program(namespace=tasks.ns).run(["invoke", "--help", "setup-nfs"], exit=False)
    out = capsys.readouterr().out
    assert "-i STRING, --inventory=STRING" in out and "-p, --plan" in out


# ---- Kubernetes tasks (bodies in labkit/flows_kube.py, flows_content.py, flows_verify.py, flows_up.py)

from labkit import flows_content, flows_kube, flows_up, flows_verify  # noqa: E402


def test_scale_options_are_typed_and_default_to_the_inventory(inventory, monkeypatch):
    seen = []
    monkeypatch.setattr(flows_kube, "scale", lambda inv, **kw: seen.append(kw))
    tasks.scale(ctx(), inventory=str(inventory))
    Program(namespace=tasks.ns).run(["invoke", "scale", "-i", str(inventory), "--replicas", "10",
                                     "--partition", "4", "--image-tag", "v2", "--plan"], exit=False)
    assert seen == [dict(replicas=None, image_tag=None, partition=None, plan=False, timeout=600),
                    dict(replicas=10, image_tag="v2", partition=4, plan=True, timeout=600)]
    with pytest.raises(Exit) as exc:
        tasks.scale(ctx(), inventory=str(inventory), replicas="ten")
    assert exc.value.message == "labkit: --replicas must be a whole number 0-1000, got 'ten'"
    with pytest.raises(Exit):
        tasks.scale(ctx(), inventory=str(inventory), partition="-1")


def test_verify_mismatch_exits_1_naming_the_pods(inventory, monkeypatch):
    report = Report(rows=[Row("statefulset-0", 0), Row("statefulset-7", 7, problems=["image tag v1, expected v2"])],
                    problems=[])
    monkeypatch.setattr(flows_verify, "verify", lambda inv, as_json=False: report)
    with pytest.raises(Exit) as exc:
        tasks.verify(ctx(), inventory=str(inventory), json=True)
    assert exc.value.code == 1 and exc.value.message == \
        "labkit: verify failed (1 pod(s) wrong): statefulset-7: image tag v1, expected v2"
    report.rows[1].problems.clear()
    tasks.verify(ctx(), inventory=str(inventory))


def test_verify_failure_names_the_problems_not_just_counts(inventory, monkeypatch):
    # what once read "verify failed: 0 pod(s) wrong (); 6 other problem(s)"
    extra = [f"pod statefulset-{i} (ordinal {i}) exists but the StatefulSet wants 3 replica(s)" for i in range(3, 9)]
    monkeypatch.setattr(flows_verify, "verify", lambda inv, as_json=False: Report(
        rows=[Row(f"statefulset-{i}", i) for i in range(3)], problems=extra))
    with pytest.raises(Exit) as exc:
        tasks.verify(ctx(), inventory=str(inventory))
    assert exc.value.message == ("labkit: verify failed (6 problem(s) with the set): " + "; ".join(extra[:4])
                                 + "; and 2 more")


def test_teardown_passes_purge_and_yes(inventory, monkeypatch):
    seen = []
    monkeypatch.setattr(flows_kube, "teardown", lambda inv, **kw: seen.append(kw))
    Program(namespace=tasks.ns).run(["invoke", "teardown", "-i", str(inventory), "--purge", "--yes"], exit=False)
    assert seen == [dict(purge=True, yes=True, plan=False)]


def test_up_runs_the_whole_flow_in_order(inventory, monkeypatch, calls):
    for module, name in ((flows_kube, "deploy"), (flows_kube, "scale"), (flows_content, "write_v2")):
        monkeypatch.setattr(module, name, lambda inv, _n=name, **kw: calls.append((_n, inv, None)))
    monkeypatch.setattr(flows_verify, "verify", lambda inv, as_json=False: (
        calls.append(("verify", inv, None)), SimpleNamespace(ok=True, rows=[], problems=[]))[1])
    tasks.up(ctx(), inventory=str(inventory))
    assert [c[0] for c in calls] == ["setup_registry", "setup_nfs", "build_images", "deploy", "scale",
                                     "write_v2", "verify"]


def test_up_plan_is_passed_through_and_skips_verify(inventory, monkeypatch):
    seen = []

    def up(inv, plan=False, timeout=600):
        seen.append((plan, timeout))
        return flows_up.UpResult({"verify": "skipped"} if plan else {}, None if plan else bad)

    bad = Report(rows=[Row("statefulset-4", 4, problems=["not curled"])], problems=[])
    monkeypatch.setattr(flows_up, "up", up)
    Program(namespace=tasks.ns).run(["invoke", "up", "-i", str(inventory), "--plan"], exit=False)
    tasks.up(ctx(), inventory=str(inventory), plan=True)  # no Exit: plan mode has no verify report
    assert seen == [(True, 600), (True, 600)]
    with pytest.raises(Exit) as exc:
        tasks.up(ctx(), inventory=str(inventory), timeout=30)
    assert seen[2] == (False, 30)
    assert exc.value.message == "labkit: verify failed (1 pod(s) wrong): statefulset-4: not curled"


LAB_TASKS = sorted(name for name in tasks.ns.task_names if "." not in name and name != "demo")
BAD_INVENTORIES = {
    "missing": (None, "file not found"),
    "malformed": ("hosts: [unclosed\n", "lab.yaml"),
    "wrong shape": ("hosts: 3\n", "hosts"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INVENTORIES))
@pytest.mark.parametrize("name", LAB_TASKS)
def test_every_task_turns_a_bad_inventory_into_clean_lines_naming_the_file(name, kind, tmp_path, capsys):
    text, expected = BAD_INVENTORIES[kind]
    path = tmp_path / "lab.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        Program(namespace=tasks.ns).run(["invoke", name, "-i", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 1, err
    assert "Traceback" not in err and err.startswith("labkit: "), err
    assert all(str(path) in line for line in err.strip().splitlines()) and expected in err, err


def test_the_bad_inventory_test_covers_every_lab_task():
    assert {"up", "deploy", "scale", "verify", "setup-cluster", "teardown"} <= {n.replace("_", "-")
                                                                                for n in LAB_TASKS}


def test_the_seed_pipeline_is_declared_once_in_order(inventory):
    from labkit import inventory as inventory_mod, pipeline

    inv = inventory_mod.load(inventory)
    assert [s.name for s in pipeline.steps(inv)] == ["setup-registry", "setup-nfs", "build-images", "deploy",
                                                     "scale", "write-v2", "verify"]
    offline = inventory_mod.parse(inventory.read_text().replace("images:\n", "images:\n  mirror: true\n", 1)
                                  .replace("kubernetes:\n", "kubernetes:\n  cluster: {create: true}\n", 1),
                                  str(inventory))
    assert [s.name for s in pipeline.steps(offline)] == [s.name for s in pipeline.SEED]
    assert tasks.up.__doc__.startswith(f"The whole seed flow in order: {pipeline.summary()}")
