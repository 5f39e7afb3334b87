"""`invoke demo`: the whole seed procedure on the one-box lab, from nothing to the verify table.

twin up --kubeadm (three kubeadm-ready hosts: upstream Kubernetes built from its Go
modules and containerd installed, images pre-pulled, no cluster; see the README) -> labkit's
setup-cluster (kubeadm init/join, pod network), setup-registry, setup-nfs, build-images, deploy,
scale, write-v2, verify against the twin's inventory -> how to look around and tear down.
Instance: env LABTWIN_NAME / LABTWIN_STATE / LABTWIN_SUBNET like the `twin` tasks, so
`invoke twin.ssh master` and `invoke twin.down` reach the same twin.
"""
from __future__ import annotations

from invoke import Exit, task


@task(help={"subnet": "IPv4 subnet of the twin (env LABTWIN_SUBNET, default 10.213.20.0/24)",
            "timeout": "seconds to wait for each rollout"})
def demo(c, subnet: str | None = None, timeout: int = 600):
    """Bring up kubeadm-ready twin hosts, make the cluster and run the whole flow with labkit, show how to look around."""
    from labkit import flows_up, ui
    from labkit.errors import LabkitError
    from labkit.inventory import load
    from labtwin.cli import main as twin_cli
    from labtwin.hosts.config import TwinConfig, TwinError

    ui.heading("1/2  twin up: master, node01, node02 (namespaces + systemd + sshd + docker + containerd), "
               "kubeadm-ready, no cluster yet")
    rc = twin_cli(["up", "--kubeadm", *(["--subnet", subnet] if subnet else [])])
    if rc != 0:
        raise Exit("demo: twin up failed (see the message above); `invoke twin.down` clears leftovers", code=rc)
    try:
        cfg = TwinConfig.from_env(subnet=subnet)
    except TwinError as exc:
        raise Exit(f"demo: {exc}", code=2) from None
    inventory = str(cfg.inventory_path)

    ui.heading(f"2/2  labkit against {inventory}: setup-cluster (a Kubernetes cluster made with kubeadm), "
               "then the seed flow")
    try:
        inv = load(inventory)
        report = flows_up.up(inv, timeout=timeout).verify  # the same flow as `invoke up`
    except LabkitError as exc:
        raise Exit(f"demo: labkit: {exc}\n(the twin is still up: `invoke twin.down` removes it)", code=1) from None
    except KeyboardInterrupt:
        raise Exit("demo: interrupted (the twin is still up: `invoke twin.down` removes it)", code=130) from None
    if not report.ok:
        raise Exit("demo: verify failed (table above); the twin is still up for a look: "
                   "`invoke twin.ssh master`, then `kubectl get pods -o wide`", code=1)

    env = "" if cfg.name == "labtwin" else f"LABTWIN_NAME={cfg.name} "
    ui.console.print("[bold]Done: pods 0-3 serve Version: --v1, pods 4-9 Version: --v2, each from its own "
                     "NFS volume.[/bold]", soft_wrap=True)
    look = [(f"{env}invoke twin.ssh master", "a shell on master (the control plane), then e.g.:"),
            ("    kubectl get statefulset,pods,pvc,pv -o wide", ""),
            ("    kubectl rollout status statefulset/statefulset", ""),
            ("    ls /nfsdata; curl -s http://<pod IP>/", ""),
            (f"invoke status -i {inventory}", "the set, its pods with PVC/PV directories, the nodes"),
            (f"invoke verify -i {inventory}", "curl every pod again"),
            ("invoke --list", "every step on its own (re-running one changes nothing)")]
    width = max(len(cmd) for cmd, _ in look) + 2
    lines = ["Look around:"] + [f"  {cmd:<{width}}{'# ' + why if why else ''}".rstrip() for cmd, why in look]
    lines += ["Tear down:", f"  {env}invoke twin.down"]
    ui.console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
