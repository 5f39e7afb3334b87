"""ReplicaSet controller: keep spec.replicas active pods, report status (pkg/controller/replicaset)."""
from __future__ import annotations

import logging
import secrets
import time

from .common import (ApiErrorT, controller_ref, deepcopy, is_available, is_failed, is_pod_ready,
                     is_running_and_ready, is_succeeded, is_terminating, name_of, ns_of, owned_by, selector_matches)
from .revisions import ALPHANUMS

log = logging.getLogger(__name__)


def active(pod: dict) -> bool:
    return not is_terminating(pod) and not is_failed(pod) and not is_succeeded(pod)


def new_pod(rs: dict) -> dict:
    tpl = rs["spec"].get("template") or {}
    tmd = tpl.get("metadata") or {}
    # generateName "<rs>-" + 5 safe characters, as the apiserver's SimpleNameGenerator does
    name = f"{name_of(rs)[:58]}-" + "".join(secrets.choice(ALPHANUMS) for _ in range(5))
    md = {"name": name, "namespace": ns_of(rs), "labels": dict(tmd.get("labels") or {}),
          "ownerReferences": [controller_ref(rs, "apps/v1", "ReplicaSet")], "generateName": f"{name_of(rs)}-"}
    if tmd.get("annotations"):
        md["annotations"] = dict(tmd["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": deepcopy(tpl.get("spec") or {})}


def deletion_order(pods: list[dict]) -> list[dict]:
    """getPodsToDelete ranking: unscheduled < scheduled, pending < running, not ready < ready, newer first."""
    def rank(p):
        st = p.get("status", {})
        return (bool(p.get("spec", {}).get("nodeName")), {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase"), 0),
                is_pod_ready(p), "".join(chr(255 - ord(ch)) for ch in p["metadata"].get("creationTimestamp", "")))
    return sorted(pods, key=rank)


def plan(rs: dict, pods: list[dict]) -> tuple[list[tuple[str, dict]], dict]:
    live = [p for p in pods if active(p)]
    want = int(rs["spec"].get("replicas", 1) if rs["spec"].get("replicas") is not None else 1)
    actions: list[tuple[str, dict]] = []
    if len(live) < want:
        actions += [("create", new_pod(rs)) for _ in range(want - len(live))]
    elif len(live) > want:
        actions += [("delete", p) for p in deletion_order(live)[: len(live) - want]]
    mrs = int(rs["spec"].get("minReadySeconds") or 0)
    tpl_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    status = {
        "replicas": len(live),
        "fullyLabeledReplicas": sum(1 for p in live if all((p["metadata"].get("labels") or {}).get(k) == v
                                                            for k, v in tpl_labels.items())),
        "readyReplicas": sum(1 for p in live if is_running_and_ready(p)),
        "availableReplicas": sum(1 for p in live if is_available(p, mrs)),
        "observedGeneration": rs.get("metadata", {}).get("generation", 0),
    }
    return actions, status


def wire_status(st: dict) -> dict:
    return {k: v for k, v in st.items() if v or k == "replicas"}


class ReplicaSetController:
    name = "replicaset-controller"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue(self.name, self.sync)
        mgr.informers["replicasets"].add_handler(lambda t, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informers["pods"].add_handler(self._pod_changed)
        self.pending: dict = {}  # rs key -> names created but not yet seen (the controller's "expectations")

    def _pod_changed(self, etype, pod, old):
        for ref in pod.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "ReplicaSet" and ref.get("controller"):
                key = (ns_of(pod), ref["name"])
                self.pending.get(key, {}).pop(name_of(pod), None)
                self.queue.add(key)

    def resync_keys(self):
        return [(ns_of(r), name_of(r)) for r in self.mgr.informers["replicasets"].items()]

    def sync(self, key):
        rs = self.mgr.informers["replicasets"].get(*key)
        if rs is None:
            self.pending.pop(key, None)
            return
        rs = deepcopy(rs)
        rs["apiVersion"], rs["kind"] = "apps/v1", "ReplicaSet"
        pods = [p for p in self.mgr.informers["pods"].items() if ns_of(p) == key[0] and owned_by(p, rs)
                and selector_matches(rs["spec"].get("selector"), p["metadata"].get("labels"))]
        waiting = self.pending.get(key, {})
        for n, t in list(waiting.items()):
            if time.monotonic() - t > 30:  # never seen: give up waiting, re-plan from the cache
                waiting.pop(n, None)
        if waiting:  # wait until the watch shows the pods we created
            self.queue.add_after(key, 0.5)
            return
        if rs["metadata"].get("deletionTimestamp"):
            actions = []
            _, status = plan(rs, pods)
        else:
            actions, status = plan(rs, pods)
        for verb, pod in actions:
            try:
                if verb == "create":
                    created = self.client.create("pods", pod, key[0])
                    self.pending.setdefault(key, {})[name_of(created)] = time.monotonic()
                    self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
                else:
                    self.client.delete("pods", name_of(pod), key[0], uid=pod["metadata"].get("uid"))
                    self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
            except ApiErrorT as e:
                if e.not_found or e.conflict:
                    continue
                self.recorder.event(rs, "Warning", "FailedCreate" if verb == "create" else "FailedDelete", e.message)
                raise
        status = wire_status(status)
        if {k: v for k, v in (rs.get("status") or {}).items() if k != "conditions"} != status:
            rs["status"] = {**{k: v for k, v in (rs.get("status") or {}).items() if k == "conditions"}, **status}
            try:
                self.client.update_status("replicasets", rs)
            except ApiErrorT as e:
                if e.conflict:
                    self.queue.add(key)
                elif not e.not_found:
                    raise
