"""Throughput of NFS through the kubeadm hosts' mount.nfs (labtwin.nfsfuse: NFSv3 over FUSE).

    sudo .venv/bin/python bench/nfs_fuse.py [--mib 32] [--runs 3] [--name ltnfsbench] [--subnet 10.213.27.0/24]

Brings up a kubeadm twin of its own (1 worker), runs labkit's setup-nfs (nfs-ganesha on master),
mounts master:/nfsdata on node01 with `mount -t nfs` (the path the kubelet takes), and prints
dd's write (conv=fsync) and read throughput through that mount, next to nfs-rs alone (the same
NFSv3 client without FUSE) and the export's directory as node01 sees it without NFS (the twin's
bind mount of the shared disk; reads with O_DIRECT, else they come from the page cache).
The first file created waits out ganesha's grace period (~90 s after it starts); that wait is
printed apart. Takes down its twin at the end, also on failure.
"""
from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labtwin.hosts import lab, network  # noqa: E402
from labtwin.hosts.config import REPO_ROOT, STATE_ROOT, TwinConfig  # noqa: E402
from labtwin.hosts.host import run_in  # noqa: E402

MNT = "/mnt/nfsbench"
DD_RE = re.compile(r"^(\d+) bytes .* copied, ([\d.]+) s", re.M)
NFS_RS_BENCH = """
import sys, time, nfs_rs
url, mib = sys.argv[1], int(sys.argv[2])
c = nfs_rs.Client.connect(url, versions=["3"], uid=0, gid=0)
chunk = bytes(4 << 20)
t0 = time.monotonic()
with c.open("nfsbench-rs.bin", "wb") as f:
    for _ in range(mib // 4):
        f.write(chunk)
w = time.monotonic() - t0
buf = bytearray(4 << 20)
t0 = time.monotonic()
with c.open("nfsbench-rs.bin", "rb") as f:
    while f.readinto(buf):
        pass
r = time.monotonic() - t0
c.unlink("nfsbench-rs.bin")
print(w, r)
"""


def sh(cfg: TwinConfig, host: str, cmd: str, timeout: float = 300) -> str:
    pid = lab.init_pid(cfg, cfg.host(host))
    rc, out, err = run_in(pid, cmd, timeout=timeout)
    if rc != 0:
        raise SystemExit(f"{host}: {cmd!r} failed ({rc}): {(err or out).strip()}")
    return out + err


def dd_mbps(out: str) -> float:
    m = DD_RE.search(out)
    if not m:
        raise SystemExit(f"cannot read dd's output: {out!r}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def dd_pair(cfg: TwinConfig, path: str, mib: int, direct_read: bool, host: str = "node01") -> tuple[float, float]:
    q = shlex.quote(path)
    w = dd_mbps(sh(cfg, host, f"dd if=/dev/zero of={q} bs=1M count={mib} conv=fsync 2>&1"))
    r = dd_mbps(sh(cfg, host, f"dd if={q} of=/dev/null bs=1M {'iflag=direct' if direct_read else ''} 2>&1"))
    sh(cfg, host, f"rm -f {q}")
    return w, r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=32, help="file size (a multiple of 4)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--name", default="ltnfsbench")
    p.add_argument("--subnet", default="10.213.27.0/24", help="the first /24 tried")
    p.add_argument("--verbose", action="store_true", help="labkit's tables too")
    args = p.parse_args()
    mib = max(4, args.mib // 4 * 4)
    from labkit import flows, ui
    from labkit.inventory import load

    ui.console.quiet = not args.verbose
    state = str(STATE_ROOT / args.name)
    lab.down(TwinConfig.from_env(name=args.name, state=state, subnet=args.subnet, kubeadm=True, workers=1))
    cfg = TwinConfig.from_env(name=args.name, state=state, subnet=network.free_subnet(args.subnet),
                              kubeadm=True, workers=1)
    try:
        t0 = time.monotonic()
        lab.up(cfg)
        print(f"twin {cfg.name} up on {cfg.subnet} in {time.monotonic() - t0:.1f}s (kubeadm, 1 worker)")
        t0 = time.monotonic()
        flows.setup_nfs(load(cfg.inventory_path))
        t_setup = time.monotonic() - t0
        master = str(cfg.master.address)
        t0 = time.monotonic()
        sh(cfg, "node01", f"mkdir -p {MNT} && mount -t nfs {master}:/nfsdata {MNT}")
        t_mount = time.monotonic() - t0
        t0 = time.monotonic()
        sh(cfg, "node01", f"echo first > {MNT}/nfsbench-first && rm {MNT}/nfsbench-first")
        t_first = time.monotonic() - t0
        print(f"setup-nfs {t_setup:.1f}s; mount -t nfs on node01 {t_mount:.2f}s; "
              f"first create {t_first:.1f}s (ganesha's grace period after its start)")
        rows: dict[str, list[tuple[float, float]]] = {"fuse": [], "nfs-rs": [], "bind": []}
        py = REPO_ROOT / ".venv" / "bin" / "python"
        for _ in range(args.runs):
            rows["fuse"].append(dd_pair(cfg, f"{MNT}/nfsbench.bin", mib, direct_read=False))
            out = sh(cfg, "node01", f"{py} -c {shlex.quote(NFS_RS_BENCH)} nfs://{master}/nfsdata {mib}")
            w, r = (float(x) for x in out.split())
            rows["nfs-rs"].append((mib * 1048576 / w / 1e6, mib * 1048576 / r / 1e6))
            rows["bind"].append(dd_pair(cfg, "/nfsdata/nfsbench.bin", mib, direct_read=True, host="master"))
        sh(cfg, "node01", f"umount {MNT}")
        print(f"{mib} MiB files, median of {args.runs} (MB/s)      write   read")
        labels = {"fuse": "mount -t nfs (nfsfuse: NFSv3 over FUSE)",
                  "nfs-rs": "nfs-rs alone, 4 MiB calls (no FUSE)",
                  "bind": "export dir on master, no NFS (O_DIRECT)"}
        for key, label in labels.items():
            w = statistics.median(x[0] for x in rows[key])
            r = statistics.median(x[1] for x in rows[key])
            print(f"  {label:<40} {w:7.0f} {r:7.0f}")
    finally:
        lab.down(cfg)
        print(f"twin {cfg.name} down")


if __name__ == "__main__":
    main()
