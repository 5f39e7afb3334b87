"""`invoke demo` (the README's `make demo` after the installs): a kubeadm twin made from nothing,
the whole flow on it to a green verify, then the way to look around it prints actually works."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit import FIRST_SUBNET, cluster_config

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"


@pytest.fixture
def cfg():
    from labtwin.hosts import lab, network

    lab.down(cluster_config())
    c = cluster_config(subnet=network.free_subnet(FIRST_SUBNET))
    yield c
    lab.down(c)


def test_demo_runs_the_whole_flow_and_its_hints_work(cfg):
    env = {**os.environ, "LABTWIN_NAME": cfg.name, "LABTWIN_STATE": str(cfg.state_dir),
           "LABTWIN_SUBNET": str(cfg.subnet), "COLUMNS": "200"}
    p = subprocess.run([str(INVOKE), "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for text in ("1/2  twin up", "2/2  labkit against", "setup-cluster: control plane", "3 node(s) Ready",
                 "4 new PVC/PV pair(s)", "verify: 10/10 pods ok",
                 f"LABTWIN_NAME={cfg.name} invoke twin.ssh master", "a Kubernetes cluster made with kubeadm", "invoke twin.down"):
        assert text in out, text
    # the twin it reports on is the one still up, and the hint reaches kubectl on master
    look = subprocess.run([str(INVOKE), "twin.ssh", "master", "--command", "kubectl get pods -o name"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert look.returncode == 0, look.stderr
    pods = {ln.strip() for ln in look.stdout.splitlines() if ln.startswith("pod/statefulset-")}
    assert pods == {f"pod/statefulset-{o}" for o in range(10)}
