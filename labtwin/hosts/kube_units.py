"""systemd units of the Kubernetes twin (labtwin.kube.*), written into hosts when --kube is on."""
from __future__ import annotations

import json
import os
import shlex

from . import rootfs
from .config import NFS_EXPORT, NODE_NFS_PATH, REPO_ROOT, HostSpec, TwinConfig, TwinError

# On: a fresh kubeadm lab has its control plane and kubelets running. LABTWIN_KUBE=0 (or
# --no-kube) gives bare hosts, which is all the host-step tests need.
KUBE_DEFAULT = os.environ.get("LABTWIN_KUBE", "1") == "1"
MODULES = {"master": ("apiserver", "controller_manager"), "node": ("kubelet",)}
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def require_modules() -> None:
    missing = [m for mods in MODULES.values() for m in mods
               if not (REPO_ROOT / "labtwin" / "kube" / f"{m}.py").exists()]
    if missing:
        raise TwinError(f"--kube needs labtwin/kube/{{{','.join(missing)}}}.py, which do not exist yet: "
                        "run without --kube")
    if not (VENV_BIN / "python").exists():
        raise TwinError(f"--kube needs the repo's venv at {VENV_BIN.parent}: create it first")


def unit(description: str, module: str, args: list[str], after: str = "network.target") -> str:
    cmd = " ".join(shlex.quote(x) for x in [str(VENV_BIN / "python"), "-m", f"labtwin.kube.{module}", *args])
    return (f"[Unit]\nDescription={description}\nAfter={after}\n\n"
            f"[Service]\nEnvironment=PYTHONPATH={REPO_ROOT}\nExecStart={cmd}\n"
            "Restart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n")


def kubeconfig(server: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "labtwin",
        "clusters": [{"name": "labtwin", "cluster": {"server": server}}],
        "users": [{"name": "admin", "user": {}}],
        "contexts": [{"name": "labtwin", "context": {"cluster": "labtwin", "user": "admin"}}],
    }, indent=2) + "\n"


def seed(cfg: TwinConfig, host: HostSpec, seed_dir) -> None:
    server = f"http://{cfg.master.address}:6443"
    units: dict[str, str] = {}
    if host is cfg.master:
        units["labtwin-apiserver.service"] = unit(
            "labtwin Kubernetes API twin", "apiserver",
            ["--bind", "0.0.0.0", "--port", "6443", "--data", "/var/lib/labtwin-kube"])
        units["labtwin-controller-manager.service"] = unit(
            "labtwin controller-manager", "controller_manager", ["--server", "http://127.0.0.1:6443"],
            after="labtwin-apiserver.service")
        rootfs.seed_symlink(seed_dir, "/usr/local/bin/kubectl", str(VENV_BIN / "kubectl"))
        rootfs.write_seed(seed_dir, "/root/.kube/config", kubeconfig(server), 0o600)
    else:
        units["labtwin-kubelet.service"] = unit(
            "labtwin kubelet", "kubelet", ["--config", "/etc/labtwin/kubelet.json"],
            after="docker.service")
        rootfs.write_seed(seed_dir, "/etc/labtwin/kubelet.json", json.dumps({
            "server": server, "node_name": host.name, "node_ip": str(host.address),
            "pod_cidr": str(host.pod_cidr),
            "nfs_mounts": {f"{cfg.master.address}:{NFS_EXPORT}": NODE_NFS_PATH},
        }, indent=2) + "\n")
    for name, text in units.items():
        rootfs.write_seed(seed_dir, f"/etc/systemd/system/{name}", text)
        rootfs.seed_symlink(seed_dir, f"/etc/systemd/system/multi-user.target.wants/{name}",
                            f"/etc/systemd/system/{name}")
