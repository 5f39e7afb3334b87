"""Registry facts: the registry container (``docker inspect``) and the v2 API replies."""
from __future__ import annotations

import json
import re

from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def _check(pattern, value, what):
    if not pattern.match(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _json_or_none(result: FactResult):
    """The command's JSON output, or None when it failed or printed no JSON."""
    if result.exited != 0:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


class RegistryContainer(Fact):
    """``docker inspect --type container NAME`` -> None or the settings labkit manages."""

    ok_exit_codes = (0, 1)
    sudo = True

    def __init__(self, name: str = "registry"):
        self.name = name

    def build(self) -> str:
        return f"docker inspect --type container {quote(self.name)} 2>/dev/null"

    def process(self, result: FactResult) -> dict | None:
        data = _json_or_none(result)
        if not data:
            return None
        c = data[0]
        cfg, host, state = c.get("Config") or {}, c.get("HostConfig") or {}, c.get("State") or {}
        ports = {}
        for cport, binds in (host.get("PortBindings") or {}).items():
            ports[cport] = sorted(str(b.get("HostPort")) for b in (binds or []))
        mounts = sorted(
            (m.get("Source"), m.get("Destination")) for m in (c.get("Mounts") or []) if m.get("Type") == "bind"
        )
        return {
            "id": c.get("Id"),
            "image": cfg.get("Image"),
            "running": bool(state.get("Running")),
            "status": state.get("Status"),
            "restart": (host.get("RestartPolicy") or {}).get("Name"),
            "ports": ports,
            "binds": [list(m) for m in mounts],
        }


def _curl(url: str) -> str:
    # -m: a registry that accepts but never answers must not hang the step.
    return f"curl -fsS -m 10 {quote(url)}"


class RegistryPing(Fact):
    """``GET /v2/`` -> {"ok": bool, "error": str}."""

    ok_exit_codes = tuple(range(0, 128))

    def __init__(self, address: str):
        self.address = _check(_ADDR, address, "registry address")

    def build(self) -> str:
        return _curl(f"http://{self.address}/v2/") + " 2>&1"

    def process(self, result: FactResult) -> dict:
        if result.exited == 0:
            return {"ok": True, "error": ""}
        msg = result.stdout.strip() or result.stderr.strip() or f"curl exited {result.exited}"
        if result.exited == 127:
            msg = "curl is not installed on this host"
        return {"ok": False, "error": msg.splitlines()[-1]}


class RegistryTags(Fact):
    """``GET /v2/<name>/tags/list`` -> tags; an unknown repository (404) gives []."""

    ok_exit_codes = (0, 22)

    def __init__(self, address: str, repository: str):
        self.address = _check(_ADDR, address, "registry address")
        self.repository = _check(_REPO, repository, "repository")

    def build(self) -> str:
        return _curl(f"http://{self.address}/v2/{self.repository}/tags/list") + " 2>/dev/null"

    def process(self, result: FactResult) -> list[str]:
        if result.exited == 22:
            return []
        return sorted(json.loads(result.stdout).get("tags") or [])


MANIFEST_ACCEPT = ("application/vnd.docker.distribution.manifest.v2+json,"
                   "application/vnd.oci.image.manifest.v1+json")


class RegistryImageConfig(Fact):
    """The image config blob of ``repo:tag`` in the registry -> {"labels"} or None.

    One shell line: fetch the manifest, pick ``config.digest``, fetch that blob.
    Used to skip a build whose content (label hash) is already pushed.
    """

    ok_exit_codes = (0, 22, 3)

    def __init__(self, address: str, repository: str, tag: str):
        self.address = _check(_ADDR, address, "registry address")
        self.repository = _check(_REPO, repository, "repository")
        self.tag = _check(_TAG, tag, "tag")

    def build(self) -> str:
        base = f"http://{self.address}/v2/{self.repository}"
        return (
            f"m=$(curl -fsS -m 10 -H {quote('Accept: ' + MANIFEST_ACCEPT)} "
            f"{quote(base + '/manifests/' + self.tag)} 2>/dev/null) || exit 22; "
            "d=$(printf '%s' \"$m\" | tr -d ' \\n\\t' | "
            "sed -n 's/.*\"config\":{[^}]*\"digest\":\"\\(sha256:[0-9a-f]*\\)\".*/\\1/p'); "
            "[ -n \"$d\" ] || exit 3; "
            f"curl -fsS -m 10 {quote(base + '/blobs/')}\"$d\""
        )

    def process(self, result: FactResult) -> dict | None:
        data = _json_or_none(result)
        if data is None:
            return None
        return {"labels": (data.get("config") or {}).get("Labels") or {}}
