"""Kubernetes planners: facts in, kubectl commands out (nothing when already right).

All commands run on the control-plane host as the SSH user (``sudo=False``: kubectl uses the
user's kubeconfig). Names are validated by the inventory and quoted here anyway.
"""
from __future__ import annotations

import json
import shlex
from typing import Iterator

import yaml

from labkit.errors import OperationError
from labkit.facts.kube import PV, PVC, StatefulSetState, resource_ref
from labkit.operations.base import Command, PutFile

# Where the rendered manifests are uploaded on the control plane before `kubectl apply -f`.
REMOTE_MANIFEST = "/var/lib/labkit/manifests.yaml"


def _q(value) -> str:
    return shlex.quote(str(value))


def subset_differences(desired, live, path: str = "") -> list[str]:
    """Paths where ``live`` does not carry what ``desired`` sets.

    Only fields present in ``desired`` are compared (the server adds defaults, status,
    metadata); lists must have the same length and match element by element.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out = []
        for key, value in desired.items():
            sub = f"{path}.{key}" if path else key
            if key not in live:
                out.append(sub)
            else:
                out.extend(subset_differences(value, live[key], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return [path]
        out = []
        for i, (d, l) in enumerate(zip(desired, live)):
            out.extend(subset_differences(d, l, f"{path}[{i}]"))
        return out
    return [] if desired == live else [path]


def object_id(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def drift(objects: list[dict], current: dict) -> list[tuple[dict, list[str]]]:
    """(object, differing paths) for each object missing (paths == ['missing']) or different."""
    out = []
    for obj in objects:
        live = current.get(object_id(obj))
        if live is None:
            out.append((obj, ["missing"]))
            continue
        diffs = subset_differences({k: v for k, v in obj.items() if k != "status"}, live)
        if diffs:
            out.append((obj, diffs))
    return out


def apply_manifests(objects: list[dict], current: dict, remote_path: str = REMOTE_MANIFEST) -> Iterator:
    """Upload the objects that are missing or differ and ``kubectl apply`` them; nothing if all match.

    ``current``: the ``facts.kube.Objects`` result {(kind, namespace, name): live object}.
    """
    changed = drift(objects, current)
    if not changed:
        return
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" + (" (new)" if d == ["missing"] else f" ({', '.join(d[:3])})")
                      for o, d in changed)
    for obj, diffs in changed:
        if obj["kind"] == "StorageClass" and diffs != ["missing"]:
            # provisioner, parameters and reclaimPolicy are immutable: apply would be refused.
            # Recreating the class leaves existing PVs and their data alone.
            yield Command(f"kubectl delete {_q(resource_ref(obj))} --ignore-not-found", sudo=False,
                          description=f"recreate StorageClass/{obj['metadata']['name']} ({', '.join(diffs)} are immutable)")
    yield PutFile(path=remote_path, content=yaml.safe_dump_all([o for o, _ in changed], sort_keys=False),
                  mode=0o644, description=f"upload manifests: {names}")
    yield Command(f"kubectl apply -f {_q(remote_path)}", sudo=False, description=f"kubectl apply: {names}")


def scale_and_rollout(sts: StatefulSetState | None, replicas: int, image: str, partition: int,
                      namespace: str = "default", container: str = "web") -> Iterator[Command]:
    """One ``kubectl patch`` that sets replicas, the container image and the rollout partition together.

    A strategic merge patch (kubectl's default type), not ``--type=merge``: a JSON merge patch
    replaces the whole containers list, dropping ports, probe and volumeMounts; the strategic one
    merges containers by name. Nothing when the set already has all three values.
    """
    if sts is None:
        raise OperationError("the StatefulSet does not exist yet: run deploy first")
    for name, value in (("replicas", replicas), ("partition", partition)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise OperationError(f"{name} must be a non-negative integer, got {value!r}")
    spec: dict = {}
    if sts.replicas != replicas:
        spec["replicas"] = replicas
    if sts.partition != partition:
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
    if sts.image != image:
        spec["template"] = {"spec": {"containers": [{"name": container, "image": image}]}}
    if not spec:
        return
    patch = json.dumps({"spec": spec}, separators=(",", ":"), sort_keys=True)
    what = ", ".join(
        [f"replicas {sts.replicas} -> {replicas}"] * ("replicas" in spec)
        + [f"image {sts.image} -> {image}"] * ("template" in spec)
        + [f"partition {sts.partition} -> {partition}"] * ("updateStrategy" in spec))
    yield Command(
        f"kubectl patch statefulset {_q(sts.name)} -n {_q(namespace)} --type=strategic -p {_q(patch)}",
        sudo=False, description=f"statefulset/{sts.name}: {what}")


def _timeout(seconds: int) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise OperationError(f"timeout must be a positive number of seconds, got {seconds!r}")
    return f"{seconds}s"


def rollout_status(kind: str, name: str, namespace: str, timeout: int = 600) -> Command:
    """Wait for a Deployment/StatefulSet rollout (with a partition: the partitioned part)."""
    if kind not in ("statefulset", "deployment"):
        raise OperationError(f"rollout status needs statefulset or deployment, got {kind!r}")
    return Command(
        f"kubectl rollout status {_q(kind + '/' + name)} -n {_q(namespace)} --timeout={_timeout(timeout)}",
        sudo=False, description=f"wait for {kind}/{name} to roll out")


def teardown(objects: list[dict], current: dict, pvcs: list[PVC], pvs: list[PV], purge: bool = False,
             namespace: str = "default") -> Iterator[Command]:
    """Delete the workload (StatefulSet, Service) that exists; keep PVCs, PVs and NFS data.

    With ``purge``: also the set's PVCs, the PVs bound to them, the StorageClass, the provisioner
    and its RBAC (the NFS directories are the content step's business).
    """
    keep_kinds = set() if purge else {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                      "RoleBinding", "Deployment", "StorageClass"}
    # Delete in reverse apply order: workload first, the provisioner last (it may still be needed).
    doomed = [o for o in reversed(objects) if o["kind"] not in keep_kinds and object_id(o) in current]
    namespaced = [o for o in doomed if o["metadata"].get("namespace")]
    cluster = [o for o in doomed if not o["metadata"].get("namespace")]
    if namespaced:
        yield Command("kubectl delete " + " ".join(_q(resource_ref(o)) for o in namespaced)
                      + f" -n {_q(namespace)} --ignore-not-found --wait=true", sudo=False,
                      description="delete " + ", ".join(resource_ref(o) for o in namespaced))
    if not purge:
        return
    if pvcs:
        yield Command("kubectl delete " + " ".join(_q(f"pvc/{c.name}") for c in pvcs)
                      + f" -n {_q(namespace)} --ignore-not-found --wait=true", sudo=False,
                      description=f"delete {len(pvcs)} PVC(s)")
    claimed = {c.name for c in pvcs}
    mine = [v for v in pvs if v.claim_namespace == namespace and v.claim_name in claimed]
    if mine:
        # reclaimPolicy Retain keeps a PV after its claim is gone: delete it explicitly.
        yield Command("kubectl delete " + " ".join(_q(f"pv/{v.name}") for v in mine)
                      + " --ignore-not-found --wait=true", sudo=False,
                      description=f"delete {len(mine)} PV(s)")
    if cluster:
        yield Command("kubectl delete " + " ".join(_q(resource_ref(o)) for o in cluster)
                      + " --ignore-not-found", sudo=False,
                      description="delete " + ", ".join(resource_ref(o) for o in cluster))
