"""labtwin.nfsfuse without hosts: the mount.nfs helper's argv contract, its messages and
mountinfo parsing, the nfs_rs -> FUSE attribute mapping, and the filesystem's batching logic
against an in-memory client."""
from __future__ import annotations

import errno
import stat
from dataclasses import dataclass, field

import pytest

from labtwin.nfsfuse import nfsmap
from labtwin.nfsfuse.mount import (EX_FAIL, FSTYPE, MountRequest, UsageError, describe_failure,
                                   find_mount, last_fuse_error, log_path, main, parse_argv,
                                   parse_options, split_remote)


# --- argv ------------------------------------------------------------------------------------
def test_util_linux_argv_with_options():
    req = parse_argv(["10.0.0.6:/nfsdata", "/var/lib/kubelet/pods/u/volumes/kubernetes.io~nfs/data",
                      "-o", "rw,vers=3,nolock,hard"])
    assert req == MountRequest(server="10.0.0.6", export="/nfsdata",
                               mountpoint="/var/lib/kubelet/pods/u/volumes/kubernetes.io~nfs/data",
                               options=("rw", "vers=3", "nolock", "hard"))
    assert (req.source, req.url) == ("10.0.0.6:/nfsdata", "nfs://10.0.0.6/nfsdata")


def test_flags_and_repeated_options():
    req = parse_argv(["-s", "-v", "h:/x/", "/mnt", "-oro,port=2049", "-n", "-t", "nfs4", "-N", "/proc/1/ns/mnt",
                      "-o", "mountport=20048,timeo=600"])
    assert (req.export, req.readonly, req.verbose, req.fake) == ("/x", True, True, False)
    assert (req.nfs_port, req.mount_port, req.op_timeout) == (2049, 20048, 60.0)
    assert parse_argv(["h:/x", "/mnt", "-r"]).readonly
    assert not parse_argv(["h:/x", "/mnt", "-r", "-w"]).readonly
    assert parse_argv(["-fv", "h:/x", "/mnt"]).fake
    assert parse_argv(["h:/x", "/mnt", "-o", "ro,rw"]).readonly is False  # last one wins


@pytest.mark.parametrize("argv, what", [(["-V"], "version"), (["-h"], "help"), (["--version"], "version"),
                                        (["h:/x", "/mnt", "-V"], "version")])
def test_version_and_help(argv, what):
    assert parse_argv(argv) == what


@pytest.mark.parametrize("argv, msg", [
    (["h:/x"], "expected a remote target and a mount point"),
    (["h:/x", "/a", "/b"], "expected a remote target and a mount point"),
    (["hostonly", "/mnt"], "remote share not in 'host:dir' format"),
    (["h:relative", "/mnt"], "remote share not in 'host:dir' format"),
    ([":/x", "/mnt"], "remote share not in 'host:dir' format"),
    (["h:/x", "/mnt", "-q"], "unknown option -q"),
    (["h:/x", "/mnt", "-o"], "option -o needs a value"),
    (["h:/x", "/mnt", "-o", "port=abc"], "invalid value for option port: 'abc'"),
    (["h:/x", "/mnt", "-o", "port=70000"], "invalid value for option port: '70000'"),
])
def test_usage_errors(argv, msg):
    with pytest.raises(UsageError, match=msg.replace("(", r"\(")):
        parse_argv(argv)


def test_split_remote_forms():
    assert split_remote("master:/nfsdata") == ("master", "/nfsdata")
    assert split_remote("10.0.0.6:/a//b/") == ("10.0.0.6", "/a//b")
    assert split_remote("h:/") == ("h", "/")
    assert split_remote("[fd00::6]:/nfsdata") == ("fd00::6", "/nfsdata")
    req = parse_argv(["[fd00::6]:/nfsdata", "/mnt"])
    assert (req.source, req.url) == ("[fd00::6]:/nfsdata", "nfs://[fd00::6]/nfsdata")
    with pytest.raises(UsageError):
        split_remote("[fd00::6]/nfsdata")


def test_nfs_options_are_accepted_and_mostly_ignored():
    o = parse_options(["vers=4.1", "nfsvers=3", "proto=tcp", "soft", "intr", "retry=2", "sec=sys",
                       "actimeo=0", "_netdev", "port=0"])
    assert o == {"readonly": False, "nfs_port": None, "mount_port": None, "op_timeout": None}


def test_usage_error_exits_1_and_missing_mountpoint_exits_32(capsys, tmp_path):
    assert main(["nohost", "/mnt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mount.nfs: remote share not in 'host:dir' format\nusage: mount.nfs ")
    assert main(["10.0.0.6:/nfsdata", str(tmp_path / "missing")]) == EX_FAIL
    err = capsys.readouterr().err
    assert err == f"mount.nfs: mounting 10.0.0.6:/nfsdata failed: mount point {tmp_path / 'missing'} does not exist\n"
    assert main(["-f", "10.0.0.6:/nfsdata", str(tmp_path)]) in (0, EX_FAIL)  # fake: no daemon either way


def test_prog_name_comes_from_the_wrapper(capsys, monkeypatch):
    monkeypatch.setenv("NFSFUSE_PROG", "mount.nfs4")
    assert main(["-V"]) == 0
    assert capsys.readouterr().out.startswith("mount.nfs4: labtwin nfsfuse")


# --- failure lines ---------------------------------------------------------------------------
class FakeNfsError(RuntimeError):
    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class NfsRetryableError(RuntimeError):
    code_name = "NFS3ERR_JUKEBOX"


@pytest.mark.parametrize("exc, line", [
    (FakeNfsError("RPC error: portmapper lookup failed for prog=100005 vers=3: 10.0.0.6:111: "
                  "Connection refused (os error 111)"), "Connection refused while mounting 10.0.0.6:/nfsdata"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "Connection refused while mounting 10.0.0.6:/nfsdata"),
    (FakeNfsError("RPC error: portmapper lookup failed for prog=100005 vers=3: 10.0.0.6:111: RPC error: "
                  "GETPORT service is not registered"),
     "RPC: Program not registered (no NFS service on 10.0.0.6) while mounting 10.0.0.6:/nfsdata"),
    (FakeNfsError("Mount error: access denied"), "access denied by server while mounting 10.0.0.6:/nfsdata"),
    (FileNotFoundError("no such export"),
     "mounting 10.0.0.6:/nfsdata failed, reason given by server: No such file or directory"),
    (TimeoutError("deadline"), "Connection timed out while mounting 10.0.0.6:/nfsdata"),
    (FakeNfsError("something\nodd"), "mounting 10.0.0.6:/nfsdata failed: something odd"),
])
def test_failure_lines_name_the_server_and_path(exc, line):
    assert describe_failure("10.0.0.6:/nfsdata", exc) == line


def test_last_fuse_error_is_libfuses_own_line():
    log = "2026 nfsfuse[1] INFO mounting\nfuse: bad mount point `/x': No such file or directory\nTraceback\n"
    assert last_fuse_error(log) == "fuse: bad mount point `/x': No such file or directory"
    assert last_fuse_error("nothing here\n") is None


# --- mountinfo and logs ------------------------------------------------------------------------
MOUNTINFO = """\
105 76 0:45 / / rw,relatime shared:31 - overlay overlay rw,lowerdir=/
163 105 254:0 /x/kubelet /var/lib/kubelet rw,relatime shared:55 - ext4 /dev/vda rw
1648 163 0:328 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~nfs/data rw,nosuid shared:672 - fuse.nfsfuse 10.0.0.6:/nfsdata rw,user_id=0
200 105 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
201 200 0:51 / /mnt/with\\040space rw - fuse.nfsfuse h:/a\\040b rw
"""


def test_find_mount_reads_mountinfo():
    assert find_mount(MOUNTINFO, "/var/lib/kubelet/pods/u/volumes/kubernetes.io~nfs/data") == (FSTYPE, "10.0.0.6:/nfsdata")
    assert find_mount(MOUNTINFO, "/var/lib/kubelet") == ("ext4", "/dev/vda")
    assert find_mount(MOUNTINFO, "/mnt/with space") == (FSTYPE, "h:/a b")  # the topmost one
    assert find_mount(MOUNTINFO, "/mnt") is None


def test_log_path_is_one_file_per_mount_point(tmp_path):
    assert log_path("/mnt/t", tmp_path) == tmp_path / "mnt_t.log"
    assert log_path("/", tmp_path) == tmp_path / "root.log"
    long = "/var/lib/kubelet/pods/" + "u" * 36 + "/volumes/kubernetes.io~nfs/" + "v" * 80
    p = log_path(long, tmp_path)
    assert len(p.name) <= 120 and p.name.endswith("v" * 20 + ".log") and p != log_path(long + "x", tmp_path)


# --- attribute mapping -------------------------------------------------------------------------
@dataclass
class Info:
    type: str = "file"
    mode: int = 0o644
    nlink: int = 1
    uid: int = 33
    gid: int = 33
    size: int = 10
    used: int = 4096
    fileid: int = 967457
    atime: int = 1_700_000_000_123_456_789
    mtime: int = 1_700_000_001_000_000_000
    ctime: int = 1_700_000_002_000_000_000
    path: str = "x"


def test_file_type_bits_come_from_the_type_not_the_mode():
    assert nfsmap.type_bits("directory") == stat.S_IFDIR
    assert nfsmap.type_bits("symlink") == stat.S_IFLNK
    assert nfsmap.type_bits("unknown") == stat.S_IFREG
    st = nfsmap.stat_of(Info(type="directory", mode=0o2775))
    assert st["st_mode"] == stat.S_IFDIR | 0o2775
    # a mode that already carries type bits cannot turn a directory into a file
    assert nfsmap.stat_of(Info(type="directory", mode=stat.S_IFREG | 0o755))["st_mode"] == stat.S_IFDIR | 0o755


def test_stat_keeps_ns_times_ids_inode_and_blocks():
    st = nfsmap.stat_of(Info())
    assert st == {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_uid": 33, "st_gid": 33, "st_size": 10,
                  "st_blocks": 8, "st_ino": 967457, "st_atime": 1_700_000_000_123_456_789,
                  "st_mtime": 1_700_000_001_000_000_000, "st_ctime": 1_700_000_002_000_000_000}


def test_every_nfs_rs_file_type_maps():
    nfs_rs = pytest.importorskip("nfs_rs")
    for ft in nfs_rs.FileType:
        expected = stat.S_IFREG if ft.value == "unknown" else nfsmap.TYPE_BITS[ft.value]
        assert nfsmap.type_bits(ft) == expected
        assert stat.S_IFMT(nfsmap.stat_of(Info(type=ft))["st_mode"]) == expected


def test_statfs_in_4k_blocks():
    @dataclass
    class Fs:
        total_bytes: int = 100 * 4096
        free_bytes: int = 40 * 4096 + 5
        available_bytes: int = 30 * 4096
        total_files: int = 1000
        free_files: int = 900
        available_files: int = 800

    assert nfsmap.statfs_of(Fs()) == {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 100, "f_bfree": 40,
                                      "f_bavail": 30, "f_files": 1000, "f_ffree": 900, "f_favail": 800,
                                      "f_namemax": 255}


class CodeNamed(RuntimeError):
    def __init__(self, code_name):
        super().__init__(code_name)
        self.code_name = code_name
        self.errno = None


@pytest.mark.parametrize("exc, num", [
    (FakeNfsError("x", errno=errno.ENOSPC), errno.ENOSPC),
    (FileNotFoundError("x"), errno.ENOENT), (FileExistsError("x"), errno.EEXIST),
    (PermissionError("x"), errno.EACCES), (IsADirectoryError("x"), errno.EISDIR),
    (NotADirectoryError("x"), errno.ENOTDIR), (TimeoutError("x"), errno.ETIMEDOUT),
    (NotImplementedError("x"), errno.ENOTSUP),
    (CodeNamed("NFS3ERR_NOTEMPTY"), errno.ENOTEMPTY), (CodeNamed("NFS3ERR_NOSPC"), errno.ENOSPC),
    (CodeNamed("NFS3ERR_ROFS"), errno.EROFS), (CodeNamed("NFS3ERR_STALE"), errno.ESTALE),
    (RuntimeError("?"), errno.EIO),
])
def test_errno_mapping(exc, num):
    assert nfsmap.errno_of(exc) == num


def test_retryable_is_jukebox():
    assert nfsmap.is_retryable(NfsRetryableError("try again"))
    assert nfsmap.is_retryable(CodeNamed("NFS3ERR_JUKEBOX"))
    assert not nfsmap.is_retryable(CodeNamed("NFS3ERR_IO"))


def test_utimens_times():
    now = 1_800_000_000_000_000_000
    assert nfsmap.resolve_times(None, now, None) == (now, now)
    assert nfsmap.resolve_times((nfsmap.UTIME_NOW, nfsmap.UTIME_NOW), now, None) == (now, now)
    assert nfsmap.resolve_times((5, nfsmap.UTIME_OMIT), now, (1, 2)) == (5, 2)
    assert nfsmap.resolve_times((nfsmap.UTIME_OMIT, 7), now, (1, 2)) == (1, 7)


def test_paths_and_ids():
    assert nfsmap.rel("/") == "."
    assert nfsmap.rel("/a/b") == "a/b"
    assert nfsmap.norm_id(0xFFFFFFFF) == -1 and nfsmap.norm_id(33) == 33


# --- the filesystem against an in-memory client ------------------------------------------------
def _fs_module():
    try:
        from labtwin.nfsfuse import fs
    except (ImportError, OSError) as exc:  # fusepy raises OSError without libfuse2
        pytest.skip(f"fusepy/libfuse2 not available: {exc}")
    return fs


@dataclass
class MemFile:
    buf: bytearray  # the file itself, as an NFS file handle names it across renames
    calls: list = field(default_factory=list)

    def write_at(self, data, off):
        self.calls.append(("write_at", off, len(data)))
        buf = self.buf
        if len(buf) < off:
            buf.extend(b"\0" * (off - len(buf)))
        buf[off:off + len(data)] = data
        return len(data)

    def read_at(self, off, size):
        self.calls.append(("read_at", off, size))
        return bytes(self.buf[off:off + size])

    def close(self):
        self.calls.append(("close",))


class MemClient:
    """Just enough of nfs_rs.Client: files in a dict, every call recorded."""

    def __init__(self):
        self.files: dict[str, bytearray] = {}
        self.calls: list = []
        self.opened: list[MemFile] = []
        self.jukebox = 0

    def stat(self, path):
        self.calls.append(("stat", path))
        if path == ".":
            return Info(type="directory", mode=0o755, size=4096)
        if path not in self.files:
            raise FileNotFoundError(path)
        return Info(size=len(self.files[path]))

    def open(self, path, mode):
        self.calls.append(("open", path, mode))
        f = MemFile(self.files[path])
        self.opened.append(f)
        return f

    def touch(self, path):
        if self.jukebox:
            self.jukebox -= 1
            raise NfsRetryableError("NFS3 error: try again")
        self.calls.append(("touch", path))
        self.files.setdefault(path, bytearray())

    def chmod(self, path, mode):
        self.calls.append(("chmod", path, mode))

    def truncate(self, path, size):
        self.calls.append(("truncate", path, size))
        del self.files[path][size:]  # in place: open files see it

    def rename(self, a, b):
        self.calls.append(("rename", a, b))
        self.files[b] = self.files.pop(a)


@pytest.fixture
def memfs(monkeypatch):
    fs = _fs_module()
    monkeypatch.setattr(fs, "fuse_get_context", lambda: (0, 0, 1))
    client = MemClient()
    return fs, client, fs.NfsFuse(client, write_batch=64, read_ahead=32, retry_for=5)


def test_writes_are_batched_and_getattr_counts_pending_bytes(memfs):
    fs, client, ops = memfs
    fh = ops("create", "/f", 0o100640)
    assert ("chmod", "f", 0o640) in client.calls
    f = client.opened[-1]
    for i in range(5):
        assert ops("write", "/f", b"x" * 10, i * 10, fh) == 10
    assert [c for c in f.calls if c[0] == "write_at"] == []          # still pending
    assert ops("getattr", "/f", None)["st_size"] == 50               # ... but visible in the size
    ops("write", "/f", b"y" * 20, 50, fh)                            # 70 >= batch of 64: sent
    assert [c for c in f.calls if c[0] == "write_at"] == [("write_at", 0, 70)]
    ops("write", "/f", b"z", 100, fh)                                # not contiguous: own run
    ops("flush", "/f", fh)
    assert [c for c in f.calls if c[0] == "write_at"][-1] == ("write_at", 100, 1)
    ops("release", "/f", fh)
    assert f.calls[-1] == ("close",)
    assert bytes(client.files["f"]) == b"x" * 50 + b"y" * 20 + b"\0" * 30 + b"z"


def test_sequential_reads_fetch_ahead_and_random_reads_do_not(memfs):
    fs, client, ops = memfs
    client.files["r"] = bytearray(bytes(range(100)))
    fh = ops("open", "/r", 0)
    f = client.opened[-1]
    assert ops("read", "/r", 8, 0, fh) == bytes(range(8))
    assert ops("read", "/r", 8, 8, fh) == bytes(range(8, 16))        # from the first fetch
    assert ops("read", "/r", 8, 16, fh) == bytes(range(16, 24))
    reads = [c for c in f.calls if c[0] == "read_at"]
    assert reads[0] == ("read_at", 0, 32)                            # offset 0 counts as sequential
    assert len(reads) == 1
    assert ops("read", "/r", 4, 90, fh) == bytes(range(90, 94))      # a jump: just what was asked
    assert [c for c in f.calls if c[0] == "read_at"][-1] == ("read_at", 90, 4)


def test_a_write_drops_the_read_ahead_and_pending_writes_are_read_back(memfs):
    fs, client, ops = memfs
    client.files["w"] = bytearray(b"a" * 40)
    rfh, wfh = ops("open", "/w", 0), ops("open", "/w", 2)
    assert ops("read", "/w", 4, 0, rfh) == b"aaaa"
    ops("write", "/w", b"BB", 4, wfh)
    assert ops("read", "/w", 6, 0, rfh) == b"aaaaBB"                 # flushed first, fetched again


def test_truncate_and_rename_flush_first_and_handles_follow_renames(memfs):
    fs, client, ops = memfs
    fh = ops("create", "/d/a", 0o100644)
    ops("write", "/d/a", b"hello", 0, fh)
    ops("rename", "/d/a", "/d/b")
    assert bytes(client.files["d/b"]) == b"hello"
    ops("write", "/d/b", b"!", 5, fh)
    assert ops("getattr", "/d/b", None)["st_size"] == 6               # the handle followed the rename
    ops("truncate", "/d/b", 2, None)
    assert bytes(client.files["d/b"]) == b"he"


def test_jukebox_is_retried_and_other_errors_become_errnos(memfs):
    fs, client, ops = memfs
    client.jukebox = 2
    ops("release", "/j", ops("create", "/j", 0o100644))
    assert "j" in client.files
    with pytest.raises(OSError) as exc:
        ops("getattr", "/missing", None)
    assert exc.value.errno == errno.ENOENT
    with pytest.raises(OSError) as exc:
        ops("read", "/x", 1, 0, 999)
    assert exc.value.errno == errno.EBADF


def test_no_operations_attribute_fusepy_would_misread():
    fs = _fs_module()
    assert fs.NfsFuse.lock is None and fs.NfsFuse.bmap is None  # fusepy skips None


def test_the_seeded_helper_execs_the_repo_venv():
    from labtwin.hosts.config import REPO_ROOT
    from labtwin.hosts.kubeadm_node import mount_nfs_script

    text = mount_nfs_script()
    assert text.startswith("#!/bin/sh\n")
    assert f'exec {REPO_ROOT}/.venv/bin/python -m labtwin.nfsfuse.mount "$@"' in text
    assert f"PYTHONPATH={REPO_ROOT}" in text and "NFSFUSE_PROG=${0##*/}" in text


def test_boot_script_makes_dev_fuse_and_binds_the_repo_for_kubeadm(tmp_path):
    from labtwin.hosts import host
    from labtwin.hosts.config import TwinConfig

    for kubeadm in (True, False):
        cfg = TwinConfig(name="t", state_dir=tmp_path, subnet=__import__("ipaddress").ip_network("10.9.0.0/24"),
                         kubeadm=kubeadm)
        paths = {k: tmp_path / k for k in ("root", "upper", "work", "seed", "docker")}
        text = host.boot_script(cfg, cfg.hosts[1], paths)
        assert ("/dev/fuse c 10 229" in text) is kubeadm
        assert (bool(host.repo_bind(cfg, "/r"))) is kubeadm
