"""`mount.nfs` of the twin's kubeadm hosts: `python -m labtwin.nfsfuse.mount server:/path dir [-o opts]`.

util-linux mount runs `/sbin/mount.nfs SPEC DIR [-sfnvrw] [-N NS] [-o OPTIONS] [-t TYPE]` for
`mount -t nfs SPEC DIR -o OPTIONS`, which is how the kubelet's in-tree nfs volume plugin mounts.
This helper starts the FUSE daemon (labtwin.nfsfuse.daemon: an NFSv3 client over FUSE), detached
(double fork, setsid, stdio to its own log under /var/log/labtwin-nfsfuse/, and in a systemd scope
of its own when systemd runs, as the kubelet does for FUSE mounts, so a kubelet restart does not
kill it), and returns 0 only once the mount is in /proc/self/mountinfo. The daemon exits when
the mount goes away (`umount DIR`). On failure it exits 32 with one line on stderr naming the
server and path, as nfs-utils' mount.nfs does, so the kubelet's FailedMount event shows it.

NFS options are accepted and mostly ignored (vers/nfsvers, proto, hard/soft, nolock, timeo,
retrans, retry, ac*, sec=sys, ...): the client always speaks NFSv3 over TCP. `ro` mounts read-only,
`port=`/`mountport=` pick the server's ports, `timeo=` (deciseconds) bounds each NFS call.

Only the standard library here: the helper stays quick and its parsing is unit tested.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROG = "mount.nfs"
EX_USAGE = 1   # nfs-utils' exit codes
EX_FAIL = 32
FSTYPE = "fuse.nfsfuse"
SUBTYPE = "nfsfuse"
LOG_DIR = Path("/var/log/labtwin-nfsfuse")
START_TIMEOUT = 45.0    # the daemon's start, its NFS connect (CONNECT_TIMEOUT) and the FUSE mount
CONNECT_TIMEOUT = 15.0
OP_TIMEOUT = 60.0       # per NFS call unless timeo= says otherwise: no call hangs for good
VISIBLE_TIMEOUT = 5.0
USAGE = "usage: {prog} remotetarget dir [-rvVwfnsh] [-o nfsoptions]"
NO_SCOPE_ENV = "LABTWIN_NFSFUSE_NO_SCOPE"


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class MountRequest:
    server: str
    export: str
    mountpoint: str
    options: tuple[str, ...] = ()
    readonly: bool = False
    fake: bool = False
    verbose: bool = False
    nfs_port: int | None = None
    mount_port: int | None = None
    op_timeout: float | None = None

    @property
    def source(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.export}"

    @property
    def url(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"nfs://{host}{self.export}"


# --- argv (pure) -------------------------------------------------------------------------------
def split_remote(spec: str) -> tuple[str, str]:
    """'host:/path' or '[v6addr]:/path' -> (host, /path)."""
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError("remote share not in 'host:dir' format")
        path = rest[1:]
    else:
        host, sep, path = spec.partition(":")
        if not sep:
            raise UsageError("remote share not in 'host:dir' format")
    if not host or not path.startswith("/"):
        raise UsageError("remote share not in 'host:dir' format")
    path = "/" + path.strip("/") if path.strip("/") else "/"
    return host, path


def _port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise UsageError(f"invalid value for option {name}: {value!r}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid value for option {name}: {value!r}")
    return port


def parse_options(items: list[str]) -> dict:
    """The -o items that change what the daemon does; every other NFS option is accepted."""
    out: dict = {"readonly": False, "nfs_port": None, "mount_port": None, "op_timeout": None}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "ro":
            out["readonly"] = True
        elif key == "rw":
            out["readonly"] = False
        elif key == "port" and value:
            out["nfs_port"] = _port(key, value) or None  # port=0: ask the portmapper
        elif key == "mountport" and value:
            out["mount_port"] = _port(key, value) or None
        elif key == "timeo" and value:
            try:
                out["op_timeout"] = max(int(value), 1) / 10.0
            except ValueError:
                raise UsageError(f"invalid value for option timeo: {value!r}") from None
    return out


def split_options(text: str) -> list[str]:
    return [x for x in (p.strip() for p in text.split(",")) if x]


def parse_argv(argv: list[str]) -> MountRequest | str:
    """The helper's argv (without argv[0]) -> a MountRequest, or 'version' / 'help'."""
    positional: list[str] = []
    opts: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-o", "-t", "-N"):
            if i + 1 >= len(argv):
                raise UsageError(f"option {a} needs a value")
            if a == "-o":
                opts += split_options(argv[i + 1])
            i += 2
            continue
        if a.startswith("-o") and len(a) > 2:
            opts += split_options(a[2:])
        elif a.startswith("--"):
            if a in ("--help", "--version"):
                return a[2:]
            raise UsageError(f"unknown option {a}")
        elif a.startswith("-") and len(a) > 1:
            for ch in a[1:]:
                if ch not in "rvVwfnsih":
                    raise UsageError(f"unknown option -{ch}")
                flags.add(ch)
        else:
            positional.append(a)
        i += 1
    if "V" in flags:
        return "version"
    if "h" in flags:
        return "help"
    if len(positional) != 2:
        raise UsageError("expected a remote target and a mount point")
    server, export = split_remote(positional[0])
    o = parse_options(opts)
    readonly = o.pop("readonly") or "r" in flags
    if "w" in flags:
        readonly = False
    return MountRequest(server=server, export=export, mountpoint=positional[1], options=tuple(opts),
                        readonly=readonly, fake="f" in flags, verbose="v" in flags, **o)


# --- mountinfo and logs (pure) -------------------------------------------------------------------
def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def find_mount(mountinfo: str, mountpoint: str) -> tuple[str, str] | None:
    """(fstype, source) of the topmost mount at `mountpoint` in a mountinfo text, or None."""
    found = None
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if not sep or len(fields) < 5:
            continue
        if _unescape(fields[4]) == mountpoint:
            tail = post.split()
            found = (tail[0], _unescape(tail[1]) if len(tail) > 1 else "")
    return found


def log_path(mountpoint: str, log_dir: Path = LOG_DIR) -> Path:
    """One log per mount point: the path with / as _, long ones shortened with a hash."""
    slug = mountpoint.strip("/").replace("/", "_") or "root"
    if len(slug) > 120:
        slug = hashlib.sha1(slug.encode()).hexdigest()[:10] + "_" + slug[-100:]
    return log_dir / f"{slug}.log"


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def describe_failure(source: str, exc: BaseException) -> str:
    """One line naming the server and path, worded as nfs-utils' mount.nfs words its failures
    ("Connection refused", "access denied by server", "Program not registered")."""
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    code = getattr(exc, "errno", None)
    if not (isinstance(code, int) and code > 0) and (m := _OS_ERROR.search(text)):
        code = int(m.group(1))
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return f"mounting {source} failed, reason given by server: {os.strerror(code or errno.ENOENT)}"
    if "access denied" in text.lower() or isinstance(exc, PermissionError):
        return f"access denied by server while mounting {source}"
    if "not registered" in text:
        server = source.rpartition(":")[0]
        return f"RPC: Program not registered (no NFS service on {server}) while mounting {source}"
    if isinstance(code, int) and code > 0:
        return f"{os.strerror(code)} while mounting {source}"
    if isinstance(exc, TimeoutError):
        return f"Connection timed out while mounting {source}"
    return f"mounting {source} failed: {text}"


def last_fuse_error(log_text: str) -> str | None:
    """libfuse writes its mount errors as 'fuse: ...' lines on stderr (the daemon's log)."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip().startswith("fuse:")]
    return lines[-1] if lines else None


# --- the helper ----------------------------------------------------------------------------------
def _scope_prefix(req: MountRequest, mountpoint: str) -> list[str]:
    """Run the daemon in a transient systemd scope (kubelet's own way for FUSE daemons): out of
    kubelet.service's cgroup, so `systemctl restart kubelet` leaves the mount working."""
    if os.environ.get(NO_SCOPE_ENV) == "1" or not os.path.isdir("/run/systemd/system"):
        return []
    tool = shutil.which("systemd-run")
    if not tool:
        return []
    return [tool, "--scope", "--quiet", "--collect",
            f"--description=labtwin nfsfuse {req.source} on {mountpoint}", "--"]


def _spawn(req: MountRequest, mountpoint: str, argv: list[str], notify_w: int, log: Path) -> int:
    """Fork; the child starts a new session and forks the daemon, then exits. Returns the child."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir("/")
        os.set_inheritable(notify_w, True)
        cmd = [*_scope_prefix(req, mountpoint), sys.executable, "-m", "labtwin.nfsfuse.daemon",
               "--notify-fd", str(notify_w), "--log", str(log), "--", *argv]
        os.execv(cmd[0], cmd)
    except BaseException as exc:  # noqa: BLE001 - whatever happens, this process must not return
        try:
            os.write(2, f"nfsfuse: cannot start the daemon: {exc}\n".encode())
        finally:
            os._exit(127)
    return 0  # not reached


def _read_notify(fd: int, timeout: float) -> tuple[str | None, int | None]:
    """The daemon's verdict ('OK' or 'ERR <msg>') and PID from the pipe, or (None, pid)."""
    deadline = time.monotonic() + timeout
    buf, pid = b"", None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, pid
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text.startswith("PID "):
                pid = int(text[4:])
            elif text == "OK" or text.startswith("ERR "):
                return text, pid
        if not chunk:
            return None, pid


def _log_tail(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return last_fuse_error(text) or (text.strip().splitlines() or [""])[-1]


def mount(req: MountRequest, argv: list[str], prog: str = PROG) -> int:
    def fail(msg: str) -> int:
        print(f"{prog}: {msg}", file=sys.stderr)
        return EX_FAIL

    mountpoint = os.path.realpath(req.mountpoint)
    if not os.path.isdir(mountpoint):
        return fail(f"mounting {req.source} failed: mount point {req.mountpoint} does not exist")
    if os.geteuid() != 0:
        return fail(f"mounting {req.source} failed: only root can mount (this helper is not setuid)")
    if req.fake:
        return 0
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = log_path(mountpoint)
    r, w = os.pipe()
    child = _spawn(req, mountpoint, argv, w, log)
    os.close(w)
    os.waitpid(child, 0)
    try:
        verdict, pid = _read_notify(r, START_TIMEOUT)
    finally:
        os.close(r)
    if verdict is None:
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            detail = f"no answer from the nfsfuse daemon in {START_TIMEOUT:.0f}s (log {log})"
        else:
            detail = f"the nfsfuse daemon exited: {_log_tail(log) or 'no output'} (log {log})"
        return fail(f"mounting {req.source} failed: {detail}")
    if verdict.startswith("ERR "):
        return fail(verdict[4:])
    deadline = time.monotonic() + VISIBLE_TIMEOUT
    while (got := find_mount(Path("/proc/self/mountinfo").read_text(), mountpoint)) is None \
            or got[0] != FSTYPE:
        if time.monotonic() > deadline:
            return fail(f"mounting {req.source} failed: the FUSE mount on {mountpoint} did not appear "
                        f"in /proc/self/mountinfo (log {log})")
        time.sleep(0.05)
    if req.verbose:
        print(f"{prog}: {req.source} mounted on {mountpoint} (NFSv3 over FUSE, log {log})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = os.environ.get("NFSFUSE_PROG") or PROG
    try:
        req = parse_argv(argv)
    except UsageError as exc:
        print(f"{prog}: {exc}\n{USAGE.format(prog=prog)}", file=sys.stderr)
        return EX_USAGE
    if req == "version":
        print(f"{prog}: labtwin nfsfuse (NFSv3 over FUSE)")
        return 0
    if req == "help":
        print(USAGE.format(prog=prog))
        return 0
    return mount(req, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
