"""Host-side task bodies: setup_registry, setup_nfs, build_images, doctor.

Each flow builds per-host ``Step``s (facts + an operation), hands them to the
runner (plan mode stops after printing the plan), then checks the result from
the hosts' side (``GET /v2/``, ``showmount -e``, tags list). A failing host is
named; the others' results are still printed; any failure ends in HostsFailed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from labkit import runtimes, ui
from labkit.errors import HostsFailed, OperationError
from labkit.facts import cluster as cluster_facts
from labkit.facts.docker import DockerInfo
from labkit.facts.kube import KubectlVersionFact, Nodes
from labkit.facts.nfs import Exports, GaneshaConf, LiveExports, NfsdAvailable, Showmount
from labkit.facts.os import AptIndex, DirExists, InstalledPackages, OsRelease, Which
from labkit.facts.registry import RegistryContainer, RegistryImageConfig, RegistryPing, RegistryTags
from labkit.facts.services import Firewalld, ServiceState, is_running
from labkit.operations import images as image_ops
from labkit.operations import nfs as nfs_ops
from labkit.operations import registry as registry_ops
from labkit.remote import HostConnection, close_all, command_counts, connect, run_parallel
from labkit.runner import FactError, RunReport, Step, gather, run

NFS_PACKAGES = ("nfs-utils", "rpcbind", "nfs-kernel-server", "nfs-common", "nfs-ganesha", "nfs-ganesha-vfs")


@dataclass
class FlowResult:
    report: RunReport | None
    checks: list[list[str]]  # [host, check, status, detail]
    hosts: dict[str, HostConnection]

    @property
    def commands(self) -> dict[str, int]:
        return command_counts(self.hosts)


# ------------------------------------------------------------------ checks


def check(hosts: list[HostConnection], title: str, facts: Callable[[HostConnection], dict],
          judge: Callable[[HostConnection, dict], tuple[bool, str]]) -> list[list[str]]:
    """Read ``facts(host)`` on every host in parallel and judge them -> rows, printed."""
    rows: dict[str, list[str]] = {}

    def one(h: HostConnection):
        ok, detail = judge(h, gather(h, facts(h)))
        return ok, detail

    outcome = run_parallel(hosts, one)
    for h in hosts:
        if h.name in outcome.failures:
            rows[h.name] = [h.name, title, "failed", outcome.failures[h.name]]
        else:
            ok, detail = outcome.results[h.name]
            rows[h.name] = [h.name, title, "ok" if ok else "failed", detail]
        ui.line(*rows[h.name])
    return [rows[h.name] for h in hosts]


def _finish(title: str, report: RunReport | None, checks: list[list[str]]) -> None:
    failures = dict(report.failures) if report else {}
    failed_checks: dict[str, list[str]] = {}
    for host, what, status, detail in checks:
        if status == "failed" and host not in failures:
            failed_checks.setdefault(host, []).append(f"{what}: {detail}" if detail else what)
    for host, items in failed_checks.items():
        # One check: its detail says what to do; several: name them, the table has the details.
        failures[host] = items[0] if len(items) == 1 else "failed checks: " + ", ".join(
            i.split(": ", 1)[0] for i in items) + " (see the table above)"
    if failures:
        raise HostsFailed(title, failures)


# ------------------------------------------------------------------ setup-registry


def registry_steps(inv) -> dict[str, list[Step]]:
    reg, address = inv.registry, inv.registry_address
    steps: dict[str, list[Step]] = {h.name: [] for h in inv.hosts}
    steps[inv.registry_host.name].append(Step(
        "registry container",
        {"container": RegistryContainer(reg.container), "data_dir": DirExists(reg.data_dir)},
        lambda f: registry_ops.registry_container(
            image=reg.image, name=reg.container, port=reg.port, data_dir=reg.data_dir,
            container=f["container"], data_dir_exists=f["data_dir"]),
    ))
    for h in inv.hosts:  # every runtime a host has trusts the registry (labkit/runtimes.py)
        steps[h.name] += runtimes.trust_steps(h, address, pushes=h.name == inv.registry_host.name)
    return steps


def registry_check(hosts: list[HostConnection], address: str) -> list[list[str]]:
    return check(hosts, f"GET http://{address}/v2/", lambda h: {"ping": RegistryPing(address)},
                 lambda h, f: (f["ping"]["ok"], "" if f["ping"]["ok"] else
                               f"{f['ping']['error']} (is the registry container running? run setup-registry)"))


def setup_registry(inv, *, plan: bool = False) -> FlowResult:
    hosts = connect(inv)
    try:
        report = run(hosts, registry_steps(inv), title="setup-registry", plan_only=plan)
        checks = [] if plan else registry_check(
            [h for n, h in hosts.items() if n not in report.failures], inv.registry_address)
        _finish("setup-registry", report, checks)
        return FlowResult(report, checks, hosts)
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ setup-nfs


def _services(facts: dict) -> dict:
    """The ``svc:<unit>`` facts of an NFS server step -> {unit: state}."""
    return {k[4:]: v for k, v in facts.items() if k.startswith("svc:")}


def nfs_steps(inv) -> dict[str, list[Step]]:
    nfs = inv.nfs
    server = inv.nfs_server.name
    steps: dict[str, list[Step]] = {h.name: [] for h in inv.hosts}
    base = {"os": OsRelease(), "packages": InstalledPackages(NFS_PACKAGES)}
    if nfs.server == "kernel":
        facts = dict(base, apt=AptIndex(tuple(nfs_ops.KERNEL_PACKAGES["debian"])), nfsd=NfsdAvailable(), exports=Exports(), live=LiveExports(), firewall=Firewalld(),
                     export_dir=DirExists(nfs.export),
                     **{f"svc:{u}": ServiceState(u) for u in ("rpcbind", "nfs-server")})
        steps[server].append(Step(
            "NFS server (kernel)", facts,
            lambda f: nfs_ops.kernel_server(
                export=nfs.export, clients=nfs.clients, options=list(nfs.options), family=f["os"]["family"],
                nfsd=f["nfsd"], installed=f["packages"], exports=f["exports"], export_exists=f["export_dir"],
                services=_services(f), live=f["live"], apt=f["apt"], firewall=f["firewall"]),
        ))
    else:
        facts = dict(base, apt=AptIndex(tuple(nfs_ops.GANESHA_PACKAGES)), conf=GaneshaConf(),
                     export_dir=DirExists(nfs.export),
                     **{f"svc:{u}": ServiceState(u) for u in nfs_ops.GANESHA_SERVICES})
        steps[server].append(Step(
            "NFS server (nfs-ganesha)", facts,
            lambda f: nfs_ops.ganesha_server(
                export=nfs.export, clients=nfs.clients, options=list(nfs.options), family=f["os"]["family"],
                installed=f["packages"], conf=f["conf"], export_exists=f["export_dir"],
                services=_services(f), apt=f["apt"]),
        ))
    for h in inv.hosts:
        if h.name != server:
            steps[h.name].append(Step(
                "NFS client", dict(base, apt=AptIndex(tuple(nfs_ops.CLIENT_PACKAGES["debian"]))),
                lambda f: nfs_ops.client(family=f["os"]["family"], installed=f["packages"], apt=f["apt"])))
    return steps


def export_check(hosts: list[HostConnection], server_address: str, export: str) -> list[list[str]]:
    def judge(h, f):
        sm = f["showmount"]
        if not sm["ok"]:
            return False, f"{sm['error']} (is the NFS server running? run setup-nfs)"
        paths = [e["path"] for e in sm["exports"]]
        if export in paths:
            return True, ""
        return False, f"{export} not exported by {server_address} (exports: {', '.join(paths) or 'none'})"

    return check(hosts, f"showmount -e {server_address} lists {export}",
                 lambda h: {"showmount": Showmount(server_address)}, judge)


def setup_nfs(inv, *, plan: bool = False) -> FlowResult:
    if inv.open_root_export():
        ui.warning(inv.open_root_export())
    hosts = connect(inv)
    try:
        report = run(hosts, nfs_steps(inv), title="setup-nfs", plan_only=plan)
        checks = []
        if not plan:
            clients = [h for n, h in hosts.items() if n != inv.nfs_server.name and n not in report.failures]
            if inv.nfs_server.name not in report.failures:
                checks = export_check(clients, inv.nfs_server.address, inv.nfs.export)
        _finish("setup-nfs", report, checks)
        return FlowResult(report, checks, hosts)
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ build-images


def image_steps(inv, files: dict[str, str]) -> dict[str, list[Step]]:
    web, address = inv.images.web, inv.registry_address

    def plan(f):
        if not f["ping"]["ok"]:
            raise OperationError(f"registry {address} not reachable from the registry host "
                                 f"({f['ping']['error']}): run setup-registry first")
        return image_ops.build_images(files=files, base=web.base, tags=list(web.tags), image_ref=inv.image_ref,
                                      in_registry={t: f[f"tag:{t}"] for t in web.tags})

    facts: dict[str, Any] = {"ping": RegistryPing(address)}
    facts.update({f"tag:{t}": RegistryImageConfig(address, web.repository, t) for t in web.tags})
    return {inv.registry_host.name: [Step(f"images {web.repository}:{','.join(web.tags)}", facts, plan)]}


def build_images(inv, *, plan: bool = False, context_dir=None) -> FlowResult:
    files = image_ops.read_context(context_dir or image_ops.CONTEXT_DIR)
    hosts = connect(inv)
    try:
        report = run(hosts, image_steps(inv, files), title="build-images", plan_only=plan)
        checks = []
        if not plan and not report.failures:
            web = inv.images.web

            def judge(h, f):
                missing = [t for t in web.tags if t not in f["tags"]]
                return (not missing, f"missing tags: {', '.join(missing)}" if missing else "")

            checks = check([hosts[inv.registry_host.name]], f"GET /v2/{web.repository}/tags/list",
                           lambda h: {"tags": RegistryTags(inv.registry_address, web.repository)}, judge)
        _finish("build-images", report, checks)
        return FlowResult(report, checks, hosts)
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ doctor


def doctor_facts(inv, h) -> dict:
    facts: dict[str, Any] = {"os": OsRelease(), "which": Which(("docker", "containerd", "curl", "showmount")),
                             "registry": RegistryPing(inv.registry_address)}
    facts["runtime"] = ServiceState("docker" if h.runtime == "docker" else "containerd")
    if h.runtime == "docker":
        facts["docker"] = DockerInfo()
    if h.name == inv.registry_host.name:
        facts["container"] = RegistryContainer(inv.registry.container)
    if h.name == inv.control_plane.name:
        facts.update(kubectl=KubectlVersionFact(), nodes=Nodes())
    if inv.kubernetes.cluster.create:  # labkit makes the cluster: say what setup-cluster would find
        log = cluster_facts.INIT_LOG if h.name == inv.control_plane.name else cluster_facts.JOIN_LOG
        facts.update(versions=cluster_facts.InstalledVersions(), membership=cluster_facts.ClusterMembership(),
                     kubeadm=cluster_facts.KubeadmErrors(log))
    if h.name != inv.nfs_server.name:
        facts["packages"] = InstalledPackages(("nfs-common", "nfs-utils"))
        facts["showmount"] = Showmount(inv.nfs_server.address)
    return facts


def doctor_rows(inv, h, f: dict, conn: HostConnection) -> list[list[str]]:
    """Judge one inventory host's doctor facts, read over ``conn`` -> [host, check, ok|failed, detail
    with the fix]."""
    rows = []

    def add(check_name, ok, detail=""):
        rows.append([h.name, check_name, "ok" if ok else "failed", detail])

    def err(key):
        v = f.get(key)
        return v.message if isinstance(v, FactError) else None

    add("SSH + sudo", True, f"as {conn.settings.user}" + (" with sudo" if conn.use_sudo else ""))
    osr = f["os"]
    if err("os"):
        add("OS family", False, err("os"))
    else:
        add("OS family", osr["family"] in ("rhel", "debian"),
            f"{osr['name']} ({osr['family']})" if osr["family"] != "unknown"
            else f"{osr['name']}: not Debian/Ubuntu or RHEL-like; install packages by hand")
    runtime = "docker" if h.runtime == "docker" else "containerd"
    state = f["runtime"]
    if isinstance(state, FactError) or not is_running(state):
        add(f"{runtime} running", False,
            f"{runtime} is {getattr(state, 'get', lambda *_: 'unknown')('active', 'unknown')}: "
            f"run `systemctl enable --now {runtime}` on {h.name}")
    else:
        detail = ""
        d = f.get("docker")
        if isinstance(d, dict) and d.get("running"):
            detail = f"docker {d['server_version']}"
        add(f"{runtime} running", True, detail)
    if "container" in f:
        c = f["container"]
        if isinstance(c, FactError) or c is None:
            add(f"registry container {inv.registry.container}", False,
                f"no container {inv.registry.container} on {h.name}: run `invoke setup-registry`")
        elif not c["running"]:
            add(f"registry container {inv.registry.container}", False,
                f"{inv.registry.container} is {c['status']}: run `invoke setup-registry` "
                f"(or `docker start {inv.registry.container}` on {h.name})")
        else:
            add(f"registry container {inv.registry.container}", True, c["image"])
    ping = f["registry"]
    if isinstance(ping, FactError) or not ping["ok"]:
        add(f"registry {inv.registry_address} reachable", False,
            f"{getattr(ping, 'message', None) or ping['error']}: start the registry (`invoke setup-registry`) "
            "and check the network")
    else:
        add(f"registry {inv.registry_address} reachable", True)
    if "kubectl" in f:
        kv = f["kubectl"]
        if isinstance(kv, FactError) or kv.client is None:
            add("kubectl", False, f"kubectl not usable on {h.name}: install kubectl and ~/.kube/config")
        elif kv.server is None:
            add("kubectl", False, f"API server not reachable: {kv.error}")
        else:
            add("kubectl", True, f"client {kv.client}, server {kv.server}")
        nodes = f.get("nodes")
        if isinstance(nodes, FactError) or nodes is None:
            add("nodes Ready", False, f"kubectl get nodes failed: {getattr(nodes, 'message', '')}")
        else:
            bad = [n.name for n in nodes if not n.ready]
            add("nodes Ready", bool(nodes) and not bad,
                (f"not Ready: {', '.join(bad)} (check kubelet: journalctl -u kubelet)" if bad
                 else f"{len(nodes)} Ready" if nodes else "no nodes registered"))
    if "versions" in f:
        rows += _cluster_rows(inv, h, f)
    if "packages" in f:
        p = f["packages"]
        ok = isinstance(p, dict) and any(p.values())
        add("NFS client", ok, "" if ok else "install nfs-common (Debian) / nfs-utils (RHEL): `invoke setup-nfs`")
    if "showmount" in f:
        sm = f["showmount"]
        if isinstance(sm, FactError) or not sm["ok"]:
            add(f"export {inv.nfs.export} visible", False,
                f"{getattr(sm, 'message', None) or sm['error']}: run `invoke setup-nfs`")
        else:
            paths = [e["path"] for e in sm["exports"]]
            add(f"export {inv.nfs.export} visible", inv.nfs.export in paths,
                "" if inv.nfs.export in paths else
                f"{inv.nfs_server.address} exports {', '.join(paths) or 'nothing'}: run `invoke setup-nfs`")
    return rows


def _within_one_minor(version: str, want: str) -> bool:
    """kubectl's version skew policy: within one minor version of the API server."""
    try:
        major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
        want_major, want_minor = (int(x) for x in want.lstrip("v").split(".")[:2])
    except ValueError:
        return False
    return major == want_major and abs(minor - want_minor) <= 1


def _cluster_rows(inv, h, f: dict) -> list[list[str]]:
    """Doctor's rows for a cluster labkit makes: the tools' versions, and whether this host is in
    the cluster, with kubeadm's own error when its init or join failed."""
    rows = []
    want = inv.kubernetes.cluster.version
    v = f["versions"]
    if isinstance(v, FactError):
        rows.append([h.name, "kubernetes tools", "failed", v.message])
    else:
        have = {"kubeadm": v.kubeadm, "kubelet": v.kubelet, "kubectl": v.kubectl, "containerd": v.containerd}
        wrong = [f"{tool} {found or 'missing'}" for tool, found in have.items()
                 if found is None or (tool in ("kubeadm", "kubelet") and found != want)
                 or (tool == "kubectl" and not _within_one_minor(found, want))]
        rows.append([h.name, "kubernetes tools", "failed" if wrong else "ok",
                     f"{', '.join(wrong)} (want {want}; kubectl within one minor): `invoke setup-cluster` "
                     "installs them" if wrong
                     else ", ".join(f"{tool} {found}" for tool, found in have.items())])
    m, errors = f["membership"], f["kubeadm"]
    control_plane = h.name == inv.control_plane.name
    check = "control plane" if control_plane else "joined the cluster"
    if isinstance(m, FactError):
        rows.append([h.name, check, "failed", m.message])
        return rows
    kubeconfig = m.admin if control_plane else m.kubelet
    if kubeconfig is not None:
        rows.append([h.name, check, "ok", kubeconfig.server or ""])
        return rows
    step = "init" if control_plane else "join"
    said = (f": kubeadm {step} failed: {' | '.join(errors)} (log: "
            f"{cluster_facts.INIT_LOG if control_plane else cluster_facts.JOIN_LOG}); fix that, then"
            if isinstance(errors, list) and errors else ": ")
    rows.append([h.name, check, "failed", f"not yet{said} run `invoke setup-cluster`"])
    return rows


def doctor(inv) -> FlowResult:
    hosts = connect(inv)
    try:
        ui.heading(f"doctor: checking {', '.join(hosts)}")
        if inv.open_root_export():
            ui.warning(inv.open_root_export())
        by_name = {h.name: h for h in inv.hosts}

        def one(conn: HostConnection):
            conn.run("true", sudo=True)  # proves SSH and (when configured) sudo
            host = by_name[conn.name]
            return doctor_rows(inv, host, gather(conn, doctor_facts(inv, host), tolerant=True), conn)

        rows: list[list[str]] = []
        with ui.host_progress(list(hosts), "doctor") as progress:
            def on_done(name, value, error):
                bad = [r for r in (value or []) if r[2] != "ok"]
                progress.done(name, "failed" if error or bad else "ok",
                              error or ", ".join(r[1] for r in bad))
            outcome = run_parallel(list(hosts.values()), one, on_done=on_done)
        for name in hosts:
            if name in outcome.failures:
                rows.append([name, "SSH + sudo", "failed", outcome.failures[name]])
            else:
                rows.extend(outcome.results[name])
        ui.table("doctor", ["host", "check", "result", "detail / fix"], rows, status_column=2)
        _finish("doctor", None, rows)
        return FlowResult(None, rows, hosts)
    finally:
        close_all(hosts)
