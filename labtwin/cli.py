"""`python -m labtwin up|down|status|ssh HOST [cmd]`: thin, every failure a one-line message."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from .hosts import lab
from .hosts.config import KUBEADM_DEFAULT, TwinConfig, TwinError


def _config(args: argparse.Namespace) -> TwinConfig:
    return TwinConfig.from_env(name=args.name, state=args.state, subnet=getattr(args, "subnet", None),
                               kubeadm=getattr(args, "kubeadm", False), workers=getattr(args, "workers", None))


def ssh_argv(cfg: TwinConfig, hostname: str, command: list[str]) -> list[str]:
    """Real ssh with the twin's key, checking the host key the twin generated."""
    h = cfg.host(hostname)
    if not cfg.ssh_key.exists():
        raise TwinError(f"twin {cfg.name!r} is not up (no {cfg.ssh_key}): run `python -m labtwin up`")
    argv = ["ssh", "-i", str(cfg.ssh_key), "-o", f"UserKnownHostsFile={cfg.host_keys_file}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            f"root@{h.address}"]
    if command:
        argv += ["--", " ".join(shlex.quote(c) for c in command) if len(command) > 1 else command[0]]
    else:
        argv.insert(1, "-t")
    return argv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labtwin", description=__doc__)
    p.add_argument("--name", help="instance name (env LABTWIN_NAME, default labtwin)")
    p.add_argument("--state", help="state dir (env LABTWIN_STATE, default /var/lib/labtwin/<name>)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the three hosts (cleans a crashed twin first)")
    up.add_argument("--subnet", help="IPv4 subnet (env LABTWIN_SUBNET, default 10.213.20.0/24)")
    up.add_argument("--kubeadm", action=argparse.BooleanOptionalAction, default=KUBEADM_DEFAULT,
                    help="kubeadm-ready hosts: upstream Kubernetes built from its Go modules (the first "
                         "build takes long) and containerd installed, images pre-pulled, no cluster "
                         "(`invoke setup-cluster` makes it); --no-kubeadm (or LABTWIN_KUBEADM=0) for bare hosts")
    up.add_argument("--workers", type=int, help="worker hosts node01..nodeNN (env LABTWIN_WORKERS, default 2)")
    sub.add_parser("down", help="remove everything of the twin except the image cache")
    st = sub.add_parser("status", help="per host: running, sshd, dockerd (exit 1 if not all up)")
    st.add_argument("--json", action="store_true")
    ssh = sub.add_parser("ssh", help="ssh into a host as root")
    ssh.add_argument("host")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        if args.cmd == "up":
            cfg = _config(args)
            r = lab.up(cfg)
            state = "already up" if r.already_up else f"up in {r.seconds:.2f}s"
            print(f"twin {cfg.name!r} {state}" + (" (images built)" if r.images_built else ""))
            for h in cfg.hosts:
                print(f"  {h.name:7} {h.address}")
            print(f"inventory: {cfg.inventory_path}")
            return 0
        if args.cmd == "down":
            cfg = _config(args)
            t0 = time.monotonic()
            did = lab.down(cfg)
            print(f"twin {cfg.name!r} down in {time.monotonic() - t0:.2f}s"
                  + ("" if did else " (nothing was running)"))
            return 0
        if args.cmd == "status":
            cfg = _config(args)
            st = lab.status(cfg)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print(f"twin {cfg.name!r} subnet {st['subnet']} bridge {st['bridge']} "
                      f"inventory {st['inventory'] or '-'}")
                for name, v in st["hosts"].items():
                    flags = " ".join(f"{k}={'ok' if v[k] else 'NO'}" for k in ("running", "ssh", "docker"))
                    print(f"  {name:7} {v['address']:15} {flags}")
                left = lab.leftovers(cfg)
                if left and not any(v["running"] for v in st["hosts"].values()):
                    print(f"  not running, {len(left)} leftovers (e.g. {left[0]}): "
                          "`python -m labtwin up` or `down` cleans them")
            return 0 if all(v["running"] and v["ssh"] and v["docker"] for v in st["hosts"].values()) else 1
        if args.cmd == "ssh":
            cfg = _config(args)
            argv_ = ssh_argv(cfg, args.host, args.command)
            os.execvp(argv_[0], argv_)
    except TwinError as exc:
        print(f"labtwin: {exc}", file=sys.stderr)
        return 2
    return 0
