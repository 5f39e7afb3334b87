"""Render the Kubernetes manifests in manifests/*.yaml.j2 from inventory values.

Values are validated by the inventory already; strings still go through the
``q`` filter (JSON string = valid YAML scalar) so quoting is always right.
"""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import yaml

from . import validate
from .errors import OperationError
from .inventory import Inventory
from .operations.mirror import mirror_ref

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifests"
# Applied in this order: RBAC before the provisioner that uses it, the class before the claims.
TEMPLATES = ("provisioner-rbac.yaml.j2", "provisioner.yaml.j2", "storageclass.yaml.j2", "web.yaml.j2")
# Not among TEMPLATES: the namespace is created only when missing, never applied over an existing one
# (an admin's namespace, or `default`, must not get labkit's label), and deleted only when labkit made it.
NAMESPACE_TEMPLATE = "namespace.yaml.j2"
PROVISIONER_SA = "nfs-client-provisioner"
# labkit's mark on the namespace it creates: only a namespace carrying it goes with `teardown --purge`.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "labkit"


def _env(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=False,  # YAML, not HTML; values are validated and quoted with |q
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["q"] = lambda value: json.dumps(str(value))
    return env


def app_label(inv: Inventory) -> str:
    """The ``app`` label that ties the Service, the StatefulSet selector and its pods together."""
    return inv.kubernetes.statefulset.name


def provisioner_image(inv: Inventory) -> str:
    """The provisioner's image: the lab registry's copy when ``images.mirror`` (an offline lab:
    `invoke mirror-images` puts it there), else ``kubernetes.provisioner.image`` as written."""
    image = inv.kubernetes.provisioner.image
    return mirror_ref(image, inv.registry_address) if inv.images.mirror else image


def values(inv: Inventory, replicas: int | None = None, image_tag: str | None = None,
           partition: int | None = None) -> dict:
    k = inv.kubernetes
    sts = k.statefulset
    replicas = sts.replicas if replicas is None else replicas
    image_tag = sts.image_tag if image_tag is None else image_tag
    partition = 0 if partition is None else partition
    try:
        replicas, partition = validate.replicas(replicas), validate.partition(partition)
        validate.image_tag_of(image_tag, inv.images.web.tags)
    except ValueError as exc:
        raise OperationError(f"{exc} in {inv.path or 'the inventory'}") from None
    return {
        "namespace": k.namespace,
        "sa": PROVISIONER_SA,
        "provisioner": k.provisioner,
        "provisioner_image": provisioner_image(inv),
        "nfs_server": inv.nfs_server.address,
        "nfs_path": inv.nfs.export,
        "storage_class": k.storage_class,
        "service": k.service,
        "sts": sts,
        "app": app_label(inv),
        "replicas": replicas,
        "partition": partition,
        "image": inv.image_ref(image_tag),
    }


def render_text(inv: Inventory, replicas=None, image_tag=None, partition=None,
                directory: Path = MANIFEST_DIR) -> str:
    env = _env(directory)
    ctx = values(inv, replicas, image_tag, partition)
    return "---\n".join(env.get_template(name).render(**ctx) for name in TEMPLATES)


def render(inv: Inventory, replicas=None, image_tag=None, partition=None,
           directory: Path = MANIFEST_DIR) -> list[dict]:
    """The Kubernetes objects, in apply order."""
    text = render_text(inv, replicas, image_tag, partition, directory)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_yaml(inv: Inventory, replicas=None, image_tag=None, partition=None,
                directory: Path = MANIFEST_DIR) -> str:
    """One multi-document YAML text of all objects (what gets uploaded and applied)."""
    return yaml.safe_dump_all(render(inv, replicas, image_tag, partition, directory), sort_keys=False)


def render_namespace(inv: Inventory, directory: Path = MANIFEST_DIR) -> dict:
    """The Namespace object of ``kubernetes.namespace`` with labkit's label (what deploy creates
    when the namespace is missing)."""
    text = _env(directory).get_template(NAMESPACE_TEMPLATE).render(
        namespace=inv.kubernetes.namespace, managed_by_label=MANAGED_BY_LABEL, manager=MANAGER)
    return yaml.safe_load(text)


def made_by_labkit(labels: dict | None) -> bool:
    """A namespace's labels say labkit created it."""
    return (labels or {}).get(MANAGED_BY_LABEL) == MANAGER
