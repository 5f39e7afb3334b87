"""Deployment controller: Deployment -> ReplicaSet `<name>-<pod-template-hash>` -> pods, with the
Recreate and RollingUpdate strategies and the status/conditions `kubectl rollout status` reads."""
from __future__ import annotations

import datetime as dt
import logging
import math

from .common import ApiErrorT, controller_ref, deepcopy, name_of, now, ns_of, owned_by
from .revisions import pod_template_hash

log = logging.getLogger(__name__)

REVISION_ANN = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


def _replicas(obj: dict) -> int:
    r = obj.get("spec", {}).get("replicas")
    return 1 if r is None else int(r)


def _template_without_hash(tpl: dict) -> dict:
    t = deepcopy(tpl or {})
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return t


def _intstr(v, total: int, round_up: bool) -> int:
    if isinstance(v, str) and v.endswith("%"):
        x = int(v[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(v)


def surge_unavailable(d: dict) -> tuple[int, int]:
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    n = _replicas(d)
    surge = _intstr(ru.get("maxSurge", "25%"), n, True)
    unavail = _intstr(ru.get("maxUnavailable", "25%"), n, False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def new_replicaset(d: dict, revision: int, collision: int | None) -> dict:
    tpl = deepcopy(d["spec"].get("template") or {})
    h = pod_template_hash(_template_without_hash(tpl), collision)
    tpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
    sel = deepcopy(d["spec"].get("selector") or {})
    sel.setdefault("matchLabels", {})[HASH_LABEL] = h
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name_of(d)}-{h}", "namespace": ns_of(d),
                         "labels": {**(tpl["metadata"].get("labels") or {})},
                         "annotations": {REVISION_ANN: str(revision),
                                         "deployment.kubernetes.io/desired-replicas": str(_replicas(d)),
                                         "deployment.kubernetes.io/max-replicas": str(_replicas(d) + surge_unavailable(d)[0])},
                         "ownerReferences": [controller_ref(d, "apps/v1", "Deployment")]},
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": sel, "template": tpl}}


def is_new(d: dict, rs: dict) -> bool:
    return _template_without_hash(rs["spec"].get("template")) == _template_without_hash(d["spec"].get("template"))


def plan_scale(d: dict, new: dict, olds: list[dict]) -> list[tuple[dict, int]]:
    """(replicaset, new spec.replicas) changes for one pass of the strategy."""
    want = _replicas(d)
    strategy = (d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
    changes: list[tuple[dict, int]] = []
    old_active = [r for r in olds if _replicas(r) > 0]
    if strategy == "Recreate":
        if old_active:
            return [(r, 0) for r in old_active]
        if any((r.get("status") or {}).get("replicas", 0) > 0 for r in olds):
            return []  # wait for old pods to be gone before creating new ones
        return [(new, want)] if _replicas(new) != want else []
    surge, unavail = surge_unavailable(d)
    total = _replicas(new) + sum(_replicas(r) for r in olds)
    if _replicas(new) < want:  # scale up within maxSurge
        up = min(want, _replicas(new) + max(0, want + surge - total))
        if up != _replicas(new):
            changes.append((new, up))
    elif _replicas(new) > want:
        changes.append((new, want))
    if old_active:  # scale down old within maxUnavailable
        available = sum((r.get("status") or {}).get("availableReplicas", 0) for r in [new, *olds])
        room = max(0, available - (want - unavail))
        for r in sorted(old_active, key=lambda r: int((r["metadata"].get("annotations") or {}).get(REVISION_ANN, "0"))):
            unhealthy = _replicas(r) - (r.get("status") or {}).get("availableReplicas", 0)
            cut = min(_replicas(r), room + max(0, unhealthy))
            if cut > 0:
                changes.append((r, _replicas(r) - cut))
                room = max(0, room - cut)
    return changes


def _age(since: str | None, at: str) -> float:
    if not since:
        return 0.0
    f = "%Y-%m-%dT%H:%M:%SZ"
    return (dt.datetime.strptime(at, f) - dt.datetime.strptime(since, f)).total_seconds()


def compute_status(d: dict, new: dict | None, rss: list[dict], prev: dict, at: str | None = None) -> dict:
    want = _replicas(d)
    stat = lambda r, k: (r.get("status") or {}).get(k, 0)  # noqa: E731
    available = sum(stat(r, "availableReplicas") for r in rss)
    st = {"observedGeneration": d["metadata"].get("generation", 0),
          "replicas": sum(stat(r, "replicas") for r in rss),
          "updatedReplicas": stat(new, "replicas") if new else 0,
          "readyReplicas": sum(stat(r, "readyReplicas") for r in rss),
          "availableReplicas": available,
          "unavailableReplicas": max(0, sum(_replicas(r) for r in rss) - available)}
    _, unavail = surge_unavailable(d)
    conds = {c["type"]: dict(c) for c in prev.get("conditions") or []}
    ts = at or now()

    def setc(ctype, status, reason, msg):
        old = conds.get(ctype)
        c = {"type": ctype, "status": status, "reason": reason, "message": msg,
             "lastUpdateTime": ts, "lastTransitionTime": ts}
        if old and old.get("status") == status:
            c["lastTransitionTime"] = old.get("lastTransitionTime", ts)
            if old.get("reason") == reason and old.get("message") == msg:
                c["lastUpdateTime"] = old.get("lastUpdateTime", ts)
        conds[ctype] = c

    if available >= want - unavail:
        setc("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        setc("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    if new is not None:
        done = (st["updatedReplicas"] == want and st["replicas"] == want and available >= want)
        # DeploymentProgressing: more updated/ready/available pods, or fewer old ones, is progress
        progressed = (st["updatedReplicas"] > prev.get("updatedReplicas", 0)
                      or st["readyReplicas"] > prev.get("readyReplicas", 0)
                      or available > prev.get("availableReplicas", 0)
                      or st["replicas"] - st["updatedReplicas"] < prev.get("replicas", 0) - prev.get("updatedReplicas", 0))
        deadline = d["spec"].get("progressDeadlineSeconds", 600)
        cur = conds.get("Progressing")
        if done:
            setc("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{name_of(new)}" has successfully progressed.')
        elif cur is None:
            setc("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{name_of(new)}"')
        elif progressed:
            conds.pop("Progressing")  # progress refreshes lastUpdateTime, which the deadline counts from
            setc("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name_of(new)}" is progressing.')
            conds["Progressing"]["lastTransitionTime"] = cur.get("lastTransitionTime", ts) \
                if cur.get("status") == "True" else ts
        elif cur.get("reason") != "ProgressDeadlineExceeded" and deadline is not None and \
                _age(cur.get("lastUpdateTime"), ts) > int(deadline):
            setc("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{name_of(new)}" has timed out progressing.')
    st["conditions"] = [conds[k] for k in ("Available", "Progressing") if k in conds]
    return {k: v for k, v in st.items() if v or k in ("replicas", "observedGeneration")}


class DeploymentController:
    name = "deployment-controller"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue(self.name, self.sync)
        mgr.informers["deployments"].add_handler(lambda t, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informers["replicasets"].add_handler(self._rs_changed)

    def _rs_changed(self, etype, rs, old):
        for ref in rs.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "Deployment" and ref.get("controller"):
                self.queue.add((ns_of(rs), ref["name"]))

    def resync_keys(self):
        return [(ns_of(d), name_of(d)) for d in self.mgr.informers["deployments"].items()]

    def sync(self, key):
        d = self.mgr.informers["deployments"].get(*key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        d = deepcopy(d)
        d["apiVersion"], d["kind"] = "apps/v1", "Deployment"
        rss = [r for r in self.mgr.informers["replicasets"].items() if ns_of(r) == key[0] and owned_by(r, d)]
        new = next((r for r in rss if is_new(d, r)), None)
        olds = [r for r in rss if r is not new]
        revs = [int((r["metadata"].get("annotations") or {}).get(REVISION_ANN, "0")) for r in rss]
        if new is None:
            if d["spec"].get("paused"):
                return
            collision = (d.get("status") or {}).get("collisionCount")
            new = new_replicaset(d, max(revs, default=0) + 1, collision)
            try:
                new = self.client.create("replicasets", new, key[0])
            except ApiErrorT as e:
                if not e.conflict:
                    raise
                existing = self.client.get("replicasets", name_of(new), key[0])
                if not (owned_by(existing, d) and is_new(d, existing)):  # hash collision: probe again
                    d.setdefault("status", {})["collisionCount"] = (collision or 0) + 1
                    self.client.update_status("deployments", d)
                return
            rev = (new["metadata"].get("annotations") or {}).get(REVISION_ANN)
            if (d["metadata"].get("annotations") or {}).get(REVISION_ANN) != rev:
                self.client.patch("deployments", name_of(d), {"metadata": {"annotations": {REVISION_ANN: rev}}}, key[0])
            rss.append(new)
        elif (d["metadata"].get("annotations") or {}).get(REVISION_ANN) != (new["metadata"].get("annotations") or {}).get(REVISION_ANN):
            rev = (new["metadata"].get("annotations") or {}).get(REVISION_ANN)
            if int(rev or 0) < max(revs, default=0):  # rollback to an old template: it becomes the newest revision
                rev = str(max(revs) + 1)
                self.client.patch("replicasets", name_of(new), {"metadata": {"annotations": {REVISION_ANN: rev}}}, key[0])
            self.client.patch("deployments", name_of(d), {"metadata": {"annotations": {REVISION_ANN: rev}}}, key[0])
        if not d["spec"].get("paused"):
            for rs, n in plan_scale(d, new, olds):
                before = _replicas(rs)
                rs2 = deepcopy(rs)
                rs2["spec"]["replicas"] = n
                try:
                    self.client.update("replicasets", rs2)
                except ApiErrorT as e:
                    if e.conflict or e.not_found:
                        self.queue.add(key)
                        return
                    raise
                word = "up" if n > before else "down"
                self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled {word} replica set {name_of(rs)} from {before} to {n}")
        st = compute_status(d, new, rss, d.get("status") or {})
        if (d.get("status") or {}).get("collisionCount") is not None:
            st["collisionCount"] = d["status"]["collisionCount"]
        if st != (d.get("status") or {}):
            d["status"] = st
            try:
                self.client.update_status("deployments", d)
            except ApiErrorT as e:
                if e.conflict:
                    self.queue.add(key)
                elif not e.not_found:
                    raise
