"""Shared by the fact tests: parsed facts as plain data, to compare with the recorded expectations."""
from __future__ import annotations

import dataclasses


def plain(value):
    """Dataclasses, tuples and lists of them -> dicts and lists (what the JSON cases hold)."""
    if dataclasses.is_dataclass(value):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def revisions_of(pods: dict) -> dict:
    """ControllerRevisions for the revisions the recorded pods carry, in the shape a real
    `kubectl get controllerrevisions -o json` has (tests/data/facts/kube/revisions-*.json): those
    recordings predate ControllerRevisions in labkit's facts."""
    items = {}
    for pod in pods["items"]:
        name = pod["metadata"]["labels"]["controller-revision-hash"]
        items[name] = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                       "metadata": {"name": name, "namespace": "default", "labels": {"app": "statefulset"},
                                    "ownerReferences": [{"kind": "StatefulSet", "name": "statefulset"}]},
                       "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": [
                           {"name": "web", "image": pod["spec"]["containers"][0]["image"]}]}}}}}
    return {"apiVersion": "v1", "kind": "List", "items": list(items.values())}
