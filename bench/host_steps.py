"""setup-registry + setup-nfs + build-images on a fresh twin, then again on the configured twin.

    sudo .venv/bin/python bench/host_steps.py
Prints wall time and SSH round trips (commands + uploads) per host for each task, fresh and
re-run; the re-run is the cost of idempotency. Uses its own twin (LABTWIN_NAME=ltbhost).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _twin import fresh_twin, quiet_ui  # noqa: E402
from labkit import flows  # noqa: E402
from labkit.inventory import load  # noqa: E402

TASKS = (("setup-registry", flows.setup_registry), ("setup-nfs", flows.setup_nfs),
         ("build-images", flows.build_images))


def run_all(inv) -> list[tuple[str, float, dict[str, int]]]:
    rows = []
    for name, fn in TASKS:
        t0 = time.monotonic()
        result = fn(inv)
        rows.append((name, time.monotonic() - t0, result.commands))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subnet", default="10.213.27.0/24", help="the first subnet to try")
    p.add_argument("--verbose", action="store_true", help="print labkit's output too")
    args = p.parse_args()
    quiet_ui(args.verbose)
    with fresh_twin("ltbhost", args.subnet, kubeadm=False) as cfg:
        inv = load(cfg.inventory_path)
        fresh = run_all(inv)
        rerun = run_all(inv)
    print(f"{'task':15} {'run':7} {'wall':>7}  ssh round trips per host")
    for label, rows in (("fresh", fresh), ("re-run", rerun)):
        for name, secs, commands in rows:
            per_host = "  ".join(f"{h}={n}" for h, n in sorted(commands.items()))
            print(f"{name:15} {label:7} {secs:6.2f}s  {per_host}")
    print(f"total fresh {sum(r[1] for r in fresh):.2f}s  re-run {sum(r[1] for r in rerun):.2f}s")


if __name__ == "__main__":
    main()
