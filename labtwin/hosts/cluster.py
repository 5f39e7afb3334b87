"""A real Kubernetes cluster on the twin's hosts, made the way a kubeadm user makes one.

On master: the preloaded images are imported into containerd, `kubeadm init --config` (preflight
skipped: this is a container-like host on cgroup v1, as kind's nodes are; CoreDNS skipped: its
image is not built and nothing in the lab resolves names), admin.conf copied to
root's ~/.kube/config. On the workers, in parallel: `kubeadm join` with the token and CA hash that
`kubeadm token create --print-join-command` prints. Then the pod network, host-gw style as
flannel's host-gw backend does it: each node's podCIDR (allocated by the controller-manager, read
from its Node) becomes a CNI bridge config on that node and a route on every other host.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import network
from .config import HostSpec, TwinConfig, TwinError
from .host import run_in
from .images import PROVISIONER_TAG

POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/12"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
KUBECONFIG = "KUBECONFIG=/etc/kubernetes/admin.conf"
READY_TIMEOUT = 180.0


def kubeadm_config(cfg: TwinConfig, version: str) -> str:
    m = cfg.master
    docs = [
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
         "localAPIEndpoint": {"advertiseAddress": str(m.address), "bindPort": 6443},
         "nodeRegistration": {"name": m.name, "criSocket": CRI_SOCKET,
                              "kubeletExtraArgs": [{"name": "node-ip", "value": str(m.address)}]},
         "skipPhases": ["preflight", "addon/coredns"]},
        {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
         "kubernetesVersion": version, "clusterName": cfg.name,
         "controlPlaneEndpoint": f"{m.address}:6443",
         "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET}},
        # As kind configures its kubelets: cgroup v1 allowed (1.35+ refuses it by default),
        # no swap check, and no disk-pressure eviction or image GC driven by the shared disk.
        {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
         "cgroupDriver": "systemd", "failCgroupV1": False, "failSwapOn": False,
         "imageGCHighThresholdPercent": 100,
         "evictionHard": {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"}},
        # maxPerCore 0: do not set the machine-wide nf_conntrack_max.
        {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
         "mode": "iptables", "conntrack": {"maxPerCore": 0}},
    ]
    return "---\n".join(json.dumps(d, indent=1) + "\n" for d in docs)


def join_config(cfg: TwinConfig, h: HostSpec, token: str, ca_hash: str) -> str:
    return json.dumps({
        "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {"apiServerEndpoint": f"{cfg.master.address}:6443",
                                         "token": token, "caCertHashes": [ca_hash]}},
        "nodeRegistration": {"name": h.name, "criSocket": CRI_SOCKET,
                             "kubeletExtraArgs": [{"name": "node-ip", "value": str(h.address)}]},
        "skipPhases": ["preflight"],
    }, indent=1) + "\n"


def cni_config(pod_cidr: str) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "labtwin",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]}, indent=1) + "\n"


def parse_join_command(out: str) -> tuple[str, str]:
    """token and CA hash from `kubeadm token create --print-join-command`."""
    words = shlex.split(out.strip().splitlines()[-1]) if out.strip() else []
    try:
        return words[words.index("--token") + 1], words[words.index("--discovery-token-ca-cert-hash") + 1]
    except (ValueError, IndexError):
        raise TwinError(f"could not read a join command from kubeadm: {out.strip()[:300]!r}") from None


def _sh(pid: int, host: str, cmd: str, what: str, timeout: float = 300) -> str:
    rc, out, err = run_in(pid, cmd, timeout=timeout)
    if rc != 0:
        raise TwinError(f"{host}: {what} failed (exit {rc}): {(err or out).strip()[-1500:]}")
    return out


def _put(pid: int, host: str, path: str, text: str) -> None:
    q = shlex.quote
    _sh(pid, host, f"mkdir -p {q(str(Path(path).parent))} && printf %s {q(text)} > {q(path)}", f"writing {path}")


def _wait_containerd(pid: int, host: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        rc, _, _ = run_in(pid, "ctr --timeout 2s version >/dev/null 2>&1", timeout=10)
        if rc == 0:
            return
        time.sleep(0.2)
    rc, out, _ = run_in(pid, "systemctl status containerd --no-pager -n 20 2>&1", timeout=10)
    raise TwinError(f"{host}: containerd is not answering: {out.strip()[-1200:]}")


def import_images(pid: int, h: HostSpec, archives: dict[str, Path], is_master: bool, deadline: float) -> None:
    _wait_containerd(pid, h.name, deadline)
    wanted = [a for tag, a in archives.items() if _preloaded(tag, is_master)]
    cmd = " && ".join(f"ctr -n k8s.io images import --local {shlex.quote(str(a))} >/dev/null" for a in wanted)
    _sh(pid, h.name, cmd, "importing the control-plane images into containerd")


def _preloaded(tag: str, is_master: bool) -> bool:
    """Whether a node's containerd has the image before anything pulls. The NFS provisioner is no
    kubeadm image: an offline lab's admin has it in master's docker (lab._start loads it there);
    until labkit can mirror it into the lab registry, the workers' containerd, where its pod runs,
    has it preloaded too (master's does not: the control-plane taint keeps the pod off master)."""
    if tag == PROVISIONER_TAG:
        return not is_master
    return is_master or any(n in tag for n in ("/pause:", "/kube-proxy:"))


def _nodes(pid: int) -> list[dict]:
    out = _sh(pid, "master", f"{KUBECONFIG} kubectl get nodes -o json", "kubectl get nodes")
    return json.loads(out)["items"]


def node_cidrs(pid: int) -> dict[str, str]:
    return {n["metadata"]["name"]: n["spec"].get("podCIDR", "") for n in _nodes(pid)}


def nodes_not_ready(pid: int, names: list[str]) -> dict[str, str]:
    """name -> why, for every node of `names` that is not Ready (the kubelet's own message)."""
    ready = {n["metadata"]["name"]: next((c for c in n["status"].get("conditions", []) if c["type"] == "Ready"), {})
             for n in _nodes(pid)}
    return {name: ready.get(name, {}).get("message", "not registered") for name in names
            if ready.get(name, {}).get("status") != "True"}


def _pod_network(cfg: TwinConfig, pids: dict[str, int], deadline: float) -> None:
    mpid = pids[cfg.master.name]
    while True:
        cidrs = node_cidrs(mpid)
        if all(cidrs.get(h.name) for h in cfg.hosts):
            break
        if time.monotonic() > deadline:
            raise TwinError(f"nodes without a podCIDR after {READY_TIMEOUT:.0f}s: "
                            f"{sorted(h.name for h in cfg.hosts if not cidrs.get(h.name))}")
        time.sleep(0.5)
    for h in cfg.hosts:
        ns = cfg.netns(h)
        _put(pids[h.name], h.name, "/etc/cni/net.d/10-labtwin.conflist", cni_config(cidrs[h.name]))
        for other in cfg.hosts:
            if other is not h:
                network.ip("-n", ns, "route", "replace", cidrs[other.name], "via", str(other.address))
        # docker in each host sets FORWARD to DROP; pod traffic crosses nodes (as flannel allows it).
        _sh(pids[h.name], h.name,
            f"iptables -w -C FORWARD -s {POD_SUBNET} -j ACCEPT 2>/dev/null || iptables -w -A FORWARD -s {POD_SUBNET} -j ACCEPT; "
            f"iptables -w -C FORWARD -d {POD_SUBNET} -j ACCEPT 2>/dev/null || iptables -w -A FORWARD -d {POD_SUBNET} -j ACCEPT",
            "allowing pod traffic through FORWARD")


def import_all(cfg: TwinConfig, pids: dict[str, int], archives: dict[str, Path]) -> None:
    """kubeadm's images into every host's containerd, as an offline lab pre-pulls them."""
    deadline = time.monotonic() + READY_TIMEOUT
    with ThreadPoolExecutor(len(cfg.hosts)) as pool:
        for f in [pool.submit(import_images, pids[h.name], h, archives, h is cfg.master, deadline)
                  for h in cfg.hosts]:
            f.result()


def create(cfg: TwinConfig, pids: dict[str, int], archives: dict[str, Path], version: str, say=print) -> None:
    t0 = time.monotonic()
    deadline = t0 + READY_TIMEOUT
    m = cfg.master
    mpid = pids[m.name]
    import_all(cfg, pids, archives)
    say(f"  images imported into containerd ({time.monotonic() - t0:.1f}s)")
    _put(mpid, m.name, "/etc/kubernetes/kubeadm.yaml", kubeadm_config(cfg, version))
    _sh(mpid, m.name, "kubeadm init --config /etc/kubernetes/kubeadm.yaml > /var/log/kubeadm-init.log 2>&1"
        " || { tail -n 25 /var/log/kubeadm-init.log >&2; exit 1; }", "kubeadm init")
    _sh(mpid, m.name, "mkdir -p /root/.kube && cp /etc/kubernetes/admin.conf /root/.kube/config"
        " && chmod 600 /root/.kube/config", "copying admin.conf")
    say(f"  kubeadm init done ({time.monotonic() - t0:.1f}s)")
    token, ca_hash = parse_join_command(_sh(mpid, m.name, "kubeadm token create --print-join-command",
                                            "kubeadm token create"))

    def join(h: HostSpec) -> None:
        _put(pids[h.name], h.name, "/etc/kubernetes/kubeadm-join.yaml", join_config(cfg, h, token, ca_hash))
        _sh(pids[h.name], h.name, "kubeadm join --config /etc/kubernetes/kubeadm-join.yaml"
            " > /var/log/kubeadm-join.log 2>&1 || { tail -n 25 /var/log/kubeadm-join.log >&2; exit 1; }",
            "kubeadm join")

    workers = [h for h in cfg.hosts if h is not m]
    with ThreadPoolExecutor(len(workers)) as pool:
        for f in [pool.submit(join, h) for h in workers]:
            f.result()
    say(f"  {len(workers)} worker(s) joined ({time.monotonic() - t0:.1f}s)")
    _pod_network(cfg, pids, deadline)
    while waiting := nodes_not_ready(mpid, [h.name for h in cfg.hosts]):
        if time.monotonic() > deadline:
            raise TwinError(f"nodes not Ready after {READY_TIMEOUT:.0f}s: "
                            + "; ".join(f"{n}: {why}" for n, why in sorted(waiting.items()))
                            + "; on the node: `journalctl -u kubelet -n 50`")
        time.sleep(0.5)
    say(f"  all {len(cfg.hosts)} nodes Ready ({time.monotonic() - t0:.1f}s)")
