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

from labkit import pipeline
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


def _run(c, inventory: str | None, fn):
    """Load the inventory and call ``fn(inv)``, both inside the guard: any LabkitError is one clean line."""
    try:
        return fn(_load(c, inventory))
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

    _run(c, inventory, lambda inv: flows.setup_registry(inv, plan=plan))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def setup_nfs(c, inventory: str | None = None, plan: bool = False):
    """Export nfs.export from the NFS server (kernel nfsd or nfs-ganesha) and install NFS clients."""
    from labkit import flows

    _run(c, inventory, lambda inv: flows.setup_nfs(inv, plan=plan))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def build_images(c, inventory: str | None = None, plan: bool = False):
    """Build the web image tags on the registry host from scripts/web-image/ and push them."""
    from labkit import flows

    _run(c, inventory, lambda inv: flows.build_images(inv, plan=plan))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP,
            "from": "a `docker save` archive on this machine holding the images the registry host's docker "
                    "lacks (uploaded to the registry host and `docker load`-ed there)"})
def mirror_images(c, inventory: str | None = None, plan: bool = False, from_: str | None = None):
    """Copy the images the lab needs from outside (provisioner, registry, web base) into the lab registry."""
    from labkit import flows_images

    _run(c, inventory, lambda inv: flows_images.mirror_images(inv, plan=plan, source=from_))


@task(help={"inventory": INVENTORY_HELP})
def doctor(c, inventory: str | None = None):
    """Preflight: SSH + sudo, OS, runtime, kubectl + nodes, registry, NFS client and export, per host."""
    from labkit import flows

    _run(c, inventory, flows.doctor)


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP,
            "reset": "first undo kubeadm init/join on every host (`kubeadm reset -f`; needs --yes)",
            "yes": "confirm --reset",
            "timeout": "seconds to wait for the nodes to register and be Ready"})
def setup_cluster(c, inventory: str | None = None, plan: bool = False, reset: bool = False, yes: bool = False,
                  timeout: int = 180):
    """Make the kubeadm cluster: prepare every host, kubeadm init and join, host-gw pod network, nodes Ready."""
    from labkit import flows_cluster

    if reset and not yes:
        raise Exit("labkit: --reset removes the cluster from every host in the inventory (kubeadm reset -f): "
                   "add --yes to confirm", code=1)
    _run(c, inventory, lambda inv: flows_cluster.setup_cluster(inv, plan=plan, reset=reset, timeout=timeout))


# ---- Kubernetes tasks: bodies in labkit/flows_kube.py, flows_content.py, flows_verify.py, flows_up.py

TIMEOUT_HELP = ("seconds to wait for each rollout at most (a known cause that stays kubernetes.stuck_after "
                "seconds fails it earlier)")


def _count_option(name: str, value) -> int | None:
    """--replicas / --partition default to the inventory, so they arrive as strings (or None)."""
    from labkit import validate

    if value is None:
        return None
    try:
        return getattr(validate, name)(int(value) if str(value).strip().lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise Exit(f"labkit: --{exc}", code=1) from None


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP, "timeout": TIMEOUT_HELP})
def deploy(c, inventory: str | None = None, plan: bool = False, timeout: int = 600):
    """Apply RBAC, provisioner, StorageClass, Service and StatefulSet; wait; write each replica's content."""
    from labkit import flows_kube

    _run(c, inventory, lambda inv: flows_kube.deploy(inv, plan=plan, timeout=timeout))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP, "timeout": TIMEOUT_HELP,
            "replicas": "replicas after scaling (default: kubernetes.rollout.replicas)",
            "image-tag": "image tag to roll out (default: kubernetes.rollout.image_tag)",
            "partition": "ordinals at or above it move to the new tag (default: kubernetes.rollout.partition)"})
def scale(c, inventory: str | None = None, replicas=None, image_tag: str | None = None, partition=None,
          plan: bool = False, timeout: int = 600):
    """Seed step 7: scale and roll out the new tag with a partition in one change; report new PVC/PVs."""
    from labkit import flows_kube

    r, p = _count_option("replicas", replicas), _count_option("partition", partition)
    _run(c, inventory, lambda inv: flows_kube.scale(inv, replicas=r, image_tag=image_tag, partition=p,
                                  plan=plan, timeout=timeout))


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP})
def write_v2(c, inventory: str | None = None, plan: bool = False):
    """Seed step 8: write the new version's content for ordinals at or above the partition."""
    from labkit import flows_content

    _run(c, inventory, lambda inv: flows_content.write_v2(inv, plan=plan))


def _judge(report) -> None:
    """verify's report -> exit 1 naming what is wrong."""
    if not report.ok:
        raise Exit(f"labkit: {report.failure()}", code=1)


def _verify(c, inventory, as_json: bool) -> None:
    from labkit import flows_verify

    _judge(_run(c, inventory, lambda inv: flows_verify.verify(inv, as_json=as_json)))


@task(help={"inventory": INVENTORY_HELP, "json": "print the report as JSON"})
def verify(c, inventory: str | None = None, json: bool = False):
    """Curl every pod from the control plane; compare with the expected version; exit 1 on any mismatch."""
    _verify(c, inventory, json)


@task(help={"inventory": INVENTORY_HELP})
def status(c, inventory: str | None = None):
    """The StatefulSet, its pods with PVC/PV directories, and the nodes."""
    from labkit import flows_verify

    _run(c, inventory, flows_verify.status)


@task(help={"inventory": INVENTORY_HELP, "plan": PLAN_HELP,
            "purge": "also delete the PVCs, PVs and their NFS directories (needs --yes)",
            "yes": "confirm --purge"})
def teardown(c, inventory: str | None = None, purge: bool = False, yes: bool = False, plan: bool = False):
    """Remove the workload; PVCs, PVs and NFS data stay unless --purge --yes."""
    from labkit import flows_kube

    _run(c, inventory, lambda inv: flows_kube.teardown(inv, purge=purge, yes=yes, plan=plan))


def up(c, inventory: str | None = None, plan: bool = False, timeout: int = 600):
    from labkit import flows_up

    result = _run(c, inventory, lambda inv: flows_up.up(inv, plan=plan, timeout=timeout))
    if result.verify is not None:  # None in plan mode: verify is skipped
        _judge(result.verify)


# The help names the steps from their one declaration (labkit/pipeline.py).
up.__doc__ = f"The whole seed flow in order: {pipeline.summary()} (each when the inventory asks for it)."
up = task(help={"inventory": INVENTORY_HELP, "timeout": TIMEOUT_HELP,
            "plan": "print each step's plan in order (later steps say what waits on earlier ones); change nothing"})(up)


ns = Collection(setup_cluster, setup_registry, setup_nfs, mirror_images, build_images, doctor, deploy, scale, write_v2, verify, status,
                teardown, up)
# Invoke only lets INVOKE_* env vars override keys that exist in the defaults.
ns.configure({"lab": {"inventory": DEFAULT_INVENTORY}})

# ---- twin namespace (H3: twin_tasks.py defines the `twin` collection; added when present) ----
if importlib.util.find_spec("twin_tasks") is not None:
    import twin_tasks

    ns.add_collection(twin_tasks.twin)

# ---- `invoke demo` (demo_tasks.py): twin up with Kubernetes + the whole flow + where to look ----
if importlib.util.find_spec("demo_tasks") is not None:
    import demo_tasks

    ns.add_task(demo_tasks.demo)
