"""systemd unit state (``systemctl is-active`` / ``is-enabled``) and firewalld's state."""
from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

_UNIT = re.compile(r"^[A-Za-z0-9@._:-]+$")


def unit_name(name: str) -> str:
    if not _UNIT.match(name):
        raise ValueError(f"invalid systemd unit name: {name!r}")
    return name


@dataclass(frozen=True)
class ServiceState(Fact):
    """-> {"active": "active"|"inactive"|"failed"|..., "enabled": "enabled"|"disabled"|...}.

    Both probes exit non-zero for a stopped or disabled unit, which is a fact,
    not an error, so their exit codes are folded into the output.
    """

    unit: str

    def __post_init__(self):
        unit_name(self.unit)  # refuse a hostile name when the fact is made, not when sent

    def build(self) -> str:
        u = quote(unit_name(self.unit))
        return (f"printf 'active=%s\\n' \"$(systemctl is-active {u} 2>/dev/null)\"; "
                f"printf 'enabled=%s\\n' \"$(systemctl is-enabled {u} 2>/dev/null)\"")

    def process(self, result: FactResult) -> dict:
        state = {"active": "unknown", "enabled": "unknown"}
        for line in result.stdout.splitlines():
            key, _, value = line.partition("=")
            if key in state:
                # is-active can print several lines for templated units; keep the first word.
                state[key] = value.strip().split()[0] if value.strip() else "unknown"
        return state


def is_running(state: dict) -> bool:
    return state.get("active") == "active"


def is_enabled(state: dict) -> bool:
    # Not "alias": systemd prints it for an alias name (Debian's nfs-kernel-server -> nfs-server)
    # whether or not the real unit is enabled, so it says nothing about starting at boot.
    return state.get("enabled") in ("enabled", "static", "enabled-runtime", "indirect", "generated")


class Firewalld(Fact):
    """firewalld's state and the services open in its default zone ->
    {"state": "running"|"not running"|"failed"|"inactive"|"absent", "runtime": [...], "permanent": [...]}.

    A stopped firewalld is asked nothing: firewall-cmd (>= 2.5) waits 10 s for its D-Bus name first.
    """

    command = (
        "command -v firewall-cmd >/dev/null 2>&1 || { echo state=absent; exit 0; }; "
        "systemctl is-active --quiet firewalld || { echo state=inactive; exit 0; }; "
        "printf 'state=%s\\n' \"$(firewall-cmd --state 2>&1)\"; "
        "printf 'runtime=%s\\n' \"$(firewall-cmd --list-services 2>/dev/null)\"; "
        "printf 'permanent=%s\\n' \"$(firewall-cmd --permanent --list-services 2>/dev/null)\""
    )
    sudo = True

    def process(self, result: FactResult) -> dict:
        out = {"state": "unknown", "runtime": [], "permanent": []}
        for line in result.stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "state":
                out["state"] = value.strip() or "unknown"
            elif key in ("runtime", "permanent"):
                out[key] = value.split()
        return out
