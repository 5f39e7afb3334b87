"""The content step: write each replica's index.html into its PV directory on the NFS server.

The directory comes from the PV's ``spec.nfs.path`` (the export is the server's local path),
never from splitting names. One command for any number of replicas: scripts/write-content is
passed inline to ``sh -c`` with (directory, content) pairs as arguments, and answers one JSON
line per directory ("written", "unchanged" or "error").
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from labkit import validate
from labkit.errors import OperationError
from labkit.operations.base import Command
from labkit.shell import quote

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "write-content"


@dataclass(frozen=True)
class Target:
    """One replica's content: where (PV directory on the server) and what."""

    ordinal: int
    pvc: str
    pv: str
    directory: str  # local path on the NFS server
    content: str


@dataclass(frozen=True)
class WriteResult:
    directory: str
    result: str  # written | unchanged | error
    error: str | None = None


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


def write_command(targets: list[Target], local_export: str, *, check: bool = False, if_missing: bool = False,
                  script: Path = SCRIPT) -> Command | None:
    """One command writing every target (None when there are none). Runs as root on the NFS server.

    ``check``: report what would be written, write nothing (plan mode).
    ``if_missing``: only directories without an index.html get content (new replicas).
    """
    if not targets:
        return None
    validate.abs_path(local_export)
    args = ["--check"] * check + ["--if-missing"] * if_missing + [local_export]
    for t in targets:
        if "\0" in t.content:
            raise OperationError(f"content for {t.pvc} contains a NUL byte")
        validate.abs_path(t.directory)
        args += [t.directory, t.content]
    text = script.read_text()
    # sh -c SCRIPT NAME ARGS...: $0 is NAME, the pairs are $1.. ; every piece is quoted.
    command = "sh -c " + quote(text) + " write-content " + " ".join(quote(a) for a in args)
    return Command(command, sudo=True,
                   description=("check" if check else "write") + f" index.html in {len(targets)} PV director{'y' if len(targets) == 1 else 'ies'}")


def parse(stdout: str) -> list[WriteResult]:
    """The script's JSON lines -> results (other lines are ignored; a broken line is an error)."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise OperationError(f"write-content printed a line that is not JSON: {line[:200]!r}") from None
        out.append(WriteResult(data["dir"], data["result"], data.get("error")))
    return out


def summarize(targets: list[Target], results: list[WriteResult]) -> dict[str, list]:
    """{'written': [...], 'unchanged': [...], 'would write': [...], 'kept': [...],
    'error': [(dir, msg)], 'missing': [dirs without a report]}."""
    got = {r.directory: r for r in results}
    summary = {"written": [], "unchanged": [], "would write": [], "kept": [], "error": [], "missing": []}
    for t in targets:
        r = got.get(t.directory)
        if r is None:
            summary["missing"].append(t.directory)
        elif r.result == "error":
            summary["error"].append((t.directory, r.error))
        else:
            summary[r.result].append(t.directory)
    return summary
