"""The content step: PV -> directory mapping (from spec.nfs.path), and scripts/write-content run for
real on local directories through the exact command string labkit sends."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from labkit import content, expected
from labkit.errors import OperationError
from labkit.facts import kube
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
    plan = expected.content_plan(10, 4, "v1", "v2")
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


def test_write_then_unchanged(export):
    ts = make_targets(export, 3)
    cmd = content.write_command(ts, str(export))
    assert cmd.sudo is True
    r = run(cmd)
    assert r.returncode == 0, r.stderr
    res = content.parse(r.stdout)
    assert [(x.directory, x.result) for x in res] == [(t.directory, "written") for t in ts]
    for t in ts:
        f = Path(t.directory) / "index.html"
        assert f.read_text() == "Version: --v1\n"
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
        assert os.listdir(t.directory) == ["index.html"]  # no temp file left behind
    # second run: nothing to do
    again = content.parse(run(cmd).stdout)
    assert {x.result for x in again} == {"unchanged"}
    # one file drifted (content and mode): only it is rewritten
    f0 = Path(ts[0].directory) / "index.html"
    f0.write_text("Index of /")
    os.chmod(Path(ts[1].directory) / "index.html", 0o600)
    third = content.summarize(ts, content.parse(run(cmd).stdout))
    assert third["written"] == [ts[0].directory, ts[1].directory] and third["unchanged"] == [ts[2].directory]
    assert f0.read_text() == "Version: --v1\n"


def test_v2_step_rewrites_only_rolled_ordinals(export):
    plan = expected.content_plan(6, 4, "v1", "v2")
    ts = make_targets(export, 6)
    run(content.write_command(ts, str(export)))
    rolled = [content.Target(t.ordinal, t.pvc, t.pv, t.directory, plan[t.ordinal]) for t in ts]
    s = content.summarize(rolled, content.parse(run(content.write_command(rolled, str(export))).stdout))
    assert s["written"] == [t.directory for t in ts[4:]]
    assert s["unchanged"] == [t.directory for t in ts[:4]]


def test_one_command_for_many_replicas(export):
    ts = make_targets(export, 100, "v2")
    cmd = content.write_command(ts, str(export))
    r = run(cmd)
    assert r.returncode == 0
    assert len(content.parse(r.stdout)) == 100


def test_script_refuses_escapes(export, tmp_path):
    outside = tmp_path / "etc"
    outside.mkdir()
    (export / "link").symlink_to(outside)
    (export / "ok").mkdir()
    (export / "ok" / "index.html").symlink_to(outside / "passwd")
    targets = [
        content.Target(0, "a", "a", str(outside), "x"),               # not under the export
        content.Target(1, "b", "b", str(export / "link"), "x"),       # symlink out of the export
        content.Target(2, "c", "c", str(export / "missing"), "x"),    # no such directory
        content.Target(3, "d", "d", str(export / "ok"), "x"),         # index.html is a symlink
    ]
    r = run(content.write_command(targets, str(export)))
    assert r.returncode == 1
    res = {x.directory: x for x in content.parse(r.stdout)}
    assert "outside the export" in res[str(outside)].error
    assert "outside the export" in res[str(export / "link")].error
    assert "does not exist" in res[str(export / "missing")].error
    assert "not a regular file" in res[str(export / "ok")].error
    assert all(x.result == "error" for x in res.values())
    assert os.listdir(outside) == []


def test_write_command_validates():
    assert content.write_command([], "/nfsdata") is None
    with pytest.raises(ValueError):
        content.write_command([content.Target(0, "a", "a", "/nfsdata/x;rm", "x")], "/nfsdata")
    with pytest.raises(OperationError, match="NUL"):
        content.write_command([content.Target(0, "a", "a", "/nfsdata/x", "a\0b")], "/nfsdata")


def test_parse_bad_line():
    with pytest.raises(OperationError, match="not JSON"):
        content.parse('{"dir": broken\n')
    assert content.parse("sudo: some banner\n") == []


def test_check_mode_writes_nothing(export):
    ts = make_targets(export, 3)
    run(content.write_command(ts[:1], str(export)))
    r = run(content.write_command(ts, str(export), check=True))
    s = content.summarize(ts, content.parse(r.stdout))
    assert s["unchanged"] == [ts[0].directory]
    assert s["would write"] == [ts[1].directory, ts[2].directory]
    assert not (Path(ts[1].directory) / "index.html").exists()


def test_if_missing_gives_content_only_to_new_replicas(export):
    ts = make_targets(export, 3)
    old = Path(ts[0].directory) / "index.html"
    old.write_text("Version: --v1\n")
    v2 = [content.Target(t.ordinal, t.pvc, t.pv, t.directory, "Version: --v2\n") for t in ts]
    s = content.summarize(v2, content.parse(run(content.write_command(v2, str(export), if_missing=True)).stdout))
    assert s["kept"] == [ts[0].directory] and s["written"] == [ts[1].directory, ts[2].directory]
    assert old.read_text() == "Version: --v1\n"
