"""The content step's targets: each replica's PV directory on the NFS server and its page (pure).

The directory comes from the PV's ``spec.nfs.path`` (the export is the server's local path),
never from splitting names. What each directory needs is ``operations.content``'s decision.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

from labkit import validate
from labkit.errors import OperationError


@dataclass(frozen=True)
class Target:
    """One replica's content: where (PV directory on the server) and what."""

    ordinal: int
    pvc: str
    pv: str
    directory: str  # local path on the NFS server
    content: str


def local_directory(pv, export: str, server: str, local_export: str | None = None) -> str:
    """The PV's directory on the NFS server, from ``spec.nfs.server/path``.

    Refuses a PV of another server, a path outside the export, and anything not a clean path.
    """
    if pv.nfs_path is None or pv.nfs_server is None:
        raise OperationError(f"PV {pv.name} is not an NFS volume (no spec.nfs): cannot write its content")
    if pv.nfs_server != server:
        raise OperationError(f"PV {pv.name} lives on NFS server {pv.nfs_server}, not on the inventory's "
                             f"{server}: refusing to write there")
    try:
        path = validate.abs_path(pv.nfs_path)
    except ValueError as exc:
        raise OperationError(f"PV {pv.name}: spec.nfs.path {exc}") from None
    if not path.startswith(export.rstrip("/") + "/"):
        raise OperationError(f"PV {pv.name}: spec.nfs.path {path} is outside the export {export}: refused")
    rel = path[len(export.rstrip("/")) + 1:]
    return posixpath.join(local_export or export, rel)


def targets(pvcs, pvs, contents: dict[int, str], claim_prefix: str,
            export: str, server: str, local_export: str | None = None,
            namespace: str | None = None) -> list[Target]:
    """Map ordinal -> PVC ``<claim_prefix><ordinal>`` -> bound PV -> directory, for each ordinal in
    ``contents``. A PVC not Bound yet or a missing PV is an error naming it (wait for the rollout first).
    """
    by_pvc = {c.name: c for c in pvcs}
    by_pv = {v.name: v for v in pvs}
    out = []
    for ordinal in sorted(contents):
        name = f"{claim_prefix}{ordinal}"
        pvc = by_pvc.get(name)
        if pvc is None:
            raise OperationError(f"PVC {name} does not exist: the replica {ordinal} has no volume yet "
                                 "(wait for the rollout to finish)")
        if pvc.phase != "Bound" or not pvc.volume:
            raise OperationError(f"PVC {name} is {pvc.phase or 'not Bound'}: is the NFS provisioner running "
                                 "and its StorageClass name right?")
        pv = by_pv.get(pvc.volume)
        if pv is None:
            raise OperationError(f"PV {pvc.volume} of PVC {name} does not exist")
        if pv.claim_name != name or (namespace is not None and pv.claim_namespace != namespace):
            raise OperationError(f"PV {pv.name} is claimed by {pv.claim_namespace}/{pv.claim_name}, not {name}")
        out.append(Target(ordinal, name, pv.name, local_directory(pv, export, server, local_export),
                          contents[ordinal]))
    dirs = [t.directory for t in out]
    if len(set(dirs)) != len(dirs):
        dup = sorted({d for d in dirs if dirs.count(d) > 1})
        raise OperationError(f"several PVCs share the directory {', '.join(dup)}: refusing to write")
    return out
