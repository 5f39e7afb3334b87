"""labkit tasks: `invoke --list`, `invoke --help TASK`.

Thin: parse options, load the inventory (validated before any host is
touched), call labkit, turn any LabkitError into a clean `Exit` (no traceback).
Inventory: `-i/--inventory`, else config `lab.inventory` (env INVOKE_LAB_INVENTORY),
else ./hosts.yaml.
"""
from __future__ import annotations

import importlib.util
import os

from invoke import Collection, Exit, task

from labkit.errors import LabkitError

DEFAULT_INVENTORY = "hosts.yaml"


def _inventory_path(c, inventory: str | None) -> str:
    if inventory:
        return inventory
    lab = c.config.get("lab") or {}
    return lab.get("inventory") or DEFAULT_INVENTORY


def _load(c, inventory: str | None):
    """Precondition check: a valid inventory and a local ssh key, before any host is touched."""
    from labkit.inventory import load

    inv = load(_inventory_path(c, inventory))
    key = inv.ssh.key
    if key:
        if not os.path.exists(os.path.expanduser(key)):
            raise Exit(f"{inv.path}: ssh.key: {key} does not exist: create it (ssh-keygen -t ed25519) "
                       "or point ssh.key at your key", code=1)
    return inv


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LabkitError as exc:
        raise Exit(f"labkit: {exc}", code=1) from None
    except KeyboardInterrupt:
        raise Exit("labkit: interrupted", code=130) from None


INVENTORY_HELP = "inventory file (default: config lab.inventory / INVOKE_LAB_INVENTORY, else ./hosts.yaml)"
PLAN_HELP = "gather facts and print what would change on each host; change nothing"


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def setup_registry(c, inventory: str | None = None, plan: bool = False):
    """Run the registry container on the registry host and make every host's runtime trust it."""
    from labkit import flows

    _run(lambda: flows.setup_registry(_load(c, inventory), plan=plan))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def setup_nfs(c, inventory: str | None = None, plan: bool = False):
    """Export nfs.export from the NFS server (kernel nfsd or nfs-ganesha) and install NFS clients."""
    from labkit import flows

    _run(lambda: flows.setup_nfs(_load(c, inventory), plan=plan))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def build_images(c, inventory: str | None = None, plan: bool = False):
    """Build the web image tags on the registry host from scripts/web-image/ and push them."""
    from labkit import flows

    _run(lambda: flows.build_images(_load(c, inventory), plan=plan))


@task(help={"inventory": INVENTORY_HELP})
def doctor(c, inventory: str | None = None):
    """Preflight: SSH + sudo, OS, runtime, kubectl + nodes, registry, NFS client and export, per host."""
    from labkit import flows

    _run(lambda: flows.doctor(_load(c, inventory)))


ns = Collection(setup_registry, setup_nfs, build_images, doctor)
# Invoke only lets INVOKE_* env vars override keys that exist in the defaults.
ns.configure({"lab": {"inventory": DEFAULT_INVENTORY}})

# ---- Kubernetes tasks (H1: labkit/flows_kube.py): deploy, scale, write-v2, verify,
# ---- status, teardown, up are added here when that module lands.

# ---- twin namespace (H3: twin_tasks.py defines the `twin` collection; added when present) ----
if importlib.util.find_spec("twin_tasks") is not None:
    import twin_tasks

    ns.add_collection(twin_tasks.twin)
