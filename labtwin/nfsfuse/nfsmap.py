"""Pure mappings between nfs_rs (NFSv3 client) values and what FUSE/the kernel wants.

No import of fuse or nfs_rs here: the unit tests run without libfuse.
"""
from __future__ import annotations

import errno
import stat

# FileType values of nfs_rs (its enum's .value) -> the S_IFMT bits the kernel needs.
TYPE_BITS = {
    "file": stat.S_IFREG, "directory": stat.S_IFDIR, "symlink": stat.S_IFLNK,
    "block_device": stat.S_IFBLK, "character_device": stat.S_IFCHR, "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}
# utimensat's special nanosecond values, as libfuse passes them through.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
NO_ID = 0xFFFFFFFF  # chown's -1 as the kernel's unsigned uid_t/gid_t
BLOCK = 4096
RETRY_FOR = 150.0       # seconds to retry NFS3ERR_JUKEBOX (ganesha's grace is ~90 s)


def type_bits(ftype) -> int:
    """S_IFMT bits for an nfs_rs FileType (or its string value); unknown kinds read as files."""
    return TYPE_BITS.get(getattr(ftype, "value", ftype), stat.S_IFREG)


def stat_of(info) -> dict:
    """fusepy's stat dict (times in ns: use_ns) from an nfs_rs FileInfo."""
    return {
        "st_mode": type_bits(info.type) | (info.mode & 0o7777),
        "st_nlink": info.nlink,
        "st_uid": info.uid,
        "st_gid": info.gid,
        "st_size": info.size,
        "st_blocks": (info.used + 511) // 512,
        "st_ino": info.fileid,
        "st_atime": info.atime,
        "st_mtime": info.mtime,
        "st_ctime": info.ctime,
    }


def statfs_of(fs) -> dict:
    """fusepy's statvfs dict from an nfs_rs FsStat (bytes -> 4 KiB blocks)."""
    return {
        "f_bsize": BLOCK, "f_frsize": BLOCK,
        "f_blocks": fs.total_bytes // BLOCK, "f_bfree": fs.free_bytes // BLOCK,
        "f_bavail": fs.available_bytes // BLOCK,
        "f_files": fs.total_files, "f_ffree": fs.free_files, "f_favail": fs.available_files,
        "f_namemax": 255,
    }


def errno_of(exc: BaseException) -> int:
    """The errno a FUSE operation answers for an exception of nfs_rs (or of Python)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    for kind, num in ((FileNotFoundError, errno.ENOENT), (FileExistsError, errno.EEXIST),
                      (PermissionError, errno.EACCES), (IsADirectoryError, errno.EISDIR),
                      (NotADirectoryError, errno.ENOTDIR), (TimeoutError, errno.ETIMEDOUT),
                      (ConnectionError, errno.EIO), (NotImplementedError, errno.ENOTSUP)):
        if isinstance(exc, kind):
            return num
    name = getattr(exc, "code_name", None) or ""
    for suffix, num in (("NOTEMPTY", errno.ENOTEMPTY), ("NOSPC", errno.ENOSPC),
                        ("ROFS", errno.EROFS), ("NAMETOOLONG", errno.ENAMETOOLONG),
                        ("DQUOT", errno.EDQUOT), ("FBIG", errno.EFBIG), ("XDEV", errno.EXDEV),
                        ("STALE", errno.ESTALE), ("INVAL", errno.EINVAL), ("PERM", errno.EPERM),
                        ("ACCES", errno.EACCES), ("EXIST", errno.EEXIST), ("NOENT", errno.ENOENT)):
        if name.endswith(suffix):
            return num
    return errno.EIO


def is_retryable(exc: BaseException) -> bool:
    """NFS3ERR_JUKEBOX and the like: the server did nothing and asks to try again."""
    return type(exc).__name__ == "NfsRetryableError" or getattr(exc, "code_name", None) in (
        "NFS3ERR_JUKEBOX", "NFS4ERR_DELAY", "NFS4ERR_GRACE")


def resolve_times(times, now_ns: int, current: tuple[int, int] | None) -> tuple[int, int]:
    """(atime, mtime) in ns for utimens: None means now; UTIME_NOW/UTIME_OMIT per field."""
    if times is None:
        return now_ns, now_ns
    out = []
    for i, t in enumerate(times):
        t = int(t)
        if t == UTIME_NOW:
            t = now_ns
        elif t == UTIME_OMIT:
            t = current[i] if current else now_ns
        out.append(t)
    return out[0], out[1]


def rel(path: str) -> str:
    """FUSE's absolute path -> the export-relative path nfs_rs wants ('.' for the root)."""
    p = path.strip("/")
    return p or "."


def norm_id(v: int) -> int:
    return -1 if v in (NO_ID, -1) else v
