"""The StatefulSet's pages: the content step (each replica's index.html in its PV directory on the
NFS server) and write-v2 (the new version's pages above the partition).

The set's state is read on the control plane in one SSH command; what each PV directory holds is a
fact of the NFS server; ``operations.content`` decides and the runner writes (one command for any
number of replicas).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit import content, expected, manifests, ui
from labkit.errors import OperationError
from labkit.facts import kube as kf
from labkit.facts.content import PVDirectories, WrittenContent
from labkit.operations import content as content_ops
from labkit.remote import HostConnection, close_all, command_counts, connect
from labkit.runner import RunReport, Step, gather, run


@dataclass
class KubeResult:
    """What a Kubernetes flow did: the runner's report, details for the caller, the hosts it used."""

    report: RunReport | None = None
    details: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, HostConnection] = field(default_factory=dict)

    @property
    def commands(self) -> dict[str, int]:
        return command_counts(self.hosts)


def names(inv):
    """(namespace, StatefulSet name, claim prefix ``<template>-<set>-``)."""
    k = inv.kubernetes
    return k.namespace, k.statefulset.name, f"{k.statefulset.claim_template}-{k.statefulset.name}-"


# ------------------------------------------------------------------ content step


def set_facts(inv) -> dict:
    """The StatefulSet, its pods, revisions, PVCs and the PVs: what the content step plans from."""
    ns, name, prefix = names(inv)
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
    ``set_facts``), then one runner step on the NFS server: what each directory holds, the
    decision (``operations.content``), one write. Returns the runner's report (None when there is
    no replica to write) and {status: [directories]}.
    """
    ns, name, prefix = names(inv)
    if facts is None:
        facts = gather(hosts[inv.control_plane.name], set_facts(inv))
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


def gather_state(inv, cp: HostConnection, **extra) -> dict:
    """The set, its pods, revisions, PVCs and PVs (and any ``extra`` facts) in one SSH command."""
    return gather(cp, {**set_facts(inv), **extra})


# ------------------------------------------------------------------ write-v2


def write_v2(inv, *, plan: bool = False) -> KubeResult:
    """Seed step 8: the new version's content for the ordinals at or above the partition."""
    ns, name, _ = names(inv)
    hosts = connect(inv)
    try:
        cp = hosts[inv.control_plane.name]
        facts = gather(cp, set_facts(inv))
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
