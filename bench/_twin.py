"""Shared by the benches: a fresh twin of the bench's own (never a developer's)."""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labtwin.hosts import lab, network  # noqa: E402
from labtwin.hosts.config import STATE_ROOT, TwinConfig  # noqa: E402


@contextlib.contextmanager
def fresh_twin(name: str, first_subnet: str, kubeadm: bool = True):
    """Down whatever this name left (down needs no subnet), up a fresh twin on the first free
    subnet from `first_subnet` (kubeadm-ready hosts made a cluster by labkit's setup-cluster,
    unless kubeadm=False: bare hosts), down at the end."""
    state = str(STATE_ROOT / name)
    lab.down(TwinConfig.from_env(name=name, state=state, subnet=first_subnet, kubeadm=kubeadm))
    cfg = TwinConfig.from_env(name=name, state=state, subnet=network.free_subnet(first_subnet), kubeadm=kubeadm)
    try:
        t0 = time.monotonic()
        lab.up(cfg)
        print(f"twin {name} up on {cfg.subnet} in {time.monotonic() - t0:.1f}s", flush=True)
        if kubeadm:
            from labkit import flows_cluster
            from labkit.inventory import load

            t0 = time.monotonic()
            flows_cluster.setup_cluster(load(str(cfg.inventory_path)))
            print(f"cluster made by labkit's setup-cluster in {time.monotonic() - t0:.1f}s", flush=True)
        yield cfg
    finally:
        lab.down(cfg)


def quiet_ui(verbose: bool) -> None:
    """labkit's console prints every table; a bench prints only its figures unless --verbose."""
    from labkit import ui

    ui.console.quiet = not verbose
