"""verify and the content step at 10, 50 and 100 replicas: wall time and SSH commands issued.

    sudo .venv/bin/python bench/verify_scale.py [--replicas 10 50 100] [--verbose]
On its own fresh twin (`lbscale`, first free /24 from 10.213.43.0/24): the seed flow up to
write-v2, then for each replica count: `scale` there (timed, for reference), remove every
index.html on the NFS disk (from the machine's side, not through labkit), time the content step
writing all N pages, then time verify (green required). The SSH round trips of both must not
grow with N (facts in one command, one writer script, one curl command for all pods).
"""
from __future__ import annotations

import argparse
import sys
import time

from _twin import fresh_twin, quiet_ui


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--verbose", action="store_true", help="print labkit's output too")
    args = p.parse_args()
    quiet_ui(args.verbose)
    from labkit import flows_content, flows_kube, flows_verify, pipeline
    from labkit.inventory import load
    from labkit.remote import connect

    rows = []
    with fresh_twin("lbscale", "10.213.43.0/24") as cfg:
        inv = load(str(cfg.inventory_path))
        t0 = time.monotonic()
        for step in pipeline.steps(inv):  # `invoke up`'s steps but the cluster (made) and verify (below)
            if step.name not in ("setup-cluster", "verify"):
                step.run(inv, 600)
        print(f"seed flow to 10 replicas: {time.monotonic() - t0:.1f}s", flush=True)
        for n in sorted(args.replicas):
            t0 = time.monotonic()
            flows_kube.scale(inv, replicas=n, timeout=1200)
            t_scale = time.monotonic() - t0
            pages = list(cfg.nfs_disk.glob("*/index.html"))
            for page in pages:
                page.unlink()
            hosts = connect(inv)
            try:
                t0 = time.monotonic()
                _, summary = flows_content.content_step(inv, hosts, title="content")
                t_content = time.monotonic() - t0
                c_content = sum(h.commands for h in hosts.values())
            finally:
                for h in hosts.values():
                    h.close()
            if len(summary["written"]) != n:
                sys.exit(f"bench: the content step wrote {len(summary['written'])} pages, expected {n}")
            t0 = time.monotonic()
            report = flows_verify.verify(inv)
            t_verify = time.monotonic() - t0
            if not report.ok or len(report.rows) != n:
                sys.exit(f"bench: verify at {n} replicas is not green ({len(report.rows)} rows)")
            c_verify = sum(report.commands.values())
            rows.append((n, t_scale, t_content, c_content, t_verify, c_verify))
            print(f"replicas {n:4d}: scale {t_scale:6.1f}s | content step {t_content:5.2f}s "
                  f"{c_content} ssh cmds | verify {t_verify:5.2f}s {c_verify} ssh cmds", flush=True)
    print("replicas  content(s)  content ssh  verify(s)  verify ssh")
    for n, _, tc, cc, tv, cv in rows:
        print(f"{n:8d}  {tc:10.2f}  {cc:11d}  {tv:9.2f}  {cv:10d}")
    if len({r[3] for r in rows}) > 1 or len({r[5] for r in rows}) > 1:
        sys.exit("bench: SSH commands grew with the replica count")


if __name__ == "__main__":
    main()
