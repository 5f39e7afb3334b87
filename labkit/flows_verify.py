"""verify and status: read the StatefulSet, its pods, claims and volumes; curl every pod.

Both only read. verify compares each pod with what Kubernetes says it should run (its revision)
and what labkit last wrote to its PV (the NFS server's records); status shows the set as the
cluster reports it.
"""
from __future__ import annotations

import json

from labkit import content, expected, ui
from labkit import verify as verify_mod
from labkit.errors import OperationError
from labkit.facts import kube as kf
from labkit.facts.content import WrittenContent
from labkit.flows_content import gather_state, names
from labkit.remote import close_all, command_counts, connect
from labkit.runner import gather




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
    ns, name, _ = names(inv)
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
