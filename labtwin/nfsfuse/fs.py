"""The FUSE filesystem: each operation the kernel sends becomes NFSv3 calls through nfs_rs.Client.

As an NFS client does: file data written through a descriptor is sent to the server in batches
(at the latest on close or fsync: close-to-open consistency), sequential reads fetch ahead, and
everything else goes to the server at once. Operations run as root on the server (AUTH_SYS uid 0,
the export is no_root_squash); the kernel checks permissions locally from the attributes
(`default_permissions`), and what a non-root caller creates is chowned to it, as AUTH_SYS would
create it. NFS3ERR_JUKEBOX (ganesha's grace period after a start answers creates with it) is
retried with backoff, like the kernel client.

Traps of the two libraries, handled here:
- nfs_rs FileInfo.mode has no file type bits (they come from .type) and its times are in ns;
- fusepy registers an Operations attribute under any name of struct fuse_operations as an
  operation (so no attribute called `lock`, `bmap`, `ioctl`... unless it is one).
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import Callable, TypeVar

from fuse import FuseOSError, Operations, fuse_get_context

from .nfsmap import (RETRY_FOR, UTIME_OMIT, errno_of, is_retryable, norm_id, rel, resolve_times,
                     stat_of, statfs_of)

log = logging.getLogger("labtwin.nfsfuse")
T = TypeVar("T")

WRITE_BATCH = 4 << 20   # pending write bytes per descriptor before they go to the server
READ_AHEAD = 1 << 20    # bytes fetched by a sequential read


# --- open files ------------------------------------------------------------------------------
class Handle:
    """One open file: the nfs_rs File, pending writes (one contiguous run) and a read-ahead."""

    def __init__(self, path: str, nfile, writable: bool):
        self.path = path
        self.file = nfile
        self.writable = writable
        self.mutex = threading.Lock()
        self.wbuf = bytearray()
        self.woff = 0
        self.rbuf = b""
        self.roff = 0
        self.next_read = 0

    def pending_end(self) -> int:
        return self.woff + len(self.wbuf) if self.wbuf else 0


class NfsFuse(Operations):
    use_ns = True  # fusepy: times in ns, as nfs_rs gives them

    def __init__(self, client, *, on_ready: Callable[[], None] | None = None,
                 retry_for: float = RETRY_FOR, write_batch: int = WRITE_BATCH,
                 read_ahead: int = READ_AHEAD):
        self.client = client
        self._on_ready = on_ready
        self._retry_for = retry_for
        self._write_batch = write_batch
        self._read_ahead = read_ahead
        self._mutex = threading.Lock()  # not `lock`: fusepy would call it as the lock operation
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1

    # --- plumbing ---
    def __call__(self, op, *args):
        try:
            return getattr(self, op)(*args)
        except FuseOSError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes an errno for the kernel
            num = errno_of(exc)
            if num not in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY):
                log.warning("%s%s: %s (%s)", op, args[:1], exc, errno.errorcode.get(num, num))
            raise FuseOSError(num) from None

    def _nfs(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call nfs_rs, retrying what the server asks to retry (JUKEBOX) with backoff."""
        start = time.monotonic()
        delay, tries = 0.1, 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_retryable(exc) or time.monotonic() - start + delay > self._retry_for:
                    raise
                if not tries:
                    log.info("%s %s: server asks to retry (%s); retrying for up to %.0fs",
                             getattr(fn, "__name__", "call"), args[:1], exc, self._retry_for)
                tries += 1
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if tries:
                log.info("%s %s: done after %d retries (%.1fs)", getattr(fn, "__name__", "call"),
                         args[:1], tries, time.monotonic() - start)
            return result

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise FuseOSError(errno.EBADF) from None

    def _add_handle(self, h: Handle) -> int:
        with self._mutex:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = h
        return fh

    def _open_handles(self, path: str, subtree: bool = False) -> list[Handle]:
        with self._mutex:
            hs = list(self._handles.values())
        return [h for h in hs if h.path == path or (subtree and h.path.startswith(path.rstrip("/") + "/"))]

    def _flush(self, h: Handle) -> None:
        """Send h's pending writes (h.mutex held)."""
        if h.wbuf:
            data, off = bytes(h.wbuf), h.woff
            h.wbuf.clear()
            self._nfs(h.file.write_at, data, off)

    def _flush_path(self, path: str, subtree: bool = False, drop_reads: bool = False) -> None:
        for h in self._open_handles(path, subtree):
            with h.mutex:
                self._flush(h)
                if drop_reads:
                    h.rbuf = b""

    def _give_to_caller(self, path: str) -> None:
        """What a non-root caller creates is its own, as over AUTH_SYS with its uid."""
        uid, gid, _ = fuse_get_context()
        if uid != 0:
            self._nfs(self.client.chown, rel(path), uid, gid)

    # --- lifecycle ---
    def init(self, path):
        log.info("FUSE session up")
        if self._on_ready:
            self._on_ready()

    def destroy(self, path):
        log.info("FUSE session ended")

    # --- attributes ---
    def getattr(self, path, fh=None):
        st = stat_of(self._nfs(self.client.stat, rel(path)))
        ends = [h.pending_end() for h in self._open_handles(path) if h.wbuf]
        if ends:
            st["st_size"] = max(st["st_size"], *ends)
        return st

    def chmod(self, path, mode):
        self._nfs(self.client.chmod, rel(path), mode & 0o7777)

    def chown(self, path, uid, gid):
        self._nfs(self.client.chown, rel(path), norm_id(uid), norm_id(gid))

    def utimens(self, path, times=None):
        current = None
        if times is not None and UTIME_OMIT in (int(times[0]), int(times[1])):
            info = self._nfs(self.client.stat, rel(path))
            current = (info.atime, info.mtime)
        self._nfs(self.client.utime, rel(path), ns=resolve_times(times, time.time_ns(), current))

    def truncate(self, path, length, fh=None):
        self._flush_path(path, drop_reads=True)
        self._nfs(self.client.truncate, rel(path), length)

    def statfs(self, path):
        return statfs_of(self._nfs(self.client.fs_stat))

    def access(self, path, amode):
        return 0  # default_permissions: the kernel checks the mode bits itself

    # --- directories ---
    def readdir(self, path, fh):
        # A list, not a generator: fusepy iterates it outside this class's error mapping.
        entries = self._nfs(lambda: list(self.client.scandir(rel(path))))
        return [".", "..", *((e.name, stat_of(e.info), 0) for e in entries if e.name not in (".", ".."))]

    def mkdir(self, path, mode):
        self._nfs(self.client.mkdir, rel(path), mode & 0o7777)
        self._give_to_caller(path)

    def rmdir(self, path):
        self._nfs(self.client.rmdir, rel(path))

    def unlink(self, path):
        self._flush_path(path)
        self._nfs(self.client.unlink, rel(path))

    def rename(self, old, new):
        self._flush_path(old, subtree=True)
        self._nfs(self.client.rename, rel(old), rel(new))
        prefix = old.rstrip("/") + "/"
        for h in self._open_handles(old, subtree=True):
            h.path = new if h.path == old else new.rstrip("/") + "/" + h.path[len(prefix):]

    def symlink(self, target, source):  # fusepy: `target` is the new link, `source` its content
        self._nfs(self.client.symlink, source, rel(target))
        self._give_to_caller(target)

    def readlink(self, path):
        return self._nfs(self.client.readlink, rel(path))

    def link(self, target, source):  # fusepy: `target` is the new name of `source`
        self._nfs(self.client.link, rel(source), rel(target))

    # --- files ---
    def open(self, path, flags):
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        self._flush_path(path)  # another descriptor's pending writes are visible to this one
        nfile = self._nfs(self.client.open, rel(path), "r+b" if writable else "rb")
        return self._add_handle(Handle(path, nfile, writable))

    def create(self, path, mode, fi=None):
        # touch + open, not open "w+b": O_CREAT without O_TRUNC must not empty a file another
        # client created since the kernel's lookup.
        self._nfs(self.client.touch, rel(path))
        nfile = self._nfs(self.client.open, rel(path), "r+b")
        try:
            self._nfs(self.client.chmod, rel(path), mode & 0o7777)
            self._give_to_caller(path)
        except Exception:
            nfile.close()
            raise
        return self._add_handle(Handle(path, nfile, True))

    def read(self, path, size, offset, fh):
        h = self._handle(fh)
        for other in self._open_handles(h.path):
            if other is not h and other.wbuf:
                with other.mutex:
                    self._flush(other)
        with h.mutex:
            self._flush(h)
            start = offset - h.roff
            if 0 <= start and offset + size <= h.roff + len(h.rbuf):
                data = h.rbuf[start:start + size]
            else:
                want = max(size, self._read_ahead) if offset == h.next_read else size
                h.rbuf = self._nfs(h.file.read_at, offset, want)
                h.roff = offset
                data = h.rbuf[:size]
            h.next_read = offset + len(data)
            return data

    def write(self, path, data, offset, fh):
        h = self._handle(fh)
        for other in self._open_handles(h.path):
            other.rbuf = b""  # their read-ahead is stale now
        with h.mutex:
            if h.wbuf and offset != h.pending_end():
                self._flush(h)
            if not h.wbuf:
                h.woff = offset
            h.wbuf += data
            if len(h.wbuf) >= self._write_batch:
                self._flush(h)
        return len(data)

    def flush(self, path, fh):
        h = self._handle(fh)
        with h.mutex:
            self._flush(h)

    def fsync(self, path, datasync, fh):
        self.flush(path, fh)

    def release(self, path, fh):
        with self._mutex:
            h = self._handles.pop(fh, None)
        if h is None:
            return
        with h.mutex:
            try:
                self._flush(h)
            finally:
                h.file.close()
