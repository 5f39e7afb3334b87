"""Kubernetes task bodies: deploy, scale, write_v2, verify, status, teardown.

kubectl runs on the control-plane host; the content step runs on the NFS server. Every step
reads its facts in one SSH round trip, plans with the pure planners (operations/kube.py,
content.py), prints the plan, stops there in plan mode, and otherwise applies and waits.
The number of SSH commands does not grow with the replica count.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from labkit import content, expected, manifests, ui, validate
from labkit import verify as verify_mod
from labkit.errors import HostError, HostsFailed, LabkitError, OperationError
from labkit.facts import kube as kf
from labkit.facts.content import PVDirectories, WrittenContent
from labkit.operations import content as content_ops
from labkit.operations import kube as kube_ops
from labkit.operations.base import Command
from labkit.remote import HostConnection, close_all, command_counts, connect, shown_command
from labkit.runner import RunReport, Step, describe, gather, run
from labkit.shell import quote

DEFAULT_TIMEOUT = 600


@dataclass
class KubeResult:
    report: RunReport | None = None
    details: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, HostConnection] = field(default_factory=dict)

    @property
    def commands(self) -> dict[str, int]:
        return command_counts(self.hosts)


def _names(inv):
    k = inv.kubernetes
    return k.namespace, k.statefulset.name, f"{k.statefulset.claim_template}-{k.statefulset.name}-"


POLL_SECONDS = 2.0
BLOCKERS_EVERY = 10.0  # seconds between reads of what blocks a rollout (one more kubectl command)


def _wait(host: HostConnection, inv, kind: str, name: str, timeout: int) -> None:
    """Wait for a rollout as ``kubectl rollout status`` would, but polling: ready/desired as it goes,
    the reason each pod or claim is stuck (``facts.kube.WaitBlockers``), and an early failure naming
    the reason and the fix when a known blocker stays unchanged for ``kubernetes.stuck_after``
    seconds. ``timeout`` stays the upper bound."""
    ns = inv.kubernetes.namespace
    what, after = f"{kind}/{name}", inv.kubernetes.stuck_after
    fact = kf.RolloutFact(kind, name, ns)
    start = last_look = time.monotonic()
    first_seen: dict[tuple, float] = {}
    why = ""
    with ui.waiting(host.name, f"wait for {what}") as progress:
        while True:
            state = gather(host, {"r": fact})["r"]
            if state is not None and state.done:
                break
            now = time.monotonic()
            if now - last_look >= BLOCKERS_EVERY or now - start > timeout:
                last_look = now
                blockers = _read_blockers(host, inv)
                why = "; ".join(kf.describe_blockers(blockers))
                stuck = kf.stuck(blockers, first_seen, now, after)
                if stuck:
                    raise HostError(host.name, f"{what} is stuck: the same cause for {after}s"
                                    + "".join(f"\n  {line}" for line in kf.describe_blockers(stuck)))
                if now - start > timeout:
                    raise HostError(host.name, f"{what} did not roll out in {timeout}s"
                                    + "".join(f"\n  {line}" for line in kf.describe_blockers(blockers)
                                              or ["(no pod or claim reports a reason yet)"]))
            progress.update(state.ready if state else 0, state.desired if state else 0, why)
            time.sleep(POLL_SECONDS)
    ui.line(host.name, "wait", "ok", f"{what}: {state.ready}/{state.desired} ready")


def _read_blockers(host: HostConnection, inv) -> list:
    ns, name, prefix = _names(inv)
    try:
        return gather(host, {"b": kf.WaitBlockers(ns, (f"{name}-", f"{manifests.PROVISIONER_SA}-"), prefix)})["b"]
    except LabkitError:  # the wait goes on; what blocks it is only the why
        return []


def _wait_for_exact_pods(host: HostConnection, inv, replicas: int, timeout: int) -> dict:
    """After the rollout wait: until the set has exactly pods 0..replicas-1, all Ready (a scale-down
    is done only when the top pods are gone), so a verify right after scale sees the set as asked.
    Returns the last read of the set's facts (``gather_state``'s), for the steps after the wait."""
    deadline = time.monotonic() + timeout
    facts = gather_state(inv, host)
    waiting = kf.pods_not_yet_matching(facts["pods"], replicas)
    if waiting:
        ui.line(host.name, "wait", "running", f"exactly {replicas} pod(s): {'; '.join(waiting)}")
    while waiting:
        if time.monotonic() > deadline:
            raise HostError(host.name, f"the StatefulSet does not have exactly {replicas} Ready pod(s) after "
                                       f"{timeout}s: {'; '.join(waiting)}"
                            + "".join(f"\n  {line}" for line in kf.describe_blockers(_read_blockers(host, inv))))
        time.sleep(1)
        facts = gather_state(inv, host)
        waiting = kf.pods_not_yet_matching(facts["pods"], replicas)
    return facts


def _run_on_control_plane(cp: HostConnection, step: Step, title: str, plan: bool) -> RunReport:
    """Gather, plan, print and (unless ``plan``) apply one step on the control plane; raise on failure."""
    report = run({cp.name: cp}, {cp.name: [step]}, title=title, plan_only=plan)
    report.raise_for_failures()
    return report


def _render_live(inv, sts: kf.StatefulSetState | None) -> list[dict]:
    """The manifests, keeping the live set's replicas/tag/partition once it exists: deploy never
    undoes a scale or a rollout (that is `scale`'s job), so re-running it changes nothing."""
    if sts is None or sts.tag not in inv.images.web.tags:
        return manifests.render(inv)
    return manifests.render(inv, replicas=sts.replicas, image_tag=sts.tag, partition=sts.partition)


# ------------------------------------------------------------------ content step


def _set_facts(inv) -> dict:
    """The StatefulSet, its pods, revisions, PVCs and the PVs: what the content step plans from."""
    ns, name, prefix = _names(inv)
    return {"sts": kf.StatefulSetFact(ns, name), "pvcs": kf.PVCs(ns, prefix), "pvs": kf.PVs(),
            "pods": kf.StatefulSetPods(ns, name, manifests.app_label(inv)),
            "revisions": kf.ControllerRevisions(ns, name, manifests.app_label(inv))}


CONTENT_SHOWN = {content_ops.WRITE: ("written", "would write"), content_ops.RECORD: ("unchanged", "unchanged"),
                 content_ops.UNCHANGED: ("unchanged", "unchanged"), content_ops.KEPT: ("kept", "kept")}


def content_step(inv, hosts: dict[str, HostConnection], *, only_rolled: bool = False, if_missing: bool = False,
                 plan: bool = False, title: str = "content", facts: dict | None = None
                 ) -> tuple[RunReport | None, dict[str, list]]:
    """Give every replica (``only_rolled``: each ordinal at or above the partition) the page of the
    version its revision runs, in its PV directory on the NFS server; ``if_missing``: only the
    directories without a page (the others keep theirs).

    Facts on the control plane (none when the caller passes ``facts`` it just read, from
    ``_set_facts``), then one runner step on the NFS server: what each directory holds, the
    decision (``operations.content``), one write. Returns the runner's report (None when there is
    no replica to write) and {status: [directories]}.
    """
    ns, name, prefix = _names(inv)
    if facts is None:
        facts = gather(hosts[inv.control_plane.name], _set_facts(inv))
    sts = facts["sts"]
    if sts is None:
        raise OperationError(f"StatefulSet {ns}/{name} does not exist: run deploy first")
    pages = expected.pages(sts, facts["pods"], facts["revisions"], only_rolled=only_rolled)
    targets = content.targets(facts["pvcs"], facts["pvs"], pages, prefix, inv.nfs.export,
                              inv.nfs_server.address, namespace=ns)
    server = hosts[inv.nfs_server.name]
    summary: dict[str, list] = {"written": [], "would write": [], "unchanged": [], "kept": []}
    if not targets:
        ui.line(server.name, title, "no change", "no replicas to write")
        return None, summary
    decisions: list[content_ops.Decision] = []

    def plan_fn(f):
        decisions[:] = content_ops.decide(targets, f["directories"], f["records"], if_missing=if_missing)
        return content_ops.write_pages(decisions, inv.nfs.export)

    step = Step(title, {"directories": PVDirectories(inv.nfs.export, [t.directory for t in targets]),
                        "records": WrittenContent()}, plan_fn)
    report = run({server.name: server}, {server.name: [step]}, title=title, plan_only=plan)
    # what each replica gets, shown before a failure is raised: the plan is the table's source
    rows = []
    for d in decisions:
        t, shown = d.target, CONTENT_SHOWN[d.action][plan]
        summary[shown].append(t.directory)
        # a kept page differs from the expected one: do not show the expected text as its content
        page = t.content.strip() if d.action != content_ops.KEPT else f"its own page (not {t.content.strip()})"
        rows.append([f"{name}-{t.ordinal}", t.pvc, t.directory, page,
                     "failed" if report.failures and d.action == content_ops.WRITE else shown])
    if rows:
        ui.table(f"{title} on {server.name}" + (" (plan mode: nothing written)" if plan else ""),
                 ["pod", "pvc", "pv directory", "content", "status"], rows, status_column=4)
    report.raise_for_failures()
    return report, summary


# ------------------------------------------------------------------ deploy


def _failed_once(exc: HostsFailed, host: str, step: Step, changes: list, ns: str, task: str) -> LabkitError:
    """A kubectl command of ``step`` that failed on ``host``, said once: ``kubectl apply failed:
    Error from server (NotFound): namespaces "lab" not found: <what to do>`` (``kube_ops.kubectl_failure``;
    the HostError names the host). The runner said ``<step>: <change>: command exited N: <command>:
    <output lines, ' | '>``; any other failure (the upload, SSH, a planner's refusal) stays as it said."""
    detail = exc.failures.get(host)
    if detail is None or len(exc.failures) != 1:
        return exc
    for change in changes:
        head = f"{step.name}: {describe(change)}: "
        if not isinstance(change, Command) or not detail.startswith(head):
            continue
        said = detail[len(head):]
        if not re.match(r"(command )?exit(ed)? \d+: ", said):  # kubectl did not run to its end
            return exc
        cmd = shown_command(change.command)
        at = said.find(f": {cmd}: ")
        said = said[at + len(cmd) + 4:] if at >= 0 else re.sub(r"^(command )?exit(ed)? \d+: ", "", said)
        lines = [ln for part in said.split(" | ") for ln in part.splitlines()]
        return HostError(host, kube_ops.kubectl_failure(change, lines, ns, task))
    return exc


def deploy(inv, *, plan: bool = False, timeout: int = DEFAULT_TIMEOUT, rewrite_content: bool = False) -> KubeResult:
    """Create kubernetes.namespace when it is missing (labelled as labkit's), apply the manifests
    (only what is missing or drifted), wait for the rollouts, and give every replica without an
    index.html its version's content.

    Existing content is kept (after a teardown without --purge the old volumes come back serving
    what they served); ``rewrite_content`` rewrites every directory to the expected version.
    """
    ns, name, _ = _names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        seen: dict[str, Any] = {}
        changes: list = []

        def plan_fn(f):
            seen["sts"] = f["sts"]
            changes[:] = kube_ops.deploy(manifests.render_namespace(inv), f["namespace"],
                                         _render_live(inv, f["sts"]), f["objects"])
            return changes

        step = Step("manifests", {"namespace": kf.NamespaceFact(ns), "objects": kf.Objects(manifests.render(inv)),
                                  "sts": kf.StatefulSetFact(ns, name)}, plan_fn)
        try:
            report = _run_on_control_plane(cp, step, "deploy", plan)
        except HostsFailed as exc:
            raise _failed_once(exc, cp.name, step, changes, ns, "deploy") from None
        # the live StatefulSet as deploy found it (None: deploy creates it), for `up --plan`
        result = KubeResult(report, {"sts": seen.get("sts")}, hosts=hosts)
        if plan:
            return result
        _wait(cp, inv, "deployment", manifests.PROVISIONER_SA, timeout)
        _wait(cp, inv, "statefulset", name, timeout)
        _, result.details["content"] = content_step(inv, hosts, if_missing=not rewrite_content, title="content")
        return result
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ scale


def scale(inv, *, replicas: int | None = None, image_tag: str | None = None, partition: int | None = None,
          plan: bool = False, timeout: int = DEFAULT_TIMEOUT) -> KubeResult:
    """Seed step 7: replicas, image tag and partition in one change; wait; report the new PVC/PV
    pairs; give replicas without content theirs (so none serves an empty directory)."""
    r = inv.kubernetes.rollout
    replicas = r.replicas if replicas is None else replicas
    image_tag = r.image_tag if image_tag is None else image_tag
    partition = r.partition if partition is None else partition
    try:  # partition > replicas is legal (scaling 10 -> 3 keeps partition 4: no pod changes revision)
        replicas, partition = validate.replicas(replicas), validate.partition(partition)
        validate.image_tag_of(image_tag, inv.images.web.tags)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
    ns, name, prefix = _names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        before: dict[str, Any] = {}

        def plan_fn(f):
            before["pvcs"] = {c.name for c in f["pvcs"]}
            return kube_ops.scale_and_rollout(f["sts"], replicas, inv.image_ref(image_tag), partition, namespace=ns)

        step = Step("scale + rollout", {"sts": kf.StatefulSetFact(ns, name), "pvcs": kf.PVCs(ns, prefix)}, plan_fn)
        report = _run_on_control_plane(cp, step, "scale", plan)
        result = KubeResult(report, hosts=hosts)
        if plan:
            return result
        _wait(cp, inv, "statefulset", name, timeout)
        after = _wait_for_exact_pods(cp, inv, replicas, timeout)
        pv_by = {v.name: v for v in after["pvs"]}
        new = [c for c in after["pvcs"] if c.name not in before.get("pvcs", set())]
        rows = [[c.name, c.phase or "", c.volume or "", (pv_by.get(c.volume).nfs_path if c.volume in pv_by else "") or ""]
                for c in new]
        ui.table(f"scale: {len(new)} new PVC/PV pair(s)", ["pvc", "phase", "pv", "directory"], rows)
        result.details["new_pvcs"] = [c.name for c in new]
        _, result.details["content"] = content_step(inv, hosts, if_missing=True, title="content for new replicas",
                                                 facts=after)
        return result
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ write-v2


def write_v2(inv, *, plan: bool = False) -> KubeResult:
    """Seed step 8: the new version's content for the ordinals at or above the partition."""
    ns, name, _ = _names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        facts = gather(cp, _set_facts(inv))
        sts = facts["sts"]
        if sts is None:
            raise OperationError(f"StatefulSet {ns}/{name} does not exist: run deploy and scale first")
        base = inv.kubernetes.statefulset.image_tag
        if sts.tag == base:
            raise OperationError(f"StatefulSet {name} still runs {base} everywhere: run scale first "
                                 f"(it rolls out {inv.kubernetes.rollout.image_tag} above the partition)")
        rolled = range(sts.partition, sts.replicas)
        report, summary = content_step(inv, hosts, only_rolled=True, plan=plan, title=f"write {sts.tag} content",
                                       facts=facts)
        return KubeResult(report, {"content": summary, "ordinals": list(rolled)}, hosts)
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ verify and status


def gather_state(inv, cp: HostConnection, **extra) -> dict:
    """The set, its pods, revisions, PVCs and PVs (and any ``extra`` facts) in one SSH command."""
    return gather(cp, {**_set_facts(inv), **extra})


def _written_by_pv(inv, pvs, written: dict[str, str]) -> dict[str, str]:
    """PV spec.nfs.path -> what labkit last wrote in its directory (records are by local directory)."""
    out = {}
    for pv in pvs:
        try:
            local = content.local_directory(pv, inv.nfs.export, inv.nfs_server.address)
        except OperationError:
            continue  # not this export's: verify reports such a PV itself
        if local in written:
            out[pv.nfs_path] = written[local]
    return out


def verify(inv, *, as_json: bool = False) -> verify_mod.Report:
    """Curl every pod from the control plane (one command), compare with the expected version,
    check PVCs Bound and one distinct PV/directory each. The report's ``ok`` says it all."""
    ns, name, _ = _names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        nfs_on_cp = inv.nfs_server.name == inv.control_plane.name
        f = gather_state(inv, cp, **({"written": WrittenContent()} if nfs_on_cp else {}))
        if f["sts"] is None:
            raise OperationError(f"StatefulSet {ns}/{name} does not exist: run deploy first")
        written = f["written"] if nfs_on_cp else gather(hosts[inv.nfs_server.name], {"w": WrittenContent()})["w"]
        exp = expected.from_revisions(f["sts"], f["pods"], f["revisions"])
        ips = [p.pod_ip for p in f["pods"] if p.pod_ip]
        curls = {}
        if ips:
            res = cp.run(verify_mod.curl_all_command(ips).command, check=False, timeout=120)
            curls = verify_mod.parse_curl(res.stdout)
        report = verify_mod.verify(f["pods"], f["pvcs"], f["pvs"], curls, exp, set_name=name,
                                   claim_template=inv.kubernetes.statefulset.claim_template, namespace=ns,
                                   storage_class=inv.kubernetes.storage_class.name,
                                   written=_written_by_pv(inv, f["pvs"], written))
        report.commands = command_counts(hosts)
        if as_json:
            ui.console.print_json(json.dumps(report.to_dict()))
        else:
            rows = [[r.pod, r.node or "", r.pod_ip or "", r.image_tag or "", r.pvc or "", r.pv_directory or "",
                     r.expected or "", r.actual or "", r.result] for r in report.rows]
            ui.table(f"verify: {sum(r.ok for r in report.rows)}/{len(report.rows)} pods ok",
                     ["pod", "node", "pod IP", "tag", "pvc", "pv directory", "expected", "actual", "result"],
                     rows, status_column=8)
            for p in report.problems:
                ui.error(p)
        return report
    finally:
        close_all(hosts)


def status(inv) -> dict:
    """The StatefulSet, its pods, PVCs/PVs and the nodes, as the cluster reports them."""
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        f = gather_state(inv, cp, nodes=kf.Nodes())
        nodes = f["nodes"]
        sts = f["sts"]
        if sts is None:
            ui.line(cp.name, "statefulset", "absent", "run deploy")
        else:
            ui.line(cp.name, f"statefulset/{sts.name}", "ok" if sts.settled else "rolling",
                    f"replicas {sts.ready_replicas}/{sts.replicas} ready, image {sts.tag}, partition "
                    f"{sts.partition}, updated {sts.updated_replicas}, revisions {sts.current_revision} -> "
                    f"{sts.update_revision}")
        pvc_by = {c.name: c for c in f["pvcs"]}
        pv_by = {v.name: v for v in f["pvs"]}
        rows = []
        for p in f["pods"]:
            claim = next(iter(p.pvcs), "")
            pvc = pvc_by.get(claim)
            pv = pv_by.get(pvc.volume) if pvc and pvc.volume else None
            rows.append([p.name, p.node or "", p.pod_ip or "", p.tag or "", p.revision or "",
                         "ready" if p.ready else (p.waiting_reason or p.phase or "?"), claim,
                         pvc.phase if pvc else "", pv.nfs_path if pv else ""])
        ui.table("pods", ["pod", "node", "pod IP", "tag", "revision", "state", "pvc", "pvc phase", "pv directory"], rows)
        ui.table("nodes", ["node", "ready", "internal IP", "kubelet"],
                 [[n.name, "ready" if n.ready else "not ready", n.internal_ip or "", n.kubelet_version or ""]
                  for n in nodes])
        return {"sts": sts, "pods": f["pods"], "pvcs": f["pvcs"], "pvs": f["pvs"], "nodes": nodes}
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ teardown


def teardown(inv, *, purge: bool = False, yes: bool = False, plan: bool = False) -> KubeResult:
    """Remove the workload; keep PVCs, PVs and NFS data unless ``purge`` (which needs ``yes``).
    ``purge`` deletes the namespace last, only when labkit created it (its label); it says so when
    it keeps one (``default``, or one an admin made)."""
    if purge and not yes and not plan:
        raise OperationError("--purge deletes every PVC, PV and the NFS data of the StatefulSet: "
                             "add --yes to confirm (or --plan to see what would go)")
    ns, name, prefix = _names(inv)
    objs = manifests.render(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        dirs: list[str] = []
        changes: list = []
        kept: list[str] = []

        def plan_fn(f):
            if purge:
                claimed = {c.name for c in f["pvcs"]}
                for v in f["pvs"]:
                    if v.claim_namespace == ns and v.claim_name in claimed and v.nfs_path:
                        dirs.append(content.local_directory(v, inv.nfs.export, inv.nfs_server.address))
                kept[:] = [why for why in [kube_ops.namespace_kept(ns, f["namespace"])] if why]
            changes[:] = kube_ops.teardown(objs, f["objects"], f["pvcs"], f["pvs"], purge=purge, namespace=ns,
                                           live_namespace=f["namespace"])
            return changes

        step = Step("teardown" + (" --purge" if purge else ""),
                    {"objects": kf.Objects(objs), "pvcs": kf.PVCs(ns, prefix), "pvs": kf.PVs(),
                     "namespace": kf.NamespaceFact(ns)}, plan_fn)
        try:
            report = _run_on_control_plane(cp, step, "teardown", plan)
        except HostsFailed as exc:
            raise _failed_once(exc, cp.name, step, changes, ns, "teardown") from None
        for why in kept:  # part of the purge plan: what it leaves, and why
            ui.line(cp.name, f"namespace {ns}", "kept", why)
        result = KubeResult(report, {"directories": dirs, "namespace_kept": bool(kept)}, hosts)
        if purge and dirs:
            server = hosts[inv.nfs_server.name]
            if plan:
                ui.line(server.name, "purge NFS data", "would change", f"remove {len(dirs)} PV directories")
            else:
                server.run("rm -rf -- " + " ".join(quote(d) for d in dirs), sudo=True)
                ui.line(server.name, "purge NFS data", "changed", f"removed {len(dirs)} PV directories")
        return result
    finally:
        close_all(hosts)


# ------------------------------------------------------------------ up: the whole flow


@dataclass
class UpResult:
    steps: dict[str, str]                 # step -> "applied" | "no change" | "would change" | "after ..." | "skipped"
    verify: verify_mod.Report | None = None  # None in plan mode


def up(inv, *, plan: bool = False, timeout: int = DEFAULT_TIMEOUT) -> UpResult:
    """The seed flow in ``pipeline.SEED``'s order (the steps the inventory asks for).

    Applied, it stops at the first failing step and returns verify's report (the caller judges it).
    With ``plan`` every step prints its plan and nothing changes: see ``plan_up``.
    """
    from labkit import pipeline, remote

    if plan:
        with remote.session(inv):
            return plan_up(inv)
    done, report = [], None
    with remote.session(inv):  # one SSH connection per host for every step
        for step in pipeline.steps(inv):
            result = step.run(inv, timeout)
            if step.name == "verify":
                report = result
            else:
                done.append(step.name)
    return UpResult({s: "applied" for s in done}, report)


def _pending(report: RunReport | None) -> str:
    return "would change" if report is not None and report.changed_hosts else "no change"


def plan_up(inv) -> UpResult:
    """Each step's plan in order, changing nothing. A step whose facts only exist once an earlier
    step is applied (no registry yet, no StatefulSet yet) is not planned against the lab: it says
    what it would do once that step is applied, from the inventory, and planning goes on."""
    from labkit import flows, flows_cluster, flows_images

    steps: dict[str, str] = {}
    r = inv.kubernetes.rollout
    reg_host, cp, nfs_host = inv.registry_host.name, inv.control_plane.name, inv.nfs_server.name

    cluster_pending = False
    if inv.kubernetes.cluster.create:
        cluster_pending = flows_cluster.changed(flows_cluster.setup_cluster(inv, plan=True))
        steps["setup-cluster"] = "would change" if cluster_pending else "no change"
    reg = flows.setup_registry(inv, plan=True)
    steps["setup-registry"] = _pending(reg.report)
    steps["setup-nfs"] = _pending(flows.setup_nfs(inv, plan=True).report)

    # build-images reads the registry's tags; a registry that setup-registry still has to start
    # (or replace) cannot be asked, and asking it would fail with "not reachable".
    registry_pending = any(p.operation == "registry container" and not p.no_change
                           for p in reg.report.hosts[reg_host].plans)
    web = inv.images.web
    if inv.images.mirror:
        if registry_pending:
            steps["mirror-images"] = "after setup-registry"
            ui.line(reg_host, "mirror-images", "would change (after setup-registry)",
                    f"plan depends on setup-registry being applied (the registry {inv.registry_address} is not "
                    "running yet); then tags and pushes the images the registry lacks: "
                    + ", ".join(w.mirror for w in flows_images.wanted_images(inv)))
        else:
            steps["mirror-images"] = _pending(flows_images.mirror_images(inv, plan=True).report)
    if registry_pending:
        steps["build-images"] = "after setup-registry"
        ui.line(reg_host, "build-images", "would change (after setup-registry)",
                f"plan depends on setup-registry being applied (the registry {inv.registry_address} is not "
                f"running yet); then builds and pushes the tags of {web.repository} the registry lacks "
                f"({', '.join(web.tags)})")
    else:
        steps["build-images"] = _pending(flows.build_images(inv, plan=True).report)

    if cluster_pending:  # no apiserver to plan the Kubernetes steps against yet
        for step in ("deploy", "scale", "write-v2"):
            steps[step] = "after setup-cluster"
            ui.line(cp, step, "would change (after setup-cluster)",
                    "plan depends on setup-cluster being applied (the cluster does not exist yet)")
        steps["verify"] = "skipped"
        ui.table("up: plan (plan mode: nothing was changed)", ["step", "plan"],
                 [[k, v] for k, v in steps.items()], status_column=1)
        return UpResult(steps)
    dep = deploy(inv, plan=True)
    steps["deploy"] = _pending(dep.report)
    sts = dep.details.get("sts")
    s = inv.kubernetes.statefulset
    if sts is None:
        ui.line(nfs_host, "content", "would change (after deploy)",
                f"plan depends on deploy being applied (the PV directories do not exist yet); then writes "
                f"{expected.content_for(s.image_tag).strip()!r} into the directory of each of the "
                f"{s.replicas} replicas")
        # the StatefulSet deploy would create, as rendered: scale's patch against it
        rendered = next(o for o in manifests.render(inv) if o["kind"] == "StatefulSet")
        patch = list(kube_ops.scale_and_rollout(kf.parse_statefulset(rendered), r.replicas,
                                                inv.image_ref(r.image_tag), r.partition,
                                                namespace=inv.kubernetes.namespace))
        steps["scale"] = "after deploy"
        ui.line(cp, "scale", "would change (after deploy)" if patch else "no change (after deploy)",
                f"plan depends on deploy being applied (StatefulSet {inv.kubernetes.namespace}/{s.name} does "
                "not exist yet); then it would patch " + (patch[0].description if patch else "nothing"))
    else:
        steps["scale"] = _pending(scale(inv, plan=True).report)

    if sts is None or steps["scale"] != "no change":
        steps["write-v2"] = "after scale"
        ui.line(nfs_host, "write-v2", "would change (after scale)",
                f"plan depends on deploy and scale being applied (the rolled-out replicas and their PVs do "
                f"not exist yet); then writes {expected.content_for(r.image_tag).strip()!r} for ordinals "
                f"{r.partition}-{r.replicas - 1}" if r.partition < r.replicas else
                "plan depends on deploy and scale being applied; no ordinal is at or above the partition")
    else:
        res = write_v2(inv, plan=True)
        steps["write-v2"] = "would change" if res.details["content"].get("would write") else "no change"

    steps["verify"] = "skipped"
    ui.line(cp, "verify", "skipped", "a read-only check of the applied flow: run `invoke verify` after `invoke up`")
    ui.table("up: plan (plan mode: nothing was changed)", ["step", "plan"], [[k, v] for k, v in steps.items()],
             status_column=1)
    return UpResult(steps)
