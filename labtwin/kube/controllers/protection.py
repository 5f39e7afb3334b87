"""pvc-protection and pv-protection controllers: the apiserver adds the kubernetes.io/pvc-protection and
kubernetes.io/pv-protection finalizers; these remove them once nothing uses the object, so a claim a pod
still mounts (or a Bound volume) stays, Terminating, until it is free."""
from __future__ import annotations

from .common import ApiErrorT, deepcopy, name_of, ns_of

PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def claim_in_use(pvc: dict, pods: list[dict]) -> bool:
    for p in pods:
        if ns_of(p) != ns_of(pvc) or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for v in p.get("spec", {}).get("volumes") or []:
            if (v.get("persistentVolumeClaim") or {}).get("claimName") == name_of(pvc):
                return True
    return False


class ProtectionController:
    name = "pvc-protection-controller"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.queue = mgr.queue(self.name, self.sync)
        inf = mgr.informers
        inf["persistentvolumeclaims"].add_handler(lambda t, o, old: self._maybe(("pvc", ns_of(o), name_of(o)), o))
        inf["persistentvolumes"].add_handler(lambda t, o, old: self._maybe(("pv", "", name_of(o)), o))
        inf["pods"].add_handler(self._pod_changed)

    def _maybe(self, key, obj):
        if obj.get("metadata", {}).get("deletionTimestamp"):
            self.queue.add(key)

    def _pod_changed(self, etype, pod, old):
        for v in pod.get("spec", {}).get("volumes") or []:
            cn = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if cn:
                self.queue.add(("pvc", ns_of(pod), cn))

    def resync_keys(self):
        inf = self.mgr.informers
        return ([("pvc", ns_of(c), name_of(c)) for c in inf["persistentvolumeclaims"].items()
                 if c["metadata"].get("deletionTimestamp")] +
                [("pv", "", name_of(v)) for v in inf["persistentvolumes"].items() if v["metadata"].get("deletionTimestamp")])

    def sync(self, key):
        kind, ns, name = key
        res = "persistentvolumeclaims" if kind == "pvc" else "persistentvolumes"
        fin = PVC_FINALIZER if kind == "pvc" else PV_FINALIZER
        obj = self.mgr.informers[res].get(ns, name)
        if obj is None or not obj["metadata"].get("deletionTimestamp") or fin not in (obj["metadata"].get("finalizers") or []):
            return
        if kind == "pvc":
            # the informer may lag a pod creation: ask the server, as the real controller does before releasing
            live = self.client.list("pods", ns)["items"]
            if claim_in_use(obj, live):
                return
        elif obj.get("status", {}).get("phase") == "Bound":
            return
        o = deepcopy(obj)
        o["metadata"]["finalizers"] = [f for f in o["metadata"]["finalizers"] if f != fin]
        try:
            self.client.update(res, o)
        except ApiErrorT as e:
            if not e.not_found:
                raise
