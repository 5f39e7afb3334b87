"""Build the twin's upstream Kubernetes, container runtime and CNI plugins from their Go modules.

Go modules in this directory pin every version in go.mod/go.sum:
  labtwin/k8s           k8s.io/kubernetes (staging modules replaced at the same release) and
                        etcd: one multicall binary `k8s` (kube-apiserver, kube-controller-manager,
                        kube-scheduler, kubelet, kube-proxy, kubeadm, kubectl, etcd by argv[0]),
                        and `pause`, the pod sandbox's process
  labtwin/k8s/runtime   containerd 2.x: containerd, ctr, containerd-shim-runc-v2
  labtwin/k8s/runc      runc
  labtwin/k8s/cni       the CNI plugins bridge, host-local, loopback, portmap
  labtwin/k8s/provisioner  nfs-subdir-external-provisioner: upstream's v4.0.2 contract written on
                        sig-storage-lib-external-provisioner/v13 (the Go module proxy refuses the
                        upstream module), a main package of its own
Each program the others build as a dependency gets a module of its own (a `tool` directive), so
that one's requirements never move another's (runc 1.3 does not build against the runtime-spec
that containerd 2.2 needs).

Outputs go to <cache>/<key>/bin, where the key hashes the pins, the sources, the Go version and
this recipe: the first build is long (see bench/k8s_build.py), later ones find the cache and do
nothing. Run `python -m labtwin.k8s.build` to build ahead of time.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNTIME, RUNC, CNI = HERE / "runtime", HERE / "runc", HERE / "cni"
PROVISIONER = HERE / "provisioner"
MODULES = (HERE, RUNTIME, RUNC, CNI, PROVISIONER)
CACHE_ROOT = Path(os.environ.get("LABTWIN_BUILD_CACHE", "/var/cache/labtwin/build"))
RECIPE = "1"  # bump when a change here changes the outputs
MIN_GO = (1, 26)
PROVISIONER_VERSION = "v4.0.2-labtwin"  # the upstream contract it keeps; it reports this
PROVISIONER_LIB = "sigs.k8s.io/sig-storage-lib-external-provisioner/v13"
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                "kube-proxy", "kubeadm", "kubectl", "etcd")


class BuildError(Exception):
    """A clean, user-facing failure: says what failed and what to do."""


@dataclass(frozen=True)
class Component:
    name: str          # shown in progress lines
    module: Path       # the Go module it is built in
    package: str       # package path (relative "./x" or an import path of a `tool`)
    output: str        # file name under bin/
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = field(default=())


def module_versions(gomod: Path) -> dict[str, str]:
    """module path -> version of every require line."""
    out = {}
    for m in re.finditer(r"^\s*(?:require\s+)?([\w./-]+\.[\w./-]+)\s+(v\S+)", gomod.read_text(), re.M):
        out[m.group(1)] = m.group(2)
    return out


def versions() -> dict[str, str]:
    k8s = module_versions(HERE / "go.mod")
    return {"kubernetes": k8s["k8s.io/kubernetes"], "etcd": k8s["go.etcd.io/etcd/server/v3"],
            "containerd": module_versions(RUNTIME / "go.mod")["github.com/containerd/containerd/v2"],
            "runc": module_versions(RUNC / "go.mod")["github.com/opencontainers/runc"],
            "cni-plugins": module_versions(CNI / "go.mod")["github.com/containernetworking/plugins"]}


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    """Without the stamp the server says v0.0.0-master+$Format:%H$, which clients reject."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return tuple(flags)


def components() -> list[Component]:
    v = versions()
    cni = "github.com/containernetworking/plugins"
    cni_ld = (f"-X {cni}/pkg/utils/buildversion.BuildVersion={v['cni-plugins']}",)
    ctd = "github.com/containerd/containerd/v2"
    ctd_ld = (f"-X {ctd}/version.Version={v['containerd'].lstrip('v')}", f"-X {ctd}/version.Revision=labtwin")
    prov = module_versions(PROVISIONER / "go.mod")
    prov_ld = (f"-X main.version={PROVISIONER_VERSION}",  # client-go's stamp: its User-Agent
               f"-X k8s.io/client-go/pkg/version.gitVersion={prov['k8s.io/client-go']}")
    return [
        Component("kubernetes", HERE, ".", "k8s", ldflags=_k8s_ldflags(v["kubernetes"])),
        Component("pause", HERE, "./pause", "pause"),
        Component("containerd", RUNTIME, f"{ctd}/cmd/containerd", "containerd", ldflags=ctd_ld),
        Component("containerd-shim-runc-v2", RUNTIME, f"{ctd}/cmd/containerd-shim-runc-v2",
                  "containerd-shim-runc-v2", ldflags=ctd_ld),
        Component("ctr", RUNTIME, f"{ctd}/cmd/ctr", "ctr", ldflags=ctd_ld),
        # runc needs cgo (its nsenter is C) and libseccomp: kubeadm's static pods ask for the
        # RuntimeDefault seccomp profile.
        Component("runc", RUNC, "github.com/opencontainers/runc", "runc", cgo=True,
                  tags=("seccomp",), ldflags=(f"-X main.version={v['runc'].lstrip('v')}",)),
        *(Component(f"cni {p.rsplit('/', 1)[1]}", CNI, f"{cni}/plugins/{p}",
                    f"cni/{p.rsplit('/', 1)[1]}", ldflags=cni_ld)
          for p in ("main/bridge", "ipam/host-local", "main/loopback", "meta/portmap")),
        Component("nfs-subdir-external-provisioner", PROVISIONER, ".", "nfs-subdir-external-provisioner",
                  ldflags=prov_ld),
    ]


def go_version() -> tuple[int, int, str]:
    go = shutil.which("go")
    if go is None:
        raise BuildError(f"Go is not installed: building Kubernetes {versions()['kubernetes']} needs "
                         f"Go {MIN_GO[0]}.{MIN_GO[1]} or newer on PATH (https://go.dev/dl/)")
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    m = re.match(r"go(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_GO:
        raise BuildError(f"{go} is {out or 'of unknown version'}: building Kubernetes "
                         f"{versions()['kubernetes']} needs Go {MIN_GO[0]}.{MIN_GO[1]} or newer "
                         "(https://go.dev/dl/)")
    return int(m.group(1)), int(m.group(2)), out


def cache_key(go: str) -> str:
    h = hashlib.sha256(f"{RECIPE}\n{go}\n".encode())
    # What is built and how (packages, flags, tags, outputs), not this file's text: a comment
    # edited here must not cost a rebuild.
    h.update(repr([(c.name, c.module.name, c.package, c.output, c.cgo, c.tags, c.ldflags)
                   for c in components()]).encode())
    files = [*(m / f for m in MODULES for f in ("go.mod", "go.sum")),
             *HERE.glob("*.go"), *HERE.glob("pause/*.go"),
             *(f for f in PROVISIONER.glob("*.go") if not f.name.endswith("_test.go"))]
    for f in files:
        h.update(str(f.relative_to(HERE)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def out_dir(go: str | None = None) -> Path:
    return CACHE_ROOT / cache_key(go or go_version()[2])


def bin_dir() -> Path:
    """The built binaries, or a BuildError saying how to build them."""
    d = out_dir() / "bin"
    if not (out_dir() / "build.json").exists():
        raise BuildError(f"Kubernetes is not built for these pins yet ({d}): "
                         "run `python -m labtwin.k8s.build` (first build takes long)")
    return d


@contextlib.contextmanager
def _lock():
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _env(cgo: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="1" if cgo else "0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false -mod=readonly")
    return env


def _count_packages(c: Component) -> int:
    p = subprocess.run(["go", "list", "-deps", *(["-tags", ",".join(c.tags)] if c.tags else []), c.package],
                       cwd=c.module, env=_env(c.cgo), capture_output=True, text=True)
    return len(p.stdout.split()) if p.returncode == 0 else 0


def _build_one(c: Component, dest: Path, say) -> float:
    t0 = time.monotonic()
    out = dest / c.output
    out.parent.mkdir(parents=True, exist_ok=True)
    t_list = time.monotonic()
    total = _count_packages(c)  # also fetches the modules it needs (silent, minutes when cold)
    if time.monotonic() - t_list > 5:
        say(f"  {c.name}: modules fetched and {total} packages listed in {time.monotonic() - t_list:.0f}s")
    cmd = ["go", "build", "-v", "-trimpath", "-ldflags", " ".join(("-s", "-w", *c.ldflags)),
           *(["-tags", ",".join(c.tags)] if c.tags else []), "-o", str(out), c.package]
    proc = subprocess.Popen(cmd, cwd=c.module, env=_env(c.cgo), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    built, errors = [0], []

    def read() -> None:  # `go build -v` names each package it compiles: that is the progress
        for line in proc.stderr:
            if line.startswith(("#", " ", "\t")) or ":" in line:
                errors.append(line.rstrip())
            else:
                built[0] += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    next_report = t0 + 30
    while proc.poll() is None:
        time.sleep(0.5)
        if time.monotonic() >= next_report:
            next_report += 30
            pct = f" (~{min(99, 100 * built[0] // total)}% of {total} packages)" if total else ""
            say(f"  {c.name}: {built[0]} packages compiled{pct}, {time.monotonic() - t0:.0f}s")
    reader.join()
    if proc.returncode != 0:
        raise BuildError(f"building {c.name} ({c.package}) failed:\n" + "\n".join(errors[-30:]))
    return time.monotonic() - t0


def ensure_built(say=print) -> Path:
    """Build what is missing; return the bin dir. A no-op when the cache has these pins."""
    _, _, go = go_version()
    d = out_dir(go)
    if (d / "build.json").exists():
        return d / "bin"
    with _lock():
        if (d / "build.json").exists():
            return d / "bin"
        for stale in CACHE_ROOT.glob("*.part"):  # another pin set's interrupted build (we hold the lock)
            if stale.name != d.name + ".part":
                shutil.rmtree(stale, ignore_errors=True)
        tmp = d.with_name(d.name + ".part")
        tmp.mkdir(parents=True, exist_ok=True)
        v = versions()
        say(f"building Kubernetes {v['kubernetes']}, etcd {v['etcd']}, containerd {v['containerd']}, "
            f"runc {v['runc']}, CNI plugins {v['cni-plugins']}, nfs-subdir-external-provisioner on "
            f"{PROVISIONER_LIB.rsplit('/', 2)[1]} {module_versions(PROVISIONER / 'go.mod')[PROVISIONER_LIB]} "
            f"with {go} into {d} (once per pin set)")
        timings = {}
        for c in components():
            if (tmp / "bin" / c.output).exists():
                timings[c.name] = 0.0  # left by an interrupted build: outputs are written whole
                continue
            say(f"  {c.name}: building")
            timings[c.name] = round(_build_one(c, tmp / "bin.part", say), 1)
            (tmp / "bin").mkdir(exist_ok=True)
            src = tmp / "bin.part" / c.output
            (tmp / "bin" / c.output).parent.mkdir(parents=True, exist_ok=True)
            src.replace(tmp / "bin" / c.output)
            say(f"  {c.name}: done in {timings[c.name]:.0f}s")
        for name in K8S_COMMANDS:
            link = tmp / "bin" / name
            if not link.is_symlink():
                link.symlink_to("k8s")
        shutil.rmtree(tmp / "bin.part", ignore_errors=True)
        (tmp / "build.json").write_text(json.dumps({"go": go, "versions": v, "seconds": timings}, indent=1))
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
        _prune(keep=d)
        say(f"built in {sum(timings.values()):.0f}s: {d / 'bin'}")
        return d / "bin"


def _prune(keep: Path, builds: int = 2) -> None:
    """Keep the newest `builds` complete builds (this one and the one before it, say another
    checkout's pins); each is about 1.5 GB with its images."""
    done = sorted((p for p in CACHE_ROOT.iterdir() if (p / "build.json").exists() and p != keep),
                  key=lambda p: (p / "build.json").stat().st_mtime, reverse=True)
    for old in done[builds - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labtwin.k8s.build", description=__doc__.split("\n")[0])
    ap.add_argument("--print-dir", action="store_true", help="print the bin dir of these pins and exit")
    args = ap.parse_args(argv)
    try:
        if args.print_dir:
            print(out_dir() / "bin")
            return 0
        was_built = (out_dir() / "build.json").exists()
        bin_dir = ensure_built(lambda s: print(s, flush=True))
        if was_built:
            v = versions()
            print(f"Kubernetes {v['kubernetes']}, containerd {v['containerd']}, runc {v['runc']}, "
                  f"CNI plugins {v['cni-plugins']}: already built for these pins in {bin_dir}")
    except BuildError as exc:
        print(f"labtwin build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
