"""Make containerd (the kubelet's runtime since 1.24) trust the plain-HTTP registry.

config.toml gets ``config_path = "/etc/containerd/certs.d"`` in the CRI registry
section (``version = 2``: ``plugins."io.containerd.grpc.v1.cri".registry``;
``version = 3``: ``plugins."io.containerd.cri.v1.images".registry``), and
``certs.d/<host:port>/hosts.toml`` points at ``http://<host:port>``. containerd
re-reads hosts.toml on every pull, so only a config.toml change restarts it.
"""
from __future__ import annotations

import re
from typing import Iterator

from labkit.errors import OperationError
from labkit.facts.containerd import CERTS_D, CONFIG_TOML, REGISTRY_SECTION, hosts_toml_path, parse_config_toml
from labkit.operations.base import Command, PutFile


def hosts_toml(registry: str) -> str:
    url = f"http://{registry}"
    return (f'server = "{url}"\n\n'
            f'[host."{url}"]\n'
            '  capabilities = ["pull", "resolve", "push"]\n')


def set_config_path(raw: str, version: int) -> str:
    """Return config.toml text with config_path set in the CRI registry section, rest untouched."""
    header = f"[{REGISTRY_SECTION[version]}]"
    lines = raw.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == header), None)
    if start is None:
        text = raw if raw.endswith("\n") or not raw else raw + "\n"
        return text + f"\n{header}\n  config_path = \"{CERTS_D}\"\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(r"\s*config_path\s*=", lines[i]):
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines[i] = f'{indent}config_path = "{CERTS_D}"'
            break
    else:
        lines.insert(start + 1, f'  config_path = "{CERTS_D}"')
    return "\n".join(lines) + "\n"


def containerd_trust(*, registry: str, config: dict, major: int | None,
                     hosts: str | None) -> Iterator[Command | PutFile]:
    if not config["valid"]:
        raise OperationError(f"{CONFIG_TOML} is not valid TOML ({config['error']}); fix it and run again")
    changed = False
    if not config["exists"]:
        if major is None:
            raise OperationError("containerd is not installed (containerd --version failed); "
                                 "install it or set runtime: docker for this host")
        version = 3 if major >= 2 else 2
        text = f"version = {version}\n\n[{REGISTRY_SECTION[version]}]\n  config_path = \"{CERTS_D}\"\n"
        yield PutFile(CONFIG_TOML, text, description=f"create config.toml (version {version}) with config_path")
        changed = True
    else:
        version = config["version"]
        if version not in REGISTRY_SECTION:
            raise OperationError(
                f"{CONFIG_TOML} has config version {version!r}; labkit handles version 2 (containerd 1.x) "
                "and 3 (2.x): regenerate it with `containerd config default` and run again")
        paths = str(config["config_path"] or "").split(":")
        if CERTS_D not in paths:
            new = set_config_path(config["raw"], version)
            if parse_config_toml(new)["config_path"] != CERTS_D:
                raise OperationError(f"could not set config_path in {CONFIG_TOML}; set "
                                     f"config_path = \"{CERTS_D}\" under [{REGISTRY_SECTION[version]}] by hand")
            yield PutFile(CONFIG_TOML, new, description=f"config_path = {CERTS_D}")
            changed = True
    wanted = hosts_toml(registry)
    if hosts != wanted:
        yield PutFile(hosts_toml_path(registry), wanted, description=f"trust http://{registry}")
    if changed:
        yield Command("systemctl restart containerd", description="restart containerd (config.toml changed)")
