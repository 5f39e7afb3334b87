"""Expected versions per ordinal, and verify() on recorded pods/PVC/PV/curl outputs."""
from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from labkit import expected, verify
from labkit.errors import OperationError
from labkit.facts import kube
from labkit.facts.base import FactResult
from factdata import revisions_of

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "data" / "facts" / "kube"


def recorded(name, fact):
    return fact.process(FactResult(json.dumps(json.loads((FACTS / f"{name}.json").read_text())["stdout"])))


PODS = recorded("pods-rolled-out", kube.StatefulSetPods("default", "statefulset", "statefulset"))
PVCS = recorded("pvc-bound", kube.PVCs("default", "test-statefulset-"))
PVS = recorded("pv-bound", kube.PVs())
STS = recorded("sts-rolled-out", kube.StatefulSetFact("default", "statefulset"))
# the ControllerRevisions of the revisions those pods carry (recorded before labkit read them)
REVS = kube.ControllerRevisions("default", "statefulset", "statefulset").process(FactResult(json.dumps(
    revisions_of(json.loads((FACTS / "pods-rolled-out.json").read_text())["stdout"]))))


# ---- expected -------------------------------------------------------------------

def test_seed_rollout_expectations():
    exp = expected.from_revisions(STS, PODS, REVS)
    assert [e.tag for e in exp] == ["v1"] * 4 + ["v2"] * 6
    assert [e.content for e in exp] == ["Version: --v1\n"] * 4 + ["Version: --v2\n"] * 6
    assert {e.revision for e in exp[:4]} == {STS.current_revision}
    assert {e.revision for e in exp[4:]} == {STS.update_revision}
    assert STS.current_revision != STS.update_revision


def test_initial_deploy_all_v1():
    sts = recorded("sts-initial", kube.StatefulSetFact("default", "statefulset"))
    exp = expected.from_revisions(sts, [], {sts.update_revision: sts.image})
    assert len(exp) == 6 and {e.tag for e in exp} == {"v1"}
    assert {e.revision for e in exp} == {sts.update_revision}


@pytest.mark.parametrize("replicas,partition,tags", [
    (10, 4, ["v1"] * 4 + ["v2"] * 6),
    (10, 0, ["v2"] * 10),
    (10, 10, ["v1"] * 10),
    (3, 4, ["v1"] * 3),        # scaled down below the partition
    (0, 0, []),
])
def test_tags_by_ordinal_of_pods_made_now(replicas, partition, tags):
    # no pod yet: below the partition a pod is made at the current revision, above it at the update one
    sts = dataclasses.replace(STS, replicas=replicas, partition=partition)
    assert [e.tag for e in expected.from_revisions(sts, [], REVS)] == tags


def test_a_raised_partition_never_rolls_a_pod_back():
    sts = dataclasses.replace(STS, partition=10)  # pods 4-9 run the update revision already
    assert [e.tag for e in expected.from_revisions(sts, PODS, REVS)] == ["v1"] * 4 + ["v2"] * 6


def test_pages_only_rolled():
    assert expected.pages(STS, PODS, REVS, only_rolled=True) == {i: "Version: --v2\n" for i in range(4, 10)}
    assert expected.pages(STS, PODS, REVS) == {i: f"Version: --v{1 + (i >= 4)}\n" for i in range(10)}
    no_rollout = dataclasses.replace(STS, replicas=2, partition=0, update_revision=STS.current_revision)
    assert expected.pages(no_rollout, [], REVS) == {0: "Version: --v1\n", 1: "Version: --v1\n"}


def test_an_unknown_update_revision_is_refused():
    with pytest.raises(OperationError, match="not among its ControllerRevisions"):
        expected.from_revisions(dataclasses.replace(STS, update_revision="statefulset-zzz"), PODS, REVS)


# ---- curl -----------------------------------------------------------------------

def test_parse_recorded_curl():
    got = verify.parse_curl((FACTS / "curl-empty-dirs.txt").read_text())
    assert len(got) == 10
    assert got["10.244.2.13"].error == "connection refused"
    assert got["10.244.1.10"].body == "Version: --v1\n" and got["10.244.1.10"].error is None
    assert "Index of /" in got["10.244.1.16"].body


def test_curl_command_is_one_command_and_quoted():
    cmd = verify.curl_all_command([p.pod_ip for p in PODS])
    assert cmd.command.startswith("sh -c ") and cmd.sudo is False
    assert cmd.command.count("http://") == 10
    big = verify.curl_all_command([f"10.244.{i // 250}.{i % 250}" for i in range(100)])
    assert big.command.count("http://") == 100
    with pytest.raises(ValueError):
        verify.curl_all_command(["10.0.0.1; reboot"])
    with pytest.raises(OperationError):
        verify.curl_all_command([])
    assert "http://[fd00::5]:80/" in verify.curl_all_command(["fd00::5"]).command


@pytest.fixture
def local_server():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"Version: --v2\n\ttab line\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_curl_command_runs_for_real(local_server):
    # 127.0.0.1 answers; 127.0.0.2 (also loopback) has nothing on that port
    cmd = verify.curl_all_command(["127.0.0.1", "127.0.0.2"], port=local_server, timeout=3)
    r = subprocess.run(["bash", "-c", cmd.command], capture_output=True, text=True, timeout=30)
    got = verify.parse_curl(r.stdout)
    assert got["127.0.0.1"].body == "Version: --v2\n\ttab line\n" and got["127.0.0.1"].http_code == 200
    assert got["127.0.0.2"].error == "connection refused" and got["127.0.0.2"].http_code == 0


def test_curl_command_many_pods_in_order(local_server):
    ips = [f"127.0.0.{i}" for i in range(2, 32)] + ["127.0.0.1"]
    cmd = verify.curl_all_command(ips, port=local_server, timeout=3)
    r = subprocess.run(["bash", "-c", cmd.command], capture_output=True, text=True, timeout=60)
    lines = r.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"http://{ip}:{local_server}/" for ip in ips]
    got = verify.parse_curl(r.stdout)
    assert got["127.0.0.1"].error is None and all(got[ip].exit_code == 7 for ip in ips[:-1])


# ---- verify ---------------------------------------------------------------------

def run_verify(curl_file, pods=PODS, pvcs=PVCS, pvs=PVS):
    curls = verify.parse_curl((FACTS / curl_file).read_text())
    return verify.verify(pods, pvcs, pvs, curls, expected.from_revisions(STS, PODS, REVS),
                         set_name="statefulset", claim_template="test", storage_class="test-sc")


def test_seed_end_state_verifies():
    rep = run_verify("curl-rolled-out.txt")
    assert rep.ok, rep.to_dict()
    r4 = rep.rows[4]
    assert (r4.pod, r4.node, r4.pod_ip, r4.image_tag, r4.pvc) == ("statefulset-4", "node01", "10.244.1.14", "v2", "test-statefulset-4")
    assert r4.pv_directory.startswith("/nfsdata/default-test-statefulset-4-pvc-")
    assert (r4.expected, r4.actual, r4.result) == ("Version: --v2", "Version: --v2", "ok")
    assert len({r.pv_directory for r in rep.rows}) == 10
    d = rep.to_dict()
    assert d["ok"] is True and len(d["rows"]) == 10 and json.dumps(d)


def test_empty_directories_and_dead_pod_fail():
    rep = run_verify("curl-empty-dirs.txt")
    assert not rep.ok
    bad = {r.pod: r.result for r in rep.rows if not r.ok}
    assert set(bad) == {"statefulset-3", "statefulset-6", "statefulset-7", "statefulset-8", "statefulset-9"}
    assert bad["statefulset-3"] == "connection refused"
    assert bad["statefulset-6"] == "content differs"


def test_wrong_image_and_pending_pvc_and_missing_pod():
    pods = [dataclasses.replace(p, tag="v1") if p.ordinal == 5 else p for p in PODS if p.ordinal != 9]
    pvcs = [dataclasses.replace(c, phase="Pending", volume=None) if c.name == "test-statefulset-8" else c for c in PVCS]
    rep = run_verify("curl-rolled-out.txt", pods=pods, pvcs=pvcs)
    bad = {r.pod: r.result for r in rep.rows if not r.ok}
    assert bad["statefulset-5"] == "image tag v1, expected v2"
    assert bad["statefulset-8"] == "PVC Pending"
    assert bad["statefulset-9"] == "pod missing"
    assert set(bad) == {"statefulset-5", "statefulset-8", "statefulset-9"}


def test_shared_pv_directory_is_reported():
    first = PVS[0].nfs_path
    pvs = [dataclasses.replace(v, nfs_path=first) for v in PVS]
    rep = run_verify("curl-rolled-out.txt", pvs=pvs)
    assert not rep.ok
    assert any(p.startswith(f"directory {first} is shared by") for p in rep.problems)


def test_extra_pod_is_reported():
    extra = dataclasses.replace(PODS[0], name="statefulset-10", ordinal=10)
    rep = run_verify("curl-rolled-out.txt", pods=list(PODS) + [extra])
    assert rep.problems == ["pod statefulset-10 (ordinal 10) exists but the StatefulSet wants 10 replica(s)"]


def _recorded(name, fact):
    case = json.loads((FACTS / f"{name}.json").read_text())
    return fact.process(FactResult(json.dumps(case["stdout"], indent=4)))


SCALING_STS = _recorded("sts-seed-scaling-down", kube.StatefulSetFact("default", "statefulset"))
SCALING_PODS = _recorded("pods-seed-scaling-down", kube.StatefulSetPods("default", "statefulset", "statefulset"))
REVISIONS = _recorded("revisions-seed-scaling-down", kube.ControllerRevisions("default", "statefulset", "statefulset"))
V1, V2 = "statefulset-84758b6d8", "statefulset-677c9974b9"  # the recording's revisions (ljz:v1, ljz:v2)


def test_from_revisions_on_a_recorded_scale_down():
    # replicas 2, partition 4: both ordinals below the partition keep their pods' revision (v1)
    exp = expected.from_revisions(SCALING_STS, SCALING_PODS, REVISIONS)
    assert [(e.ordinal, e.tag, e.revision, e.content) for e in exp] == [
        (0, "v1", V1, "Version: --v1\n"), (1, "v1", V1, "Version: --v1\n")]


def _at(pods, revision_of: dict[int, str]):
    return [dataclasses.replace(p, revision=revision_of.get(p.ordinal, p.revision)) for p in pods]


@pytest.mark.parametrize("step, replicas, partition, current, update, pod_revisions, tags", [
    # the seed: 0-3 on v1, 4-9 on v2
    ("seed", 10, 4, V1, V2, {}, ["v1"] * 4 + ["v2"] * 6),
    # scale --partition 0: the rollout finished, currentRevision is the update revision
    ("full rollout", 10, 0, V2, V2, {o: V2 for o in range(10)}, ["v2"] * 10),
    # then scale --replicas 3 puts partition 4 back: a partition never rolls a pod back
    ("scale down", 3, 4, V2, V2, {o: V2 for o in range(10)}, ["v2"] * 3),
    # a pod below the partition still on the old revision keeps it
    ("mid rollout", 6, 4, V1, V2, {2: V2}, ["v1", "v1", "v2", "v1", "v2", "v2"]),
    # scale up: a new ordinal below the partition gets the current revision, above it the update one
    ("scale up", 6, 4, V1, V2, {}, ["v1"] * 4 + ["v2"] * 2),
])
def test_expected_image_follows_the_controller_not_the_ordinal_rule(step, replicas, partition, current, update,
                                                                     pod_revisions, tags):
    sts = dataclasses.replace(SCALING_STS, replicas=replicas, partition=partition, current_revision=current,
                              update_revision=update)
    pods = _at([p for p in SCALING_PODS if p.ordinal < min(replicas, 7)], pod_revisions)
    assert [e.tag for e in expected.from_revisions(sts, pods, REVISIONS)] == tags, step


def test_from_revisions_refuses_an_unknown_update_revision():
    sts = dataclasses.replace(SCALING_STS, update_revision="statefulset-gone")
    with pytest.raises(OperationError, match="update revision 'statefulset-gone' is not among its ControllerRevisions"):
        expected.from_revisions(sts, SCALING_PODS, REVISIONS)


def test_verify_expects_what_labkit_last_wrote_to_the_pv():
    exp = expected.from_revisions(STS, PODS, REVS)
    pv = {v.claim_name: v for v in PVS}["test-statefulset-0"]
    pod0 = next(p for p in PODS if p.ordinal == 0)
    curls = {pod0.pod_ip: verify.CurlResult(pod0.pod_ip, 200, 0, "Version: --v2\n")}
    report = verify.verify([pod0], PVCS, PVS, curls, exp[:1], set_name="statefulset", claim_template="test",
                           written={pv.nfs_path: "Version: --v2\n"})
    assert report.rows[0].expected == "Version: --v2" and "content differs" not in report.rows[0].problems
    report = verify.verify([pod0], PVCS, PVS, curls, exp[:1], set_name="statefulset", claim_template="test")
    assert "content differs" in report.rows[0].problems  # without the record: v1 by its image
