"""Docker facts: ``docker info``, /etc/docker/daemon.json, ExecStart flags, sysconfig OPTIONS."""
from __future__ import annotations

import json
import shlex

from labkit.facts.base import Fact, FactResult
from labkit.facts.os import ABSENT_EXIT, FileContent

DAEMON_JSON = "/etc/docker/daemon.json"
SYSCONFIG_DOCKER = "/etc/sysconfig/docker"   # RHEL's docker package: OPTIONS=
DEFAULT_DOCKER = "/etc/default/docker"       # Debian's docker.io unit reads it: $DOCKER_OPTS
INSECURE_FLAG = "--insecure-registry"


class DockerInfo(Fact):
    """``docker info`` as JSON -> {"running", "server_version", "insecure_registries", ...}.

    A stopped daemon is a fact ("running": False), not an error.
    """

    command = "docker info --format '{{json .}}'"
    ok_exit_codes = (0, 1, 127)
    sudo = True

    def process(self, result: FactResult) -> dict:
        text = result.stdout.strip()
        data = None
        if text:
            try:
                data = json.loads(text.splitlines()[-1])
            except ValueError:
                data = None
        if result.exited != 0 or not isinstance(data, dict) or not data.get("ServerVersion"):
            reason = (result.stderr.strip() or text or "docker info failed").splitlines()
            return {"running": False, "error": reason[-1] if reason else "", "installed": result.exited != 127}
        reg = data.get("RegistryConfig") or {}
        insecure = sorted(
            name for name, cfg in (reg.get("IndexConfigs") or {}).items()
            if isinstance(cfg, dict) and cfg.get("Secure") is False
        )
        return {
            "running": True,
            "installed": True,
            "server_version": data.get("ServerVersion"),
            "insecure_registries": insecure,
            "insecure_cidrs": list(reg.get("InsecureRegistryCIDRs") or []),
            "containers_running": data.get("ContainersRunning"),
            "cgroup_driver": data.get("CgroupDriver"),
            "os": data.get("OperatingSystem"),
        }


class DaemonJson(FileContent):
    """/etc/docker/daemon.json -> {"exists", "valid", "data", "error", "raw"}."""

    def __init__(self, path: str = DAEMON_JSON):
        super().__init__(path)

    def process(self, result: FactResult) -> dict:
        if result.exited == ABSENT_EXIT:
            return {"exists": False, "valid": True, "data": {}, "error": None, "raw": None}
        raw = result.stdout
        if not raw.strip():
            # dockerd treats an empty daemon.json as an empty config.
            return {"exists": True, "valid": True, "data": {}, "error": None, "raw": raw}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return {"exists": True, "valid": False, "data": None, "error": str(exc), "raw": raw}
        if not isinstance(data, dict):
            return {"exists": True, "valid": False, "data": None,
                    "error": "top level is not a JSON object", "raw": raw}
        return {"exists": True, "valid": True, "data": data, "error": None, "raw": raw}


def insecure_flag_values(args: list[str]) -> list[str]:
    """Registries given as ``--insecure-registry X`` / ``--insecure-registry=X`` in argv."""
    values, i = [], 0
    while i < len(args):
        a = args[i]
        if a == INSECURE_FLAG and i + 1 < len(args):
            values.append(args[i + 1])
            i += 2
            continue
        if a.startswith(INSECURE_FLAG + "="):
            values.append(a.split("=", 1)[1])
        i += 1
    return values



def _join_continuations(text: str) -> list[str]:
    lines, cur = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        lines.append(cur + line)
        cur = ""
    if cur:
        lines.append(cur)
    return lines


def parse_systemctl_cat(text: str) -> dict:
    """``systemctl cat UNIT`` -> {"files", "exec_start", "args", "insecure_registries"}.

    The effective ExecStart is the last one after the last empty ``ExecStart=``
    reset, across the unit file and its drop-ins in the order systemctl prints.
    """
    files, exec_start, current = [], [], None
    section = None
    for line in _join_continuations(text):
        s = line.strip()
        if s.startswith("# /"):
            current = s[2:].strip()
            files.append(current)
            continue
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
            continue
        if section == "Service" and s.startswith("ExecStart="):
            value = s.split("=", 1)[1].strip()
            if value == "":
                exec_start = []
            else:
                exec_start.append({"file": current, "value": value})
    effective = exec_start[-1] if exec_start else None
    args: list[str] = []
    if effective:
        cmd = effective["value"].lstrip("-@:+!")  # systemd prefixes
        try:
            args = shlex.split(cmd)
        except ValueError:
            args = cmd.split()
    return {
        "files": files,
        "exec_start": effective["value"] if effective else None,
        "exec_start_file": effective["file"] if effective else None,
        "args": args,
        "insecure_registries": insecure_flag_values(args),
    }


class DockerUnit(Fact):
    """The docker unit's effective ExecStart and any ``--insecure-registry`` in it."""

    command = "systemctl cat docker.service 2>/dev/null"
    ok_exit_codes = (0, 1)

    def process(self, result: FactResult) -> dict:
        info = parse_systemctl_cat(result.stdout if result.exited == 0 else "")
        info["exists"] = result.exited == 0 and bool(info["files"])
        return info


def parse_sysconfig_options(text: str, variable: str = "OPTIONS") -> dict:
    """An environment file of dockerd's unit (/etc/sysconfig/docker's OPTIONS, /etc/default/docker's
    DOCKER_OPTS) -> that variable's args and their insecure flags."""
    options_line, args = None, []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(f"{variable}="):
            options_line = line
            raw = s.split("=", 1)[1]
            try:
                words = shlex.split(raw)
                args = shlex.split(words[0]) if len(words) == 1 else words
            except ValueError:
                args = raw.strip("'\"").split()
    return {"options_line": options_line, "args": args, "insecure_registries": insecure_flag_values(args)}


class SysconfigDocker(FileContent):
    """/etc/sysconfig/docker's OPTIONS -> {"exists", "path", "raw", "options_line", "args", "insecure_registries"}."""

    variable = "OPTIONS"

    def __init__(self, path: str = SYSCONFIG_DOCKER):
        super().__init__(path)

    def process(self, result: FactResult) -> dict:
        if result.exited == ABSENT_EXIT:
            return {"exists": False, "path": self.path, "raw": None, "options_line": None, "args": [],
                    "insecure_registries": []}
        info = parse_sysconfig_options(result.stdout, self.variable)
        info.update(exists=True, path=self.path, raw=result.stdout)
        return info


class DefaultDocker(SysconfigDocker):
    """/etc/default/docker's DOCKER_OPTS (Debian's docker.io unit: ExecStart=... $DOCKER_OPTS)."""

    variable = "DOCKER_OPTS"

    def __init__(self, path: str = DEFAULT_DOCKER):
        super().__init__(path)
