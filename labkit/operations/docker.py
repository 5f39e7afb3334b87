"""Make dockerd trust the plain-HTTP registry (DESIGN.md section 2, Docker).

``insecure-registries`` is merged into daemon.json keeping every other key.
The same directive given as an ``--insecure-registry`` flag (ExecStart or RHEL's
/etc/sysconfig/docker OPTIONS) makes dockerd refuse to start, so the flag's
values move into daemon.json and the flag is removed. dockerd is restarted
only when one of its configs changed, and never left down (``service.restart_or_roll_back``).
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from labkit.errors import OperationError
from labkit.facts.docker import DAEMON_JSON
from labkit.operations.base import Command, PutFile
from labkit.operations.service import restart_or_roll_back

# "zz-": systemd applies a unit's drop-ins in file-name order, so this one comes after an admin's
# override.conf (or 10-flags.conf) that may carry the flag; its ExecStart wins.
DROP_IN = "/etc/systemd/system/docker.service.d/zz-labkit-insecure-registry.conf"
# The flag and its value, after a blank or right after an opening quote or '=' (DOCKER_OPTS="--ins...");
# an unquoted value stops at a quote, so the closing quote of the variable stays.
_FLAG = re.compile(r"(?:\s+|(?<=[\"'=]))--insecure-registry(?:=|\s+)(?:'[^']*'|\"[^\"]*\"|[^\s\"']+)")


def remove_flags(text: str) -> str:
    return _FLAG.sub("", text)


def render_daemon_json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def drop_in(exec_start: str) -> str:
    return (
        "# Written by labkit: --insecure-registry moved to /etc/docker/daemon.json;\n"
        "# dockerd refuses a directive given both as a flag and in daemon.json.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={remove_flags(exec_start)}\n"
    )


def docker_trust(*, registry: str, daemon_json: dict, unit: dict, sysconfig: dict,
                 default: dict | None = None) -> Iterator[Command | PutFile]:
    """daemon.json's insecure-registries; the flag moved out of wherever dockerd reads it (the unit's
    effective ExecStart, /etc/sysconfig/docker's OPTIONS, /etc/default/docker's DOCKER_OPTS).
    The restart puts every file back when dockerd does not start (``service.restart_or_roll_back``)."""
    if not daemon_json["valid"]:
        raise OperationError(
            f"{DAEMON_JSON} is not valid JSON ({daemon_json['error']}); dockerd cannot start with it "
            "either: fix or remove it, then run again"
        )
    option_files = [f for f in (sysconfig, default) if f and f.get("insecure_registries")]
    data = dict(daemon_json["data"])
    current = data.get("insecure-registries", [])
    if not isinstance(current, list):
        raise OperationError(f"{DAEMON_JSON}: insecure-registries must be a list, found {current!r}")
    wanted = list(current)
    for value in [*unit.get("insecure_registries", []), *(v for f in option_files for v in f["insecure_registries"]),
                  registry]:
        if value not in wanted:
            wanted.append(value)
    written: list[tuple[str, bool]] = []
    if wanted != current or not daemon_json["exists"]:
        data["insecure-registries"] = wanted
        yield PutFile(DAEMON_JSON, render_daemon_json(data),
                      description=f"insecure-registries: {', '.join(wanted)}")
        written.append((DAEMON_JSON, daemon_json["exists"]))
    if unit.get("insecure_registries"):
        yield PutFile(DROP_IN, drop_in(unit["exec_start"]),
                      description=f"drop --insecure-registry from docker's ExecStart (set in "
                                  f"{unit.get('exec_start_file') or 'the unit'}; now in daemon.json)")
        written.append((DROP_IN, DROP_IN in unit.get("files", [])))
    for options in option_files:
        line = options["options_line"]
        yield PutFile(options["path"], options["raw"].replace(line, remove_flags(line), 1),
                      description=f"drop --insecure-registry from {options['path']} (now in daemon.json)")
        written.append((options["path"], True))
    if written:
        yield restart_or_roll_back("docker", written, daemon_reload=bool(unit.get("insecure_registries")))
