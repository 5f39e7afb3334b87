"""Operations: given the inventory and gathered facts, yield what must change.

An operation is a generator. It yields ``Command`` and ``PutFile`` items in
order, and yields nothing when the host is already right (then the runner
reports "no change"). It never touches a host itself, so it is tested with
data: facts in, expected commands out.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    """A shell command for one host. ``command`` is already fully quoted."""

    command: str
    sudo: bool = True
    description: str = ""
    # Exit codes that count as success (e.g. ``systemctl is-active`` probes).
    ok_exit_codes: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class PutFile:
    """Write ``content`` to ``path`` atomically (temp file + rename), keeping
    the previous version as ``path + backup_suffix`` when it existed."""

    path: str
    content: str
    mode: int = 0o644
    description: str = ""
    backup_suffix: str = ".labkit.bak"


@dataclass
class HostPlan:
    """What one operation would do on one host."""

    host: str
    operation: str
    changes: list = field(default_factory=list)  # Command | PutFile, in order

    @property
    def no_change(self) -> bool:
        return not self.changes
