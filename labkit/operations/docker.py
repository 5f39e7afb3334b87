"""Make dockerd trust the plain-HTTP registry (DESIGN.md section 2, Docker).

``insecure-registries`` is merged into daemon.json keeping every other key.
The same directive given as an ``--insecure-registry`` flag (ExecStart or RHEL's
/etc/sysconfig/docker OPTIONS) makes dockerd refuse to start, so the flag's
values move into daemon.json and the flag is removed. dockerd is restarted
only when one of its configs changed.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from labkit.errors import OperationError
from labkit.facts.docker import DAEMON_JSON, SYSCONFIG_DOCKER
from labkit.operations.base import Command, PutFile

DROP_IN = "/etc/systemd/system/docker.service.d/labkit-insecure-registry.conf"
_FLAG = re.compile(r"\s+--insecure-registry(?:=|\s+)(?:'[^']*'|\"[^\"]*\"|\S+)")


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


def docker_trust(*, registry: str, daemon_json: dict, unit: dict, sysconfig: dict) -> Iterator[Command | PutFile]:
    if not daemon_json["valid"]:
        raise OperationError(
            f"{DAEMON_JSON} is not valid JSON ({daemon_json['error']}); dockerd cannot start with it "
            "either: fix or remove it, then run again"
        )
    data = dict(daemon_json["data"])
    current = data.get("insecure-registries", [])
    if not isinstance(current, list):
        raise OperationError(f"{DAEMON_JSON}: insecure-registries must be a list, found {current!r}")
    wanted = list(current)
    for value in [*unit.get("insecure_registries", []), *sysconfig.get("insecure_registries", []), registry]:
        if value not in wanted:
            wanted.append(value)
    changed = False
    if wanted != current or not daemon_json["exists"]:
        data["insecure-registries"] = wanted
        yield PutFile(DAEMON_JSON, render_daemon_json(data),
                      description=f"insecure-registries: {', '.join(wanted)}")
        changed = True
    if unit.get("insecure_registries"):
        yield PutFile(DROP_IN, drop_in(unit["exec_start"]),
                      description="drop --insecure-registry from docker's ExecStart (now in daemon.json)")
        yield Command("systemctl daemon-reload", description="reload systemd units")
        changed = True
    if sysconfig.get("insecure_registries"):
        raw = sysconfig["raw"]
        line = sysconfig["options_line"]
        yield PutFile(SYSCONFIG_DOCKER, raw.replace(line, remove_flags(line), 1),
                      description="drop --insecure-registry from OPTIONS (now in daemon.json)")
        changed = True
    if changed:
        yield Command("systemctl restart docker", description="restart docker (config changed)")
