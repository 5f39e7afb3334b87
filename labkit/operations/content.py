"""The content step's operation: which PV directory gets which index.html (pure).

Facts in: the targets (ordinal -> PVC -> PV -> directory and its page, ``labkit.content.targets``),
what each directory holds (``facts.content.PVDirectories``) and what labkit last wrote there
(``facts.content.WrittenContent``). Out: one ``Decision`` per target, and one command that writes
every directory that needs it (scripts/write-content, inline: one SSH command for any number of
replicas), or nothing when each one is right.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from labkit import validate
from labkit.content import Target
from labkit.errors import OperationError
from labkit.facts.content import PVDirectory
from labkit.facts import content as content_facts
from labkit.operations.base import Command
from labkit.shell import quote

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "write-content"

WRITE, UNCHANGED, KEPT, RECORD = "write", "unchanged", "kept", "record"


@dataclass(frozen=True)
class Decision:
    target: Target
    action: str  # write | unchanged | kept (if_missing: its own page stays) | record (page right, record not)


def decide(targets: list[Target], directories: dict[str, PVDirectory], records: dict[str, str], *,
           if_missing: bool = False) -> list[Decision]:
    """What each target's directory needs. A directory that is missing, resolves out of the export
    or whose index.html is not a regular file refuses the whole step: nothing is written."""
    out = []
    for t in targets:
        d = directories.get(t.directory)
        where = f"PV {t.pv} of {t.pvc}: {t.directory}"
        if d is None or d.state == "missing":
            raise OperationError(f"{where} does not exist on the NFS server: is the PV provisioned on this "
                                 "export (nfs.export and the provisioner's NFS_PATH)?")
        if d.state == "outside":
            raise OperationError(f"{where} resolves to {d.real}, outside the export: refused")
        if d.state == "not a file":
            raise OperationError(f"{where}/index.html is not a regular file: refused (remove it, then run again)")
        if d.state == "page" and d.content == t.content and d.mode == "644":
            out.append(Decision(t, UNCHANGED if records.get(t.directory) == t.content else RECORD))
        elif if_missing and d.state == "page":
            out.append(Decision(t, KEPT))
        else:
            out.append(Decision(t, WRITE))
    return out


def write_pages(decisions: list[Decision], export: str, *, script: Path = SCRIPT) -> Iterator[Command]:
    """One command for every directory to write (or only to record); nothing when none is."""
    todo = [d.target for d in decisions if d.action in (WRITE, RECORD)]
    if not todo:
        return
    writes = sum(d.action == WRITE for d in decisions)
    records = len(todo) - writes
    said = [f"write index.html in {_dirs(writes)}"] * bool(writes) + \
           [f"record the page of {_dirs(records)} for verify"] * bool(records)
    yield write_command(todo, export, " and ".join(said), script=script)


def _dirs(n: int) -> str:
    return f"{n} PV director{'y' if n == 1 else 'ies'}"


def write_command(targets: list[Target], export: str, description: str = "", *, script: Path = SCRIPT,
                  records: str | None = None) -> Command:
    """``sh -c SCRIPT write-content RECORDS EXPORT DIR CONTENT ...`` (runs as root on the NFS server).
    RECORDS: where it keeps what it wrote (``facts.content.RECORDS``, read back by ``WrittenContent``)."""
    validate.abs_path(export)
    args = [validate.abs_path(records or content_facts.RECORDS), export]
    for t in targets:
        if "\0" in t.content:
            raise OperationError(f"the page for {t.pvc} contains a NUL byte")
        validate.abs_path(t.directory)
        args += [t.directory, t.content]
    # sh -c SCRIPT NAME ARGS...: $0 is NAME, the pairs are $1.. ; every piece is quoted.
    command = "sh -c " + quote(script.read_text()) + " write-content " + " ".join(quote(a) for a in args)
    return Command(command, sudo=True, description=description or f"write index.html in {_dirs(len(targets))}")


def purge(directories: dict[str, PVDirectory]) -> Iterator[Command]:
    """``teardown --purge``: remove the PV directories that are still there (one command). One that
    resolves out of the export is refused, and nothing is removed."""
    for d, state in directories.items():
        if state.state == "outside":
            raise OperationError(f"{d} resolves to {state.real}, outside the export: refusing to remove it")
    there = sorted(d for d, state in directories.items() if state.state != "missing")
    if there:
        yield Command("rm -rf -- " + " ".join(quote(d) for d in there), sudo=True,
                      description=f"remove {_dirs(len(there))} (the purged PVs' data)")
