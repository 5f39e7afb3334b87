"""`invoke setup-cluster`: from kubeadm-ready or bare hosts to a Ready kubeadm cluster.

Four runner passes, each facts -> plan -> apply (operations/cluster.py): every host prepared
(membership checked first: a host of another cluster is refused), kubeadm init on the control
plane, kubeadm join on the workers in parallel with a fresh token, and the host-gw pod network
once every Node has its podCIDR; then a wait until every Node is Ready. A host already in this
cluster gets no change from any pass. Plan mode prints the first two passes and says what the
others wait on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from labkit import ui
from labkit.errors import HostError, HostsFailed, OperationError
from labkit.facts import cluster as cf
from labkit.facts.containerd import ContainerdConfig
from labkit.facts.os import FileContent, OsRelease
from labkit.operations import cluster as ops
from labkit.operations.base import Command, PutFile
from labkit.remote import HostConnection, close_all, command_counts, connect
from labkit.runner import RunReport, Step, gather, run

DEFAULT_TIMEOUT = 180


@dataclass
class ClusterResult:
    reports: list[RunReport] = field(default_factory=list)
    nodes: list[cf.ClusterNode] = field(default_factory=list)
    hosts: dict[str, HostConnection] = field(default_factory=dict)

    @property
    def commands(self) -> dict[str, int]:
        return command_counts(self.hosts)


def _cluster_ca(cp: HostConnection) -> str | None:
    admin = gather(cp, {"m": cf.ClusterMembership()})["m"].admin
    return admin.ca_hash if admin else None


def _prepare_steps(inv, server: str, cluster_ca: str | None) -> dict[str, list[Step]]:
    cl, cp = inv.kubernetes.cluster, inv.control_plane.name

    def step(name: str) -> Step:
        facts = {"os": OsRelease(), "versions": cf.InstalledVersions(), "swaps": cf.Swaps(),
                 "cgroup": cf.CgroupVersion(), "membership": cf.ClusterMembership(),
                 "containerd": ContainerdConfig()}
        return Step("kubeadm-ready host", facts, lambda f: ops.prepare_host(
            host=name, control_plane=name == cp, family=f["os"]["family"], versions=f["versions"],
            swaps=f["swaps"], cgroup=f["cgroup"], membership=f["membership"], containerd_config=f["containerd"],
            server=server, cluster_ca=cluster_ca, cluster=cl))
    return {h.name: [step(h.name)] for h in inv.hosts}


def _control_plane_step(inv, server: str) -> Step:
    cp, cl, user = inv.control_plane, inv.kubernetes.cluster, inv.ssh.user

    def plan(f):
        member = ops.is_member(host=cp.name, control_plane=True, membership=f["membership"], server=server,
                               cluster_ca=None)
        return ops.control_plane(member=member, config=ops.init_config(name=cp.name, address=cp.address, cluster=cl),
                                 user=user, kubeconfig_current=f["kubeconfig"])
    return Step("kubeadm init", {"membership": cf.ClusterMembership(), "kubeconfig": cf.UserKubeconfig(user)}, plan)


def _workers(inv) -> list:
    return [h for h in inv.hosts if h.name != inv.control_plane.name]


def _join_steps(inv, hosts, server: str, cluster_ca: str | None) -> dict[str, list[Step]]:
    """A join step for every worker; a bootstrap token is made only when one is not a member."""
    workers = _workers(inv)
    members = {w.name: ops.is_member(host=w.name, control_plane=False, server=server, cluster_ca=cluster_ca,
                                     membership=gather(hosts[w.name], {"m": cf.ClusterMembership()})["m"])
               for w in workers}
    join = None
    if not all(members.values()):
        res = hosts[inv.control_plane.name].run(ops.TOKEN_CREATE.command, sudo=True, check=False)
        if res.exited != 0:
            raise HostError(inv.control_plane.name, f"{ops.TOKEN_CREATE.description} failed: {res.stderr.strip()}")
        join = ops.parse_join_command(res.stdout)

    def step(w) -> Step:
        config = "" if members[w.name] else ops.join_config(name=w.name, address=w.address, join=join,
                                                                      cluster=inv.kubernetes.cluster)
        return Step("kubeadm join", {}, lambda f: ops.join_worker(member=members[w.name], config=config))
    return {w.name: [step(w)] for w in workers}


def _nodes_with_cidrs(cp: HostConnection, names: list[str], timeout: float) -> list[cf.ClusterNode]:
    """The Nodes once every host has registered and the controller-manager gave each a podCIDR."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = gather(cp, {"n": cf.ClusterNodes()})["n"]
        by = {n.name: n for n in nodes}
        missing = [n for n in names if n not in by or not by[n].pod_cidr]
        if not missing:
            return nodes
        if time.monotonic() > deadline:
            raise HostError(cp.name, f"node(s) {', '.join(missing)} not registered with a podCIDR after "
                                     f"{timeout:.0f}s: on each, `journalctl -u kubelet -n 50`")
        time.sleep(1)


def _network_steps(inv, nodes: list[cf.ClusterNode]) -> dict[str, list[Step]]:
    subnet = inv.kubernetes.cluster.pod_subnet

    def step(name: str) -> Step:
        facts = {"routes": cf.Routes(), "conflist": FileContent(cf.CNI_CONFLIST), "forward": cf.ForwardRules()}
        return Step("pod network (host-gw)", facts, lambda f: ops.pod_network(
            node=name, nodes=nodes, routes=f["routes"], conflist=f["conflist"], forward_rules=f["forward"],
            pod_subnet=subnet))
    return {h.name: [step(h.name)] for h in inv.hosts}


def _cni_manifest_step(inv) -> Step:
    """Instead of host-gw: the inventory's CNI manifest, applied on the control plane."""
    text = open(inv.kubernetes.cluster.cni_manifest, encoding="utf-8").read()
    target = "/var/lib/labkit/cni.yaml"

    def plan(f):
        if f["current"] == text:
            return
        yield PutFile(target, text, description=f"CNI manifest {inv.kubernetes.cluster.cni_manifest}")
        yield Command(f"kubectl --kubeconfig {cf.ADMIN_CONF} apply -f {target}", description="apply the CNI manifest")
    return Step("pod network (manifest)", {"current": FileContent(target)}, plan)


def _wait_ready(cp: HostConnection, names: list[str], timeout: float) -> list[cf.ClusterNode]:
    deadline = time.monotonic() + timeout
    ui.line(cp.name, "wait", "running", f"every node Ready ({', '.join(names)})")
    while True:
        nodes = gather(cp, {"n": cf.ClusterNodes()})["n"]
        waiting = {n.name: n.ready_message or "not Ready" for n in nodes if not n.ready}
        waiting.update({n: "not registered" for n in names if n not in {x.name for x in nodes}})
        if not waiting:
            ui.line(cp.name, "wait", "ok", f"{len(nodes)} node(s) Ready")
            return nodes
        if time.monotonic() > deadline:
            raise HostsFailed("setup-cluster", {n: f"not Ready after {timeout:.0f}s: {why} "
                                                   "(on the node: `journalctl -u kubelet -n 50`)"
                                                for n, why in sorted(waiting.items())})
        time.sleep(1)


def _pass(result: ClusterResult, hosts, steps, title: str, plan: bool) -> RunReport:
    report = run(hosts, steps, title=title, plan_only=plan)
    result.reports.append(report)
    report.raise_for_failures()
    return report


def _reset_steps(inv) -> dict[str, list[Step]]:
    step = Step("kubeadm reset", {"membership": cf.ClusterMembership(), "conflist": FileContent(cf.CNI_CONFLIST)},
                lambda f: ops.reset(membership=f["membership"], conflist=f["conflist"]))
    return {h.name: [step] for h in inv.hosts}


def setup_cluster(inv, *, plan: bool = False, reset: bool = False, timeout: int = DEFAULT_TIMEOUT) -> ClusterResult:
    """``reset``: undo kubeadm on every host first (the task asks for --yes before it gets here)."""
    cp_host = inv.control_plane
    server = ops.api_server(cp_host.address)
    hosts = connect(inv)
    result = ClusterResult(hosts=hosts)
    try:
        cp = hosts[cp_host.name]
        names = [h.name for h in inv.hosts]
        if reset:
            _pass(result, hosts, _reset_steps(inv), "setup-cluster: reset", plan)
            if plan:
                ui.heading("setup-cluster: the cluster is made again after the reset (plan mode: nothing was changed)")
                return result
        _pass(result, hosts, _prepare_steps(inv, server, _cluster_ca(cp)), "setup-cluster: hosts", plan)
        _pass(result, hosts, {cp_host.name: [_control_plane_step(inv, server)]}, "setup-cluster: control plane",
              plan)
        if plan:
            ui.heading("setup-cluster: kubeadm join on the workers and the pod network follow kubeadm init "
                       "(plan mode: nothing was changed)")
            return result
        joins = _join_steps(inv, hosts, server, _cluster_ca(cp))
        join_report = run(hosts, joins, title="setup-cluster: workers", plan_only=False)
        result.reports.append(join_report)
        joined = [n for n in names if n not in join_report.failures]
        if inv.kubernetes.cluster.cni_manifest:
            _pass(result, hosts, {cp_host.name: [_cni_manifest_step(inv)]}, "setup-cluster: pod network", False)
        else:
            nodes = _nodes_with_cidrs(cp, joined, timeout)
            _pass(result, hosts, _network_steps(inv, nodes) | {n: [] for n in names if n not in joined},
                  "setup-cluster: pod network", False)
        result.nodes = _wait_ready(cp, joined, timeout)
        join_report.raise_for_failures()  # the others finished; now say which join failed and why
        return result
    except OperationError as exc:
        raise HostsFailed("setup-cluster", {cp_host.name: str(exc)}) from None
    finally:
        close_all(hosts)


def changed(result: ClusterResult) -> bool:
    return any(r.changed_hosts for r in result.reports)

