"""NFS server (kernel nfsd or userspace nfs-ganesha) and NFS client packages.

Both server paths manage only labkit's own export: one line in /etc/exports
(kernel) or one EXPORT block between marker comments in ganesha.conf, leaving
every other export as it was.
"""
from __future__ import annotations

import re
from typing import Iterator

from labkit.errors import OperationError
from labkit.facts.nfs import EXPORTS, GANESHA_CONF
from labkit.operations.base import Command, PutFile
from labkit.operations.packages import enable_and_start, install
from labkit.shell import quote

KERNEL_PACKAGES = {"rhel": ["nfs-utils", "rpcbind"], "debian": ["nfs-kernel-server"]}
# nfs-server on Debian too: there nfs-kernel-server is only its alias, which cannot say whether
# the server starts at boot (``systemctl is-enabled`` prints "alias").
KERNEL_SERVICES = {"rhel": ["rpcbind", "nfs-server"], "debian": ["rpcbind", "nfs-server"]}
# firewalld's service names (its /usr/lib/firewalld/services/*.xml): 2049, 111, 20048.
FIREWALL_SERVICES = ["nfs", "rpc-bind", "mountd"]
CLIENT_PACKAGES = {"rhel": ["nfs-utils"], "debian": ["nfs-common"]}
GANESHA_PACKAGES = ["nfs-ganesha", "nfs-ganesha-vfs"]
GANESHA_SERVICES = ["rpcbind", "nfs-ganesha"]


def _family_packages(table: dict, family: str, what: str) -> list[str]:
    if family not in table:
        raise OperationError(f"unknown OS family for {what}: install it by hand (RHEL: nfs-utils; "
                             "Debian/Ubuntu: nfs-kernel-server / nfs-common)")
    return table[family]


# ---------------------------------------------------------------- kernel nfsd


def export_line(path: str, clients: str, options: list[str]) -> str:
    return f"{path} {clients}({','.join(options)})"


def merge_exports(text: str | None, path: str, line: str) -> str:
    """/etc/exports with exactly one line for ``path`` (ours); other lines untouched."""
    out, placed = [], False
    for existing in (text or "").splitlines():
        fields = existing.split()
        if fields and not existing.lstrip().startswith("#") and fields[0] == path:
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(existing)
    if not placed:
        out.append(line)
    return "\n".join(out) + "\n"


def is_exported(live: list[dict] | None, path: str, clients: str) -> bool:
    """Does the live table (``LiveExports``) export ``path`` to ``clients``?"""
    return any(e["path"] == path and e["client"] == clients for e in live or [])


def open_firewall(firewall: dict | None) -> Iterator[Command]:
    """NFS's services in firewalld's default zone, permanent and live; nothing unless it runs."""
    if not firewall or firewall["state"] != "running":
        return
    closed = [s for s in FIREWALL_SERVICES if s not in firewall["permanent"]]
    if closed:
        adds = " ".join(f"--add-service={quote(s)}" for s in closed)
        yield Command(f"firewall-cmd --permanent {adds}",
                      description=f"firewalld: open {', '.join(closed)} (default zone, permanent)")
    # Also when only the runtime lacks one: a run that stopped before its reload.
    if closed or any(s not in firewall["runtime"] for s in FIREWALL_SERVICES):
        yield Command("firewall-cmd --reload", description="firewalld: apply the permanent rules now")


def kernel_server(*, export: str, clients: str, options: list[str], family: str, nfsd: dict,
                  installed: dict, services: dict, exports: str | None, export_exists: bool,
                  live: list[dict] | None = None, apt: dict | None = None,
                  firewall: dict | None = None) -> Iterator[Command | PutFile]:
    if not nfsd["available"]:
        raise OperationError(
            "this host has no kernel NFS server (no nfsd in /proc/filesystems, no /proc/fs/nfsd, no nfsd "
            "module): it is a container or a VM without nfsd. Set `nfs.server: ganesha` in the inventory "
            "to serve the export with userspace nfs-ganesha instead")
    yield from install(family, _family_packages(KERNEL_PACKAGES, family, "the NFS server"), installed, apt)
    if not export_exists:
        yield Command(f"mkdir -p {quote(export)}", description=f"create {export}")
    new = merge_exports(exports, export, export_line(export, clients, options))
    exports_changed = new != (exports or "")
    if exports_changed:
        yield PutFile(EXPORTS, new, description=f"export {export_line(export, clients, options)}")
    for unit in KERNEL_SERVICES[family]:
        yield from enable_and_start(unit, services.get(unit, {}))
    if exports_changed:
        yield Command("exportfs -ra", description="reload exports")
    elif not is_exported(live, export, clients):
        # /etc/exports is right but a run stopped before exporting it (or someone unexported it).
        yield Command("exportfs -ra", description=f"export {export}: in /etc/exports, not in the live table")
    yield from open_firewall(firewall)


# ---------------------------------------------------------------- nfs-ganesha


def _markers(path: str) -> tuple[str, str]:
    return f"# BEGIN labkit export {path}", f"# END labkit export {path}"


def _export_ids(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"(?im)^\s*Export_Id\s*=\s*(\d+)\s*;", text)]


def ganesha_block(path: str, clients: str, options: list[str], export_id: int) -> str:
    begin, end = _markers(path)
    access = "RO" if "ro" in options else "RW"
    squash = ("No_Root_Squash" if "no_root_squash" in options else
              "All_Squash" if "all_squash" in options else "Root_Squash")
    lines = [
        begin,
        "EXPORT {",
        f"\tExport_Id = {export_id};",
        f'\tPath = "{path}";',
        f'\tPseudo = "{path}";',
        "\tProtocols = 3, 4;",
        "\tTransports = TCP;",
        "\tSecType = sys;",
        f"\tSquash = {squash};",
        # labkit writes PV content on the server's own filesystem; ganesha's attribute cache
        # (60 s by default) would keep serving the replaced file to clients for up to a minute.
        "\tAttr_Expiration_Time = 0;",
    ]
    if clients == "*":
        lines.append(f"\tAccess_Type = {access};")
    else:
        # Only the listed clients get access; everyone else none.
        lines += ["\tAccess_Type = None;", "\tCLIENT {", f"\t\tClients = {clients};",
                  f"\t\tAccess_Type = {access};", "\t}"]
    lines += ["\tFSAL {", "\t\tName = VFS;", "\t}", "}", end]
    return "\n".join(lines) + "\n"


# nfs-ganesha answers NFSv3 SETATTR (a chmod: the NFS provisioner's first step for every new
# volume) with NFS3ERR_JUKEBOX until its grace period ends, 90 s after each start by default.
# A lab server that labkit (re)starts has little state to reclaim: a short grace, and a lease
# no longer than it, keeps provisioning from stalling for a minute and a half after setup-nfs.
GRACE_SECONDS = 10
GRACE_BEGIN, GRACE_END = "# BEGIN labkit NFSV4 grace", "# END labkit NFSV4 grace"
_GRACE_RE = re.compile(re.escape(GRACE_BEGIN) + r"\n.*?" + re.escape(GRACE_END) + r"\n?", re.S)
_USER_NFSV4_RE = re.compile(r"(?im)^[ \t]*NFSV4[ \t]*\{")


def grace_block(seconds: int = GRACE_SECONDS) -> str:
    return "\n".join([GRACE_BEGIN, "NFSV4 {", f"\tGrace_Period = {seconds};",
                      f"\tLease_Lifetime = {seconds};", "}", GRACE_END]) + "\n"


def _append(text: str, block: str) -> str:
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block


def merge_grace(text: str) -> str:
    """ganesha.conf with labkit's short-grace NFSV4 block, unless the admin has an NFSV4 block of
    their own (ganesha takes one; theirs wins and ours is dropped)."""
    found = _GRACE_RE.search(text)
    rest = text[: found.start()] + text[found.end():] if found else text
    if _USER_NFSV4_RE.search(rest):
        return rest
    if found:
        return text[: found.start()] + grace_block() + text[found.end():]
    return _append(text, grace_block())


def merge_ganesha(text: str | None, path: str, clients: str, options: list[str]) -> str:
    """ganesha.conf with labkit's EXPORT block for ``path`` replaced or appended and labkit's
    short-grace block (``merge_grace``); the rest kept."""
    return merge_grace(_merge_export(text or "", path, clients, options))


def _merge_export(text: str, path: str, clients: str, options: list[str]) -> str:
    begin, end = _markers(path)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end) + r"\n?", re.S)
    found = pattern.search(text)
    if found:
        ids = _export_ids(found.group(0))
        others = _export_ids(text[: found.start()] + text[found.end():])
        export_id = ids[0] if ids and ids[0] not in others else max([0, *others]) + 1
        block = ganesha_block(path, clients, options, export_id)
        return text[: found.start()] + block + text[found.end():]
    export_id = max([0, *_export_ids(text)]) + 1
    return _append(text, ganesha_block(path, clients, options, export_id))


def ganesha_server(*, export: str, clients: str, options: list[str], family: str, installed: dict,
                   services: dict, conf: str | None, export_exists: bool,
                   apt: dict | None = None) -> Iterator[Command | PutFile]:
    yield from install(family, GANESHA_PACKAGES, installed, apt)
    if not export_exists:
        yield Command(f"mkdir -p {quote(export)}", description=f"create {export}")
    new = merge_ganesha(conf, export, clients, options)
    changed = new != (conf or "")
    if changed:
        yield PutFile(GANESHA_CONF, new, description=f"EXPORT {export} ({clients})")
    # rpcbind first: ganesha registers NFSv3 and MOUNT with it at start.
    yield from enable_and_start("rpcbind", services.get("rpcbind", {}))
    yield from enable_and_start("nfs-ganesha", services.get("nfs-ganesha", {}), restart=changed)


# ---------------------------------------------------------------- clients


def client(*, family: str, installed: dict, apt: dict | None = None) -> Iterator[Command]:
    yield from install(family, _family_packages(CLIENT_PACKAGES, family, "the NFS client"), installed, apt)
