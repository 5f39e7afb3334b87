"""Wall time of the whole seed flow on a fresh kubeadm twin, and of the re-run (which changes
nothing); then NFS throughput in a pod.

    sudo .venv/bin/python bench/e2e_flow.py [--runs 1] [--mib 64] [--verbose]
Runs the flow's steps in process (what `invoke up` runs, without the CLI start-up) on its own
twin (`lbflow`, first free /24 from 10.213.42.0/24; a real cluster made by kubeadm, not counted
in the flow's time), and prints per step: wall time and SSH round trips (commands + uploads)
summed over hosts, and the SSH connections each host got. Also a re-run through `up` in process,
which holds one connection per host for every step (remote.session), and `invoke up` as a user
runs it. Last, dd writes and reads a file
through pod statefulset-0's NFS volume (the kubelet's nfs mount, via labtwin's FUSE client, that
the container sees), next to the same on the export's own disk on master.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _twin import fresh_twin, quiet_ui
from nfs_fuse import dd_pair, sh

REPO = Path(__file__).resolve().parents[1]


def steps(inv):
    """`invoke up`'s steps (labkit/pipeline.py) but setup-cluster: the fixture made the cluster."""
    from labkit import pipeline

    return [(s.name, lambda inv, s=s: s.run(inv, 600)) for s in pipeline.steps(inv) if s.name != "setup-cluster"]


def opened() -> dict[str, int]:
    from labkit import remote

    return dict(remote.OPENED)


def per_host(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{h} {after.get(h, 0) - before.get(h, 0)}" for h in sorted(after))


def run_flow(inv) -> tuple[float, list[tuple[str, float, int]]]:
    rows, t_all = [], time.monotonic()
    for name, fn in steps(inv):
        t0 = time.monotonic()
        res = fn(inv)
        dt = time.monotonic() - t0
        if name == "verify" and not res.ok:
            sys.exit("bench: verify failed: the flow did not reach the seed's end state")
        rows.append((name, dt, sum(res.commands.values())))
    return time.monotonic() - t_all, rows


def show(title: str, total: float, rows) -> None:
    print(f"{title}: {total:.1f}s")
    for name, dt, cmds in rows:
        print(f"  {name:<15} {dt:6.1f}s  {cmds:3d} ssh round trips")


def pod_nfs_throughput(cfg, mib: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(write, read) MB/s through statefulset-0's volume and on master's export dir."""
    import json

    pod = json.loads(sh(cfg, "master", "kubectl get pod statefulset-0 -o json"))
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                 if v.get("persistentVolumeClaim"))
    pv = json.loads(sh(cfg, "master", f"kubectl get pvc {claim} -o json"))["spec"]["volumeName"]
    vol = f"/var/lib/kubelet/pods/{pod['metadata']['uid']}/volumes/kubernetes.io~nfs/{pv}"
    node = pod["spec"]["nodeName"]
    in_pod = dd_pair(cfg, f"{vol}/nfsbench.bin", mib, direct_read=False, host=node)
    disk = dd_pair(cfg, "/nfsdata/nfsbench.bin", mib, direct_read=True, host="master")
    return in_pod, disk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1, help="fresh twins to run the flow on")
    p.add_argument("--mib", type=int, default=64, help="file size of the NFS throughput figure")
    p.add_argument("--verbose", action="store_true", help="print labkit's output too")
    args = p.parse_args()
    quiet_ui(args.verbose)
    from labkit.inventory import load

    fresh, rerun, cli = [], [], []
    for i in range(args.runs):
        with fresh_twin("lbflow", "10.213.42.0/24") as cfg:
            inv = load(str(cfg.inventory_path))
            o0 = opened()
            total, rows = run_flow(inv)
            show(f"run {i + 1}: seed flow on a fresh twin", total, rows)
            print(f"  ssh connections per host, each step on its own: {per_host(o0, opened())}")
            fresh.append(total)
            o0 = opened()
            total, rows = run_flow(inv)
            show(f"run {i + 1}: re-run (no change)", total, rows)
            print(f"  ssh connections per host, each step on its own: {per_host(o0, opened())}")
            rerun.append(total)
            from labkit import flows_up

            o0, t0 = opened(), time.monotonic()
            if not flows_up.up(inv).verify.ok:
                sys.exit("bench: up's verify failed on the re-run")
            print(f"run {i + 1}: up in process (one session, setup-cluster included): {time.monotonic() - t0:.1f}s; "
                  f"ssh connections per host: {per_host(o0, opened())}", flush=True)
            t0 = time.monotonic()
            r = subprocess.run([str(Path(sys.executable).parent / "invoke"), "up", "-i", str(cfg.inventory_path)],
                               cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
            if r.returncode != 0:
                sys.exit(f"bench: `invoke up` re-run failed:\n{(r.stdout + r.stderr)[-2000:]}")
            cli.append(time.monotonic() - t0)
            print(f"run {i + 1}: `invoke up` re-run as a user runs it: {cli[-1]:.1f}s", flush=True)
            (pw, pr), (dw, dr) = pod_nfs_throughput(cfg, args.mib)
            print(f"run {i + 1}: NFS in pod statefulset-0 ({args.mib} MiB): write {pw:.0f} MB/s, read {pr:.0f} MB/s; "
                  f"export disk on master: write {dw:.0f} MB/s, read {dr:.0f} MB/s", flush=True)
    print(f"seed flow, fresh twin: median {statistics.median(fresh):.1f}s  (runs: {len(fresh)})")
    print(f"seed flow, re-run:     median {statistics.median(rerun):.1f}s  (`invoke up`: {statistics.median(cli):.1f}s)")


if __name__ == "__main__":
    main()
