"""The seed flow, declared once: its steps in order, when each applies, and what each runs.

``invoke up``, its help, and the benches take the order from here; each step is also its own
task (``invoke deploy`` ...). ``up --plan`` (flows_kube.plan_up) plans the same steps in this order.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


def _flow(module: str, function: str, *, waits: bool = False) -> Callable[..., Any]:
    """Call labkit.<module>.<function> looked up when the step runs (tests replace them on the module);
    ``waits``: it takes the rollout timeout."""
    def call(inv, timeout: int):
        fn = getattr(importlib.import_module(f"labkit.{module}"), function)
        return fn(inv, timeout=timeout) if waits else fn(inv)
    return call


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    run: Callable[[Any, int], Any]            # (inventory, rollout timeout) -> the flow's result
    applies: Callable[[Any], bool] = lambda inv: True


SEED = (
    Step("setup-cluster", "kubeadm cluster from bare hosts (when kubernetes.cluster.create)",
         _flow("flows_cluster", "setup_cluster"), lambda inv: inv.kubernetes.cluster.create),
    Step("setup-registry", "the registry on its host, every runtime trusting it", _flow("flows", "setup_registry")),
    Step("setup-nfs", "the NFS export and the clients", _flow("flows", "setup_nfs")),
    Step("mirror-images", "outside images into the lab registry (when images.mirror)",
         _flow("flows_images", "mirror_images"), lambda inv: inv.images.mirror),
    Step("build-images", "the web image tags built and pushed", _flow("flows", "build_images")),
    Step("deploy", "RBAC, provisioner, StorageClass, Service, StatefulSet; content",
         _flow("flows_kube", "deploy", waits=True)),
    Step("scale", "replicas, new tag and partition in one change", _flow("flows_kube", "scale", waits=True)),
    Step("write-v2", "the new version's content above the partition", _flow("flows_kube", "write_v2")),
    Step("verify", "curl every pod, compare with what it should serve", _flow("flows_kube", "verify")),
)


def steps(inv) -> list[Step]:
    """The seed's steps this inventory asks for, in order."""
    return [s for s in SEED if s.applies(inv)]


def summary() -> str:
    return ", ".join(s.name for s in SEED)
