"""The twin's kubeadm-ready hosts: kubeadm's images imported into each host's containerd, as an
offline lab pre-pulls them. The cluster itself is labkit's business (`invoke setup-cluster`,
kubeadm init/join and the host-gw pod network): the kubeadm configuration lives there only.
"""
from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import HostSpec, TwinConfig, TwinError
from .host import run_in
from .images import PROVISIONER_TAG

READY_TIMEOUT = 180.0


def _sh(pid: int, host: str, cmd: str, what: str, timeout: float = 300) -> str:
    rc, out, err = run_in(pid, cmd, timeout=timeout)
    if rc != 0:
        raise TwinError(f"{host}: {what} failed (exit {rc}): {(err or out).strip()[-1500:]}")
    return out


def _wait_containerd(pid: int, host: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        rc, _, _ = run_in(pid, "ctr --timeout 2s version >/dev/null 2>&1", timeout=10)
        if rc == 0:
            return
        time.sleep(0.2)
    rc, out, _ = run_in(pid, "systemctl status containerd --no-pager -n 20 2>&1", timeout=10)
    raise TwinError(f"{host}: containerd is not answering: {out.strip()[-1200:]}")


def import_images(pid: int, h: HostSpec, archives: dict[str, Path], is_master: bool, deadline: float) -> None:
    _wait_containerd(pid, h.name, deadline)
    wanted = [a for tag, a in archives.items() if _preloaded(tag, is_master)]
    cmd = " && ".join(f"ctr -n k8s.io images import --local {shlex.quote(str(a))} >/dev/null" for a in wanted)
    _sh(pid, h.name, cmd, "importing the control-plane images into containerd")


def _preloaded(tag: str, is_master: bool) -> bool:
    """Whether a node's containerd has the image before anything pulls: kubeadm's images, as an
    offline lab pre-pulls them. The NFS provisioner is no kubeadm image: an offline lab's admin has
    it in master's docker only (lab._start loads it there); labkit's mirror-images pushes it into
    the lab registry (the twin's inventory says `images.mirror: true`) and the workers' containerd
    pulls it from there through setup-registry's hosts.toml, as on a real offline lab."""
    if tag == PROVISIONER_TAG:
        return False
    return is_master or any(n in tag for n in ("/pause:", "/kube-proxy:"))


def import_all(cfg: TwinConfig, pids: dict[str, int], archives: dict[str, Path]) -> None:
    """kubeadm's images into every host's containerd, as an offline lab pre-pulls them."""
    deadline = time.monotonic() + READY_TIMEOUT
    with ThreadPoolExecutor(len(cfg.hosts)) as pool:
        for f in [pool.submit(import_images, pids[h.name], h, archives, h is cfg.master, deadline)
                  for h in cfg.hosts]:
            f.result()
