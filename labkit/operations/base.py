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


@dataclass(frozen=True)
class Upload:
    """Send the file ``local`` of this machine as it is to ``path`` on the host, streamed by sftp
    (a ``docker save`` archive of 100 MB is never read into memory)."""

    path: str
    local: str
    size: int = 0
    description: str = ""


@dataclass(frozen=True)
class Wait:
    """Wait until a rollout is done (``labkit.waits``): part of a plan, after the changes that start
    it, so the plan says the step will wait. The runner applies the changes; the flow then waits on
    its host. ``replicas``: a StatefulSet is done only with exactly pods 0..replicas-1, all Ready
    (a scale-down removes the top pods one at a time)."""

    kind: str  # deployment | statefulset
    name: str
    namespace: str
    replicas: int | None = None

    @property
    def description(self) -> str:
        exactly = f" with exactly {self.replicas} Ready pod(s)" if self.replicas is not None else ""
        return f"wait for {self.kind}/{self.name} -n {self.namespace} to roll out{exactly}"


@dataclass
class HostPlan:
    """What one operation would do on one host."""

    host: str
    operation: str
    changes: list = field(default_factory=list)  # Command | PutFile | Upload | Wait, in order

    @property
    def waits(self) -> list[Wait]:
        return [c for c in self.changes if isinstance(c, Wait)]

    @property
    def no_change(self) -> bool:
        """Nothing to change (a wait alone changes nothing: it is not applied by the runner)."""
        return all(isinstance(c, Wait) for c in self.changes)
