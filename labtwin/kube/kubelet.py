"""The twin's kubelet: one per node, an HTTP client of the apiserver that runs the node's pods as
containers in the node's own dockerd.

    python -m labtwin.kube.kubelet --config /etc/labtwin/kubelet.json

kubelet.json: {"server": "http://10.213.20.6:6443", "node_name": "node01", "node_ip": "10.213.20.7",
"pod_cidr": "10.244.1.0/24", "nfs_mounts": {"10.213.20.6:/nfsdata": "/var/lib/labtwin-nfs"}}

What it does like the real one: registers its Node and keeps it Ready; watches its pods
(fieldSelector spec.nodeName); pulls with the node's own docker configuration (a refused pull shows
ErrImagePull then ImagePullBackOff with the runtime's message); gives each pod an IP of the node's
pod CIDR on the `podnet` bridge (cni0); mounts a PV's NFS directory (the node-local view of the
export, see nfs_mounts) at the volumeMount path; probes readiness over HTTP from the node; restarts
crashed containers with back-off; reports phase, conditions and containerStatuses; on a pod's
deletionTimestamp stops its containers within the grace period and then deletes the pod for good.
It only ever touches containers carrying its own labels.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.server
import ipaddress
import json
import logging
import os
import platform
import posixpath
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from .client import ApiError, Client, Informer
from .controller_manager import WorkQueue
from .controllers.common import Recorder, deepcopy, name_of, now, ns_of, uid_of

log = logging.getLogger("labtwin.kubelet")

KUBELET_VERSION = "v1.32.0-labtwin"
OWNER_LABEL = "labtwin.kubelet.node"  # containers without it are never touched
L_POD, L_NS, L_UID, L_CONTAINER = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace",
                                   "io.kubernetes.pod.uid", "io.kubernetes.container.name")
L_IP, L_ATTEMPT = "labtwin.pod-ip", "labtwin.attempt"
NETWORK = "podnet"


def docker_time(s: str | None) -> str | None:
    """docker's RFC3339Nano -> the API's second precision; the zero time means never."""
    if not s or s.startswith("0001-"):
        return None
    return s[:19] + "Z"


@dataclass
class Config:
    server: str
    node_name: str
    node_ip: str
    pod_cidr: str
    nfs_mounts: dict = field(default_factory=dict)
    docker: str = "docker"
    state_dir: str = "/var/lib/labtwin-kubelet"
    heartbeat_seconds: float = 10.0
    sync_seconds: float = 2.0
    port: int = 10250  # the kubelet API (plain HTTP here): /healthz, /pods, /containerLogs/...

    @classmethod
    def load(cls, path: str) -> "Config":
        with open(path) as f:
            raw = json.load(f)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        missing = [k for k in ("server", "node_name", "node_ip", "pod_cidr") if k not in known]
        if missing:
            raise SystemExit(f"{path}: missing {', '.join(missing)} (see labtwin/kube/kubelet.py docstring)")
        ipaddress.ip_network(known["pod_cidr"])  # fail early on a bad CIDR
        ipaddress.ip_address(known["node_ip"])
        return cls(**known)


class DockerError(Exception):
    def __init__(self, args: list[str], rc: int, stderr: str):
        super().__init__(f"{' '.join(args[:3])}... exited {rc}: {stderr}")
        self.rc, self.stderr = rc, stderr


class Docker:
    """The node's docker CLI; argument lists only (no shell), so pod values cannot inject anything."""

    def __init__(self, binary: str = "docker"):
        self.binary = binary

    def run(self, *args: str, timeout: float = 120) -> str:
        cmd = [self.binary, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise DockerError(cmd, p.returncode, p.stderr.strip())
        return p.stdout

    def inspect(self, kind: str, ref: str) -> dict | None:
        try:
            return json.loads(self.run(kind, "inspect", ref))[0]
        except DockerError:
            return None

    def containers(self, node: str) -> list[dict]:
        ids = self.run("ps", "-aq", "--no-trunc", "--filter", f"label={OWNER_LABEL}={node}").split()
        if not ids:
            return []
        return json.loads(self.run("inspect", *ids))


class ImageBackOff:
    def __init__(self):
        self.until: dict[str, float] = {}
        self.delay: dict[str, float] = {}

    def failed(self, key: str) -> None:
        d = min(self.delay.get(key, 5.0) * 2, 300.0) if key in self.delay else 10.0
        self.delay[key] = d
        self.until[key] = time.monotonic() + d

    def waiting(self, key: str) -> bool:
        return time.monotonic() < self.until.get(key, 0)

    def ok(self, key: str) -> None:
        self.delay.pop(key, None)
        self.until.pop(key, None)


class Kubelet:
    def __init__(self, cfg: Config, client: Client | None = None, docker: Docker | None = None):
        self.cfg = cfg
        self.client = client or Client(cfg.server, user_agent=f"kubelet/{KUBELET_VERSION}")
        self.docker = docker or Docker(cfg.docker)
        self.recorder = Recorder(self.client, "kubelet", cfg.node_name)
        self.pods = Informer(self.client, "pods", field_selector=f"spec.nodeName={cfg.node_name}")
        self.queue = WorkQueue("kubelet", self.sync_pod)
        self.pod_ips: dict[str, str] = {}  # pod uid -> IP
        self.ip_lock = threading.Lock()
        self.pull_backoff = ImageBackOff()
        self.crash_backoff: dict[str, tuple[float, float]] = {}  # container key -> (delay, not before)
        self.waiting: dict[str, dict] = {}  # container key -> waiting state to report
        self.ready: dict[str, bool] = {}  # container id -> readiness probe result
        self.last_probe: dict[str, float] = {}
        self.stop = threading.Event()
        self._clist: tuple[float, list] = (0.0, [])
        self._clist_lock = threading.Lock()
        self._images: dict[str, dict] = {}

    # -- node ----------------------------------------------------------------------------------------
    def node_object(self) -> dict:
        version = "unknown"
        try:
            version = self.docker.run("version", "--format", "{{.Server.Version}}", timeout=20).strip()
        except Exception as e:
            log.warning("docker version: %s", e)
        try:
            machine_id = open("/etc/machine-id").read().strip()
        except OSError:
            machine_id = ""
        ts = now()
        conds = [
            {"type": t, "status": "False", "reason": r, "message": m, "lastHeartbeatTime": ts, "lastTransitionTime": ts}
            for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
        conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "kubelet is posting ready status", "lastHeartbeatTime": ts, "lastTransitionTime": ts})
        mem_kib = 0
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        except OSError:
            pass
        cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki", "pods": "110", "ephemeral-storage": "10Gi"}
        n = self.cfg.node_name
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux",
                                               "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                                               "beta.kubernetes.io/arch": "amd64"}},
            "spec": {"podCIDR": self.cfg.pod_cidr, "podCIDRs": [self.cfg.pod_cidr]},
            "status": {
                "conditions": conds,
                "addresses": [{"type": "InternalIP", "address": self.cfg.node_ip}, {"type": "Hostname", "address": n}],
                "capacity": cap, "allocatable": cap,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": machine_id, "systemUUID": machine_id, "bootID": "",
                             "kernelVersion": platform.release(), "osImage": _os_image(),
                             "containerRuntimeVersion": f"docker://{version}", "kubeletVersion": KUBELET_VERSION,
                             "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            },
        }

    def register(self) -> None:
        want = self.node_object()
        while not self.stop.is_set():
            try:
                cur = self.client.get_or_none("nodes", self.cfg.node_name)
                if cur is None:
                    created = self.client.create("nodes", {k: v for k, v in want.items() if k != "status"})
                    created["status"] = want["status"]
                    self.client.update_status("nodes", created)
                    log.info("registered node %s", self.cfg.node_name)
                else:
                    cur["status"] = want["status"]
                    cur.setdefault("spec", {}).setdefault("podCIDR", self.cfg.pod_cidr)
                    cur["spec"].setdefault("podCIDRs", [self.cfg.pod_cidr])
                    self.client.update_status("nodes", cur)
                return
            except (ApiError, OSError) as e:
                log.warning("node registration failed (%s); retrying", e)
                self.stop.wait(2)

    def heartbeat_loop(self) -> None:
        while not self.stop.wait(self.cfg.heartbeat_seconds):
            try:
                node = self.client.get("nodes", self.cfg.node_name)
                ts = now()
                for c in node.get("status", {}).get("conditions") or []:
                    c["lastHeartbeatTime"] = ts
                    if c["type"] == "Ready" and c.get("status") != "True":
                        c.update(status="True", reason="KubeletReady", message="kubelet is posting ready status",
                                 lastTransitionTime=ts)
                self.client.update_status("nodes", node)
            except ApiError as e:
                if e.not_found:
                    self.register()  # someone deleted our Node: register again as the kubelet does
                else:
                    log.warning("heartbeat: %s", e)
            except OSError as e:
                log.warning("heartbeat: %s", e)

    # -- network ---------------------------------------------------------------------------------------
    def setup_network(self) -> None:
        if self.docker.inspect("network", NETWORK) is None:
            self.docker.run("network", "create", "-d", "bridge", "--subnet", self.cfg.pod_cidr,
                            "-o", "com.docker.network.bridge.name=cni0",
                            "-o", "com.docker.network.bridge.enable_ip_masquerade=false", NETWORK)
        # docker's FORWARD policy drops traffic routed to the bridge from other hosts (host-gw)
        rule = ["DOCKER-USER", "-o", "cni0", "-j", "ACCEPT"]
        if subprocess.run(["iptables", "-C", *rule], capture_output=True).returncode != 0:
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)

    def allocate_ip(self, uid: str) -> str:
        with self.ip_lock:
            if uid in self.pod_ips:
                return self.pod_ips[uid]
            net = ipaddress.ip_network(self.cfg.pod_cidr)
            used = set(self.pod_ips.values())
            for c in self._containers():
                ip = (c["Config"].get("Labels") or {}).get(L_IP)
                if ip:
                    used.add(ip)
            hosts = list(net.hosts())
            for ip in hosts[1:]:  # .1 is the bridge (gateway)
                if str(ip) not in used:
                    self.pod_ips[uid] = str(ip)
                    return str(ip)
        raise RuntimeError(f"pod CIDR {self.cfg.pod_cidr} exhausted")

    def _containers(self) -> list[dict]:
        """The node's containers of this kubelet, relisted at most once a second (like the PLEG)."""
        with self._clist_lock:
            if time.monotonic() - self._clist[0] > 1.0:
                self._clist = (time.monotonic(), self.docker.containers(self.cfg.node_name))
            return self._clist[1]

    def _changed_containers(self) -> None:
        with self._clist_lock:
            self._clist = (0.0, [])

    def _image(self, ref: str) -> dict:
        """Image inspect by ID (immutable, so cached)."""
        if ref not in self._images:
            self._images[ref] = self.docker.inspect("image", ref) or {}
        return self._images[ref]

    # -- pods ------------------------------------------------------------------------------------------
    def sync_pod(self, key: tuple[str, str]) -> None:
        ns, name = key
        pod = self.pods.get(ns, name)
        mine = [c for c in self._containers()
                if (c["Config"].get("Labels") or {}).get(L_NS) == ns and (c["Config"].get("Labels") or {}).get(L_POD) == name]
        if pod is None:
            self._kill(mine, 0, None)  # the pod object is gone: no container of it may keep running
            return
        uid = uid_of(pod)
        stale = [c for c in mine if c["Config"]["Labels"].get(L_UID) != uid]
        if stale:  # a predecessor of the same name (StatefulSet pods reuse names)
            self._kill(stale, 0, None)
            mine = [c for c in mine if c not in stale]
        if pod["metadata"].get("deletionTimestamp"):
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            self._kill(mine, int(grace), pod)
            try:
                self.client.delete("pods", name, ns, grace_period_seconds=0, uid=uid)
            except ApiError as e:
                if not (e.not_found or e.conflict):
                    raise
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        for c in mine:  # keep the IP a running pod already has (e.g. after a kubelet restart)
            if c["Config"]["Labels"].get(L_IP):
                with self.ip_lock:
                    self.pod_ips.setdefault(uid, c["Config"]["Labels"][L_IP])
        ip = self.allocate_ip(uid)
        statuses = []
        for spec in pod["spec"].get("containers") or []:
            statuses.append(self._ensure_container(pod, spec, ip, [c for c in mine
                                                                  if c["Config"]["Labels"].get(L_CONTAINER) == spec["name"]]))
        self._write_status(pod, ip, statuses)
        if not all(s["ready"] for s in statuses):
            self.queue.add_after(key, 1.0)  # keep probing / retrying until ready

    def _kill(self, containers: list[dict], grace: int, pod: dict | None) -> None:
        for c in containers:
            if c["State"].get("Running"):
                if pod is not None:
                    self.recorder.event(pod, "Normal", "Killing",
                                        f"Stopping container {c['Config']['Labels'].get(L_CONTAINER)}")
                try:
                    self.docker.run("stop", "-t", str(max(grace, 0)), c["Id"], timeout=grace + 60)
                except DockerError as e:
                    log.warning("stop %s: %s", c["Name"], e)
            try:
                self.docker.run("rm", "-f", c["Id"])
            except DockerError as e:
                log.warning("rm %s: %s", c["Name"], e)
            uid = c["Config"]["Labels"].get(L_UID)
            with self.ip_lock:
                self.pod_ips.pop(uid, None)
            self._changed_containers()

    def _pull(self, pod: dict, image: str, policy: str, ckey: str) -> bool:
        present = self.docker.inspect("image", image) is not None
        if policy == "Never":
            if not present:
                msg = f'Container image "{image}" is not present with pull policy of Never'
                self.waiting[ckey] = {"reason": "ErrImageNeverPull", "message": msg}
                self.recorder.event(pod, "Warning", "ErrImageNeverPull", msg)
                return False
            return True
        if policy == "IfNotPresent" and present:
            self.recorder.event(pod, "Normal", "Pulled",
                                f'Container image "{image}" already present on machine')
            return True
        if self.pull_backoff.waiting(ckey):
            self.waiting[ckey] = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
            self.recorder.event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            self.recorder.event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            return False
        self.recorder.event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
        t0 = time.monotonic()
        try:
            self.docker.run("pull", image, timeout=600)
        except DockerError as e:
            self.pull_backoff.failed(ckey)
            self.waiting[ckey] = {"reason": "ErrImagePull", "message": e.stderr}
            self.recorder.event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {e.stderr}')
            self.recorder.event(pod, "Warning", "Failed", "Error: ErrImagePull")
            return False
        self.pull_backoff.ok(ckey)
        self.recorder.event(pod, "Normal", "Pulled",
                            f'Successfully pulled image "{image}" in {time.monotonic() - t0:.3f}s')
        return True

    def _volume_args(self, pod: dict, spec: dict) -> list[str] | str:
        """-v arguments for the container's mounts, or a FailedMount message."""
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        args: list[str] = []
        for m in spec.get("volumeMounts") or []:
            v = vols.get(m["name"])
            if v is None:
                return f'volume "{m["name"]}" not found in pod spec'
            src = self._volume_source(pod, v)
            if src.startswith("!"):
                return src[1:]
            if m.get("subPath"):
                src = posixpath.join(src, m["subPath"])
                os.makedirs(src, exist_ok=True)
            args += ["-v", f"{src}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
        return args

    def _volume_source(self, pod: dict, v: dict) -> str:
        if "persistentVolumeClaim" in v:
            cn = v["persistentVolumeClaim"]["claimName"]
            pvc = self.client.get_or_none("persistentvolumeclaims", cn, ns_of(pod))
            if pvc is None:
                return f'!persistentvolumeclaim "{cn}" not found'
            pvname = pvc.get("spec", {}).get("volumeName")
            if not pvname or pvc.get("status", {}).get("phase") != "Bound":
                return f'!persistentvolumeclaim "{cn}" is not bound'
            pv = self.client.get_or_none("persistentvolumes", pvname)
            if pv is None:
                return f'!persistentvolume "{pvname}" not found'
            return self._nfs_local(pv.get("spec", {}).get("nfs")) or \
                f'!volume {pvname}: only NFS persistent volumes are supported by this lab'
        if "nfs" in v:
            return self._nfs_local(v["nfs"]) or f"!nfs volume {v['name']}: no local view of {v['nfs']}"
        if "hostPath" in v:
            return v["hostPath"]["path"]
        if "emptyDir" in v or "configMap" in v or "secret" in v or "projected" in v:
            d = os.path.join(self.cfg.state_dir, "pods", uid_of(pod), "volumes", v["name"])
            os.makedirs(d, exist_ok=True)
            return d
        return f"!volume {v['name']}: unsupported volume type"

    def _nfs_local(self, nfs: dict | None) -> str | None:
        """server:path of an NFS volume -> the node-local directory that shows the same export."""
        if not nfs:
            return None
        server, path = nfs.get("server", ""), posixpath.normpath(nfs.get("path", "/"))
        for key, local in self.cfg.nfs_mounts.items():
            s, _, export = key.partition(":")
            export = posixpath.normpath(export or "/")
            if s == server and (path == export or path.startswith(export.rstrip("/") + "/")):
                rel = posixpath.relpath(path, export)
                d = local if rel == "." else os.path.join(local, rel)
                return d if os.path.isdir(d) else None
        return None

    def _ensure_container(self, pod: dict, spec: dict, ip: str, existing: list[dict]) -> dict:
        ckey = f"{uid_of(pod)}/{spec['name']}"
        existing.sort(key=lambda c: int(c["Config"]["Labels"].get(L_ATTEMPT, "0")))
        cur = existing[-1] if existing else None
        restarts = int(cur["Config"]["Labels"].get(L_ATTEMPT, "0")) if cur else 0
        if cur is not None and cur["State"].get("Running"):
            self.waiting.pop(ckey, None)
            return self._status(pod, spec, cur, restarts, existing[:-1])
        if cur is not None:  # exited: restart per restartPolicy, with back-off
            policy = pod["spec"].get("restartPolicy", "Always")
            code = cur["State"].get("ExitCode", 0)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return self._status(pod, spec, cur, restarts, existing[:-1])
            delay, not_before = self.crash_backoff.get(ckey, (0.0, 0.0))
            if time.monotonic() < not_before:
                msg = (f"back-off {int(delay)}s restarting failed container={spec['name']} "
                       f"pod={name_of(pod)}_{ns_of(pod)}({uid_of(pod)})")
                self.waiting[ckey] = {"reason": "CrashLoopBackOff", "message": msg}
                self.recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                                    f"{spec['name']} in pod {name_of(pod)}_{ns_of(pod)}({uid_of(pod)})")
                return self._status(pod, spec, None, restarts, existing)
            delay = min(max(delay * 2, 10.0), 300.0)
            self.crash_backoff[ckey] = (delay, time.monotonic() + delay)
            restarts += 1
        image = spec["image"]
        policy = spec.get("imagePullPolicy") or ("Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent")
        if not self._pull(pod, image, policy, ckey):
            return self._status(pod, spec, None, restarts, existing)
        vol = self._volume_args(pod, spec)
        if isinstance(vol, str):
            self.waiting[ckey] = {"reason": "ContainerCreating"}
            self.recorder.event(pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {vol}")
            return self._status(pod, spec, None, restarts, existing)
        cname = f"k8s_{spec['name']}_{name_of(pod)}_{ns_of(pod)}_{uid_of(pod)}_{restarts}"
        args = ["run", "-d", "--name", cname, "--restart", "no",
                "--hostname", pod["spec"].get("hostname") or name_of(pod),
                "--label", f"{OWNER_LABEL}={self.cfg.node_name}", "--label", f"{L_POD}={name_of(pod)}",
                "--label", f"{L_NS}={ns_of(pod)}", "--label", f"{L_UID}={uid_of(pod)}",
                "--label", f"{L_CONTAINER}={spec['name']}", "--label", f"{L_IP}={ip}",
                "--label", f"{L_ATTEMPT}={restarts}"]
        first = (pod["spec"].get("containers") or [{}])[0].get("name") == spec["name"]
        if first:
            args += ["--network", NETWORK, "--ip", ip]
            sub = pod["spec"].get("subdomain")
            if sub:  # the pod's own FQDN resolves to itself, like the kubelet's /etc/hosts
                fq = f"{pod['spec'].get('hostname') or name_of(pod)}.{sub}.{ns_of(pod)}.svc.cluster.local"
                args += ["--add-host", f"{fq}:{ip}"]
        else:  # share the first container's network namespace, like containers of one sandbox
            owner = f"k8s_{pod['spec']['containers'][0]['name']}_{name_of(pod)}_{ns_of(pod)}_{uid_of(pod)}"
            sibs = [c for c in self._containers() if c["Name"].lstrip("/").startswith(owner) and c["State"].get("Running")]
            if not sibs:
                self.waiting[ckey] = {"reason": "ContainerCreating"}
                return self._status(pod, spec, None, restarts, existing)
            args += ["--network", f"container:{sibs[-1]['Id']}"]
        if spec.get("workingDir"):
            args += ["-w", spec["workingDir"]]
        for e in spec.get("env") or []:
            val = e.get("value")
            ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if ref:
                val = {"metadata.name": name_of(pod), "metadata.namespace": ns_of(pod), "metadata.uid": uid_of(pod),
                       "status.podIP": ip, "status.hostIP": self.cfg.node_ip,
                       "spec.nodeName": self.cfg.node_name}.get(ref, "")
            args += ["-e", f"{e['name']}={val or ''}"]
        args += vol
        cmd = list(spec.get("command") or [])
        if cmd:
            args += ["--entrypoint", cmd[0]]
        args += [image, *cmd[1:], *(spec.get("args") or [])]
        for old in existing[:-1]:  # like the kubelet's container GC: keep only the last dead one (lastState)
            try:
                self.docker.run("rm", "-f", old["Id"])
            except DockerError:
                pass
        existing = existing[-1:]
        try:
            cid = self.docker.run(*args).strip()
            self._changed_containers()
        except DockerError as e:
            self._changed_containers()
            self.waiting[ckey] = {"reason": "CreateContainerError", "message": e.stderr}
            self.recorder.event(pod, "Warning", "Failed", f"Error: {e.stderr}")
            return self._status(pod, spec, None, restarts, existing)
        self.recorder.event(pod, "Normal", "Created", f"Created container: {spec['name']}")
        self.recorder.event(pod, "Normal", "Started", f"Started container {spec['name']}")
        self.waiting.pop(ckey, None)
        return self._status(pod, spec, self.docker.inspect("container", cid), restarts, existing)

    def _probe(self, pod: dict, spec: dict, c: dict, ip: str) -> bool:
        probe = spec.get("readinessProbe")
        cid = c["Id"]
        if not probe:
            return True
        started = c["State"].get("StartedAt", "")
        delay = int(probe.get("initialDelaySeconds", 0))
        try:
            t = dt.datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00")
            if (dt.datetime.now(dt.timezone.utc) - t).total_seconds() < delay:
                return False
        except ValueError:
            pass
        period = max(1, int(probe.get("periodSeconds", 10)))
        if cid in self.ready and time.monotonic() - self.last_probe.get(cid, 0) < period:
            return self.ready[cid]
        self.last_probe[cid] = time.monotonic()
        ok, why = False, "unsupported probe"
        hg = probe.get("httpGet")
        tcp = probe.get("tcpSocket")
        if hg or tcp:
            port = (hg or tcp).get("port")
            if isinstance(port, str) and not port.isdigit():
                port = next((p["containerPort"] for p in spec.get("ports") or [] if p.get("name") == port), None)
            if hg:
                path = hg.get("path", "/")
                url = f"{hg.get('scheme', 'HTTP').lower()}://{ip}:{port}{path if path.startswith('/') else '/' + path}"
                try:
                    with urllib.request.urlopen(url, timeout=int(probe.get("timeoutSeconds", 1))) as r:
                        ok, why = 200 <= r.status < 400, f"HTTP probe failed with statuscode: {r.status}"
                except urllib.error.HTTPError as e:
                    ok, why = 200 <= e.code < 400, f"HTTP probe failed with statuscode: {e.code}"
                except Exception as e:
                    ok, why = False, f'Get "{url}": {getattr(e, "reason", e)}'
            else:
                import socket
                try:
                    socket.create_connection((ip, int(port)), timeout=int(probe.get("timeoutSeconds", 1))).close()
                    ok = True
                except OSError as e:
                    ok, why = False, f"dial tcp {ip}:{port}: {e}"
        elif probe.get("exec"):
            try:
                self.docker.run("exec", cid, *probe["exec"].get("command", []), timeout=int(probe.get("timeoutSeconds", 1)) + 5)
                ok = True
            except (DockerError, subprocess.TimeoutExpired) as e:
                ok, why = False, str(e)
        if not ok and self.ready.get(cid, True):
            self.recorder.event(pod, "Warning", "Unhealthy", f"Readiness probe failed: {why}")
        self.ready[cid] = ok
        return ok

    def _status(self, pod: dict, spec: dict, c: dict | None, restarts: int, dead: list[dict]) -> dict:
        ckey = f"{uid_of(pod)}/{spec['name']}"
        st = {"name": spec["name"], "image": spec["image"], "imageID": "", "ready": False, "started": False,
              "restartCount": restarts}
        last = dead[-1] if dead else None
        if last is not None and not last["State"].get("Running"):
            st["lastState"] = {"terminated": _terminated(last)}
        if c is None:
            st["state"] = {"waiting": dict(self.waiting.get(ckey) or {"reason": "ContainerCreating"})}
            return st
        st["containerID"] = f"docker://{c['Id']}"
        img = self._image(c["Image"])
        digests = img.get("RepoDigests") or []
        st["imageID"] = f"docker-pullable://{digests[0]}" if digests else f"docker://{c['Image']}"
        if c["State"].get("Running"):
            st["state"] = {"running": {"startedAt": docker_time(c["State"].get("StartedAt"))}}
            st["started"] = True
            ip = (c["Config"].get("Labels") or {}).get(L_IP, "")
            st["ready"] = self._probe(pod, spec, c, ip)
        else:
            st["state"] = {"terminated": _terminated(c)}
        return st

    def _write_status(self, pod: dict, ip: str, cstatuses: list[dict]) -> None:
        old = pod.get("status") or {}
        st = deepcopy(old)
        ts = now()
        running = [s for s in cstatuses if "running" in s["state"]]
        terminated = [s for s in cstatuses if "terminated" in s["state"]]
        policy = pod["spec"].get("restartPolicy", "Always")
        if cstatuses and len(terminated) == len(cstatuses) and policy != "Always":
            failed = any(s["state"]["terminated"].get("exitCode") for s in terminated)
            st["phase"] = "Failed" if failed else "Succeeded"
        elif running or any("lastState" in s for s in cstatuses):
            st["phase"] = "Running"
        else:
            st["phase"] = "Pending"
        all_ready = bool(cstatuses) and all(s["ready"] for s in cstatuses)
        not_ready = [s["name"] for s in cstatuses if not s["ready"]]
        conds = {c["type"]: c for c in old.get("conditions") or []}

        def setc(t, ok, reason=None, msg=None):
            c = {"type": t, "status": "True" if ok else "False", "lastProbeTime": None,
                 "lastTransitionTime": ts}
            prev = conds.get(t)
            if prev and prev.get("status") == c["status"]:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", ts)
            if not ok and reason:
                c["reason"], c["message"] = reason, msg
            conds[t] = c

        setc("PodReadyToStartContainers", True)
        setc("Initialized", True)
        setc("Ready", all_ready, "ContainersNotReady", f"containers with unready status: [{' '.join(not_ready)}]")
        setc("ContainersReady", all_ready, "ContainersNotReady", f"containers with unready status: [{' '.join(not_ready)}]")
        setc("PodScheduled", True)
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        st["conditions"] = [conds[t] for t in order] + [c for t, c in conds.items() if t not in order]
        st["hostIP"], st["hostIPs"] = self.cfg.node_ip, [{"ip": self.cfg.node_ip}]
        st["podIP"], st["podIPs"] = ip, [{"ip": ip}]
        st.setdefault("startTime", ts)
        st["containerStatuses"] = cstatuses
        if st == old:
            return
        p = deepcopy(pod)
        p["status"] = st
        try:
            self.client.update_status("pods", p)
        except ApiError as e:
            if e.conflict:
                self.queue.add((ns_of(pod), name_of(pod)))  # re-read from the watch and try again
            elif not e.not_found:
                raise

    # -- main loop -------------------------------------------------------------------------------------
    def orphans(self) -> None:
        """Containers of pods this node no longer has (deleted while we were down)."""
        if not self.pods.synced.is_set():
            return  # an empty cache before the first list proves nothing: never kill on it
        known = {uid_of(p) for p in self.pods.items()}
        for c in self._containers():
            if c["Config"]["Labels"].get(L_UID) not in known:
                self._kill([c], 0, None)

    def _pod_event(self, etype: str, pod: dict, old: dict | None) -> None:
        """Like the kubelet's pod config source: a change of status alone (mostly our own writes)
        is not a reason to sync; spec and metadata changes (deletionTimestamp included) are."""
        if etype == "MODIFIED" and old is not None and pod.get("spec") == old.get("spec"):
            strip = lambda md: {k: v for k, v in md.items() if k not in ("resourceVersion", "managedFields")}  # noqa: E731
            if strip(pod.get("metadata", {})) == strip(old.get("metadata", {})):
                return
        self.queue.add((ns_of(pod), name_of(pod)))

    def find_container(self, ns: str, pod: str, container: str, previous: bool = False) -> dict | None:
        cs = [c for c in self._containers() if c["Config"]["Labels"].get(L_NS) == ns
              and c["Config"]["Labels"].get(L_POD) == pod and c["Config"]["Labels"].get(L_CONTAINER) == container]
        cs.sort(key=lambda c: int(c["Config"]["Labels"].get(L_ATTEMPT, "0")))
        if previous:
            cs = cs[:-1]
        return cs[-1] if cs else None

    def serve(self) -> http.server.ThreadingHTTPServer:
        """The kubelet's HTTP API subset an apiserver proxies `kubectl logs` to."""
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                log.debug("api: " + fmt, *args)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                parts = [urllib.parse.unquote(x) for x in u.path.strip("/").split("/")]
                if parts == ["healthz"]:
                    return self._send(200, b"ok")
                if parts == ["pods"]:
                    items = kubelet.pods.items()
                    return self._send(200, json.dumps({"kind": "PodList", "apiVersion": "v1", "items": items}).encode(),
                                      "application/json")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    return self._send(404, b"404 page not found\n")
                _, ns, pod, cname = parts
                c = kubelet.find_container(ns, pod, cname, q.get("previous") == "true")
                if c is None:
                    return self._send(404, f'container "{cname}" in pod "{pod}" not found\n'.encode())
                args = ["logs"]
                try:
                    if "tailLines" in q:
                        args += ["--tail", str(int(q["tailLines"]))]
                    if "sinceSeconds" in q:
                        args += ["--since", f"{int(q['sinceSeconds'])}s"]
                except ValueError:
                    return self._send(400, b"tailLines and sinceSeconds must be integers\n")
                if q.get("timestamps") == "true":
                    args.append("--timestamps")
                if q.get("follow") == "true":
                    return self._follow([kubelet.docker.binary, *args, "--follow", c["Id"]])
                p = subprocess.run([kubelet.docker.binary, *args, c["Id"]], capture_output=True, timeout=60)
                body = p.stdout + p.stderr  # docker splits the container's stdout and stderr
                limit = q.get("limitBytes")
                if limit and limit.isdigit():
                    body = body[: int(limit)]
                return self._send(200, body)

            def _follow(self, cmd: list[str]) -> None:
                """Stream `docker logs --follow` until it ends or the client goes. A quiet
                container writes nothing for long, so wait on the client's socket as well: its
                EOF ends the docker process instead of leaving it until the container's next line."""
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                out = proc.stdout.fileno()
                try:
                    while True:
                        ready, _, _ = select.select([out, self.connection], [], [])
                        if self.connection in ready and self.connection.recv(1, socket.MSG_PEEK) == b"":
                            break  # the client closed its side
                        if out in ready:
                            data = os.read(out, 65536)
                            if not data:
                                self.wfile.write(b"0\r\n\r\n")
                                break
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                            self.wfile.flush()
                        elif self.connection in ready:  # bytes after the request: not ours to read
                            time.sleep(0.5)
                except OSError:  # the client went away mid-write
                    pass
                finally:
                    self.close_connection = True
                    proc.kill()
                    proc.wait()
                    proc.stdout.close()

        srv = http.server.ThreadingHTTPServer((self.cfg.node_ip, self.cfg.port), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, name="kubelet-api", daemon=True).start()
        return srv

    def run(self, workers: int = 4) -> None:
        self.register()
        try:
            self.serve()
        except OSError as e:  # logs are a convenience: running pods matters more
            log.warning("kubelet API on %s:%d not served: %s", self.cfg.node_ip, self.cfg.port, e)
        self.setup_network()
        self.pods.add_handler(self._pod_event)
        self.pods.start()
        self.pods.wait_synced(60)
        for p in self.pods.items():
            self.queue.add((ns_of(p), name_of(p)))
        for i in range(workers):
            threading.Thread(target=self.queue.run, name=f"pod-worker-{i}", daemon=True).start()
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        last_net = time.monotonic()
        while not self.stop.wait(self.cfg.sync_seconds):  # periodic pod sync: states, probes, restarts
            try:
                self.orphans()
            except Exception as e:
                log.warning("orphan sweep: %s", e)
            if time.monotonic() - last_net > 30:  # a dockerd restart or an admin may have undone it
                last_net = time.monotonic()
                try:
                    self.setup_network()
                except Exception as e:
                    log.warning("pod network check: %s", e)
            for p in self.pods.items():
                self.queue.add((ns_of(p), name_of(p)))

    def shutdown(self) -> None:
        self.stop.set()
        self.pods.stop.set()
        self.queue.stop.set()


def _terminated(c: dict) -> dict:
    s = c["State"]
    code = s.get("ExitCode", 0)
    return {"exitCode": code, "reason": "Completed" if code == 0 else ("OOMKilled" if s.get("OOMKilled") else "Error"),
            "startedAt": docker_time(s.get("StartedAt")), "finishedAt": docker_time(s.get("FinishedAt")),
            "containerID": f"docker://{c['Id']}"}


def _os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labtwin.kube.kubelet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="/etc/labtwin/kubelet.json")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    k = Kubelet(Config.load(a.config))
    signal.signal(signal.SIGTERM, lambda *_: k.shutdown())
    signal.signal(signal.SIGINT, lambda *_: k.shutdown())
    k.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
