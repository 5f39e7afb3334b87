"""verify catches real faults, and names the pod: a wrong index.html on one PV, a pod that does
not answer. Each fault is undone afterwards and verify is green again (so it is the fault, not
the setup, that failed it)."""
from __future__ import annotations

import json
import shlex

import pytest

from e2ekit import seed_flow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def t(e2e):
    seed_flow(e2e)
    return e2e


def _verify(t):
    res = t.invoke("verify", "--json", check=False)
    start = res.stdout.index("{")
    return res.returncode, json.loads(res.stdout[start:]), res.output


def _row(report, pod):
    return next(r for r in report["rows"] if r["pod"] == pod)


def test_wrong_content_on_one_pv_fails_naming_that_pod(t):
    d = t.pv_dirs()["test-statefulset-7"]
    page = f"{d}/index.html"
    t.sh("master", f"cp {shlex.quote(page)} /root/index.html.good && printf 'Version: --v1\\n' > {shlex.quote(page)}")
    try:
        rc, report, _ = _verify(t)
        assert rc == 1 and report["ok"] is False
        assert [r["pod"] for r in report["rows"] if not r["ok"]] == ["statefulset-7"]
        assert _row(report, "statefulset-7")["actual"].strip() == "Version: --v1"
        plain = t.invoke("verify", check=False)
        assert plain.returncode == 1
        assert "verify failed (1 pod(s) wrong): statefulset-7: " in " ".join(plain.output.split())
    finally:
        t.sh("master", f"cp /root/index.html.good {shlex.quote(page)}")
    rc, report, out = _verify(t)
    assert rc == 0 and report["ok"] is True, out


def test_a_pod_that_does_not_answer_fails_naming_that_pod(t):
    pod = t.pods()[2]
    node = pod["spec"]["nodeName"]
    runtime, cid = pod["status"]["containerStatuses"][0]["containerID"].split("://")
    assert runtime == "containerd", runtime
    task = f"ctr -n k8s.io task {{}} {shlex.quote(cid)}"
    t.sh(node, task.format("pause"))  # the container stays, its IP stays, nothing answers
    try:
        assert "PAUSED" in t.sh(node, f"ctr -n k8s.io task ls | grep {shlex.quote(cid)}")
        rc, report, _ = _verify(t)
        assert rc == 1 and report["ok"] is False
        assert [r["pod"] for r in report["rows"] if not r["ok"]] == ["statefulset-2"]
        assert "timed out" in json.dumps(_row(report, "statefulset-2"))
    finally:
        t.sh(node, task.format("resume"))
    t.wait_for("verify green again", lambda: _verify(t)[0] == 0, timeout=60, interval=2)
