"""Lifecycle: up / down / status of a whole twin. Everything started is tracked by PID."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import cluster, images, inventory, kubeadm_node, network, rootfs
from . import host as hostmod
from .config import SYSCTL_RECORD, HostSpec, TwinConfig, TwinError

READY_TIMEOUT = 30.0


@dataclass
class UpResult:
    seconds: float
    already_up: bool
    images_built: bool


def require_root() -> None:
    if os.geteuid() != 0:
        raise TwinError("labtwin needs root (namespaces, mounts, cgroups): run it with sudo")
    for tool in ("ip", "nsenter", "unshare", "pivot_root", "ssh-keygen", "mount"):
        if shutil.which(tool) is None:
            raise TwinError(f"`{tool}` not found: install util-linux, iproute2 and openssh-client")


# --- pid tracking ---------------------------------------------------------------------------
def read_pids(cfg: TwinConfig) -> dict:
    try:
        return json.loads(cfg.pids_file.read_text())
    except (OSError, ValueError):
        return {}


def record_pid(cfg: TwinConfig, hostname: str, role: str, pid: int) -> None:
    data = read_pids(cfg)
    data.setdefault(hostname, {})[role] = {"pid": pid, "start": hostmod.proc_start_time(pid)}
    tmp = cfg.pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(cfg.pids_file)


def init_pid(cfg: TwinConfig, h: HostSpec) -> int | None:
    """The host's PID 1 if it is still the process the twin started."""
    entry = read_pids(cfg).get(h.name, {}).get("init")
    if entry and hostmod.proc_alive(entry["pid"], entry["start"]):
        return entry["pid"]
    return None


# --- down -----------------------------------------------------------------------------------
def _reap(pid: int) -> None:
    """Collect the exit status of an `unshare` this very process started (else a zombie lingers)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child: its parent or init reaps it
        if done:
            return
        time.sleep(0.01)


def _mounts_under(path: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt == str(path) or mnt.startswith(str(path) + "/"):
            out.append(mnt)
    return sorted(out, key=len, reverse=True)


@contextlib.contextmanager
def _locked(cfg: TwinConfig):
    """One lifecycle operation per twin at a time (the lock lives in the kept cache dir)."""
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.cache_dir / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def down(cfg: TwinConfig) -> list[str]:
    """Remove everything of the twin except the image cache. Idempotent. Returns what it did."""
    require_root()
    with _locked(cfg):
        return _down(cfg)


def _down(cfg: TwinConfig) -> list[str]:
    did = []
    # 0. Frozen processes (a `docker pause`d container) ignore even SIGKILL until thawed.
    did += hostmod.thaw_cgroups(cfg)
    # 1. The processes the twin started, by PID: PID 1 of each host first (unshare ignores
    #    SIGTERM; killing a PID namespace's init kills everything in it), then unshare.
    for hname, roles in read_pids(cfg).items():
        for role in ("init", "unshare"):
            e = roles.get(role)
            if e and hostmod.kill_pid(e["pid"], e["start"]):
                did.append(f"killed {hname} {role} {e['pid']}")
            if e:
                _reap(e["pid"])
    # 2. Anything left in the twin's own cgroups (e.g. after a crash lost pids.json).
    deadline = time.monotonic() + 5
    while (pids := hostmod.twin_cgroup_pids(cfg)) and time.monotonic() < deadline:
        for pid in pids:
            if hostmod.kill_pid(pid, None):
                did.append(f"killed {pid} (in the twin's cgroups)")
        time.sleep(0.02)
    hostmod.remove_cgroups(cfg)
    # 3. Network (netns removal takes the veth pair with it), then the bridge.
    left = network.leftovers(cfg)
    network.delete_network(cfg)
    did += [f"removed {x}" for x in left]
    # 4. Mounts of the twin in the machine's namespace (none in normal operation).
    for mnt in _mounts_under(cfg.state_dir):
        subprocess.run(["umount", "-l", mnt], check=False)
        did.append(f"unmounted {mnt}")
    # 5. The machine-wide sysctls (the kubelet's, inotify limits) back to what they were before
    #    up, unless another twin still runs on them.
    if not hostmod.other_twins_running(cfg):
        did += kubeadm_node.restore_machine_sysctls(SYSCTL_RECORD)
    # 6. Files: the whole state dir but the image cache.
    if cfg.state_dir.exists():
        for p in cfg.state_dir.iterdir():
            if p != cfg.cache_dir:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                did.append(f"removed {p}")
    return did


# --- up -------------------------------------------------------------------------------------
def _client_key(cfg: TwinConfig) -> str:
    cfg.ssh_key.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.ssh_key.parent, 0o700)
    if not cfg.ssh_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labtwin-{cfg.name}",
                        "-f", str(cfg.ssh_key)], check=True, capture_output=True)
    return cfg.ssh_key.with_suffix(".pub").read_text()


def _wait_ready(cfg: TwinConfig, h: HostSpec, pid: int, deadline: float, what: str) -> None:
    """Wait for "docker" (API ping on the host's socket) or "ssh" (an SSH banner on :22)."""
    check = {"docker": lambda: hostmod.docker_ping(pid),
             "ssh": lambda: hostmod.port_open(str(h.address), 22)}[what]
    while time.monotonic() < deadline:
        if not hostmod.proc_alive(pid):
            raise TwinError(f"{h.name}: its systemd (pid {pid}) exited during boot: "
                            f"see {cfg.host_dir(h) / 'boot.log'} and console.log")
        if check():
            return
        time.sleep(0.05)
    unit = {"docker": "dockerd", "ssh": "sshd on :22"}[what]
    raise TwinError(f"{h.name}: {unit} not ready within {READY_TIMEOUT:.0f}s: "
                    f"inspect with `python -m labtwin ssh {h.name} systemctl --failed` or "
                    f"{cfg.host_dir(h) / 'console.log'}")


def is_up(cfg: TwinConfig) -> bool:
    st = status(cfg)
    return all(v["running"] and v["ssh"] and v["docker"] for v in st["hosts"].values())


def up(cfg: TwinConfig) -> UpResult:
    require_root()
    with _locked(cfg):
        return _up(cfg)


def _up(cfg: TwinConfig) -> UpResult:
    t0 = time.monotonic()
    saved = _read_config(cfg)
    # "complete" is written last: a run killed half-way (the cluster not made) is not "up".
    if saved == _config_record(cfg) and (cfg.state_dir / "complete").exists() and is_up(cfg):
        return UpResult(time.monotonic() - t0, True, False)
    network.check_subnet(cfg)  # before touching anything (routes of this twin's bridge excluded)
    _down(cfg)  # leftovers of a crash, or a twin with other settings
    built = images.ensure_built(cfg)
    k8s = _k8s_build() if cfg.kubeadm else None
    try:
        _start(cfg, k8s)
    except BaseException:
        if os.environ.get("LABTWIN_KEEP_FAILED") != "1":  # =1: keep it to look at, then `down`
            _down(cfg)  # never leave half a twin behind
        raise
    return UpResult(time.monotonic() - t0, False, built)


@dataclass
class K8sBuild:
    bin_dir: Path
    archives: dict[str, Path]
    version: str


def _k8s_build() -> K8sBuild:
    """The upstream binaries and images, from the build cache (built there first if missing)."""
    from labtwin.k8s import build, images as k8s_images

    say = lambda s: print(s, flush=True)  # noqa: E731 - progress of a long first build
    try:
        archives = k8s_images.ensure_images(say)
        return K8sBuild(build.bin_dir(), archives, build.versions()["kubernetes"])
    except build.BuildError as exc:
        raise TwinError(str(exc)) from None


def _config_record(cfg: TwinConfig) -> dict:
    return {"name": cfg.name, "subnet": str(cfg.subnet), "kubeadm": cfg.kubeadm,
            "workers": cfg.workers}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_config(cfg: TwinConfig) -> dict | None:
    return _read_json(cfg.state_dir / "twin.json")


def _start(cfg: TwinConfig, k8s: K8sBuild | None = None) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_dir / "twin.json").write_text(json.dumps(_config_record(cfg)))
    if k8s:
        kubeadm_node.record_machine_sysctls(SYSCTL_RECORD)
        kubeadm_node.raise_inotify_limits()
    pub = _client_key(cfg)
    cfg.nfs_disk.mkdir(parents=True, exist_ok=True)
    network.create_bridge(cfg)
    host_keys = []
    started: dict[str, int] = {}
    for h in cfg.hosts:
        network.create_host_net(cfg, h)
        paths = rootfs.prepare_dirs(cfg, h)
        key = hostmod.build_seed(cfg, h, paths["seed"], pub)
        host_keys.append(f"{h.name},{h.address} {' '.join(key)}")
        if k8s:
            kubeadm_node.seed(cfg, h, paths["seed"], k8s.bin_dir)
        boot = cfg.host_dir(h) / "boot.sh"
        boot.write_text(hostmod.boot_script(cfg, h, paths))
        proc = hostmod.launch(cfg, h, boot)
        record_pid(cfg, h.name, "unshare", proc.pid)
        pid = hostmod.find_init(proc.pid)
        record_pid(cfg, h.name, "init", pid)
        started[h.name] = pid
    cfg.host_keys_file.write_text("\n".join(host_keys) + "\n")
    deadline = time.monotonic() + READY_TIMEOUT
    tarballs = images.tarballs(cfg)  # registry:2 and httpd:2.4 on every host
    if k8s:
        print(f"  {len(cfg.hosts)} hosts started; loading images", flush=True)

    def ready_and_load(h: HostSpec) -> None:
        _wait_ready(cfg, h, started[h.name], deadline, "docker")
        mine = [k8s.archives[images.PROVISIONER_TAG]] if k8s and h is cfg.master else []
        images.load(started[h.name], tarballs + mine, h.name)  # while sshd may still be starting
        _wait_ready(cfg, h, started[h.name], deadline, "ssh")

    with ThreadPoolExecutor(len(cfg.hosts)) as pool:
        for f in [pool.submit(ready_and_load, h) for h in cfg.hosts]:
            f.result()
    if k8s:  # kubeadm-ready: everything installed and the images pre-pulled; labkit makes the cluster
        t0 = time.monotonic()
        cluster.import_all(cfg, started, k8s.archives)
        print(f"  images imported into containerd ({time.monotonic() - t0:.1f}s); kubeadm-ready hosts, "
              f"Kubernetes {k8s.version}, no cluster: `invoke setup-cluster` (or `invoke up`) makes it", flush=True)
    inventory.write(cfg)
    (cfg.state_dir / "complete").touch()


# --- status ---------------------------------------------------------------------------------
def status(cfg: TwinConfig) -> dict:
    hosts = {}
    for h in cfg.hosts:
        pid = init_pid(cfg, h)
        hosts[h.name] = {
            "address": str(h.address), "pid": pid, "running": pid is not None,
            "ssh": pid is not None and hostmod.port_open(str(h.address), 22),
            "docker": pid is not None and hostmod.docker_ping(pid),
        }
    return {"name": cfg.name, "state_dir": str(cfg.state_dir), "subnet": str(cfg.subnet),
            "bridge": cfg.bridge, "inventory": str(cfg.inventory_path)
            if cfg.inventory_path.exists() else None, "hosts": hosts}


def leftovers(cfg: TwinConfig) -> list[str]:
    """Everything of the twin that exists on the machine (used by down's test)."""
    found = network.leftovers(cfg)
    found += [f"cgroup {d}" for d in hostmod.twin_cgroup_dirs(cfg)]
    found += [f"process {p}" for p in hostmod.twin_cgroup_pids(cfg)]
    found += [f"mount {m}" for m in _mounts_under(cfg.state_dir)]
    if cfg.state_dir.exists():
        found += [f"file {p}" for p in cfg.state_dir.iterdir() if p != cfg.cache_dir]
    return found
