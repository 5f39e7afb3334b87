"""<state>/inventory.yaml in labkit's schema (mirrors the repo's hosts.yaml; labkit not imported)."""
from __future__ import annotations

import copy

import yaml

from .config import NFS_EXPORT, REPO_ROOT, TwinConfig

# Used when the repo's hosts.yaml is not there (e.g. an installed package).
FALLBACK = {
    "registry": {"image": "registry:2", "container": "registry", "port": 5000,
                 "data_dir": "/data/registry"},
    "nfs": {"server": "ganesha", "export": NFS_EXPORT, "clients": "*",
            "options": ["rw", "sync", "no_root_squash"]},
}


def render(cfg: TwinConfig) -> dict:
    seed_path = REPO_ROOT / "hosts.yaml"
    base = yaml.safe_load(seed_path.read_text()) if seed_path.exists() else copy.deepcopy(FALLBACK)
    base["ssh"] = {
        "user": "root", "port": 22, "key": str(cfg.ssh_key), "sudo": False,
        # Empty at first: labkit pins host keys on first use, as on a real lab.
        "known_hosts": str(cfg.known_hosts), "connect_timeout": 5,
    }
    # A kubeadm node's kubelet runs on containerd, so labkit makes containerd trust the registry
    # there. master keeps docker: the registry and the image builds run in its docker (a host
    # has one runtime in labkit's inventory for now).
    base["hosts"] = [{"name": h.name, "address": str(h.address), "roles": list(h.roles),
                      "runtime": "containerd" if cfg.kubeadm and h is not cfg.master else "docker"}
                     for h in cfg.hosts]
    if cfg.kubeadm:
        base.setdefault("kubernetes", {})["cluster"] = twin_cluster(cfg)
        # An offline lab: the provisioner's image is only in master's docker (lab._start loads it
        # there), so labkit mirrors it into the lab registry and the workers pull it from there.
        base.setdefault("images", {})["mirror"] = True
    nfs = base.setdefault("nfs", {})
    nfs["server"] = "ganesha"  # no kernel nfsd on this machine
    nfs["export"] = NFS_EXPORT  # where the twin bind-mounts the NFS disk on master
    return base


def twin_cluster(cfg: TwinConfig) -> dict:
    """labkit's kubernetes.cluster for these hosts: `create`, so `invoke up` starts with
    setup-cluster. What differs from a real machine, as kind sets it for its nodes:
    kubeadm's system verification rejects this cgroup v1 host (its other preflight checks run: a
    stopped containerd fails the join there, as on a real node), CoreDNS's image is not built,
    cgroup v1 must be allowed (1.35+ refuses it), the disk is shared with the machine (no
    disk-pressure eviction), and nf_conntrack_max is read-only inside a network namespace."""
    from labtwin.k8s.build import versions

    return {"create": True, "version": versions()["kubernetes"],
            "skip_phases": ["addon/coredns"],
            # kubeadm's system check refuses cgroup v1 unless skipped, even with failCgroupV1: false
            "ignore_preflight_errors": ["SystemVerification"],
            "kubelet": {"fail_swap_on": False, "fail_cgroup_v1": False, "disk_eviction": False},
            "kube_proxy": {"set_conntrack_max": False}}


def write(cfg: TwinConfig) -> None:
    text = (f"# labtwin {cfg.name!r} inventory, written by `python -m labtwin up`; "
            "use with labkit's -i option.\n" + yaml.safe_dump(render(cfg), sort_keys=False))
    cfg.inventory_path.write_text(text)
