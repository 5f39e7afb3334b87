"""A host's private filesystem: an overlay of the live root, prepared, then entered by pivot_root.

The overlay's lower layer is the machine's own `/` (so packages installed on the machine are
installed on every host). Files the twin places (hostname, keys, units...) are staged in a
"seed" tree copied onto the merged root before the switch; files that must not exist in a host
are removed through the overlay (whiteouts), never on the machine.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from .config import NFS_EXPORT, HostSpec, TwinConfig

# Units that hang, fail, or touch machine-global state from inside a container.
MASKED = (
    "getty.target", "getty@tty1.service", "console-getty.service", "serial-getty@.service",
    "container-getty@.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-sysctl.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount", "systemd-modules-load.service", "systemd-remount-fs.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "dev-mqueue.mount",
    "systemd-pstore.service", "systemd-journald-audit.socket", "systemd-firstboot.service",
    "systemd-hwdb-update.service", "ldconfig.service", "systemd-timesyncd.service",
    "e2scrub_reap.service", "e2scrub_all.timer", "fstrim.timer", "apt-daily.timer",
    "apt-daily-upgrade.timer", "man-db.timer", "dpkg-db-backup.timer",
    # Installed on the build machine for other reasons; a lab host does not run them.
    "postgresql.service",
)
# Installed but not enabled on a fresh lab host: labkit's tasks enable them.
DISABLED = (
    "nfs-ganesha.service", "nfs-ganesha-lock.service", "rpcbind.service", "rpcbind.socket",
    "nfs-client.target", "apache2.service", "docker-registry.service",
)


def prepare_dirs(cfg: TwinConfig, host: HostSpec) -> dict[str, Path]:
    d = cfg.host_dir(host)
    paths = {k: d / k for k in ("upper", "work", "root", "docker", "seed")}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    return paths


def seed_path(seed: Path, rel: str) -> Path:
    """Path inside the seed tree; parent dirs get the mode/owner of the machine's own dirs
    (cp -a applies directory attributes to the merged root)."""
    target = seed / rel.lstrip("/")
    parts = Path(rel.lstrip("/")).parent.parts
    cur_seed, cur_live = seed, Path("/")
    for part in parts:
        cur_seed, cur_live = cur_seed / part, cur_live / part
        if not cur_seed.exists():
            cur_seed.mkdir()
            if cur_live.is_dir():
                st = cur_live.stat()
                os.chmod(cur_seed, st.st_mode & 0o7777)
                os.chown(cur_seed, st.st_uid, st.st_gid)
    return target


def write_seed(seed: Path, rel: str, content: str | bytes, mode: int = 0o644) -> Path:
    p = seed_path(seed, rel)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(p, mode)
    return p


def seed_symlink(seed: Path, rel: str, target: str) -> None:
    p = seed_path(seed, rel)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)


def seed_dir(seed: Path, rel: str, mode: int = 0o755) -> None:
    p = seed_path(seed, rel.rstrip("/") + "/.keep").parent
    p.mkdir(exist_ok=True)
    os.chmod(p, mode)


def seed_units(seed: Path) -> None:
    for unit in MASKED:
        seed_symlink(seed, f"/etc/systemd/system/{unit}", "/dev/null")


def removals() -> list[str]:
    """Paths of the live root that must not exist in a host (its own host keys; enable links)."""
    out = [str(p) for p in Path("/etc/ssh").glob("ssh_host_*")]
    for wants in Path("/etc/systemd/system").glob("*.wants"):
        out += [str(wants / u) for u in DISABLED if (wants / u).is_symlink()]
    return sorted(out)


def mount_script(cfg: TwinConfig, host: HostSpec, paths: dict[str, Path]) -> list[str]:
    """Shell lines (run in the host's fresh mount namespace): overlay, seed, removals, binds."""
    q = shlex.quote
    r = q(str(paths["root"]))
    opts = f"lowerdir=/,upperdir={paths['upper']},workdir={paths['work']},index=on,nfs_export=on"
    lines = [f"mount -t overlay overlay -o {q(opts)} {r}"]
    rm = removals()
    if rm:
        lines.append("rm -f -- " + " ".join(q(str(paths["root"]) + p) for p in rm))
    lines.append(f"cp -a {q(str(paths['seed']) + '/.')} {r}/")
    # Docker's data on a real ext4 dir (overlay2 cannot stack on the host's overlay root).
    lines.append(f"mkdir -p {r}/var/lib/docker && mount --bind {q(str(paths['docker']))} {r}/var/lib/docker")
    # The NFS "disk" (kept on this machine for the tests to read) at master's export path. The
    # nodes see it only through NFS, as a real lab's nodes do.
    if host.name == "master":
        lines.append(f"mkdir -p {r}{NFS_EXPORT} && mount --bind {q(str(cfg.nfs_disk))} {r}{NFS_EXPORT}")
    return lines


def pivot_script(root: Path) -> list[str]:
    """pivot_root, not chroot: with chroot `docker exec` in the host would run in the machine's /."""
    q = shlex.quote
    return [
        f"cd {q(str(root))}",
        "mkdir -p .labtwin-oldroot",
        "pivot_root . .labtwin-oldroot",
        "cd /",
        "umount -l /.labtwin-oldroot",
        "rmdir /.labtwin-oldroot",
    ]
