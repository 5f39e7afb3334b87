"""Planners for `invoke setup-cluster`: from bare hosts to a kubeadm cluster with a host-gw pod network.

Per host, in order: ``prepare_host`` (refuse a host of another cluster, swap or cgroup v1 the
kubelet would refuse; install what is missing), then ``control_plane`` (kubeadm init) or
``join_worker`` (kubeadm join with a token from ``TOKEN_CREATE``), then ``pod_network``. A host
that is already part of this cluster gets nothing from any of them. The cluster is named by
``api_server(<control-plane address>)`` and, once kubeadm init has run, by the CA hash in the
control plane's admin.conf (``ClusterMembership``): a worker whose kubelet.conf names another is
refused, never reset, unless the user asks for ``reset``.

The pod network is flannel's host-gw backend without flannel, whose image an offline lab cannot
pull: each node gets a CNI bridge for its podCIDR and a route to every other node's podCIDR via
that node, which works while all nodes share one L2 segment.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Iterator

import yaml

from labkit.errors import OperationError
from labkit.facts.cluster import (ADMIN_CONF, CNI_CONFLIST, INIT_LOG, JOIN_LOG, KUBE_DIR, KUBEADM_ERROR_LINES,
                                  ClusterNode, Membership, Route, Versions, user_kubeconfig)
from labkit.facts.containerd import CONFIG_TOML, lookup, table_name
from labkit.operations import containerd
from labkit.operations.base import Command, PutFile
from labkit.operations.containerd import restart as restart_containerd
from labkit.shell import quote

API_PORT = 6443
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
KUBEADM_API = "kubeadm.k8s.io/v1beta4"
INIT_CONFIG = f"{KUBE_DIR}/labkit-init.yaml"
JOIN_CONFIG = f"{KUBE_DIR}/labkit-join.yaml"
RESET_LOG = "/var/log/labkit-kubeadm-reset.log"
KUBE_PACKAGES = ("kubelet", "kubeadm", "kubectl")
# The phases `kubeadm join --help` lists (v1.37.2): a join skips those of skip_phases it has.
KUBEADM_JOIN_PHASES = (
    "preflight", "control-plane-prepare", "control-plane-prepare/download-certs",
    "control-plane-prepare/certs", "control-plane-prepare/kubeconfig", "control-plane-prepare/control-plane",
    "kubelet-start", "etcd-join", "kubelet-wait-bootstrap", "control-plane-join",
    "control-plane-join/mark-control-plane", "wait-control-plane",
)
TOKEN_CREATE = Command(f"kubeadm token create --kubeconfig {ADMIN_CONF} --ttl 30m --print-join-command",
                       description="a bootstrap token for the workers (valid 30 minutes)")


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def endpoint(address: str) -> str:
    """The API server's host:port on the control-plane host ('[fd00::6]:6443' for IPv6)."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{API_PORT}"


def api_server(address: str) -> str:
    """The server URL every kubeconfig of this cluster names (kubeadm writes controlPlaneEndpoint)."""
    return f"https://{endpoint(address)}"


# ---- kubeadm configuration ---------------------------------------------------------------


def _yaml(*docs: dict) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def _node_registration(name: str, address: str, cluster) -> dict:
    registration = {"name": name, "criSocket": CRI_SOCKET}
    if _is_ip(address):
        # Otherwise the kubelet takes the default route's address; a lab host often has several.
        registration["kubeletExtraArgs"] = [{"name": "node-ip", "value": address}]
    if cluster.ignore_preflight_errors:
        registration["ignorePreflightErrors"] = list(cluster.ignore_preflight_errors)
    return registration


def kubelet_configuration(kubelet) -> dict:
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
           # containerd's runc runs with SystemdCgroup = true (containerd_for_kubelet): the same driver.
           "cgroupDriver": "systemd",
           "failSwapOn": kubelet.fail_swap_on, "failCgroupV1": kubelet.fail_cgroup_v1}
    if not kubelet.disk_eviction:
        # Hosts sharing one disk (kind's nodes, the twin's) would all see its pressure as their own.
        doc["imageGCHighThresholdPercent"] = 100
        doc["evictionHard"] = {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"}
    return doc


def kube_proxy_configuration(kube_proxy) -> dict:
    doc = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables"}
    if not kube_proxy.set_conntrack_max:
        doc["conntrack"] = {"maxPerCore": 0}  # 0: leave nf_conntrack_max as the host has it
    return doc


def init_config(*, name: str, address: str, cluster) -> str:
    """kubeadm init's config file for the control-plane host; ``cluster`` is the inventory's
    ``kubernetes.cluster``."""
    init = {"apiVersion": KUBEADM_API, "kind": "InitConfiguration"}
    if _is_ip(address):
        init["localAPIEndpoint"] = {"advertiseAddress": address, "bindPort": API_PORT}
    init["nodeRegistration"] = _node_registration(name, address, cluster)
    if cluster.skip_phases:
        init["skipPhases"] = list(cluster.skip_phases)
    config = {"apiVersion": KUBEADM_API, "kind": "ClusterConfiguration", "kubernetesVersion": cluster.version,
              "controlPlaneEndpoint": endpoint(address),
              "networking": {"podSubnet": cluster.pod_subnet, "serviceSubnet": cluster.service_subnet}}
    if cluster.image_repository:
        config["imageRepository"] = cluster.image_repository
    return _yaml(init, config, kubelet_configuration(cluster.kubelet), kube_proxy_configuration(cluster.kube_proxy))


@dataclass(frozen=True)
class JoinCommand:
    """What `kubeadm token create --print-join-command` gives a worker."""

    endpoint: str   # host:port of the API server
    token: str
    ca_hash: str    # sha256:<hex>


_TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_CA_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_join_command(output: str) -> JoinCommand:
    """`kubeadm join <endpoint> --token <token> --discovery-token-ca-cert-hash sha256:<hex>`,
    on the last line of the output (warnings may come before it)."""
    lines = output.strip().splitlines()
    words = lines[-1].split() if lines else []
    try:
        if words[:2] != ["kubeadm", "join"]:
            raise ValueError
        join = JoinCommand(words[2], words[words.index("--token") + 1],
                           words[words.index("--discovery-token-ca-cert-hash") + 1])
    except (ValueError, IndexError):
        raise OperationError(f"kubeadm token create printed no join command: {output.strip()[-300:]!r}") from None
    if not (_TOKEN_RE.match(join.token) and _CA_HASH_RE.match(join.ca_hash)):
        raise OperationError(f"kubeadm's join command has a malformed token or CA hash: {lines[-1][:300]!r}")
    return join


def join_config(*, name: str, address: str, join: JoinCommand, cluster) -> str:
    """kubeadm join's config file for a worker; ``cluster`` is the inventory's ``kubernetes.cluster``."""
    doc = {"apiVersion": KUBEADM_API, "kind": "JoinConfiguration",
           "discovery": {"bootstrapToken": {"apiServerEndpoint": join.endpoint, "token": join.token,
                                            "caCertHashes": [join.ca_hash]}},
           "nodeRegistration": _node_registration(name, address, cluster)}
    phases = [p for p in cluster.skip_phases if p in KUBEADM_JOIN_PHASES]
    if phases:
        doc["skipPhases"] = phases
    return _yaml(doc)


# ---- is this host free, part of this cluster, or of another one? -----------------------------


def _reset_fix(host: str) -> str:
    return (f"labkit resets a cluster only when asked: run `invoke setup-cluster --reset --yes`, or "
            f"`kubeadm reset -f` on {host} by hand, then run again")


def is_member(*, host: str, control_plane: bool, membership: Membership, server: str,
              cluster_ca: str | None) -> bool:
    """True when ``host`` is already part of this cluster, False when it is free; raises for a host
    of another cluster. ``cluster_ca``: the control plane's CA hash (None before kubeadm init)."""
    for name, found in (("admin.conf", membership.admin), ("kubelet.conf", membership.kubelet)):
        if found and found.server != server:
            raise OperationError(f"{host} belongs to another cluster: its {KUBE_DIR}/{name} names the API server "
                                 f"{found.server}, this inventory's is {server}. {_reset_fix(host)}")
    if control_plane:
        if membership.admin:
            return True
        if membership.kubelet:
            raise OperationError(f"{host} joined the cluster at {server} as a worker (kubelet.conf, no admin.conf), "
                                 f"but the inventory makes it the control plane. {_reset_fix(host)}")
        return False
    if not membership.kubelet:
        return False
    if cluster_ca is None:
        raise OperationError(f"{host} joined a cluster at {server} whose control plane is gone (the control-plane "
                             f"host has no admin.conf). {_reset_fix(host)}")
    if membership.kubelet.ca_hash != cluster_ca:
        raise OperationError(f"{host} belongs to an earlier cluster at {server}: its CA {membership.kubelet.ca_hash} "
                             f"is not the control plane's {cluster_ca} (kubeadm init ran again since it "
                             f"joined). {_reset_fix(host)}")
    return True


def refuse_swap(host: str, swaps: list[str], kubelet) -> None:
    if swaps and kubelet.fail_swap_on:
        raise OperationError(
            f"{host} has swap on ({', '.join(swaps)}) and the kubelet refuses to start with swap: run `swapoff -a` "
            "and remove the swap lines from /etc/fstab, or set kubernetes.cluster.kubelet.fail_swap_on: false")


def refuse_cgroup_v1(host: str, cgroup: int | None, kubelet) -> None:
    if cgroup == 1 and kubelet.fail_cgroup_v1:
        raise OperationError(
            f"{host} runs cgroup v1 and the kubelet refuses it since Kubernetes 1.35: boot it with cgroup v2 "
            "(systemd.unified_cgroup_hierarchy=1), or set kubernetes.cluster.kubelet.fail_cgroup_v1: false")


# ---- packages --------------------------------------------------------------------------------


def _apt_repo(minor: str) -> str:
    return f"https://pkgs.k8s.io/core:/stable:/{minor}/deb/"


def _rpm_repo(minor: str) -> str:
    return f"https://pkgs.k8s.io/core:/stable:/{minor}/rpm/"


APT_KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
APT_SOURCE = "/etc/apt/sources.list.d/kubernetes.list"
YUM_REPO = "/etc/yum.repos.d/kubernetes.repo"
DOCKER_YUM_REPO = "/etc/yum.repos.d/docker-ce.repo"
# Docker's repository (its docker-ce.repo, stable section): RHEL has no containerd package of its own.
DOCKER_YUM_REPO_TEXT = """\
[docker-ce-stable]
name=Docker CE Stable - $basearch
baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable
enabled=1
gpgcheck=1
gpgkey=https://download.docker.com/linux/centos/gpg
"""
# Waits for a held dpkg lock; the same as labkit.operations.packages.APT_INSTALL (a unit test keeps them equal).
APT_INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y"


def _dnf(args: str) -> str:
    return f"if command -v dnf >/dev/null 2>&1; then dnf -y {args}; else yum -y {args}; fi"


def _debian_kube_packages(version: str, minor: str) -> Iterator[Command | PutFile]:
    # The steps of kubernetes.io's "Installing kubeadm" for Debian-based distributions.
    yield Command("apt-get update && " + f"{APT_INSTALL} apt-transport-https ca-certificates curl gpg",
                  description="what the Kubernetes apt repository needs")
    yield Command(f"mkdir -p -m 755 /etc/apt/keyrings && curl -fsSL {quote(_apt_repo(minor) + 'Release.key')} "
                  f"| gpg --dearmor --yes -o {APT_KEYRING}", description=f"pkgs.k8s.io signing key ({minor})")
    yield PutFile(APT_SOURCE, f"deb [signed-by={APT_KEYRING}] {_apt_repo(minor)} /\n",
                  description=f"Kubernetes {minor} apt repository")
    # '1.37.2-*': the repository's package revision (1.37.2-1.1) is not the inventory's business.
    pinned = " ".join(quote(f"{name}={version.lstrip('v')}-*") for name in KUBE_PACKAGES)
    yield Command(f"apt-get update && {APT_INSTALL} --allow-downgrades --allow-change-held-packages {pinned}",
                  description=f"install {', '.join(KUBE_PACKAGES)} {version}")
    yield Command(f"apt-mark hold {' '.join(KUBE_PACKAGES)}", description="hold them at this version")


def _rhel_kube_packages(version: str, minor: str) -> Iterator[Command | PutFile]:
    # exclude= is dnf's hold: only --disableexcludes=kubernetes installs or upgrades them.
    repo = (f"[kubernetes]\nname=Kubernetes\nbaseurl={_rpm_repo(minor)}\nenabled=1\ngpgcheck=1\n"
            f"gpgkey={_rpm_repo(minor)}repodata/repomd.xml.key\n"
            "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n")
    yield PutFile(YUM_REPO, repo, description=f"Kubernetes {minor} yum repository")
    pinned = " ".join(quote(f"{name}-{version.lstrip('v')}") for name in KUBE_PACKAGES)
    yield Command(_dnf(f"install --disableexcludes=kubernetes {pinned}"),
                  description=f"install {', '.join(KUBE_PACKAGES)} {version}")
    yield Command("systemctl enable kubelet", description="enable the kubelet (kubeadm starts it)")


def kube_packages(*, family: str, versions: Versions, version: str) -> Iterator[Command | PutFile]:
    """kubelet, kubeadm and kubectl at ``version`` ('v1.37.2') from pkgs.k8s.io; nothing when all
    three answer with that version already (packages or binaries put there by hand)."""
    if all(getattr(versions, name) == version for name in KUBE_PACKAGES):
        return
    minor = version.rsplit(".", 1)[0]
    if family == "debian":
        yield from _debian_kube_packages(version, minor)
    elif family == "rhel":
        yield from _rhel_kube_packages(version, minor)
    else:
        raise OperationError(f"cannot install kubelet, kubeadm and kubectl {version}: unknown OS family (not "
                             "Debian/Ubuntu or RHEL-like); install them by hand and run again")


def containerd_package(*, family: str, versions: Versions) -> Iterator[Command | PutFile]:
    if versions.containerd:
        return
    if family == "debian":
        yield Command(f"apt-get update && {APT_INSTALL} containerd", description="install containerd")
    elif family == "rhel":
        yield PutFile(DOCKER_YUM_REPO, DOCKER_YUM_REPO_TEXT, description="Docker's yum repository (containerd.io)")
        yield Command(_dnf("install containerd.io"), description="install containerd.io")
        yield Command("systemctl enable --now containerd", description="start containerd")
    else:
        raise OperationError("cannot install containerd: unknown OS family (not Debian/Ubuntu or RHEL-like); "
                             "install it by hand and run again")


# ---- containerd for the kubelet: CRI on, runc under systemd's cgroups --------------------------

# The runc runtime's table per config version (containerd 1.x: 2, containerd 2.x: 3).
RUNC_TABLE = {
    2: ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc"),
    3: ("plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc"),
}
# docker's containerd.io package ships disabled_plugins = ["cri"]: the kubelet needs it on.
CRI_PLUGINS = {"cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"}


def containerd_for_kubelet(*, config: dict) -> Iterator[Command | PutFile]:
    """containerd's config.toml as the kubelet needs it; ``config`` is the ContainerdConfig fact."""
    if not config["valid"]:
        raise OperationError(f"{CONFIG_TOML} is not valid TOML ({config['error']}); fix it and run again")
    if not config["exists"]:
        # containerd's own defaults for whichever version is installed by now (unknown while planning,
        # and no Python on the host to edit by key): both write `SystemdCgroup = false` for runc.
        yield Command(f"mkdir -p /etc/containerd && containerd config default > {CONFIG_TOML}",
                      description="containerd's default config.toml")
        yield Command(f"sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' {CONFIG_TOML}",
                      description="runc with SystemdCgroup = true")
        yield restart_containerd(config_existed=False)
        return
    version = config["version"]
    if version not in RUNC_TABLE:
        raise OperationError(f"{CONFIG_TOML} has config version {version!r}; labkit edits version 2 (containerd "
                             f"1.x) and 3 (2.x): regenerate it with `containerd config default > {CONFIG_TOML}` "
                             "and run again")
    doc = containerd.load(config["raw"])
    data, runc = doc.unwrap(), RUNC_TABLE[version]
    disabled = doc.get("disabled_plugins")
    if isinstance(disabled, list):
        for i in reversed(range(len(disabled))):
            if disabled[i] in CRI_PLUGINS:
                del disabled[i]  # in place: the array's other items and comments stay
    if lookup(data, runc) is None:
        containerd.put(doc, runc + ("runtime_type",), "io.containerd.runc.v2")
    if lookup(data, runc + ("options", "SystemdCgroup")) is not True:
        containerd.put(doc, runc + ("options", "SystemdCgroup"), True)
    new = doc.as_string()
    if new == config["raw"]:
        return
    fix = f"remove CRI from disabled_plugins and set SystemdCgroup = true under [{table_name(runc + ('options',))}]"
    if CRI_PLUGINS & set(containerd.checked(new, {runc + ("options", "SystemdCgroup"): True}, fix)
                         .get("disabled_plugins") or []):
        raise OperationError(f"could not edit {CONFIG_TOML} by key; {fix} by hand and run again")
    yield PutFile(CONFIG_TOML, new, description="containerd: CRI on, runc with SystemdCgroup = true")
    yield restart_containerd(config_existed=True)


def prepare_host(*, host: str, control_plane: bool, family: str, versions: Versions, swaps: list[str],
                 cgroup: int | None, membership: Membership, containerd_config: dict, server: str,
                 cluster_ca: str | None, cluster) -> Iterator[Command | PutFile]:
    """Everything a host needs before kubeadm runs on it; nothing on a member of this cluster."""
    if is_member(host=host, control_plane=control_plane, membership=membership, server=server,
                 cluster_ca=cluster_ca):
        return
    refuse_swap(host, swaps, cluster.kubelet)
    refuse_cgroup_v1(host, cgroup, cluster.kubelet)
    yield from containerd_package(family=family, versions=versions)
    yield from containerd_for_kubelet(config=containerd_config)
    yield from kube_packages(family=family, versions=versions, version=cluster.version)


# ---- kubeadm init and join ------------------------------------------------------------------------


def _logged(command: str, log: str) -> str:
    """Run ``command`` into ``log``; on failure print kubeadm's own error lines (else the log's tail)."""
    return (f"{command} > {log} 2>&1 || {{ grep -E {quote(KUBEADM_ERROR_LINES)} {log} >&2 "
            f"|| tail -n 25 {log} >&2; exit 1; }}")


def control_plane(*, member: bool, config: str, user: str, kubeconfig_current: bool) -> Iterator[Command | PutFile]:
    """kubeadm init with ``config`` (``init_config``), then admin.conf as ``user``'s kubeconfig."""
    if not member:
        yield PutFile(INIT_CONFIG, config, mode=0o600, description="kubeadm init configuration")
        yield Command(_logged(f"kubeadm init --config {INIT_CONFIG}", INIT_LOG),
                      description=f"kubeadm init (log: {INIT_LOG})")
    if not member or not kubeconfig_current:
        target = user_kubeconfig(user)
        yield Command(f"install -d -m 700 -o {user} {target.rsplit('/', 1)[0]} && "
                      f"install -m 600 -o {user} {ADMIN_CONF} {target}", description=f"admin.conf as {target}")


def join_worker(*, member: bool, config: str) -> Iterator[Command | PutFile]:
    """kubeadm join with ``config`` (``join_config``; it holds the token, so only root reads it)."""
    if member:
        return
    yield PutFile(JOIN_CONFIG, config, mode=0o600, description="kubeadm join configuration")
    yield Command(_logged(f"kubeadm join --config {JOIN_CONFIG}", JOIN_LOG),
                  description=f"kubeadm join (log: {JOIN_LOG})")


def reset(*, membership: Membership, conflist: str | None) -> Iterator[Command]:
    """Undo kubeadm init/join on a host (only with --reset --yes); nothing on a free host."""
    if membership.admin or membership.kubelet:
        yield Command(_logged("kubeadm reset -f", RESET_LOG), description=f"kubeadm reset (log: {RESET_LOG})")
    if conflist is not None:
        yield Command(f"rm -f {CNI_CONFLIST}", description="remove labkit's CNI config")


# ---- pod network: CNI bridge per node, host-gw routes, FORWARD -------------------------------------


def cni_conflist(pod_cidr: str) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "labkit",
        "plugins": [
            # No masquerade: pods reach each other and the hosts with their own addresses (host-gw).
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]}, indent=1) + "\n"


def _pod_cidr(node: ClusterNode) -> str:
    if not node.pod_cidr:
        raise OperationError(f"node {node.name} has no podCIDR yet: the controller-manager gives each node one "
                             f"from the pod subnet; wait for it, or see `kubectl describe node {node.name}`")
    return str(ipaddress.IPv4Network(node.pod_cidr))


def _internal_ip(node: ClusterNode) -> str:
    if not node.internal_ip:
        raise OperationError(f"node {node.name} reports no InternalIP: see `kubectl describe node {node.name}`")
    return str(ipaddress.ip_address(node.internal_ip))


def host_gw_routes(*, node: str, nodes: list[ClusterNode], routes: list[Route]) -> Iterator[Command]:
    """A route to every other node's podCIDR via that node; only the missing or wrong ones."""
    via = {r.dst: r.gateway for r in routes}
    for other in nodes:
        if other.name == node:
            continue
        cidr, gateway = _pod_cidr(other), _internal_ip(other)
        if via.get(cidr) != gateway:
            yield Command(f"ip route replace {quote(cidr)} via {quote(gateway)}",
                          description=f"route to {other.name}'s pods {cidr} via {gateway}")


def forward_pod_traffic(*, pod_subnet: str, rules: list[str] | None) -> Iterator[Command]:
    """ACCEPT pod traffic in FORWARD, as flannel does: docker sets the chain's policy to DROP."""
    if rules is None:
        return  # no iptables on the host: nothing there filters forwarded packets
    for flag in ("-s", "-d"):
        if f"-A FORWARD {flag} {pod_subnet} -j ACCEPT" not in rules:
            yield Command(f"iptables -w -A FORWARD {flag} {quote(pod_subnet)} -j ACCEPT",
                          description=f"forward pod traffic ({flag} {pod_subnet})")


def pod_network(*, node: str, nodes: list[ClusterNode], routes: list[Route], conflist: str | None,
                forward_rules: list[str] | None, pod_subnet: str) -> Iterator[Command | PutFile]:
    """The host-gw pod network on one node; ``conflist`` is the current CNI_CONFLIST (None: absent)."""
    me = next((n for n in nodes if n.name == node), None)
    if me is None:
        raise OperationError(f"no Node named {node} in the cluster: its kubelet has not registered (on {node}: "
                             "`journalctl -u kubelet -n 50`)")
    wanted = cni_conflist(_pod_cidr(me))
    if conflist != wanted:
        yield PutFile(CNI_CONFLIST, wanted, description=f"CNI bridge cni0 for {me.pod_cidr}")
    yield from host_gw_routes(node=node, nodes=nodes, routes=routes)
    yield from forward_pod_traffic(pod_subnet=pod_subnet, rules=forward_rules)
