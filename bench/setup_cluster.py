"""labkit's setup-cluster on the twin's kubeadm-ready hosts: bare hosts to every node Ready, and
the re-run (which changes nothing); then the whole demo from bare hosts.

    sudo .venv/bin/python bench/setup_cluster.py [--runs 3] [--workers 2] [--no-demo]
Own twin (`lbclus`, first free /24 from 10.213.44.0/24); the demo runs on `lbdemo` (10.213.45.0/24).
The build cache must be warm (bench/k8s_build.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _twin import quiet_ui

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-demo", action="store_true", help="skip timing `invoke demo`")
    p.add_argument("--verbose", action="store_true", help="print labkit's output too")
    args = p.parse_args()
    quiet_ui(args.verbose)
    from labkit import flows_cluster
    from labkit.inventory import load
    from labtwin.hosts import lab, network
    from labtwin.hosts.config import STATE_ROOT, TwinConfig

    def config(subnet: str) -> TwinConfig:
        return TwinConfig.from_env(name="lbclus", state=str(STATE_ROOT / "lbclus"), subnet=subnet, kubeadm=True,
                                   workers=args.workers)

    fresh, rerun = [], []
    lab.down(config("10.213.44.0/24"))
    cfg = config(network.free_subnet("10.213.44.0/24"))
    try:
        for i in range(args.runs):
            lab.down(cfg)
            lab.up(cfg)
            inv = load(str(cfg.inventory_path))
            t0 = time.monotonic()
            flows_cluster.setup_cluster(inv)
            fresh.append(time.monotonic() - t0)
            t0 = time.monotonic()
            res = flows_cluster.setup_cluster(inv)
            rerun.append(time.monotonic() - t0)
            if flows_cluster.changed(res):
                sys.exit("bench: the re-run of setup-cluster changed something")
            print(f"run {i + 1}: bare hosts to {args.workers + 1} nodes Ready {fresh[-1]:.1f}s, "
                  f"re-run {rerun[-1]:.1f}s", flush=True)
    finally:
        lab.down(cfg)
    print(f"setup-cluster, bare to Ready ({args.workers} workers): median {statistics.median(fresh):.1f}s "
          f"(max {max(fresh):.1f}s); re-run median {statistics.median(rerun):.1f}s")
    if args.no_demo:
        return
    env = {**os.environ, "LABTWIN_NAME": "lbdemo", "LABTWIN_STATE": str(STATE_ROOT / "lbdemo"),
           "LABTWIN_SUBNET": network.free_subnet("10.213.45.0/24"), "COLUMNS": "200"}
    invoke = str(Path(sys.executable).parent / "invoke")
    subprocess.run([invoke, "twin.down"], cwd=REPO, env=env, capture_output=True)
    t0 = time.monotonic()
    r = subprocess.run([invoke, "demo"], cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - t0
    subprocess.run([invoke, "twin.down"], cwd=REPO, env=env, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"bench: `invoke demo` failed:\n{(r.stdout + r.stderr)[-2000:]}")
    print(f"`invoke demo` from nothing (twin up, setup-cluster, the seed flow, verify): {took:.1f}s")


if __name__ == "__main__":
    main()
