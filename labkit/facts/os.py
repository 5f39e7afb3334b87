"""Facts about the host's operating system: OS family, files, packages, commands."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

ABSENT_EXIT = 3  # exit code our file-reading commands use for "no such file"

RHEL_IDS = {"rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn"}
DEBIAN_IDS = {"debian", "ubuntu", "raspbian", "linuxmint"}


def parse_os_release(text: str) -> dict:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("'\"")]
        values[key.strip()] = parts[0] if parts else ""
    return values


def os_family(values: dict) -> str:
    ids = {values.get("ID", "").lower()} | set(values.get("ID_LIKE", "").lower().split())
    if ids & RHEL_IDS:
        return "rhel"
    if ids & DEBIAN_IDS:
        return "debian"
    return "unknown"


class OsRelease(Fact):
    """/etc/os-release -> {id, version_id, name, family}; family is rhel | debian | unknown."""

    command = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"

    def process(self, result: FactResult) -> dict:
        values = parse_os_release(result.stdout)
        return {
            "id": values.get("ID", "").lower(),
            "id_like": values.get("ID_LIKE", "").lower().split(),
            "version_id": values.get("VERSION_ID", ""),
            "name": values.get("PRETTY_NAME") or values.get("NAME", ""),
            "family": os_family(values),
        }


@dataclass(frozen=True)
class FileContent(Fact):
    """A text file's content, or None when the file does not exist."""

    path: str
    ok_exit_codes = (0, ABSENT_EXIT)
    sudo = True

    def build(self) -> str:
        p = quote(self.path)
        return f"[ -e {p} ] || exit {ABSENT_EXIT}; cat {p}"

    def process(self, result: FactResult) -> str | None:
        if result.exited == ABSENT_EXIT:
            return None
        return result.stdout


@dataclass(frozen=True)
class DirExists(Fact):
    path: str

    ok_exit_codes = (0, 1)

    def build(self) -> str:
        return f"test -d {quote(self.path)}"

    def process(self, result: FactResult) -> bool:
        return result.exited == 0


def _names(names) -> tuple[str, ...]:
    names = tuple(names)
    for n in names:
        # Package and command names: letters, digits and .+-_ only (they reach a shell).
        if not n or not all(c.isalnum() or c in ".+-_" for c in n):
            raise ValueError(f"invalid package or command name: {n!r}")
    return names


@dataclass(frozen=True)
class InstalledPackages(Fact):
    """Which of ``names`` are installed (dpkg or rpm) -> {name: bool}."""

    names: tuple[str, ...]

    def build(self) -> str:
        checks = []
        for n in _names(self.names):
            qn = quote(n)
            checks.append(
                f"if dpkg-query -W -f='${{Status}}' {qn} 2>/dev/null | grep -q 'ok installed' "
                f"|| rpm -q {qn} >/dev/null 2>&1; then echo {qn} yes; else echo {qn} no; fi"
            )
        return "; ".join(checks)

    def process(self, result: FactResult) -> dict[str, bool]:
        out = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1] == "yes"
        return out


APT_LISTS = "/var/lib/apt/lists"


@dataclass(frozen=True)
class AptIndex(Fact):
    """What apt knows before installing ``names`` -> {"lists": bool, "unknown": [...]}, or None
    on a host without apt.

    ``lists``: package lists were downloaded (``apt-get update`` ever ran; images often ship with
    none). ``unknown``: names ``apt-cache policy`` has no installation candidate for, which
    ``apt-get install`` would refuse with "Unable to locate package". The lists may be compressed
    (``*_Packages.lz4``). Give it the names the step may install on Debian: when dpkg has them all
    installed, apt-cache (half a second of CPU to build its cache) is not run and none is unknown.
    """

    names: tuple[str, ...]
    lists: str = APT_LISTS

    def build(self) -> str:
        d = quote(self.lists)
        pkgs = " ".join(quote(n) for n in _names(self.names))
        return (f"command -v apt-cache >/dev/null 2>&1 || exit 0; set -- {d}/*_Packages*; "
                f"if [ -e \"$1\" ]; then echo lists=yes; else echo lists=no; fi; "
                f"missing=; for p in {pkgs}; do dpkg-query -W -f='${{db:Status-Status}}\\n' \"$p\" 2>/dev/null "
                f"| grep -qx installed || {{ missing=$p; break; }}; done; "
                f"[ -n \"$missing\" ] || {{ echo installed=all; exit 0; }}; "
                # Empty cache paths: apt-cache builds its cache in memory instead of rewriting
                # /var/cache/apt as root (reading a fact changes nothing).
                f"apt-cache -o Dir::State::Lists={d} -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "
                f"policy {pkgs}")

    def process(self, result: FactResult) -> dict | None:
        lines = result.stdout.splitlines()
        if not lines:
            return None
        if lines[1:] == ["installed=all"]:
            return {"lists": lines[0] == "lists=yes", "unknown": []}
        candidates, name = {}, None
        for line in lines[1:]:
            # "name:" starts each package's block; its "  Candidate: (none)" means nothing to install.
            if line and not line[0].isspace() and line.endswith(":"):
                name = line[:-1]
            elif name and line.strip().startswith("Candidate:"):
                candidates[name] = line.split(":", 1)[1].strip()
        unknown = [n for n in self.names if candidates.get(n, "(none)") == "(none)"]
        return {"lists": lines[0] == "lists=yes", "unknown": unknown}


@dataclass(frozen=True)
class Which(Fact):
    """Paths of commands on PATH -> {name: path or None}."""

    names: tuple[str, ...]

    def build(self) -> str:
        return "; ".join(
            f"printf '%s %s\\n' {quote(n)} \"$(command -v {quote(n)} || echo -)\""
            for n in _names(self.names)
        )

    def process(self, result: FactResult) -> dict[str, str | None]:
        out = {}
        for line in result.stdout.splitlines():
            name, _, path = line.partition(" ")
            out[name] = None if path in ("", "-") else path
        return out


class Whoami(Fact):
    """The login user and whether it may become root (for doctor)."""

    command = "id -un; id -u"

    def process(self, result: FactResult) -> dict:
        lines = result.stdout.split()
        return {"user": lines[0] if lines else "", "uid": int(lines[1]) if len(lines) > 1 else -1}
