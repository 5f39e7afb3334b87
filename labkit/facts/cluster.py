"""Facts for `invoke setup-cluster`: what a host has for kubeadm, and which cluster it is in.

The OS family is ``labkit.facts.os.OsRelease``; containerd's config is
``labkit.facts.containerd.ContainerdConfig``; the CNI config file is a ``FileContent``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

from cryptography import x509  # a dependency of paramiko, hence of fabric
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labkit.errors import OperationError
from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

KUBE_DIR = "/etc/kubernetes"
ADMIN_CONF = f"{KUBE_DIR}/admin.conf"
CNI_CONFLIST = "/etc/cni/net.d/10-labkit.conflist"
# Where labkit keeps kubeadm's output (operations/cluster.py writes them, doctor reads them).
INIT_LOG = "/var/log/labkit-kubeadm-init.log"
JOIN_LOG = "/var/log/labkit-kubeadm-join.log"
# kubeadm's own failure lines: a preflight check's "[ERROR <check>]: ..." and "error: error execution
# phase <phase>: ..." (grep -E; the rest of a log is progress and klog warnings).
KUBEADM_ERROR_LINES = r"^[[:space:]]*\[ERROR |^error"


def _sections(text: str) -> list[tuple[str, str]]:
    """Lines '## <name>' split the output into (name, text below it), in order."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line + "\n")
    return out


# ---- installed versions ----------------------------------------------------------

VERSION_COMMANDS = {
    "kubeadm": "kubeadm version -o json",
    "kubelet": "kubelet --version",
    "kubectl": "kubectl version --client -o json",
    "containerd": "containerd --version",
}


@dataclass(frozen=True)
class Versions:
    """Installed versions: 'v1.37.2' for the Kubernetes tools, '2.2.9' for containerd; None when
    the command is missing or fails."""

    kubeadm: str | None
    kubelet: str | None
    kubectl: str | None
    containerd: str | None


def _git_version(output: str) -> str | None:
    try:
        return (json.loads(output).get("clientVersion") or {}).get("gitVersion")
    except ValueError:
        return None


def _search(pattern: str, output: str) -> str | None:
    m = re.search(pattern, output)
    return m.group(1) if m else None


_PARSERS = {
    "kubeadm": _git_version,
    "kubelet": lambda out: _search(r"(?m)^Kubernetes (v\d+\.\d+\.\d+\S*)", out),
    "kubectl": _git_version,
    # "containerd github.com/containerd/containerd/v2 v2.0.2 <commit>" or "... 1.6.20~ds1 ..."
    "containerd": lambda out: _search(r"\sv?(\d+\.\d+\.\d+)", out),
}


class InstalledVersions(Fact):
    """Each tool's version in one command; a missing tool (exit 127) is a None, not an error."""

    def build(self) -> str:
        return "; ".join(f"echo '## {name}'; {cmd} 2>/dev/null; printf '\\n## exit %s\\n' \"$?\""
                         for name, cmd in VERSION_COMMANDS.items())

    def process(self, result: FactResult) -> Versions:
        # '## <tool>' holds the tool's output, the '## exit <code>' after it says whether it ran.
        found, tool = {}, None
        for name, text in _sections(result.stdout):
            if name in VERSION_COMMANDS:
                tool, output = name, text
            elif name.startswith("exit "):
                if tool and name == "exit 0":
                    found[tool] = _PARSERS[tool](output)
                tool = None
        return Versions(**{name: found.get(name) for name in VERSION_COMMANDS})


# ---- swap and cgroups ---------------------------------------------------------------


class Swaps(Fact):
    """Active swap areas (/proc/swaps, which every Linux has: swapon may not be installed)."""

    command = "cat /proc/swaps"

    def process(self, result: FactResult) -> list[str]:
        lines = result.stdout.splitlines()[1:]  # the first line is the column header
        return [line.split()[0] for line in lines if line.strip()]


class CgroupVersion(Fact):
    """2 when /sys/fs/cgroup is the unified hierarchy (cgroup2fs), 1 when it is v1's tmpfs of
    controllers (a hybrid host's unified mount below it does not count: the kubelet sees v1)."""

    command = "stat -fc %T /sys/fs/cgroup"

    def process(self, result: FactResult) -> int | None:
        return {"cgroup2fs": 2, "tmpfs": 1}.get(result.stdout.strip())


# ---- cluster membership ---------------------------------------------------------------


@dataclass(frozen=True)
class Kubeconfig:
    """The cluster a kubeconfig names: its API server and its CA's hash in kubeadm's form
    (``sha256:<hex>``, what ``kubeadm join --discovery-token-ca-cert-hash`` takes)."""

    server: str | None
    ca_hash: str | None


@dataclass(frozen=True)
class Membership:
    """admin.conf exists where a control plane was made; kubelet.conf where a kubelet joined."""

    admin: Kubeconfig | None
    kubelet: Kubeconfig | None


def ca_hash(pem: bytes) -> str:
    """kubeadm's CA pin: the SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(pem).public_key()
    return "sha256:" + hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _kubeconfig(name: str, lines: str) -> Kubeconfig:
    values = {}
    for line in lines.splitlines():
        key, _, value = line.strip().partition(":")
        values.setdefault(key, value.strip())  # kubeadm writes one cluster: the first one counts
    data = values.get("certificate-authority-data")
    try:
        digest = ca_hash(base64.b64decode(data, validate=True)) if data else None
    except ValueError as exc:  # binascii.Error is one too
        raise OperationError(f"{KUBE_DIR}/{name}: certificate-authority-data is not a PEM certificate ({exc}): "
                             "the file is damaged; `kubeadm reset` removes it") from None
    return Kubeconfig(server=values.get("server") or None, ca_hash=digest)


@dataclass(frozen=True)
class ClusterMembership(Fact):
    """Which cluster admin.conf and kubelet.conf name. Only their server and CA lines are read:
    admin.conf's client key never leaves the host."""

    directory: str = KUBE_DIR
    sudo = True

    def build(self) -> str:
        return (f"d={quote(self.directory)}; for f in admin.conf kubelet.conf; do "
                '[ -f "$d/$f" ] || continue; echo "## $f"; '
                "grep -E '^[[:space:]]*(server|certificate-authority-data):' \"$d/$f\"; done; true")

    def process(self, result: FactResult) -> Membership:
        found = dict(_sections(result.stdout))
        return Membership(*(_kubeconfig(name, found[name]) if name in found else None
                            for name in ("admin.conf", "kubelet.conf")))


_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def user_kubeconfig(user: str) -> str:
    """'~user/.kube/config'. ~user expands only unquoted, so the name is checked instead of quoted
    (the inventory's ssh.user pattern)."""
    if not _USER_RE.match(user):
        raise ValueError(f"invalid user name: {user!r}")
    return f"~{user}/.kube/config"


@dataclass(frozen=True)
class UserKubeconfig(Fact):
    """Whether ``~user/.kube/config`` is a copy of admin.conf (False when missing or different)."""

    user: str
    ok_exit_codes = (0, 1, 2)
    sudo = True

    def build(self) -> str:
        return f"cmp -s {ADMIN_CONF} {user_kubeconfig(self.user)}"

    def process(self, result: FactResult) -> bool:
        return result.exited == 0


# ---- nodes, routes, forwarding -------------------------------------------------------------


@dataclass(frozen=True)
class ClusterNode:
    name: str
    internal_ip: str | None
    pod_cidr: str | None
    ready: bool
    ready_message: str | None  # the kubelet's own words (why it is not Ready)


def _node(obj: dict) -> ClusterNode:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    ip = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    return ClusterNode(name=meta.get("name"), internal_ip=ip, pod_cidr=spec.get("podCIDR"),
                       ready=ready.get("status") == "True", ready_message=ready.get("message"))


class ClusterNodes(Fact):
    """The Nodes with their podCIDR, read with admin.conf (right after `kubeadm init`, before any
    user has a ~/.kube/config)."""

    command = f"kubectl --kubeconfig {ADMIN_CONF} get nodes -o json"
    sudo = True

    def process(self, result: FactResult) -> list[ClusterNode]:
        try:
            items = json.loads(result.stdout).get("items") or []
        except ValueError as exc:
            raise OperationError(f"kubectl get nodes returned no JSON: {exc}: {result.stdout[:200]!r}") from None
        return sorted((_node(o) for o in items), key=lambda n: n.name)


@dataclass(frozen=True)
class Route:
    dst: str       # "10.244.1.0/24", or "default"
    gateway: str | None
    dev: str | None


class Routes(Fact):
    """The host's IPv4 routes (main table)."""

    command = "ip -j -4 route show"

    def process(self, result: FactResult) -> list[Route]:
        text = result.stdout.strip()
        return [Route(r.get("dst"), r.get("gateway"), r.get("dev")) for r in (json.loads(text) if text else [])]


class ForwardRules(Fact):
    """The FORWARD chain as ``iptables -S`` prints it; None when iptables is not installed."""

    command = "iptables -w -S FORWARD"
    ok_exit_codes = (0, 127)
    sudo = True

    def process(self, result: FactResult) -> list[str] | None:
        return None if result.exited == 127 else result.stdout.splitlines()


class KubeadmErrors(Fact):
    """The failure lines of a kubeadm log labkit kept (``INIT_LOG``/``JOIN_LOG``): [] when the run it
    logged succeeded, None when there is no log (kubeadm never ran here through labkit)."""

    sudo = True

    def __init__(self, log: str):
        self.log = log

    def build(self) -> str:
        log = quote(self.log)
        return (f"if [ -f {log} ]; then echo '## log'; grep -E {quote(KUBEADM_ERROR_LINES)} {log}; fi; true")

    def process(self, result: FactResult) -> list[str] | None:
        found = dict(_sections(result.stdout))
        if "log" not in found:
            return None
        return [line.strip() for line in found["log"].splitlines() if line.strip()]
