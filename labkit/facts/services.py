"""systemd unit state: ``systemctl is-active`` / ``is-enabled``."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from labkit.facts.base import Fact, FactResult

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
        u = shlex.quote(unit_name(self.unit))
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
    return state.get("enabled") in ("enabled", "static", "alias", "enabled-runtime", "indirect", "generated")
