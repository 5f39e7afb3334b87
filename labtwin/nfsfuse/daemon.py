"""The FUSE daemon behind one NFS mount, started by the mount.nfs helper (labtwin.nfsfuse.mount):
`python -m labtwin.nfsfuse.daemon --notify-fd N --log FILE -- SPEC DIR [-o OPTIONS]`.

It connects to the server with NFSv3 (nfs_rs), mounts the FUSE filesystem on DIR and serves it
until DIR is unmounted (libfuse's loop ends when the kernel closes the connection), then exits.
On the notify pipe it writes `PID <pid>`, then `OK` once the kernel's FUSE session is up, or
`ERR <one line>` when the server or the mount fails. stdout/stderr are its log file.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .mount import (CONNECT_TIMEOUT, EX_FAIL, OP_TIMEOUT, SUBTYPE, MountRequest, UsageError,
                    describe_failure, last_fuse_error, parse_argv)

log = logging.getLogger("labtwin.nfsfuse")


class Notifier:
    def __init__(self, fd: int | None):
        self.fd = fd

    def send(self, line: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (line.replace("\n", " ") + "\n").encode())
        except OSError:
            pass

    def finish(self, line: str) -> None:
        self.send(line)
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def connect(req: MountRequest):
    import nfs_rs

    client = nfs_rs.Client.connect(
        req.url, versions=["3"], uid=0, gid=0, nfs_port=req.nfs_port, mount_port=req.mount_port,
        connect_timeout=CONNECT_TIMEOUT, operation_timeout=req.op_timeout or OP_TIMEOUT)
    try:
        root = client.stat(".")
        if getattr(root.type, "value", root.type) != "directory":
            raise NotADirectoryError(f"{req.export} is not a directory on {req.server}")
    except BaseException:
        client.close()
        raise
    return client


def fuse_options(req: MountRequest) -> dict:
    """libfuse -o options: other users (httpd's workers) may read, the kernel checks modes,
    inode numbers are the server's, 128 KiB writes, and mounting over a non-empty dir is fine
    (as for a kernel NFS mount)."""
    return {
        "fsname": req.source.replace(",", "\\,"), "subtype": SUBTYPE,
        "allow_other": True, "default_permissions": True, "use_ino": True, "big_writes": True,
        "nonempty": True, "ro": req.readonly,
    }


def serve(req: MountRequest, mountpoint: str, notify: Notifier, log_file: Path | None) -> int:
    from fuse import FUSE

    from .fs import NfsFuse

    log.info("mounting %s on %s (options: %s)", req.source, mountpoint, ",".join(req.options) or "-")
    asked = [o for o in req.options if o.split("=")[0] in ("vers", "nfsvers") and not o.endswith("=3")]
    if asked:
        log.info("%s asked for; this client speaks NFSv3 only", ",".join(asked))
    try:
        client = connect(req)
    except Exception as exc:  # noqa: BLE001 - every failure is the one line the helper prints
        msg = describe_failure(req.source, exc)
        log.error("%s (%s: %s)", msg, type(exc).__name__, exc)
        notify.finish("ERR " + msg)
        return EX_FAIL
    log.info("NFSv3 to %s: connected (io limits %s)", req.server, getattr(client, "io_limits", "?"))
    ops = NfsFuse(client, on_ready=lambda: notify.finish("OK"))
    try:
        FUSE(ops, mountpoint, foreground=True, **fuse_options(req))
    except RuntimeError as exc:
        detail = None
        if log_file:
            sys.stderr.flush()
            try:
                detail = last_fuse_error(log_file.read_text(errors="replace"))
            except OSError:
                pass
        msg = f"mounting {req.source} failed: {detail or f'FUSE mount on {mountpoint} failed ({exc})'}"
        log.error("%s", msg)
        notify.finish("ERR " + msg)
        return EX_FAIL
    finally:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass
    log.info("%s unmounted from %s; exiting", req.source, mountpoint)
    notify.finish("ERR mounting %s failed: the FUSE session ended before it was up" % req.source)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="labtwin.nfsfuse.daemon")
    p.add_argument("--notify-fd", type=int)
    p.add_argument("--log", type=Path)
    p.add_argument("mount_argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.mount_argv[1:] if args.mount_argv[:1] == ["--"] else args.mount_argv
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s nfsfuse[{os.getpid()}] %(levelname)s %(message)s")
    notify = Notifier(args.notify_fd)
    notify.send(f"PID {os.getpid()}")
    try:
        req = parse_argv(rest)
    except UsageError as exc:
        notify.finish(f"ERR {exc}")
        return EX_FAIL
    if not isinstance(req, MountRequest):
        notify.finish("ERR nothing to mount")
        return EX_FAIL
    return serve(req, os.path.realpath(req.mountpoint), notify, args.log)


if __name__ == "__main__":
    sys.exit(main())
