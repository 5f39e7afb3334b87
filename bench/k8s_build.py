"""Build time of the twin's upstream Kubernetes, etcd, containerd, runc and CNI plugins.

    .venv/bin/python bench/k8s_build.py           # warm: the cache for these pins exists (a no-op)
    .venv/bin/python bench/k8s_build.py --cold    # cold: empty Go build cache, module cache and
                                                  # output cache (a fresh machine), in temp dirs
The cold run downloads every module from the Go module proxy and compiles everything on this
machine's cores; it leaves the developer's caches alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(env: dict[str, str]) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "labtwin.k8s.build"], cwd=ROOT, env=env, check=True)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cold", action="store_true", help="from empty caches (takes long)")
    args = p.parse_args()
    env = dict(os.environ)
    tmp = None
    if args.cold:
        tmp = Path(tempfile.mkdtemp(prefix="labtwin-coldbuild-"))
        env.update(GOCACHE=str(tmp / "gocache"), GOMODCACHE=str(tmp / "gomod"),
                   LABTWIN_BUILD_CACHE=str(tmp / "out"))
    try:
        first = build(env)
        again = build(env)
        out = Path(env.get("LABTWIN_BUILD_CACHE", "/var/cache/labtwin/build"))
        per = {}
        for f in out.glob("*/build.json"):
            per = json.loads(f.read_text())["seconds"]
        print(f"{'cold' if args.cold else 'warm'} build: {first:.1f}s (cores: {os.cpu_count()}); "
              f"again with the cache: {again:.1f}s")
        if args.cold:
            print("per component (s): " + ", ".join(f"{k} {v:.0f}" for k, v in per.items()))
    finally:
        if tmp:
            subprocess.run(["chmod", "-R", "u+w", str(tmp)], check=False)  # the module cache is read-only
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
