"""Bridge in the root namespace, one named netns + veth per host, routes (iproute2 commands)."""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

from .config import HostSpec, TwinConfig, TwinError

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise TwinError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _machine_networks(exclude_dev: str | None = None) -> list[tuple[ipaddress.IPv4Network, str, str]]:
    out = []
    for r in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = r.get("dst", "")
        if dst in ("default", "") or r.get("dev") == exclude_dev or r.get("type") == "broadcast":
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.version == 4 and not net.is_loopback:
            out.append((net, dst, r.get("dev", "?")))
    return out


def free_subnet(first: str, count: int = 50) -> str:
    """The first /24 from `first` on that overlaps nothing on the machine (tests, parallel twins)."""
    taken = [n for n, _, _ in _machine_networks()]
    net = ipaddress.IPv4Network(first)
    for _ in range(count):
        if not any(net.overlaps(t) for t in taken):
            return str(net)
        net = ipaddress.IPv4Network((int(net.network_address) + net.num_addresses, net.prefixlen))
    raise TwinError(f"no free subnet among {count} from {first}: remove some twins (`python -m labtwin down`)")


def check_subnet(cfg: TwinConfig) -> None:
    """Refuse a subnet that overlaps a route or address the machine already has.

    Routes through the twin's own bridge are ignored (a leftover of this same twin is cleaned
    before up). The default route overlaps everything and is not a conflict.
    """
    for net, dst, dev in _machine_networks(exclude_dev=cfg.bridge):
        if net.overlaps(cfg.subnet):
            raise TwinError(
                f"subnet {cfg.subnet} overlaps the existing route {dst} dev {dev}: "
                f"choose another with --subnet or LABTWIN_SUBNET (e.g. {free_subnet('10.213.30.0/24')})")


def create_bridge(cfg: TwinConfig) -> None:
    ip("link", "add", cfg.bridge, "type", "bridge")
    ip("addr", "add", f"{cfg.bridge_address}/{cfg.subnet.prefixlen}", "dev", cfg.bridge)
    ip("link", "set", cfg.bridge, "up")
    allow_bridge_forwarding(cfg)


def _forward_rule(cfg: TwinConfig) -> list[str]:
    return ["FORWARD", "-i", cfg.bridge, "-o", cfg.bridge, "-m", "comment", "--comment",
            f"labtwin {cfg.name}", "-j", "ACCEPT"]


def _iptables(*args: str) -> subprocess.CompletedProcess | None:
    if shutil.which("iptables") is None:
        return None
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)


def forward_rule_present(cfg: TwinConfig) -> bool:
    p = _iptables("-C", *_forward_rule(cfg))
    return p is not None and p.returncode == 0


def allow_bridge_forwarding(cfg: TwinConfig) -> None:
    """With br_netfilter, bridged frames traverse the machine's FORWARD chain; a machine running
    docker has policy DROP there, which would cut the hosts off from each other."""
    if not forward_rule_present(cfg):
        p = _iptables("-I", *_forward_rule(cfg))
        if p is not None and p.returncode != 0:
            raise TwinError(f"iptables -I {' '.join(_forward_rule(cfg))} failed: {p.stderr.strip()}")


def create_host_net(cfg: TwinConfig, host: HostSpec) -> None:
    """netns with eth0 (veth peer on the bridge), lo and the subnet route. A kubeadm twin's
    host-gw pod routes come later, from the Nodes' podCIDRs (cluster.py)."""
    ns, veth = cfg.netns(host), cfg.veth(host)
    ip("netns", "add", ns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", veth, "master", cfg.bridge, "up")
    ip("-n", ns, "addr", "add", f"{host.address}/{cfg.subnet.prefixlen}", "dev", "eth0")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "set", "eth0", "up")
    # No default route: the only way out is the bridge subnet (connected route) and pod CIDRs.


def delete_network(cfg: TwinConfig) -> None:
    """Idempotent: removing a netns removes its veth pair; then the bridge."""
    for host in cfg.hosts:
        if link_exists(cfg.veth(host)):
            ip("link", "del", cfg.veth(host), check=False)
        if netns_exists(cfg.netns(host)):
            ip("netns", "del", cfg.netns(host))
    if link_exists(cfg.bridge):
        ip("link", "del", cfg.bridge)
    while forward_rule_present(cfg):
        _iptables("-D", *_forward_rule(cfg))


def leftovers(cfg: TwinConfig) -> list[str]:
    found = [f"netns {cfg.netns(h)}" for h in cfg.hosts if netns_exists(cfg.netns(h))]
    found += [f"link {n}" for n in [cfg.bridge, *(cfg.veth(h) for h in cfg.hosts)] if link_exists(n)]
    found += ["iptables FORWARD rule"] if forward_rule_present(cfg) else []
    return found
