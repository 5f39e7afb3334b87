"""Test harness for the controllers: the real apiserver twin on a free loopback port, the
controller-manager in-process, and a fake kubelet that plays a node (marks its pods Running/Ready
through the status subresource and finishes deletions) so ordering can be observed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from labtwin.kube.client import ApiError, Client, Informer
from labtwin.kube.controllers.common import deepcopy, name_of, now, ns_of, uid_of

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".venv" / "bin" / "kubectl"


PROVISIONER = "k8s-sigs.io/nfs-subdir-external-provisioner"


# the seed's manifests, shared by these tests and tests/twin/test_kubelet.py
def nfs_class(reclaim: str) -> str:
    return f"""apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: nfs-client}}
provisioner: {PROVISIONER}
reclaimPolicy: {reclaim}
parameters: {{archiveOnDelete: "false"}}
"""


def nfs_provisioner(nfs_server: str, mount: bool = True) -> str:
    """The provisioner Deployment: the controller-manager provisions for it once its pod runs.
    mount=False leaves out the export's volume, so a real kubelet too would start the pod while
    the NFS server is down."""
    volume = f"""        volumeMounts: [{{name: nfs-client-root, mountPath: /persistentvolumes}}]
      volumes:
      - {{name: nfs-client-root, nfs: {{server: {nfs_server}, path: /nfsdata}}}}
""" if mount else ""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: nfs-client-provisioner, labels: {{app: nfs-client-provisioner}}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: nfs-client-provisioner}}}}
  template:
    metadata: {{labels: {{app: nfs-client-provisioner}}}}
    spec:
      containers:
      - name: nfs-client-provisioner
        image: registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2
        env:
        - {{name: PROVISIONER_NAME, value: {PROVISIONER}}}
        - {{name: NFS_SERVER, value: {nfs_server}}}
        - {{name: NFS_PATH, value: /nfsdata}}
{volume}"""


def web_statefulset(replicas: int, image: str = "10.213.20.6:5000/web:v1", container: str = "") -> str:
    """StatefulSet `web` with one nfs-client claim `www` per pod; `container` adds lines
    (indented by 8) to its container."""
    return f"""apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 80, name: http}}]
        volumeMounts: [{{name: www, mountPath: /usr/local/apache2/htdocs}}]
{container}  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec: {{storageClassName: nfs-client, accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 100Mi}}}}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "apiserver.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "labtwin.kube.apiserver", "--bind", "127.0.0.1",
                                      "--port", str(self.port), "--data", str(tmp / "data")],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        c = Client(self.url, timeout=2)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited: {(tmp / 'apiserver.log').read_text()[-2000:]}")
            try:
                c.request("GET", "/version")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("apiserver did not answer")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class FakeKubelet:
    """Plays node `name`: registers it Ready; a bound pod becomes Running+Ready after `delay`
    (unless its name starts with a prefix in `hold`), a deleted pod is finally removed with grace 0."""

    def __init__(self, client: Client, name: str = "node01", delay: float = 0.05):
        self.client, self.name, self.delay = client, name, delay
        self.hold: set[str] = set()
        self.ready_order: list[str] = []
        self.deleted_order: list[str] = []
        self.stop = threading.Event()
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {"podCIDR": "10.244.1.0/24"}}
        node = client.create("nodes", node)
        node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                          "lastHeartbeatTime": now()}],
                          "addresses": [{"type": "InternalIP", "address": "10.213.20.7"}]}
        client.update_status("nodes", node)
        self.pods = Informer(client, "pods", field_selector=f"spec.nodeName={name}")
        self.pods.start()
        self.pods.wait_synced(10)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        ip = 2
        ips: dict[str, str] = {}
        seen_deleted: set = set()
        seen_ready: set = set()
        beat = time.monotonic()
        while not self.stop.wait(self.delay):
            if time.monotonic() - beat > 5:  # heartbeat, or the node-lifecycle controller marks us Unknown
                beat = time.monotonic()
                try:
                    n = self.client.get("nodes", self.name)
                    n["status"]["conditions"][0]["lastHeartbeatTime"] = now()
                    self.client.update_status("nodes", n)
                except (ApiError, OSError):
                    pass
            for p in self.pods.items():
                n = name_of(p)
                try:
                    if p["metadata"].get("deletionTimestamp"):
                        if (n, uid_of(p)) not in seen_deleted:  # record before the delete shows in lists
                            seen_deleted.add((n, uid_of(p)))
                            self.deleted_order.append(n)
                        self.client.delete("pods", n, ns_of(p), grace_period_seconds=0, uid=uid_of(p))
                        continue
                    if any(n.startswith(h) for h in self.hold) or p.get("status", {}).get("phase") == "Running":
                        continue
                    if uid_of(p) not in ips:
                        ip += 1
                        ips[uid_of(p)] = f"10.244.1.{ip}"
                    q = deepcopy(p)
                    ts = now()
                    q["status"] = {**q.get("status", {}), "phase": "Running", "podIP": ips[uid_of(p)],
                                   "hostIP": "10.213.20.7", "startTime": ts,
                                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": ts}
                                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                                   "containerStatuses": [{"name": c["name"], "image": c["image"], "ready": True,
                                                          "started": True, "restartCount": 0,
                                                          "state": {"running": {"startedAt": ts}}}
                                                         for c in p["spec"]["containers"]]}
                    if uid_of(p) not in seen_ready:  # once per pod, recorded before it shows as Ready
                        seen_ready.add(uid_of(p))
                        self.ready_order.append(n)
                    self.client.update_status("pods", q)
                except (ApiError, OSError):
                    pass  # stale cache or server restarting: the next round sees the new object

    def shutdown(self):
        self.stop.set()
        self.pods.stop.set()


def kubectl(server: str, home: Path, *args: str, timeout: float = 60, binary: Path | None = None) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "kubeconfig"
    cfg.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{server: "{server}"}}}}]
contexts: [{{name: t, context: {{cluster: t, user: u, namespace: default}}}}]
users: [{{name: u, user: {{}}}}]
current-context: t
""")
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(cfg)}
    return subprocess.run([str(binary or KUBECTL), *args], capture_output=True, text=True, env=env, timeout=timeout)


def wait_for(fn, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
