"""What a twin is: its name, state dir, subnet and the three hosts (pure, no side effects)."""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "labtwin"
DEFAULT_SUBNET = "10.213.20.0/24"
STATE_ROOT = Path("/var/lib/labtwin")
# Machine-wide sysctls as they were before the first kubeadm twin changed them (one for all twins).
SYSCTL_RECORD = STATE_ROOT / "machine-sysctls.json"
# Interface names are limited to 15 chars; "<name>-br" and "<name>-<n>" must fit.
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
# The seed's last octets (192.168.20.6/.7/.8) kept on the twin's subnet; more workers follow.
FIRST_OCTET = 6
DEFAULT_WORKERS = 2
MAX_WORKERS = 8
NFS_EXPORT = "/nfsdata"
REPO_ROOT = Path(__file__).resolve().parents[2]


class TwinError(Exception):
    """A clean, user-facing failure: the message says what is wrong and what to do."""


def _saved(state: Path) -> dict:
    """The settings the running twin was started with (twin.json), or {}."""
    try:
        saved = json.loads((state / "twin.json").read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


# `up` gives kubeadm-ready hosts (upstream Kubernetes and containerd installed, images pre-pulled;
# labkit's setup-cluster makes the cluster) unless told otherwise (--no-kubeadm, LABTWIN_KUBEADM=0):
# bare hosts are all the host-step tests need.
KUBEADM_DEFAULT = os.environ.get("LABTWIN_KUBEADM", "1") != "0"


@dataclass(frozen=True)
class HostSpec:
    name: str
    index: int
    address: ipaddress.IPv4Address
    roles: tuple[str, ...]


@dataclass(frozen=True)
class TwinConfig:
    name: str
    state_dir: Path
    subnet: ipaddress.IPv4Network
    kubeadm: bool = False   # kubeadm-ready hosts: upstream kubeadm, kubelet, containerd (labtwin.k8s)
    workers: int = DEFAULT_WORKERS
    hosts: tuple[HostSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise TwinError(
                f"twin name {self.name!r} is not valid: use 1-10 lowercase letters/digits, "
                "starting with a letter (it prefixes interface names, max 15 chars)")
        if not self.state_dir.is_absolute():
            raise TwinError(f"state dir {self.state_dir} must be an absolute path")
        if self.subnet.prefixlen > 28:
            raise TwinError(f"subnet {self.subnet} is too small: use a /28 or larger (hosts use .6-.8)")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise TwinError(f"workers must be 1 to {MAX_WORKERS}, not {self.workers}")
        base = self.subnet.network_address
        if FIRST_OCTET + self.workers >= self.subnet.num_addresses - 1:
            raise TwinError(f"subnet {self.subnet} has no room for {self.workers} workers after .{FIRST_OCTET}")
        hosts = tuple(
            HostSpec(name, i, base + FIRST_OCTET + i,
                     ("control-plane", "registry", "nfs-server") if i == 0 else ("worker",))
            for i, name in enumerate(["master", *(f"node{n:02d}" for n in range(1, self.workers + 1))]))
        object.__setattr__(self, "hosts", hosts)

    @classmethod
    def from_env(cls, name: str | None = None, state: str | os.PathLike | None = None,
                 subnet: str | None = None, kubeadm: bool = False,
                 workers: int | None = None) -> "TwinConfig":
        """Arguments win over env (LABTWIN_NAME, LABTWIN_STATE, LABTWIN_SUBNET, LABTWIN_WORKERS),
        then what the running twin was started with (so status/ssh/down need no repeat), then
        defaults."""
        name = name or os.environ.get("LABTWIN_NAME") or DEFAULT_NAME
        state = state or os.environ.get("LABTWIN_STATE") or STATE_ROOT / name
        saved = _saved(Path(state))
        subnet = subnet or os.environ.get("LABTWIN_SUBNET") or saved.get("subnet") or DEFAULT_SUBNET
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise TwinError(f"subnet {subnet!r} is not an IPv4 network like 10.213.20.0/24: {exc}") from None
        if workers is None:
            workers = int(os.environ.get("LABTWIN_WORKERS") or saved.get("workers") or DEFAULT_WORKERS)
        return cls(name=name, state_dir=Path(state).resolve(), subnet=net, kubeadm=kubeadm,
                   workers=workers)

    # --- derived names -----------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def cgroup_name(self) -> str:
        return f"labtwin.{self.name}"

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TwinError(f"no host {name!r} in the twin: use one of {', '.join(h.name for h in self.hosts)}")

    def netns(self, host: HostSpec) -> str:
        return f"{self.name}-{host.name}"

    def veth(self, host: HostSpec) -> str:
        return f"{self.name}-{host.index}"

    def host_dir(self, host: HostSpec) -> Path:
        return self.state_dir / "hosts" / host.name

    @property
    def master(self) -> HostSpec:
        return self.hosts[0]

    # --- state dir layout --------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def host_keys_file(self) -> Path:
        """known_hosts lines for the keys the twin generated (labkit pins its own file)."""
        return self.state_dir / "ssh" / "known_hosts.twin"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.yaml"

    @property
    def nfs_disk(self) -> Path:
        return self.state_dir / "disk" / "nfs"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"
