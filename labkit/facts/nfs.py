"""NFS facts: nfsd availability, /etc/exports and the live table (``exportfs -v``), ganesha.conf,
``showmount -e``."""
from __future__ import annotations

import re

from labkit.facts.base import Fact, FactResult
from labkit.facts.os import FileContent
from labkit.shell import quote

EXPORTS = "/etc/exports"
GANESHA_CONF = "/etc/ganesha/ganesha.conf"


class NfsdAvailable(Fact):
    """Can this kernel serve NFS? -> {"available": bool, "evidence": [...]}.

    Evidence: nfsd in /proc/filesystems, the nfsd filesystem mounted at /proc/fs/nfsd
    (an empty /proc/fs/nfsd directory is not enough: containers show one), or a
    loadable module (``modprobe -n``). Containers and some VMs have none of these.
    """

    command = (
        "grep -qw nfsd /proc/filesystems 2>/dev/null && echo filesystems; "
        "[ -e /proc/fs/nfsd/threads ] && echo proc-fs-nfsd; "
        "modprobe -n nfsd >/dev/null 2>&1 && echo module; true"
    )

    def process(self, result: FactResult) -> dict:
        evidence = [w for w in result.stdout.split() if w in ("filesystems", "proc-fs-nfsd", "module")]
        return {"available": bool(evidence), "evidence": evidence}


class Exports(FileContent):
    def __init__(self, path: str = EXPORTS):
        super().__init__(path)


def parse_exportfs(text: str) -> list[dict]:
    """``exportfs -v`` -> [{"path", "client", "options": [...]}], one per path and client.

    exportfs prints "PATH<tab>CLIENT(OPTIONS)", or PATH alone on its line when it is longer than 14
    characters, so whitespace-separated words alternate path / client; paths have no spaces (labkit
    refuses them). The world ("*" in /etc/exports) is printed as "<world>".
    """
    words = text.split()
    exports = []
    for path, entry in zip(words[::2], words[1::2]):
        client, _, options = entry.partition("(")
        exports.append({"path": path, "client": "*" if client == "<world>" else client,
                        "options": options.rstrip(")").split(",") if options else []})
    return exports


class LiveExports(Fact):
    """The kernel's export table as ``exportfs -v`` reports it -> [...] (``parse_exportfs``), or None
    when exportfs is not installed (exit 127)."""

    command = "exportfs -v"
    ok_exit_codes = (0, 127)
    sudo = True  # exportfs locks /var/lib/nfs/etab, root's

    def process(self, result: FactResult) -> list[dict] | None:
        return None if result.exited == 127 else parse_exportfs(result.stdout)


class GaneshaConf(FileContent):
    def __init__(self, path: str = GANESHA_CONF):
        super().__init__(path)


def parse_showmount(text: str) -> list[dict]:
    """``showmount -e`` output -> [{"path", "clients": [...]}]."""
    exports = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Export list for"):
            continue
        parts = line.split()
        exports.append({"path": parts[0], "clients": ",".join(parts[1:]).split(",") if len(parts) > 1 else []})
    return exports


_SERVER = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")


class Showmount(Fact):
    """``showmount -e SERVER`` -> {"ok", "exports", "error"}."""

    ok_exit_codes = tuple(range(0, 128))

    def __init__(self, server: str):
        if not _SERVER.match(server):
            raise ValueError(f"invalid NFS server address: {server!r}")
        self.server = server

    def build(self) -> str:
        return f"showmount -e {quote(self.server)} 2>&1"

    def process(self, result: FactResult) -> dict:
        if result.exited != 0:
            msg = result.stdout.strip() or f"showmount exited {result.exited}"
            if result.exited == 127:
                msg = "showmount is not installed (install the NFS client: nfs-common / nfs-utils)"
            return {"ok": False, "exports": [], "error": msg.splitlines()[-1]}
        return {"ok": True, "exports": parse_showmount(result.stdout), "error": ""}
