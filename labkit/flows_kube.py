"""Kubernetes task bodies that change the workload: deploy, scale, teardown.

kubectl runs on the control-plane host; the content step runs on the NFS server. Every step
reads its facts in one SSH round trip, plans with the pure planners (operations/kube.py,
content.py), prints the plan, stops there in plan mode, and otherwise applies and waits.
The number of SSH commands does not grow with the replica count.
"""
from __future__ import annotations

import re
from typing import Any

from labkit import content, manifests, ui, validate, waits
from labkit.errors import HostError, HostsFailed, LabkitError, OperationError
from labkit.facts import kube as kf
from labkit.facts.content import PVDirectories
from labkit.operations import content as content_ops
from labkit.operations import kube as kube_ops
from labkit.operations.base import Command, Wait
from labkit.flows_content import KubeResult, content_step, gather_state, names
from labkit.remote import HostConnection, close_all, connect, shown_command
from labkit.runner import RunReport, Step, describe, run

DEFAULT_TIMEOUT = waits.DEFAULT_TIMEOUT


def _run_on_control_plane(cp: HostConnection, step: Step, title: str, plan: bool) -> RunReport:
    """Gather, plan, print and (unless ``plan``) apply one step on the control plane; raise on failure."""
    report = run({cp.name: cp}, {cp.name: [step]}, title=title, plan_only=plan)
    report.raise_for_failures()
    return report


def _render_live(inv, sts: kf.StatefulSetState | None) -> list[dict]:
    """The manifests, keeping the live set's replicas/tag/partition once it exists: deploy never
    undoes a scale or a rollout (that is `scale`'s job), so re-running it changes nothing. A live
    tag the inventory does not list is refused: rendering the inventory's would roll pods back."""
    if sts is None:
        return manifests.render(inv)
    if sts.tag not in inv.images.web.tags:
        raise OperationError(f"StatefulSet {sts.name} runs image tag {sts.tag!r}, which images.web.tags "
                             f"({', '.join(inv.images.web.tags)}) does not list: deploy would roll its pods back. "
                             f"Add {sts.tag} to images.web.tags, or run `invoke scale --image-tag <tag>` first")
    return manifests.render(inv, replicas=sts.replicas, image_tag=sts.tag, partition=sts.partition)


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
    ns, name, _ = names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        seen: dict[str, Any] = {}
        changes: list = []

        def plan_fn(f):
            seen["sts"] = f["sts"]
            changes[:] = kube_ops.deploy(manifests.render_namespace(inv), f["namespace"],
                                         _render_live(inv, f["sts"]), f["objects"])
            # then the rollouts: the provisioner first (the set's claims need it), then the set
            rollouts = (("deployment", manifests.PROVISIONER_SA, f["provisioner"]),
                        ("statefulset", name, kf.statefulset_rollout(f["sts"])))
            return changes + [w for kind, who, rollout in rollouts
                              for w in kube_ops.wait_for(Wait(kind, who, ns), rollout, after_changes=bool(changes))]

        step = Step("manifests", {"namespace": kf.NamespaceFact(ns), "objects": kf.Objects(manifests.render(inv)),
                                  "sts": kf.StatefulSetFact(ns, name),
                                  "provisioner": kf.RolloutFact("deployment", manifests.PROVISIONER_SA, ns)},
                    plan_fn)
        try:
            report = _run_on_control_plane(cp, step, "deploy", plan)
        except HostsFailed as exc:
            raise _failed_once(exc, cp.name, step, changes, ns, "deploy") from None
        # the live StatefulSet as deploy found it (None: deploy creates it), for `up --plan`
        result = KubeResult(report, {"sts": seen.get("sts")}, hosts=hosts)
        if plan:
            return result
        for wait in report.waits(cp.name):
            waits.until_done(cp, inv, wait, timeout)
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
    ns, name, prefix = names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        before: dict[str, Any] = {}

        def plan_fn(f):
            before["pvcs"] = {c.name for c in f["pvcs"]}
            patch = list(kube_ops.scale_and_rollout(f["sts"], replicas, inv.image_ref(image_tag), partition,
                                                    namespace=ns))
            # scale is done when the set has exactly the pods asked for (a scale-down included)
            return patch + list(kube_ops.wait_for(Wait("statefulset", name, ns, replicas),
                                                  kf.statefulset_rollout(f["sts"]),
                                                  after_changes=bool(patch), pods=f["pods"]))

        step = Step("scale + rollout", {"sts": kf.StatefulSetFact(ns, name), "pvcs": kf.PVCs(ns, prefix),
                                        "pods": kf.StatefulSetPods(ns, name, manifests.app_label(inv))}, plan_fn)
        report = _run_on_control_plane(cp, step, "scale", plan)
        result = KubeResult(report, hosts=hosts)
        if plan:
            return result
        for wait in report.waits(cp.name):
            waits.until_done(cp, inv, wait, timeout)
        after = gather_state(inv, cp)
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


# ------------------------------------------------------------------ teardown


def teardown(inv, *, purge: bool = False, yes: bool = False, plan: bool = False) -> KubeResult:
    """Remove the workload; keep PVCs, PVs and NFS data unless ``purge`` (which needs ``yes``).
    ``purge`` deletes the namespace last, only when labkit created it (its label); it says so when
    it keeps one (``default``, or one an admin made)."""
    if purge and not yes and not plan:
        raise OperationError("--purge deletes every PVC, PV and the NFS data of the StatefulSet: "
                             "add --yes to confirm (or --plan to see what would go)")
    ns, name, prefix = names(inv)
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
        if purge and dirs:  # after the PVs are gone, their directories on the NFS server
            server = hosts[inv.nfs_server.name]
            step = Step("purge NFS data", {"directories": PVDirectories(inv.nfs.export, dirs)},
                        lambda f: content_ops.purge(f["directories"]))
            result.details["purge_report"] = run({server.name: server}, {server.name: [step]},
                                                 title="teardown --purge: NFS data", plan_only=plan)
            result.details["purge_report"].raise_for_failures()
        return result
    finally:
        close_all(hosts)
