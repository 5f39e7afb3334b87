"""The content step: PV -> directory mapping (from spec.nfs.path); the decision per directory as
data (tests/data/operations/content: recorded PVDirectories/WrittenContent facts in, decisions and
writes out); and scripts/write-content run for real on local directories through the exact
command string labkit sends."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from labkit import content, expected
from labkit.operations import content as content_ops
from labkit.errors import OperationError
from labkit.facts import content as content_facts, kube
from labkit.facts.base import FactResult

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "data" / "facts" / "kube"


def recorded(name, fact):
    return fact.process(FactResult(json.dumps(json.loads((FACTS / f"{name}.json").read_text())["stdout"])))


PVCS = recorded("pvc-bound", kube.PVCs("default", "test-statefulset-"))
PVS = recorded("pv-bound", kube.PVs())


def pv(path, server="192.168.20.6", name="pvc-1"):
    return kube.PV(name, "Bound", "default", "test-statefulset-0", server, path, "Retain")


def test_directories_come_from_spec_nfs_path():
    plan = {i: expected.content_for("v1" if i < 4 else "v2") for i in range(10)}
    ts = content.targets(PVCS, PVS, plan, "test-statefulset-", "/nfsdata", "192.168.20.6")
    assert [t.ordinal for t in ts] == list(range(10))
    by_pv = {v.name: v for v in PVS}
    for t in ts:
        assert t.pvc == f"test-statefulset-{t.ordinal}"
        assert t.directory == by_pv[t.pv].nfs_path  # export == local path on the server
        assert t.content == ("Version: --v1\n" if t.ordinal < 4 else "Version: --v2\n")


def test_local_export_differs():
    d = content.local_directory(pv("/nfsdata/default-x-pvc-1"), "/nfsdata", "192.168.20.6", "/srv/export")
    assert d == "/srv/export/default-x-pvc-1"


@pytest.mark.parametrize("path,server,msg", [
    ("/other/default-x", "192.168.20.6", "outside the export /nfsdata"),
    ("/nfsdata", "192.168.20.6", "outside the export"),
    ("/nfsdata/../etc", "192.168.20.6", "not a normalised path"),
    ("/nfsdata/a b", "192.168.20.6", "no spaces or shell metacharacters"),
    ("/nfsdata/x", "10.0.0.9", "lives on NFS server 10.0.0.9"),
])
def test_local_directory_refuses(path, server, msg):
    with pytest.raises(OperationError, match=msg):
        content.local_directory(pv(path, server), "/nfsdata", "192.168.20.6")


def test_targets_errors():
    plan = {0: "x"}
    pending = [kube.PVC("test-statefulset-0", "Pending", None, "test-sc")]
    with pytest.raises(OperationError, match="PVC test-statefulset-0 is Pending"):
        content.targets(pending, PVS, plan, "test-statefulset-", "/nfsdata", "192.168.20.6")
    with pytest.raises(OperationError, match="PVC test-statefulset-11 does not exist"):
        content.targets(PVCS, PVS, {11: "x"}, "test-statefulset-", "/nfsdata", "192.168.20.6")
    with pytest.raises(OperationError, match="does not exist"):
        content.targets(PVCS, [], plan, "test-statefulset-", "/nfsdata", "192.168.20.6")
    shared = [kube.PV(v.name, v.phase, v.claim_namespace, v.claim_name, v.nfs_server, "/nfsdata/same", v.reclaim_policy)
              for v in PVS]
    with pytest.raises(OperationError, match="share the directory /nfsdata/same"):
        content.targets(PVCS, shared, {0: "a", 1: "b"}, "test-statefulset-", "/nfsdata", "192.168.20.6")
    with pytest.raises(OperationError, match="claimed by default/test-statefulset-1"):
        swapped = {v.claim_name: v for v in PVS}
        bad = [kube.PV(swapped["test-statefulset-0"].name, "Bound", "default", "test-statefulset-1",
                       "192.168.20.6", "/nfsdata/a", "Retain")]
        content.targets(PVCS, bad, {0: "a"}, "test-statefulset-", "/nfsdata", "192.168.20.6")


# ---- the decision, as data ------------------------------------------------------------

OPS = ROOT / "tests" / "data" / "operations" / "content"
CASES = sorted(OPS.glob("*.json"))
FACT_DATA = ROOT / "tests" / "data" / "facts" / "content"


def recorded_fact(name):
    case = json.loads((FACT_DATA / f"{name}.json").read_text())
    fact = getattr(content_facts, case["fact"])(*case["args"])
    return fact.process(FactResult(case["stdout"], case["stderr"], case["exited"]))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_decision(path):
    case = json.loads(path.read_text())
    targets = [content.Target(**t) for t in case["targets"]]
    directories, records = recorded_fact(case["directories"]), recorded_fact(case["records"])
    if "raises" in case:
        with pytest.raises(OperationError) as err:
            content_ops.decide(targets, directories, records, if_missing=case["if_missing"])
        assert str(err.value) == case["raises"]
        return
    decisions = content_ops.decide(targets, directories, records, if_missing=case["if_missing"])
    assert {d.target.directory: d.action for d in decisions} == case["decisions"]
    changes = list(content_ops.write_pages(decisions, targets[0].directory.rsplit("/", 1)[0]))
    if not case["writes"]:
        assert changes == []  # nothing to do: the runner says "no change"
        return
    [cmd] = changes
    assert cmd.description == case["description"] and cmd.sudo
    writes = [content.Target(0, "", "", d, c) for d, c in case["writes"]]
    assert cmd.command == content_ops.write_command(writes, targets[0].directory.rsplit("/", 1)[0]).command


def test_every_decision_is_covered_by_data():
    seen = {a for p in CASES if "decisions" in json.loads(p.read_text())
            for a in json.loads(p.read_text())["decisions"].values()}
    assert seen == {content_ops.WRITE, content_ops.UNCHANGED, content_ops.KEPT, content_ops.RECORD}


# ---- scripts/write-content for real ----------------------------------------------------

def run(cmd):
    # the remote login shell runs the command string; here a local bash does
    return subprocess.run(["bash", "-c", cmd.command], capture_output=True, text=True, timeout=60)


@pytest.fixture
def export(tmp_path):
    e = tmp_path / "nfsdata"
    e.mkdir()
    return e


def make_targets(export, n, tag="v1"):
    ts = []
    for i in range(n):
        d = export / f"default-test-statefulset-{i}-pvc-{i:04d}"
        d.mkdir(mode=0o777, exist_ok=True)
        ts.append(content.Target(i, f"test-statefulset-{i}", f"pvc-{i}", str(d), expected.content_for(tag)))
    return ts


def read_state(export, ts, records):
    """The facts the next run would plan from, read by their real commands."""
    dirs = content_facts.PVDirectories(str(export), [t.directory for t in ts])
    recs = content_facts.WrittenContent(str(records))
    got = [subprocess.run(["sh", "-c", f.build()], capture_output=True, text=True) for f in (dirs, recs)]
    return (dirs.process(FactResult(got[0].stdout, got[0].stderr, got[0].returncode)),
            recs.process(FactResult(got[1].stdout)))


def test_write_then_nothing_to_do(export, content_records):
    ts = make_targets(export, 3)
    cmd = content_ops.write_command(ts, str(export))
    assert cmd.sudo is True
    r = run(cmd)
    assert r.returncode == 0, r.stderr
    for t in ts:
        f = Path(t.directory) / "index.html"
        assert f.read_text() == "Version: --v1\n"
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
        assert os.listdir(t.directory) == ["index.html"]  # no temp file left behind
    # the next run reads the facts and has nothing to do
    decisions = content_ops.decide(ts, *read_state(export, ts, content_records))
    assert {d.action for d in decisions} == {content_ops.UNCHANGED}
    assert list(content_ops.write_pages(decisions, str(export))) == []
    # one page drifted in content, one in mode: only those are written again
    f0 = Path(ts[0].directory) / "index.html"
    f0.write_text("Index of /")
    os.chmod(Path(ts[1].directory) / "index.html", 0o600)
    decisions = content_ops.decide(ts, *read_state(export, ts, content_records))
    assert [d.action for d in decisions] == ["write", "write", "unchanged"]
    inode = (Path(ts[2].directory) / "index.html").stat().st_ino
    assert run(next(content_ops.write_pages(decisions, str(export)))).returncode == 0
    assert f0.read_text() == "Version: --v1\n"
    assert (Path(ts[2].directory) / "index.html").stat().st_ino == inode  # not rewritten


def test_one_command_for_many_replicas(export, content_records):
    ts = make_targets(export, 100, "v2")
    r = run(content_ops.write_command(ts, str(export)))
    assert r.returncode == 0, r.stderr
    assert len(list(export.rglob("index.html"))) == 100
    assert len(list(content_records.iterdir())) == 100


def test_script_refuses_escapes_at_write_time(export, tmp_path):
    # the planner refuses these from the facts; the script checks again when it writes
    outside = tmp_path / "etc"
    outside.mkdir()
    (export / "link").symlink_to(outside)
    (export / "ok").mkdir()
    (export / "ok" / "index.html").symlink_to(outside / "passwd")
    (export / "good").mkdir()
    targets = [
        content.Target(0, "a", "a", str(outside), "x"),               # not under the export
        content.Target(1, "b", "b", str(export / "link"), "x"),       # symlink out of the export
        content.Target(2, "c", "c", str(export / "missing"), "x"),    # no such directory
        content.Target(3, "d", "d", str(export / "ok"), "x"),         # index.html is a symlink
        content.Target(4, "e", "e", str(export / "good"), "x"),       # fine: still written
    ]
    r = run(content_ops.write_command(targets, str(export)))
    assert r.returncode == 1
    errors = dict(line.removeprefix("write-content: ").split(": ", 1) for line in r.stderr.splitlines())
    assert "outside the export" in errors[str(outside)]
    assert "outside the export" in errors[str(export / "link")]
    assert "does not exist" in errors[str(export / "missing")]
    assert "not a regular file" in errors[str(export / "ok")]
    assert str(export / "good") not in errors and (export / "good" / "index.html").read_text() == "x"
    assert os.listdir(outside) == []


def test_write_command_validates():
    with pytest.raises(ValueError):
        content_ops.write_command([content.Target(0, "a", "a", "/nfsdata/x;rm", "x")], "/nfsdata")
    with pytest.raises(OperationError, match="NUL"):
        content_ops.write_command([content.Target(0, "a", "a", "/nfsdata/x", "a\0b")], "/nfsdata")
    with pytest.raises(ValueError):
        content_facts.PVDirectories("/nfsdata", ["/nfsdata/$(reboot)"])


def test_purge_removes_what_is_there_and_refuses_what_leads_out():
    each = recorded_fact("pv-directories-each-state")
    inside = {d: s for d, s in each.items() if s.state != "outside"}
    [cmd] = content_ops.purge(inside)
    removed = cmd.command.removeprefix("rm -rf -- ").split()
    assert removed == sorted(d for d, s in inside.items() if s.state != "missing") and len(removed) == 6
    assert cmd.description == "remove 6 PV directories (the purged PVs' data)"
    assert list(content_ops.purge({d: s for d, s in each.items() if s.state == "missing"})) == []
    with pytest.raises(OperationError, match="resolves to /tmp/rec/outside, outside the export"):
        list(content_ops.purge(each))
