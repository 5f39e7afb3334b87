"""What a kubeadm-ready machine has, laid into a host's seed: the upstream binaries built by
labtwin.k8s.build, containerd 2.x as the runtime (docker keeps running on it), the kubelet unit
with kubeadm's drop-in as the Kubernetes packages ship them, and the CNI plugins.

The binaries stay in the build cache (the hosts' lower layer is this machine's /, so they see
it); the seed only links them where the packages would put them.
"""
from __future__ import annotations

import os
import shlex
import json
from pathlib import Path

from . import rootfs
from .config import REPO_ROOT, HostSpec, TwinConfig

PAUSE_TAG = "registry.k8s.io/pause:3.10.2"
RUNTIME_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
KUBE_BINARIES = ("kubeadm", "kubelet", "kubectl")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")

# containerd 2.x (config version 3), as kind's nodes configure it: the systemd cgroup driver to
# match the kubelet's, and the sandbox image kubeadm preloads. Registry trust is left out on
# purpose: labkit's setup-registry adds it, as on a real lab.
CONTAINERD_CONFIG = f"""\
# containerd 2.x for the kubelet (written by labtwin)
version = 3

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{PAUSE_TAG}'

[plugins.'io.containerd.cri.v1.runtime']
  # This machine grants no CAP_SYS_RESOURCE, so no process may lower an oom_score_adj; the
  # sandbox's -998 would fail in runc ("can't get final child's PID from pipe"). Clamp as kind
  # does where that is so (rootless).
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true
"""

# The Debian package's unit, pointed at the containerd this lab installs.
CONTAINERD_DROPIN = """\
[Service]
ExecStart=
ExecStart=/usr/local/bin/containerd
"""

# kubernetes/release: cmd/krel/templates/latest/kubelet/kubelet.service and
# kubeadm/10-kubeadm.conf, as the deb/rpm packages install them.
KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""
KUBEADM_DROPIN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""
CRICTL_YAML = "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n"

# The kubelet sets these machine-wide sysctls at start (setupKernelTunables) and fails if it
# cannot; the twin records the machine's values before and puts them back at down (when no
# other twin still runs).
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")


# No kernel NFS client here: util-linux mount runs this helper for `mount -t nfs` (the kubelet's
# nfs volume plugin), an NFSv3 client over FUSE (labtwin/nfsfuse) in place of nfs-utils' own.
MOUNT_NFS_SCRIPT = "/usr/local/lib/labtwin/mount.nfs"


def mount_nfs_script() -> str:
    py = shlex.quote(str(REPO_ROOT / ".venv" / "bin" / "python"))
    return ("#!/bin/sh\n# labtwin: NFS through a userspace NFSv3 client over FUSE (labtwin.nfsfuse)\n"
            f"NFSFUSE_PROG=${{0##*/}} PYTHONPATH={shlex.quote(str(REPO_ROOT))} "
            f'exec {py} -m labtwin.nfsfuse.mount "$@"\n')


def seed(cfg: TwinConfig, host: HostSpec, seed_dir: Path, bin_dir: Path) -> None:
    w, link = rootfs.write_seed, rootfs.seed_symlink
    for name in RUNTIME_BINARIES:
        link(seed_dir, f"/usr/local/bin/{name}", str(bin_dir / name))
    link(seed_dir, "/usr/local/sbin/runc", str(bin_dir / "runc"))
    for name in KUBE_BINARIES:  # where the packages put them (the kubelet unit runs /usr/bin/kubelet)
        link(seed_dir, f"/usr/bin/{name}", str(bin_dir / name))
    for name in CNI_PLUGINS:
        link(seed_dir, f"/opt/cni/bin/{name}", str(bin_dir / "cni" / name))
    w(seed_dir, "/etc/containerd/config.toml", CONTAINERD_CONFIG)
    w(seed_dir, "/etc/systemd/system/containerd.service.d/labtwin.conf", CONTAINERD_DROPIN)
    w(seed_dir, "/usr/lib/systemd/system/kubelet.service", KUBELET_UNIT)
    w(seed_dir, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN)
    for unit, path in (("kubelet.service", "/usr/lib/systemd/system/kubelet.service"),
                       ("containerd.service", "/lib/systemd/system/containerd.service")):
        link(seed_dir, f"/etc/systemd/system/multi-user.target.wants/{unit}", path)
    w(seed_dir, "/etc/crictl.yaml", CRICTL_YAML)
    rootfs.seed_dir(seed_dir, "/etc/cni/net.d")
    rootfs.seed_dir(seed_dir, "/etc/kubernetes/manifests")
    # Links in place of nfs-common's setuid binaries (cp -a onto them would keep the setuid bit);
    # /sbin is /usr/sbin on a merged-/usr system, and a seed dir cannot replace a symlink.
    w(seed_dir, MOUNT_NFS_SCRIPT, mount_nfs_script(), 0o755)
    sbin = os.path.realpath("/sbin")
    link(seed_dir, f"{sbin}/mount.nfs", MOUNT_NFS_SCRIPT)
    link(seed_dir, f"{sbin}/mount.nfs4", MOUNT_NFS_SCRIPT)


def mount_lines(cfg: TwinConfig, host: HostSpec, root: str, host_dir: Path) -> list[str]:
    """containerd's and the kubelet's state on a real ext4 dir: overlayfs snapshots cannot stack
    on the overlay root, and the kubelet's volume mounts want a mount point of their own."""
    q = shlex.quote
    lines = []
    for path, sub in (("/var/lib/containerd", "containerd"), ("/var/lib/kubelet", "kubelet")):
        src = host_dir / sub
        src.mkdir(parents=True, exist_ok=True)
        lines.append(f"mkdir -p {root}{path} && mount --bind {q(str(src))} {root}{path}")
    return lines


# Every host's systemd, kubelet and containerd take inotify instances from one per-user pool
# (128 by default): with two clusters up, a new host's systemd died at inotify_init1 (measured
# here). kind's known-issues page asks for these values; up raises lower ones.
INOTIFY_MINIMUMS = {"fs/inotify/max_user_instances": 512, "fs/inotify/max_user_watches": 524288}
MACHINE_SYSCTLS = (*KUBELET_SYSCTLS, *INOTIFY_MINIMUMS)


def read_sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", k).read_text().strip() for k in MACHINE_SYSCTLS}


def raise_inotify_limits() -> None:
    for k, minimum in INOTIFY_MINIMUMS.items():
        p = Path("/proc/sys", k)
        if int(p.read_text()) < minimum:
            p.write_text(str(minimum))


def record_machine_sysctls(record: Path) -> None:
    """The machine's own values, written by the first kubeadm twin up only: a twin started
    while another runs would otherwise take the values the first one set for the machine's."""
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(read_sysctls()))
        tmp.replace(record)


def restore_machine_sysctls(record: Path) -> list[str]:
    """Put the recorded values back and drop the record (call when the last twin goes down)."""
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return []
    did = []
    for k, v in saved.items():
        p = Path("/proc/sys", k)
        if k in MACHINE_SYSCTLS and p.read_text().strip() != v:
            p.write_text(v)
            did.append(f"restored sysctl {k.replace('/', '.')}={v}")
    record.unlink()
    return did
