"""One host: its cgroups, its seed files, and systemd started as PID 1 of its own namespaces."""
from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import kubeadm_node, rootfs
from .config import REPO_ROOT, HostSpec, TwinConfig, TwinError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEMD = "/lib/systemd/system"


# --- cgroups -------------------------------------------------------------------------------
def cgroup_hierarchies() -> list[Path]:
    """Mount points of the machine's cgroup hierarchies (v1 controllers, name=systemd, unified)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        mnt, fstype = Path(pre.split()[4]), post.split()[0]
        if fstype in ("cgroup", "cgroup2") and mnt.parent == CGROUP_ROOT:
            out.append(mnt)
    if not out and (CGROUP_ROOT / "cgroup.controllers").exists():
        out.append(CGROUP_ROOT)  # pure cgroup v2
    return out


def _copy_cpuset(parent: Path, child: Path) -> None:
    for f in ("cpuset.cpus", "cpuset.mems"):
        if (child / f).exists() and not (child / f).read_text().strip():
            (child / f).write_text((parent / f).read_text())


def create_cgroups(cfg: TwinConfig, host: HostSpec) -> list[Path]:
    """<hierarchy>/labtwin.<name>/<host> in every hierarchy; the host's whole tree lives there."""
    made = []
    for h in cgroup_hierarchies():
        base = h / cfg.cgroup_name
        hostcg = base / host.name
        for parent, d in ((h, base), (base, hostcg)):
            d.mkdir(exist_ok=True)
            _copy_cpuset(parent, d)
        made.append(hostcg)
    return made


def twin_cgroup_dirs(cfg: TwinConfig) -> list[Path]:
    """All cgroup dirs of the twin, deepest first."""
    dirs = []
    for h in cgroup_hierarchies():
        base = h / cfg.cgroup_name
        if base.is_dir():
            for root, subdirs, _ in os.walk(base, topdown=False):
                dirs.append(Path(root))
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def thaw_cgroups(cfg: TwinConfig) -> list[str]:
    """THAW every frozen freezer cgroup of the twin: a frozen task cannot die, and its cgroup
    stays busy (a `docker pause`d container would block down for good)."""
    did = []
    for d in twin_cgroup_dirs(cfg):
        state = d / "freezer.state"
        try:
            if state.read_text().strip() != "THAWED":
                state.write_text("THAWED")
                did.append(f"thawed {d}")
        except OSError:
            pass
    return did


def other_twins_running(cfg: TwinConfig) -> bool:
    """Whether another twin (any name, any state dir) has a process in its cgroups."""
    for h in cgroup_hierarchies():
        for base in h.glob("labtwin.*"):
            if base.name == cfg.cgroup_name:
                continue
            for root, _, _ in os.walk(base):
                try:
                    if (Path(root) / "cgroup.procs").read_text().strip():
                        return True
                except OSError:
                    pass
    return False


def twin_cgroup_pids(cfg: TwinConfig) -> set[int]:
    pids: set[int] = set()
    for d in twin_cgroup_dirs(cfg):
        try:
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return pids


def remove_cgroups(cfg: TwinConfig, timeout: float = 5.0) -> None:
    """rmdir depth-first, retrying: a cgroup stays busy for a moment after its last task exits."""
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for d in twin_cgroup_dirs(cfg):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                busy.append(d)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise TwinError(f"cgroups still busy after {timeout}s: {', '.join(map(str, busy[:3]))}; "
                            "check `cat <dir>/cgroup.procs` and run `python -m labtwin down` again")
        time.sleep(0.05)


# --- processes ----------------------------------------------------------------------------
def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) identifies a PID across reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def proc_alive(pid: int, start: int | None = None) -> bool:
    st = proc_start_time(pid)
    if st is None or (start is not None and st != start):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_pid(pid: int, start: int | None) -> bool:
    """SIGKILL pid if it is still the process we started (same start time)."""
    if start is not None and proc_start_time(pid) != start:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


# --- seed files ---------------------------------------------------------------------------
def hosts_file(cfg: TwinConfig) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{h.address}\t{h.name}" for h in cfg.hosts]
    return "\n".join(lines) + "\n"


def daemon_json() -> str:
    # cgroup-parent is resolved inside the host's cgroup namespace: its containers stay under
    # the host's own cgroup, so teardown is a plain rmdir. No insecure registries: labkit adds them.
    return json.dumps({"cgroup-parent": "/docker"}, indent=2) + "\n"


def build_seed(cfg: TwinConfig, host: HostSpec, seed: Path, client_pubkey: str) -> list[str]:
    """Files the host starts with. Returns the host key as [type, base64] (for known_hosts)."""
    w = rootfs.write_seed
    w(seed, "/etc/hostname", host.name + "\n")
    w(seed, "/etc/hosts", hosts_file(cfg))
    w(seed, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    key = rootfs.seed_path(seed, "/etc/ssh/ssh_host_ed25519_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
                    "-f", str(key)], check=True, capture_output=True)
    w(seed, "/etc/ssh/sshd_config.d/labtwin.conf",
      "# labtwin: this host's own key only\nHostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n")
    ak = w(seed, "/root/.ssh/authorized_keys", client_pubkey, 0o600)
    os.chmod(ak.parent, 0o700)
    w(seed, "/etc/docker/daemon.json", daemon_json())
    rootfs.seed_units(seed)
    return key.with_suffix(".pub").read_text().split()[:2]


def repo_bind(cfg: TwinConfig, root: str) -> list[str]:
    """The mount.nfs helper of kubeadm hosts runs from this repo and its venv. The overlay shows
    only /'s own filesystem and /tmp, /run are private tmpfs in a host, so a clone elsewhere (CI
    clones anywhere) would be invisible: bind it read-only at the same path."""
    if not cfg.kubeadm:
        return []
    repo = shlex.quote(str(REPO_ROOT))
    return [f"mkdir -p {root}{repo} && mount --bind {repo} {root}{repo}"
            f" && mount -o remount,bind,ro {root}{repo}"]


def boot_script(cfg: TwinConfig, host: HostSpec, paths: dict[str, Path]) -> str:
    """Runs as PID 1 of the host's new PID namespace, in its own mount/uts/cgroup namespaces."""
    q = shlex.quote
    r = q(str(paths["root"]))
    console = q(str(cfg.host_dir(host) / "console.log"))
    lines = ["#!/bin/sh", "set -eu", *rootfs.mount_script(cfg, host, paths),
             f"mount -t proc proc {r}/proc",
             # read-only sysfs: udev and friends skip themselves in a container.
             f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys",
             f"mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup {r}/sys/fs/cgroup"]
    # Own cgroup tmpfs with this host's subtree of every hierarchy (a shared one would be
    # remounted read-only by systemd for the whole machine).
    for h in cgroup_hierarchies():
        tgt = f"{r}/sys/fs/cgroup/{q(h.name)}" if h != CGROUP_ROOT else f"{r}/sys/fs/cgroup"
        lines.append(f"mkdir -p {tgt} && mount --bind {q(str(h / cfg.cgroup_name / host.name))} {tgt}")
    # Private /dev with a fresh devpts: a shared /dev makes systemd start getty on the console.
    lines += [f"mount -t tmpfs -o mode=755,nosuid dev {r}/dev"]
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                               ("urandom", 1, 9), ("tty", 5, 0)):
        lines.append(f"mknod -m 666 {r}/dev/{name} c {major} {minor}")
    lines += [
        f"mkdir {r}/dev/pts {r}/dev/shm",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts {r}/dev/pts",
        f"ln -s pts/ptmx {r}/dev/ptmx",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev shm {r}/dev/shm",
        f"ln -s /proc/self/fd {r}/dev/fd",
        f"ln -s /proc/self/fd/0 {r}/dev/stdin",
        f"ln -s /proc/self/fd/1 {r}/dev/stdout",
        f"ln -s /proc/self/fd/2 {r}/dev/stderr",
        f"touch {console} {r}/dev/console && mount --bind {console} {r}/dev/console",
        # The kubelet reads /dev/kmsg (OOM watcher) and dies without it; as kind does.
        *([f"ln -s console {r}/dev/kmsg"] if cfg.kubeadm else []),
        # FUSE, for the mount.nfs helper (NFS over a userspace client: labtwin.nfsfuse).
        *([f"mknod -m 666 {r}/dev/fuse c 10 229"] if cfg.kubeadm else []),
        f"mount -t tmpfs -o mode=755,nosuid,nodev run {r}/run",
        f"mount -t tmpfs -o mode=1777,nosuid,nodev tmp {r}/tmp",
        *repo_bind(cfg, r),
        *(kubeadm_node.mount_lines(cfg, host, r, cfg.host_dir(host)) if cfg.kubeadm else []),
        f"hostname {q(host.name)}",
        *rootfs.pivot_script(paths["root"]),
        # Volume mounts the kubelet makes must reach containerd's containers (kind does the same).
        *(["mount --make-rshared /"] if cfg.kubeadm else []),
        f"exec env -i container=labtwin PATH={PATH_ENV} /lib/systemd/systemd --unit=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def launch(cfg: TwinConfig, host: HostSpec, boot: Path) -> subprocess.Popen:
    """unshare --fork in the host's netns; the forked child becomes the host's PID 1 (systemd)."""
    cgroups = create_cgroups(cfg, host)

    def join_cgroups() -> None:  # runs in the child before exec: everything below is in them
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    log = open(cfg.host_dir(host) / "boot.log", "ab")
    try:
        return subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{cfg.netns(host)}", "--",
             "unshare", "--cgroup", "--uts", "--mount", "--pid", "--fork", "--kill-child=SIGKILL",
             "--propagation", "private", "--", "/bin/sh", str(boot)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
            start_new_session=True, preexec_fn=join_cgroups)
    finally:
        log.close()


def find_init(unshare_pid: int, timeout: float = 5.0) -> int:
    """The host's PID 1 seen from the machine: the only child of `unshare --fork`."""
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    while time.monotonic() < deadline:
        try:
            kids = path.read_text().split()
        except OSError:
            raise TwinError(f"unshare (pid {unshare_pid}) exited before starting the host") from None
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise TwinError(f"unshare (pid {unshare_pid}) started no child within {timeout}s")


# --- talking to a host --------------------------------------------------------------------
def nsenter_argv(init_pid: int) -> list[str]:
    return ["nsenter", "--target", str(init_pid), "--mount", "--uts", "--net", "--pid", "--cgroup",
            "--root", "--wd", "--", "env", "-i", f"PATH={PATH_ENV}", "HOME=/root", "LANG=C.UTF-8"]


def run_in(init_pid: int, cmd: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run a shell command inside the host (its namespaces and root), like a local console."""
    p = subprocess.run([*nsenter_argv(init_pid), "/bin/sh", "-c", cmd],
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def docker_socket(init_pid: int) -> str:
    # The host's /run/docker.sock reached through its root as seen from the machine.
    return f"/proc/{init_pid}/root/run/docker.sock"


def docker_request(init_pid: int, method: str, url: str, body=None, headers=None,
                   timeout: float = 30) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(docker_socket(init_pid), timeout=timeout)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def docker_ping(init_pid: int) -> bool:
    try:
        status, body = docker_request(init_pid, "GET", "/_ping", timeout=2)
        return status == 200
    except OSError:
        return False


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH") if port == 22 else True
    except OSError:
        return False
