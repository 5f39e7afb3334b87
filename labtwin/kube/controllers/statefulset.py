"""StatefulSet controller, following pkg/controller/statefulset/stateful_set_control.go.

`plan_revisions` and `plan_sync` are pure (objects in, ordered actions + status out) so the
ordering rules are unit-tested without a server; `StatefulSetController` runs them from informer
caches and executes the actions in order, stopping at the first failure as the real one does.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from . import revisions as rv
from .common import (ApiErrorT, controller_of, controller_ref, deepcopy, is_available, is_failed, is_healthy,
                     is_running_and_ready, is_succeeded, is_terminating, name_of, ns_of, selector_matches, uid_of)

log = logging.getLogger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass
class Action:
    verb: str  # create_revision | update_revision | delete_revision | create_pvc | create_pod | delete_pod | update_pod
    obj: dict
    event: tuple[str, str, str] | None = None  # (type, reason, message) recorded on the set on success
    failed_event: tuple[str, str, str] | None = None


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: dict = field(default_factory=dict)
    current_revision: dict | None = None
    update_revision: dict | None = None


def ordinal_of(sset: dict, pod: dict) -> int | None:
    m = re.fullmatch(re.escape(name_of(sset)) + r"-(\d+)", name_of(pod))
    return int(m.group(1)) if m else None


def pod_revision(pod: dict) -> str:
    return (pod.get("metadata", {}).get("labels") or {}).get(rv.REVISION_LABEL, "")


def claim_name(template: dict, sset: dict, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{name_of(sset)}-{ordinal}"


def persistent_volume_claims(sset: dict, ordinal: int) -> list[dict]:
    """getPersistentVolumeClaims: one claim per volumeClaimTemplate, labelled with the selector."""
    out = []
    sel = (sset["spec"].get("selector") or {}).get("matchLabels") or {}
    for tpl in sset["spec"].get("volumeClaimTemplates") or []:
        claim = deepcopy(tpl)
        md = claim.setdefault("metadata", {})
        md["name"] = claim_name(tpl, sset, ordinal)
        md["namespace"] = ns_of(sset)
        labels = dict(md.get("labels") or {})
        labels.update(sel)
        md["labels"] = labels
        for k in ("uid", "resourceVersion", "creationTimestamp"):
            md.pop(k, None)
        claim.pop("status", None)
        claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
        policy = sset["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenDeleted") == "Delete":  # the set owns its claims, so the GC removes them with it
            md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name_of(sset),
                                      "uid": sset["metadata"].get("uid", "")}]
        out.append(claim)
    return out


def new_pod(sset: dict, ordinal: int, revision_name: str) -> dict:
    """newStatefulSetPod + setPodRevision: template copy with identity, storage and revision."""
    tpl = sset["spec"].get("template") or {}
    tmd = tpl.get("metadata") or {}
    name = f"{name_of(sset)}-{ordinal}"
    labels = dict(tmd.get("labels") or {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[rv.REVISION_LABEL] = revision_name
    md = {"name": name, "namespace": ns_of(sset), "labels": labels,
          "ownerReferences": [controller_ref(sset, "apps/v1", "StatefulSet")]}
    if tmd.get("annotations"):
        md["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        md["finalizers"] = list(tmd["finalizers"])
    spec = deepcopy(tpl.get("spec") or {})
    spec["hostname"] = name
    if sset["spec"].get("serviceName"):
        spec["subdomain"] = sset["spec"]["serviceName"]
    # updateStorage: the claim volumes replace any template volume of the same name
    claims = {t["metadata"]["name"]: claim_name(t, sset, ordinal)
              for t in sset["spec"].get("volumeClaimTemplates") or []}
    vols = [{"name": n, "persistentVolumeClaim": {"claimName": c}} for n, c in claims.items()]
    vols += [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
    if vols:
        spec["volumes"] = vols
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def plan_revisions(sset: dict, revisions: list[dict]) -> tuple[dict, dict, list[Action], int]:
    """getStatefulSetRevisions: (current, update, actions, collisionCount)."""
    actions: list[Action] = []
    revs = rv.sort_revisions(revisions)
    collision = int(sset.get("status", {}).get("collisionCount") or 0)
    update = rv.new_statefulset_revision(sset, rv.next_revision(revs), collision)
    equal = [r for r in revs if rv.equal_revision(r, update)]
    if equal and revs and rv.equal_revision(revs[-1], equal[-1]):
        update = revs[-1]  # unchanged template
    elif equal:
        # rollback to an older template: bump that revision's number instead of creating a copy
        bumped = deepcopy(equal[-1])
        bumped["revision"] = update["revision"]
        actions.append(Action("update_revision", bumped))
        update = bumped
    else:
        by_name = {name_of(r): r for r in revs}
        while name_of(update) in by_name and not rv.equal_revision(by_name[name_of(update)], update):
            collision += 1  # hash collision with a different template: probe again
            update = rv.new_statefulset_revision(sset, update["revision"], collision)
        actions.append(Action("create_revision", update))
    current = next((r for r in revs if name_of(r) == sset.get("status", {}).get("currentRevision")), None)
    return current or update, update, actions, collision


def _use_current(sset: dict, ordinal: int) -> bool:
    """newVersionedStatefulSetPod's choice between the current and the update revision."""
    us = sset["spec"].get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    ru = us.get("rollingUpdate")
    if ru is None:
        return ordinal < int(sset.get("status", {}).get("currentReplicas") or 0)
    return ordinal < int(ru.get("partition") or 0)


def compute_status(sset: dict, pods: list[dict], current: dict, update: dict, collision: int) -> dict:
    """computeReplicaStatus: every pod of the set counts, terminating ones only in replicas/ready."""
    mrs = int(sset["spec"].get("minReadySeconds") or 0)
    st = {"observedGeneration": sset.get("metadata", {}).get("generation", 0), "replicas": 0, "readyReplicas": 0,
          "currentReplicas": 0, "updatedReplicas": 0, "availableReplicas": 0,
          "currentRevision": name_of(current), "updateRevision": name_of(update), "collisionCount": collision}
    for p in pods:
        st["replicas"] += 1
        if is_running_and_ready(p):
            st["readyReplicas"] += 1
            if is_available(p, mrs):
                st["availableReplicas"] += 1
        if not is_terminating(p):
            if pod_revision(p) == name_of(current):
                st["currentReplicas"] += 1
            if pod_revision(p) == name_of(update):
                st["updatedReplicas"] += 1
    return st


def complete_rolling_update(sset: dict, st: dict) -> dict:
    us = (sset["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
    if us == "RollingUpdate" and st["updatedReplicas"] == st["replicas"] and st["readyReplicas"] == st["replicas"]:
        st["currentReplicas"] = st["updatedReplicas"]
        st["currentRevision"] = st["updateRevision"]
    return st


def wire_status(st: dict) -> dict:
    """The JSON the real API returns: omitempty on the counters that have it."""
    out = {}
    for k, v in st.items():
        if k in ("replicas", "availableReplicas", "collisionCount", "observedGeneration") or v:
            out[k] = v
    return out


def _event(sset: dict, verb: str, what: str, ok: bool = True) -> tuple[str, str, str]:
    reason = ("Successful" if ok else "Failed") + verb.capitalize()
    return ("Normal" if ok else "Warning", reason,
            f"{verb} {what} in StatefulSet {name_of(sset)} {'successful' if ok else 'failed'}")


def plan_sync(sset: dict, pods: list[dict], revisions: list[dict], existing_claims: set[str] | dict) -> Plan:
    """One pass of updateStatefulSet. `pods` are the set's pods, `existing_claims` the PVC names in its namespace
    (a dict name -> PVC lets terminating claims block pod creation, as upstream does)."""
    plan = Plan()
    current, update, actions, collision = plan_revisions(sset, revisions)
    plan.actions += actions
    plan.current_revision, plan.update_revision = current, update
    current_set, update_set = rv.apply_revision(sset, current), rv.apply_revision(sset, update)

    spec = sset["spec"]
    replica_count = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    start = int((spec.get("ordinals") or {}).get("start") or 0)
    monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    mrs = int(spec.get("minReadySeconds") or 0)

    members = [(ordinal_of(sset, p), p) for p in pods]
    members = [(o, p) for o, p in members if o is not None]
    status = compute_status(sset, [p for _, p in members], current, update, collision)
    plan.status = status

    replicas: list[dict | None] = [None] * replica_count
    condemned: list[tuple[int, dict]] = []
    for o, p in members:
        if start <= o < start + replica_count:
            replicas[o - start] = p
        else:
            condemned.append((o, p))
    condemned.sort(key=lambda t: -t[0])  # descendingOrdinal: the highest goes first
    new: set[int] = set()

    def versioned(i: int) -> dict:
        o = i + start
        if _use_current(sset, o):
            return new_pod(current_set, o, name_of(current))
        return new_pod(update_set, o, name_of(update))

    for i in range(replica_count):
        if replicas[i] is None:
            replicas[i] = versioned(i)
            new.add(i)

    if sset.get("metadata", {}).get("deletionTimestamp"):
        return plan

    unhealthy_first = None
    for i in range(replica_count):
        if i in new or not is_healthy(replicas[i]):
            unhealthy_first = unhealthy_first or replicas[i]
    for _, p in reversed(condemned):
        if not is_healthy(p):
            unhealthy_first = unhealthy_first or p

    def claims_for(pod_ord: int) -> list[Action]:
        out = []
        for c in persistent_volume_claims(update_set, pod_ord):
            if name_of(c) in existing_claims:
                continue
            pod = f"{name_of(sset)}-{pod_ord}"
            msg = f"create Claim {name_of(c)} Pod {pod} in StatefulSet {name_of(sset)}"
            out.append(Action("create_pvc", c, ("Normal", "SuccessfulCreate", msg + " success"),
                              ("Warning", "FailedCreate", msg + " failure")))
        return out

    for i in range(replica_count):
        pod = replicas[i]
        o = i + start
        if i not in new and (is_failed(pod) or is_succeeded(pod)):
            # recreate failed pods: delete now, the next pass creates it again
            plan.actions.append(Action("delete_pod", pod,
                                       ("Warning", "RecreatingFailedPod" if is_failed(pod) else "RecreatingTerminatedPod",
                                        f"StatefulSet {ns_of(sset)}/{name_of(sset)} is recreating "
                                        f"{'failed' if is_failed(pod) else 'terminated'} Pod {name_of(pod)}")))
            if monotonic:
                return plan
            continue
        if i in new:
            claims = existing_claims if isinstance(existing_claims, dict) else {}
            blocked = [c for c in persistent_volume_claims(update_set, o)
                       if name_of(c) in claims and is_terminating(claims[name_of(c)])]
            if blocked:  # upstream refuses to start a pod on a claim being deleted
                plan.actions.append(Action("wait", pod))
                return plan
            plan.actions += claims_for(o)
            plan.actions.append(Action("create_pod", pod, _event(sset, "create", f"Pod {name_of(pod)}"),
                                       _event(sset, "create", f"Pod {name_of(pod)}", ok=False)))
            status["replicas"] += 1
            if pod_revision(pod) == name_of(current):
                status["currentReplicas"] += 1
            if pod_revision(pod) == name_of(update):
                status["updatedReplicas"] += 1
            if monotonic:
                return plan
            continue
        if pod.get("status", {}).get("phase") in (None, "", "Pending"):
            plan.actions += claims_for(o)  # a deleted claim is recreated for a pending pod
        if is_terminating(pod) and monotonic:
            return plan
        if not is_running_and_ready(pod) and monotonic:
            return plan
        if not is_available(pod, mrs) and monotonic:
            return plan

    for o, pod in condemned:
        if is_terminating(pod):
            if monotonic:
                return plan
            continue
        if not is_running_and_ready(pod) and monotonic and pod is not unhealthy_first:
            return plan
        if not is_available(pod, mrs) and monotonic and pod is not unhealthy_first:
            return plan
        plan.actions.append(Action("delete_pod", pod, _event(sset, "delete", f"Pod {name_of(pod)}"),
                                   _event(sset, "delete", f"Pod {name_of(pod)}", ok=False)))
        if monotonic:
            return plan

    us = spec.get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") == "OnDelete":
        return plan
    update_min = int((us.get("rollingUpdate") or {}).get("partition") or 0)
    for target in range(replica_count - 1, update_min - 1, -1):
        pod = replicas[target]
        if target not in new and pod_revision(pod) != name_of(update) and not is_terminating(pod):
            plan.actions.append(Action("delete_pod", pod, _event(sset, "delete", f"Pod {name_of(pod)}"),
                                       _event(sset, "delete", f"Pod {name_of(pod)}", ok=False)))
            status["currentReplicas"] -= 1
            return plan
        if target in new or not is_healthy(pod):
            return plan
    return plan


def truncate_history(revisions: list[dict], pods: list[dict], current: dict, update: dict, limit: int) -> list[dict]:
    """Non-live revisions beyond revisionHistoryLimit, oldest first, to delete."""
    live = {name_of(current), name_of(update)} | {pod_revision(p) for p in pods}
    history = [r for r in rv.sort_revisions(revisions) if name_of(r) not in live]
    return history[: max(0, len(history) - limit)]


# -- the loop ---------------------------------------------------------------------------------------

class StatefulSetController:
    name = "statefulset-controller"
    resources = ("statefulsets", "pods", "controllerrevisions", "persistentvolumeclaims")

    def __init__(self, mgr):
        self.mgr = mgr
        self.client = mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue(self.name, self.sync)
        inf = mgr.informers
        inf["statefulsets"].add_handler(lambda t, o, old: self.queue.add((ns_of(o), name_of(o))))
        for res in ("pods", "controllerrevisions"):
            inf[res].add_handler(self._owned_changed)
        inf["persistentvolumeclaims"].add_handler(self._claim_changed)

    def _owned_changed(self, etype: str, obj: dict, old: dict | None) -> None:
        for ref in obj.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "StatefulSet" and ref.get("controller"):
                self.queue.add((ns_of(obj), ref["name"]))

    def _claim_changed(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype == "DELETED":  # a pending pod may need its claim again
            for s in self.mgr.informers["statefulsets"].items():
                if ns_of(s) == ns_of(obj):
                    self.queue.add((ns_of(s), name_of(s)))

    def resync_keys(self):
        return [(ns_of(s), name_of(s)) for s in self.mgr.informers["statefulsets"].items()]

    def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        inf = self.mgr.informers
        sset = inf["statefulsets"].get(ns, name)
        if sset is None:
            return
        sset = deepcopy(sset)
        sset["apiVersion"], sset["kind"] = "apps/v1", "StatefulSet"
        pods = self._claim("pods", sset, [p for p in inf["pods"].items() if ns_of(p) == ns],
                           lambda p: ordinal_of(sset, p) is not None)
        revs = self._claim("controllerrevisions", sset,
                           [r for r in inf["controllerrevisions"].items() if ns_of(r) == ns], lambda r: True)
        claims = {name_of(c): c for c in inf["persistentvolumeclaims"].items() if ns_of(c) == ns}
        plan = plan_sync(sset, pods, revs, claims)
        for a in plan.actions:
            if a.verb == "wait":
                break
            if not self._execute(sset, a):
                self.queue.add_after(key, 1.0)
                return
        self._write_status(sset, plan.status)
        limit = int(sset["spec"].get("revisionHistoryLimit", 10) if sset["spec"].get("revisionHistoryLimit") is not None else 10)
        for r in truncate_history(revs, pods, plan.current_revision, plan.update_revision, limit):
            try:
                self.client.delete("controllerrevisions", name_of(r), ns)
            except ApiErrorT as e:
                if not e.not_found:
                    log.warning("truncate history %s: %s", name_of(r), e)

    def _claim(self, plural: str, sset: dict, objs: list[dict], member) -> list[dict]:
        """ControllerRefManager: adopt matching orphans, release owned objects that no longer match."""
        sel = sset["spec"].get("selector")
        mine = []
        for o in objs:
            labels = o.get("metadata", {}).get("labels")
            ref = controller_of(o)
            if ref is not None and ref.get("uid") != uid_of(sset):
                continue
            matches = selector_matches(sel, labels) and member(o)
            if ref is None:
                if not matches or is_terminating(o) or sset["metadata"].get("deletionTimestamp"):
                    continue
                refs = (o["metadata"].get("ownerReferences") or []) + [controller_ref(sset, "apps/v1", "StatefulSet")]
                try:
                    o = self.client.patch(plural, name_of(o), {"metadata": {"ownerReferences": refs, "uid": uid_of(o)}},
                                          ns_of(o))
                except ApiErrorT as e:
                    if e.not_found or e.conflict:
                        continue
                    raise
                mine.append(o)
            elif matches:
                mine.append(o)
            elif not is_terminating(o):  # labels changed: let go of it
                refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid_of(sset)]
                try:
                    self.client.patch(plural, name_of(o), {"metadata": {"ownerReferences": refs or None,
                                                                        "uid": uid_of(o)}}, ns_of(o))
                except ApiErrorT as e:
                    if not (e.not_found or e.conflict):
                        raise
        return mine

    def _execute(self, sset: dict, a: Action) -> bool:
        ns = ns_of(sset)
        try:
            if a.verb == "create_revision":
                self.client.create("controllerrevisions", a.obj, ns)
            elif a.verb == "update_revision":
                self.client.update("controllerrevisions", a.obj)
            elif a.verb == "create_pvc":
                self.client.create("persistentvolumeclaims", a.obj, ns)
            elif a.verb == "create_pod":
                self.client.create("pods", a.obj, ns)
            elif a.verb == "delete_pod":
                self.client.delete("pods", name_of(a.obj), ns, uid=a.obj["metadata"].get("uid"))
        except ApiErrorT as e:
            if e.conflict and a.verb in ("create_pvc", "create_revision"):
                return True  # already there (our cache lags our own writes): carry on like upstream's Get-then-Create
            if e.conflict or e.not_found:
                return False  # stale cache: wait for the watch to catch up, then re-plan
            if a.failed_event:
                self.recorder.event(sset, *a.failed_event[:2], f"{a.failed_event[2]} error: {e.message}")
            log.warning("%s/%s: %s %s failed: %s", ns, name_of(sset), a.verb, name_of(a.obj), e)
            return False
        if a.event:
            self.recorder.event(sset, *a.event)
        return True

    def _write_status(self, sset: dict, st: dict) -> None:
        st = wire_status(complete_rolling_update(sset, st))
        for _ in range(3):
            kept = {k: v for k, v in (sset.get("status") or {}).items() if k == "conditions"}
            desired = {**kept, **st}
            if (sset.get("status") or {}) == desired:
                return
            fresh = dict(sset)
            fresh["status"] = desired
            try:
                self.client.update_status("statefulsets", fresh)
                return
            except ApiErrorT as e:
                if e.not_found:
                    return
                if not e.conflict:
                    raise
                sset = self.client.get("statefulsets", name_of(sset), ns_of(sset))
