"""containerd facts: config.toml (v2/v3 layouts), version, certs.d hosts.toml."""
from __future__ import annotations

import re
import tomllib

from labkit.facts.base import Fact, FactResult
from labkit.facts.os import ABSENT_EXIT, FileContent

CONFIG_TOML = "/etc/containerd/config.toml"
CERTS_D = "/etc/containerd/certs.d"

# Where config_path lives (DESIGN.md section 2), as TOML keys: containerd 1.x writes config
# version 2, containerd 2.x version 3, and they name the CRI registry table differently
# (2.x quotes it 'io.containerd.cri.v1.images', which is the same key).
REGISTRY_TABLE = {
    2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
    3: ("plugins", "io.containerd.cri.v1.images", "registry"),
}


def table_name(path: tuple[str, ...]) -> str:
    """('plugins', 'io.containerd.grpc.v1.cri', 'registry') -> 'plugins."io.containerd.grpc.v1.cri".registry'."""
    return ".".join(k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else f'"{k}"' for k in path)


def lookup(data, path: tuple[str, ...]):
    """The value at ``path`` in parsed TOML, or None."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def parse_config_toml(raw: str | None) -> dict:
    if raw is None:
        return {"exists": False, "valid": True, "version": None, "config_path": None, "raw": None, "error": None}
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        return {"exists": True, "valid": False, "version": None, "config_path": None, "raw": raw,
                "error": str(exc)}
    version = data.get("version")
    config_path = lookup(data, REGISTRY_TABLE[version] + ("config_path",)) if version in REGISTRY_TABLE else None
    return {"exists": True, "valid": True, "version": version, "config_path": config_path, "raw": raw,
            "error": None}


class ContainerdConfig(FileContent):
    """config.toml -> {"exists", "valid", "version", "config_path", "raw", "error"}."""

    def __init__(self, path: str = CONFIG_TOML):
        super().__init__(path)

    def process(self, result: FactResult) -> dict:
        return parse_config_toml(None if result.exited == ABSENT_EXIT else result.stdout)


class ContainerdVersion(Fact):
    """``containerd --version`` -> major version (1, 2) or None when not installed."""

    command = "containerd --version 2>/dev/null"
    ok_exit_codes = (0, 1, 127)

    def process(self, result: FactResult) -> int | None:
        m = re.search(r"\sv?(\d+)\.(\d+)\.\d+", result.stdout)
        return int(m.group(1)) if (result.exited == 0 and m) else None


def hosts_toml_path(registry: str) -> str:
    return f"{CERTS_D}/{registry}/hosts.toml"


class HostsToml(FileContent):
    """certs.d/<host:port>/hosts.toml content, or None."""

    def __init__(self, registry: str):
        super().__init__(hosts_toml_path(registry))
