"""Wall time of `twin up` and `twin down` (labtwin hosts), cold (image build) and warm.

    sudo .venv/bin/python bench/twin_updown.py [--runs 3] [--cold]
    sudo .venv/bin/python bench/twin_updown.py --kubeadm [--workers 2]   # up = every node Ready
With --kubeadm, up includes importing the images into containerd, kubeadm init and join, and
the pod network, and ends when every Node is Ready (the build cache must be warm: see
bench/k8s_build.py).
Uses its own instance (LABTWIN_NAME=ltbench, 10.213.26.0/24) so a running twin is untouched.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labtwin.hosts import lab  # noqa: E402
from labtwin.hosts.config import TwinConfig  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="first clear the image cache (measures the build)")
    p.add_argument("--subnet", default="10.213.26.0/24")
    p.add_argument("--kubeadm", action="store_true", help="a real cluster, up until all nodes are Ready")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    cfg = TwinConfig.from_env(name="ltbench", subnet=args.subnet, state="/var/lib/labtwin/ltbench",
                              kubeadm=args.kubeadm, workers=args.workers)
    lab.down(cfg)
    if args.cold and cfg.cache_dir.exists():
        shutil.rmtree(cfg.cache_dir)
    ups, downs = [], []
    try:
        for i in range(args.runs):
            t0 = time.monotonic()
            r = lab.up(cfg)
            ups.append(time.monotonic() - t0)
            assert lab.is_up(cfg), "twin not healthy after up"
            t0 = time.monotonic()
            lab.down(cfg)
            downs.append(time.monotonic() - t0)
            print(f"run {i + 1}: up {ups[-1]:.2f}s{' (images built)' if r.images_built else ''}"
                  f"  down {downs[-1]:.2f}s", flush=True)
    finally:
        lab.down(cfg)
    warm = ups[1:] if args.cold and len(ups) > 1 else ups
    what = f"kubeadm cluster, {args.workers} workers, to Ready" if args.kubeadm else "bare hosts"
    print(f"({what})")
    print(f"twin up   median {statistics.median(warm):.2f}s  max {max(warm):.2f}s"
          + (f"  (cold, with image build: {ups[0]:.2f}s)" if args.cold else ""))
    print(f"twin down median {statistics.median(downs):.2f}s  max {max(downs):.2f}s")


if __name__ == "__main__":
    main()
