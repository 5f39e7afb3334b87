"""`invoke up --plan` on a fresh kubeadm twin: every step prints its plan (later steps
say what waits on earlier ones), the command exits 0, and nothing changes on any host. Then, with
the registry and NFS applied, the same command plans build-images against the real registry.

The tests build on each other in file order (one fresh twin for the module, tests/e2e/conftest.py)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

HOSTS = ("master", "node01", "node02")
# What any step of the flow would change, read on each host without labkit.
SNAPSHOT = ("for f in /etc/docker/daemon.json /etc/containerd/config.toml /etc/ganesha/ganesha.conf "
            "/var/lib/labkit/manifests.yaml; do "
            "if [ -e $f ]; then sha256sum $f; else echo absent $f; fi; done; "
            "find /etc/containerd/certs.d -type f -exec sha256sum {} + 2>&1 | sort; "
            "docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Image}} {{.State}}' | sort; "
            "docker images -q --no-trunc | sort; ls -d /data/registry /nfsdata/* 2>&1 | sort; "
            "for u in docker containerd nfs-ganesha rpcbind; do echo $u $(systemctl is-active $u) "
            "$(systemctl show -p ActiveEnterTimestampMonotonic --value $u); done")
# What the cluster holds of the flow's kinds (kubeadm's own objects included: they must not change).
KUBE = ("get statefulset,deployment,service,pvc,pv,storageclass,serviceaccount,clusterrole,clusterrolebinding "
        "-A -o name")


def snapshot(t) -> dict[str, str]:
    state = {h: t.sh(h, SNAPSHOT, check=False) for h in HOSTS}
    state["kube"] = t.kubectl(KUBE)
    return state


def test_up_plan_on_a_fresh_lab_changes_nothing(e2e):
    before = snapshot(e2e)
    for h in HOSTS:  # fresh: no host trusts the registry yet (the twin's daemon.json has other keys)
        assert "insecure-registries" not in e2e.sh(h, "cat /etc/docker/daemon.json 2>/dev/null", check=False)
    assert "registry" not in e2e.sh("master", "docker ps -a --format '{{.Names}}'").split()
    p = e2e.invoke("up", "--plan")
    out = " ".join(p.output.split())  # rich wraps long lines without a terminal
    assert p.returncode == 0
    assert "Traceback" not in p.output and "failed" not in out, p.output[-4000:]
    for text in ("setup-registry: plan (plan mode: nothing will be changed)",
                 "setup-nfs: plan (plan mode: nothing will be changed)",
                 "build-images: would change (after setup-registry) - plan depends on setup-registry being applied",
                 "deploy: plan (plan mode: nothing will be changed)",
                 "scale: would change (after deploy) - plan depends on deploy being applied",
                 "replicas 6 -> 10", "partition 0 -> 4",
                 "write-v2: would change (after scale)", "for ordinals 4-9",
                 "verify: skipped", "up: plan (plan mode: nothing was changed)"):
        assert text in out, f"{text!r} not in:\n{p.output[-4000:]}"
    # the per-host plans name the real changes: the registry container, the export, the manifests
    for text in ("registry container", "docker trusts registry", "containerd trusts registry",
                 "NFS server (nfs-ganesha)", "kubectl apply"):
        assert text in out, text
    after = snapshot(e2e)
    assert after == before
    assert e2e.kubectl("get statefulset -A -o name") == ""


def test_up_plan_after_registry_and_nfs_plans_build_images_against_the_registry(e2e):
    e2e.invoke("setup-registry")
    e2e.invoke("setup-nfs")
    before = snapshot(e2e)
    p = e2e.invoke("up", "--plan")
    out = " ".join(p.output.split())
    assert p.returncode == 0 and "Traceback" not in p.output
    # setup-registry and setup-nfs are applied: their plans say so; build-images asks the registry
    assert "setup-registry no change" in out and "setup-nfs no change" in out, p.output[-4000:]
    assert "build-images: plan (plan mode: nothing will be changed)" in out
    assert "build-images would change" in out and "after setup-registry" not in out
    assert "scale: would change (after deploy)" in out and "verify: skipped" in out
    assert snapshot(e2e) == before
    assert e2e.kubectl("get statefulset -A -o name") == ""
