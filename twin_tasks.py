"""`twin` tasks (labtwin, the one-box lab): thin wrappers over labtwin.hosts; the lead wires
`twin` into tasks.py (`ns.add_collection(twin_tasks.twin)`).

    invoke twin.up [--subnet 10.213.20.0/24] [--no-kubeadm] [--workers N]   invoke twin.status
    invoke twin.ssh node01 [--command 'systemctl is-active docker']   invoke twin.down
Instance and state dir: env LABTWIN_NAME / LABTWIN_STATE (or --name / --state).
"""
from __future__ import annotations


import shlex

from invoke import Collection, Exit, task

from labtwin.hosts.config import KUBEADM_DEFAULT

NAME_HELP = "twin instance name (env LABTWIN_NAME, default labtwin)"
STATE_HELP = "state dir (env LABTWIN_STATE, default /var/lib/labtwin/<name>)"


def _cli(*args: str) -> int:
    from labtwin.cli import main

    return main([a for a in args if a is not None])


def _opts(name: str | None, state: str | None) -> list[str]:
    return [*(["--name", name] if name else []), *(["--state", state] if state else [])]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise Exit(f"twin.{what} failed (see the message above)", code=rc)


@task(help={"subnet": "IPv4 subnet (env LABTWIN_SUBNET, default 10.213.20.0/24)",
            "kubeadm": "kubeadm-ready hosts (kubeadm, kubelet, containerd built from Go modules, the first build takes long; `invoke setup-cluster` makes the cluster); on by default, --no-kubeadm or LABTWIN_KUBEADM=0 for bare hosts",
            "workers": "number of worker hosts node01..nodeNN (env LABTWIN_WORKERS, default 2)",
            "name": NAME_HELP, "state": STATE_HELP})
def up(c, subnet: str | None = None, kubeadm: bool = KUBEADM_DEFAULT, workers: int = 0,
       name: str | None = None, state: str | None = None):
    """Start master and the workers (cleans the leftovers of a crashed twin first)."""
    _check(_cli(*_opts(name, state), "up", *(["--subnet", subnet] if subnet else []),
                "--kubeadm" if kubeadm else "--no-kubeadm", *(["--workers", str(workers)] if workers else [])), "up")


@task(help={"name": NAME_HELP, "state": STATE_HELP})
def down(c, name: str | None = None, state: str | None = None):
    """Remove everything of the twin except the image cache (idempotent)."""
    _check(_cli(*_opts(name, state), "down"), "down")


@task(help={"name": NAME_HELP, "state": STATE_HELP})
def status(c, name: str | None = None, state: str | None = None):
    """Per host: running, sshd, dockerd; fails unless all are up."""
    _check(_cli(*_opts(name, state), "status"), "status")


@task(help={"host": "master, node01 or node02", "command": "command to run (default: a shell)",
            "name": NAME_HELP, "state": STATE_HELP})
def ssh(c, host: str, command: str | None = None, name: str | None = None, state: str | None = None):
    """ssh into a twin host as root with the twin's key."""
    from labtwin.cli import ssh_argv
    from labtwin.hosts.config import TwinConfig, TwinError

    try:
        argv = ssh_argv(TwinConfig.from_env(name=name, state=state), host, [command] if command else [])
    except TwinError as exc:
        raise Exit(f"labtwin: {exc}", code=2) from None
    c.run(" ".join(shlex.quote(a) for a in argv), pty=command is None, warn=False)


twin = Collection("twin", up, down, status, ssh)
