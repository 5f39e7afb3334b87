"""Helpers of the cluster tests: a kubeadm twin and the built kubectl on its master."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"
CLUSTER_NAME = "ltk8s"
FIRST_SUBNET = os.environ.get("LABTWIN_CLUSTER_SUBNET") or "10.213.49.0/24"  # the first /24 tried


def cluster_config(workers: int = 2, subnet: str = FIRST_SUBNET):
    from labtwin.hosts.config import STATE_ROOT, TwinConfig

    name = os.environ.get("LABTWIN_CLUSTER_NAME") or CLUSTER_NAME
    return TwinConfig.from_env(name=name, state=str(STATE_ROOT / name), subnet=subnet, kubeadm=True,
                               workers=workers)


class Cluster:
    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def hosts(self) -> dict[str, str]:
        return {h.name: str(h.address) for h in self.cfg.hosts}

    @property
    def inventory_path(self):
        return self.cfg.inventory_path

    def ssh(self, host: str, cmd: str, timeout: float = 120) -> tuple[int, str, str]:
        """Run `cmd` inside `host` (nsenter into its namespaces; not SSH, not labkit)."""
        from labtwin.hosts import lab
        from labtwin.hosts.host import run_in

        pid = lab.init_pid(self.cfg, self.cfg.host(host))
        assert pid is not None, f"twin host {host} is not running"
        return run_in(pid, cmd, timeout=timeout)

    def sh(self, host: str, cmd: str, timeout: float = 120) -> str:
        rc, out, err = self.ssh(host, cmd, timeout=timeout)
        assert rc == 0, f"{host}: {cmd!r} failed ({rc}): {err or out}"
        return out

    def kubectl(self, args: str, timeout: float = 120) -> str:
        return self.sh("master", f"kubectl {args}", timeout=timeout)

    def kubectl_json(self, args: str) -> dict:
        return json.loads(self.kubectl(f"{args} -o json"))

    @property
    def registry(self) -> str:
        return f"{self.hosts['master']}:5000"

    def registry_by_hand(self) -> str:
        """The seed's step 1 as its reader types it, and an image pushed from master's docker
        (127.0.0.1 needs no trust in docker); returns the image's name in the lab registry."""
        self.sh("master", "docker run -d --name registry -p 5000:5000 -v /data/registry:/var/lib/registry "
                          "--restart always registry:2 >/dev/null && "
                          "for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done && "
                          "docker tag httpd:2.4 127.0.0.1:5000/web:v1 && docker push -q 127.0.0.1:5000/web:v1 >/dev/null")
        return f"{self.registry}/web:v1"

    def wait_for(self, what: str, check, timeout: float = 90, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)

    def events_for(self, pod: str) -> list[tuple[str, str]]:
        ev = self.kubectl_json(f"get events --field-selector involvedObject.name={shlex.quote(pod)}")
        return [(e["reason"], e.get("message", "")) for e in ev["items"]]




def invoke(cluster: Cluster, task: str, *args: str) -> str:
    """`invoke TASK -i <the twin's inventory> ARGS...` as a user runs it; fails the test unless it exits 0."""
    p = subprocess.run([str(INVOKE), task, "-i", str(cluster.inventory_path), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"invoke {task} exited {p.returncode}:\n{out[-4000:]}"
    return out
