"""Garbage collector: deletes dependents whose owners are all gone (background propagation) and drops
dangling owner references when some owner remains (pkg/controller/garbagecollector)."""
from __future__ import annotations

import logging

from ..client import resource_for
from .common import ApiErrorT, name_of, ns_of, uid_of

log = logging.getLogger(__name__)

DEPENDENT_RESOURCES = ("pods", "replicasets", "controllerrevisions", "persistentvolumeclaims", "deployments",
                       "statefulsets", "persistentvolumes")


class GarbageCollector:
    name = "garbage-collector"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.queue = mgr.queue(self.name, self.sync)
        for r in DEPENDENT_RESOURCES:
            mgr.informers[r].add_handler(lambda t, o, old, r=r: self._changed(r, t, o))

    def _changed(self, res: str, etype: str, obj: dict) -> None:
        fins = obj.get("metadata", {}).get("finalizers") or []
        if etype != "DELETED" and obj["metadata"].get("deletionTimestamp") and \
                ({"orphan", "foregroundDeletion"} & set(fins)):
            self.queue.add(("owner", res, ns_of(obj), name_of(obj)))
        if etype == "DELETED" or obj["metadata"].get("deletionTimestamp"):  # an owner vanished: look at everything that names it
            uid = uid_of(obj)
            for r in DEPENDENT_RESOURCES:
                for o in self.mgr.informers[r].items():
                    if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []):
                        self.queue.add((r, ns_of(o), name_of(o)))
                        # a dependent going away may unblock its foreground-deleting owner
            if etype == "DELETED":
                for ref in obj["metadata"].get("ownerReferences") or []:
                    for r in DEPENDENT_RESOURCES:
                        for o in self.mgr.informers[r].items():
                            if uid_of(o) == ref.get("uid") and o["metadata"].get("deletionTimestamp"):
                                self.queue.add(("owner", r, ns_of(o), name_of(o)))
        elif obj.get("metadata", {}).get("ownerReferences"):
            self.queue.add((res, ns_of(obj), name_of(obj)))

    def resync_keys(self):
        keys = []
        for r in DEPENDENT_RESOURCES:
            for o in self.mgr.informers[r].items():
                if o["metadata"].get("ownerReferences"):
                    keys.append((r, ns_of(o), name_of(o)))
                if o["metadata"].get("deletionTimestamp") and \
                        {"orphan", "foregroundDeletion"} & set(o["metadata"].get("finalizers") or []):
                    keys.append(("owner", r, ns_of(o), name_of(o)))
        return keys

    def _dependents(self, owner: dict) -> list[tuple[str, dict]]:
        uid = uid_of(owner)
        return [(r, o) for r in DEPENDENT_RESOURCES for o in self.mgr.informers[r].items()
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])]

    def sync_owner(self, res: str, ns: str, name: str) -> None:
        """Orphan: strip the owner's references from its dependents, then drop the finalizer.
        Foreground: delete the dependents and drop the finalizer once none is left."""
        owner = self.mgr.informers[res].get(ns, name)
        if owner is None or not owner["metadata"].get("deletionTimestamp"):
            return
        fins = list(owner["metadata"].get("finalizers") or [])
        deps = self._dependents(owner)
        if "orphan" in fins:
            for r, o in deps:
                refs = [x for x in o["metadata"].get("ownerReferences") or [] if x.get("uid") != uid_of(owner)]
                try:
                    self.client.patch(r, name_of(o), {"metadata": {"ownerReferences": refs or None}}, ns_of(o) or None)
                except ApiErrorT as e:
                    if not e.not_found:
                        raise
            fins.remove("orphan")
        elif "foregroundDeletion" in fins:
            live = []
            for r, o in deps:
                live.append(o)
                if not o["metadata"].get("deletionTimestamp"):
                    try:
                        self.client.delete(r, name_of(o), ns_of(o) or None, propagation="Foreground", uid=uid_of(o))
                    except ApiErrorT as e:
                        if not (e.not_found or e.conflict):
                            raise
            if live:
                self.queue.add_after(("owner", res, ns, name), 1.0)
                return
            fins.remove("foregroundDeletion")
        else:
            return
        o = dict(owner)
        o["metadata"] = {**owner["metadata"], "finalizers": fins}
        try:
            self.client.update(res, o)
        except ApiErrorT as e:
            if e.conflict:
                self.queue.add(("owner", res, ns, name))
            elif not e.not_found:
                raise

    def _owner_exists(self, ref: dict, namespace: str) -> bool:
        try:
            res = resource_for(ref.get("apiVersion", ""), ref.get("kind", ""))
        except KeyError:
            return True  # a kind we cannot look up: never delete on a guess
        ns = namespace if res.namespaced else None
        cached = self.mgr.informers.get(res.plural)
        if cached is not None:
            o = cached.get(ns or "", ref.get("name", ""))
            if o is not None and uid_of(o) == ref.get("uid"):
                return True
        # a cache miss is not proof of absence (the owner may be seconds old): ask the server
        live = self.client.get_or_none(res.plural, ref.get("name", ""), ns)
        return live is not None and uid_of(live) == ref.get("uid")

    def sync(self, key):
        if key[0] == "owner":
            self.sync_owner(*key[1:])
            return
        res, ns, name = key
        obj = self.mgr.informers[res].get(ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        solid = [r for r in refs if self._owner_exists(r, ns)]
        if solid == refs:
            return
        try:
            if not solid:
                log.info("deleting %s %s/%s: owner %s gone", res, ns, name, refs[0].get("name"))
                self.client.delete(res, name, ns or None, propagation="Background", uid=uid_of(obj))
            else:
                self.client.patch(res, name, {"metadata": {"ownerReferences": solid,
                                                           "uid": uid_of(obj)}}, ns or None)
        except ApiErrorT as e:
            if not (e.not_found or e.conflict):
                raise
