"""The seed flow, declared once: its steps in order, when each applies, what each runs, how each
plans, and what its plan needs from the steps before it.

``invoke up`` and ``up --plan`` (``flows_up``), their help and the benches take the steps from
here; each step is also its own task (``invoke deploy`` ...). A step's plan reads the lab as it is;
one that ``reads`` what an earlier step still has to make (no registry yet, no StatefulSet yet)
cannot be planned against the lab, and says instead what it would do once that step is applied
(``later``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from labkit import ui


def _module(name: str):
    # looked up when the step runs: tests replace the flows on their modules
    return importlib.import_module(f"labkit.{name}")


def _flow(module: str, function: str, *, waits: bool = False) -> Callable[..., Any]:
    """Call labkit.<module>.<function>; ``waits``: it takes the rollout timeout."""
    def call(inv, timeout: int):
        fn = getattr(_module(module), function)
        return fn(inv, timeout=timeout) if waits else fn(inv)
    return call


@dataclass(frozen=True)
class Planned:
    status: str                        # would change | no change | skipped
    missing: frozenset[str] = frozenset()  # what this step makes that is not there until it is applied


def _status(changes: bool) -> str:
    return "would change" if changes else "no change"


def _planned(report, missing: str | None = None, *, when: bool = False) -> Planned:
    return Planned(_status(bool(report is not None and report.changed_hosts)),
                   frozenset({missing}) if missing and when else frozenset())


# What a later step may read before an earlier step made it: why it is not there yet.
NOT_YET: dict[str, Callable[[Any], str]] = {
    "cluster": lambda inv: "the cluster does not exist yet",
    "registry": lambda inv: f"the registry {inv.registry_address} is not running yet",
    "statefulset": lambda inv: (f"StatefulSet {inv.kubernetes.namespace}/{inv.kubernetes.statefulset.name} "
                                "does not exist yet"),
    "rollout": lambda inv: "the rolled-out replicas and their PVs do not exist yet",
}


# ------------------------------------------------------------------ each step's plan


def _plan_cluster(inv) -> Planned:
    fc = _module("flows_cluster")
    changes = fc.changed(fc.setup_cluster(inv, plan=True))
    return Planned(_status(changes), frozenset({"cluster"}) if changes else frozenset())


def _plan_registry(inv) -> Planned:
    report = _module("flows").setup_registry(inv, plan=True).report
    starts = any(p.operation == "registry container" and not p.no_change
                 for p in report.hosts[inv.registry_host.name].plans)
    return _planned(report, "registry", when=starts)


def _plan_of(module: str, function: str) -> Callable[[Any], Planned]:
    return lambda inv: _planned(getattr(_module(module), function)(inv, plan=True).report)


def _plan_deploy(inv) -> Planned:
    from labkit import expected

    dep = _module("flows_kube").deploy(inv, plan=True)
    creates = dep.details.get("sts") is None
    if creates:  # its content step plans from PV directories that only exist once the set runs
        s = inv.kubernetes.statefulset
        ui.line(inv.nfs_server.name, "content", "would change (after deploy)",
                f"plan depends on deploy being applied (the PV directories do not exist yet); then writes "
                f"{expected.content_for(s.image_tag).strip()!r} into the directory of each of the "
                f"{s.replicas} replicas")
    return _planned(dep.report, "statefulset", when=creates)


def _plan_scale(inv) -> Planned:
    report = _module("flows_kube").scale(inv, plan=True).report
    return _planned(report, "rollout", when=bool(report.changed_hosts))


def _plan_write_v2(inv) -> Planned:
    res = _module("flows_content").write_v2(inv, plan=True)
    return Planned(_status(bool(res.details["content"]["would write"])))


def _plan_verify(inv) -> Planned:
    ui.line(inv.control_plane.name, "verify", "skipped",
            "a read-only check of the applied flow: run `invoke verify` after `invoke up`")
    return Planned("skipped")


# ------------------------------------------------------------------ what a step would do later


def _later_mirror(inv) -> tuple[str, bool]:
    wanted = _module("flows_images").wanted_images(inv)
    return "tags and pushes the images the registry lacks: " + ", ".join(w.mirror for w in wanted), True


def _later_build(inv) -> tuple[str, bool]:
    web = inv.images.web
    return f"builds and pushes the tags of {web.repository} the registry lacks ({', '.join(web.tags)})", True


def _later_deploy(inv) -> tuple[str, bool]:
    return "applies the manifests and waits for the rollouts", True


def _later_scale(inv) -> tuple[str, bool]:
    """scale's patch against the StatefulSet as deploy would create it (rendered)."""
    from labkit import manifests
    from labkit.facts import kube as kf
    from labkit.operations import kube as kube_ops

    r = inv.kubernetes.rollout
    rendered = next(o for o in manifests.render(inv) if o["kind"] == "StatefulSet")
    patch = list(kube_ops.scale_and_rollout(kf.parse_statefulset(rendered), r.replicas, inv.image_ref(r.image_tag),
                                            r.partition, namespace=inv.kubernetes.namespace))
    return "it would patch " + (patch[0].description if patch else "nothing"), bool(patch)


def _later_write_v2(inv) -> tuple[str, bool]:
    from labkit import expected

    r = inv.kubernetes.rollout
    if r.partition >= r.replicas:
        return "no ordinal is at or above the partition", False
    return (f"writes {expected.content_for(r.image_tag).strip()!r} for ordinals {r.partition}-{r.replicas - 1}",
            True)


# ------------------------------------------------------------------ the seed flow


def _control_plane(inv) -> str:
    return inv.control_plane.name


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    run: Callable[[Any, int], Any]          # (inventory, rollout timeout) -> the flow's result
    plan: Callable[[Any], Planned]          # prints its plan, changes nothing
    applies: Callable[[Any], bool] = lambda inv: True
    reads: tuple[str, ...] = ()             # what earlier steps make (NOT_YET's keys)
    later: Callable[[Any], tuple[str, bool]] | None = None  # (what it would do, whether that changes anything)
    makes: tuple[str, ...] = ()             # missing while it cannot be planned, so its readers wait too
    host: Callable[[Any], str] = _control_plane


SEED = (
    Step("setup-cluster", "kubeadm cluster from bare hosts (when kubernetes.cluster.create)",
         _flow("flows_cluster", "setup_cluster"), _plan_cluster, lambda inv: inv.kubernetes.cluster.create,
         makes=("cluster",)),
    Step("setup-registry", "the registry on its host, every runtime trusting it", _flow("flows", "setup_registry"),
         _plan_registry, makes=("registry",)),
    Step("setup-nfs", "the NFS export and the clients", _flow("flows", "setup_nfs"), _plan_of("flows", "setup_nfs")),
    Step("mirror-images", "outside images into the lab registry (when images.mirror)",
         _flow("flows_images", "mirror_images"), _plan_of("flows_images", "mirror_images"),
         lambda inv: inv.images.mirror, reads=("registry",), later=_later_mirror,
         host=lambda inv: inv.registry_host.name),
    Step("build-images", "the web image tags built and pushed", _flow("flows", "build_images"),
         _plan_of("flows", "build_images"), reads=("registry",), later=_later_build,
         host=lambda inv: inv.registry_host.name),
    Step("deploy", "RBAC, provisioner, StorageClass, Service, StatefulSet; content",
         _flow("flows_kube", "deploy", waits=True), _plan_deploy, reads=("cluster",), later=_later_deploy,
         makes=("statefulset",)),
    Step("scale", "replicas, new tag and partition in one change", _flow("flows_kube", "scale", waits=True),
         _plan_scale, reads=("cluster", "statefulset"), later=_later_scale, makes=("rollout",)),
    Step("write-v2", "the new version's content above the partition", _flow("flows_content", "write_v2"),
         _plan_write_v2, reads=("cluster", "statefulset", "rollout"), later=_later_write_v2,
         host=lambda inv: inv.nfs_server.name),
    Step("verify", "curl every pod, compare with what it should serve", _flow("flows_verify", "verify"),
         _plan_verify),
)


def steps(inv) -> list[Step]:
    """The seed's steps this inventory asks for, in order."""
    return [s for s in SEED if s.applies(inv)]


def summary() -> str:
    return ", ".join(s.name for s in SEED)
