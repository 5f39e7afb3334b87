"""kube-scheduler, the parts this lab exercises: filter (Ready, schedulable, taints, unbound immediate
claims), score by fewest pods, bind through the pods/binding subresource."""
from __future__ import annotations

import logging

from .common import (ApiErrorT, condition, deepcopy, is_terminating, name_of, now, ns_of)

log = logging.getLogger(__name__)


def node_ready(node: dict) -> bool:
    c = condition(node, "Ready")
    return bool(c and c.get("status") == "True")


def _tolerates(pod: dict, taint: dict) -> bool:
    for t in pod.get("spec", {}).get("tolerations") or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def pod_claims(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod.get("spec", {}).get("volumes") or []
            if v.get("persistentVolumeClaim")]


def check_claims(pod: dict, claims: dict, classes: dict) -> str | None:
    """The VolumeBinding PreFilter: a missing claim, or an unbound claim of an Immediate class, blocks."""
    for cn in pod_claims(pod):
        pvc = claims.get((ns_of(pod), cn))
        if pvc is None:
            return f'persistentvolumeclaim "{cn}" not found'
        if is_terminating(pvc):
            return f'persistentvolumeclaim "{cn}" is being deleted'
        if pvc.get("spec", {}).get("volumeName"):
            continue
        sc = classes.get(pvc.get("spec", {}).get("storageClassName") or "")
        if sc is None or sc.get("volumeBindingMode", "Immediate") == "Immediate":
            return "pod has unbound immediate PersistentVolumeClaims"
    return None


def choose_node(pod: dict, nodes: list[dict], pods: list[dict], claims: dict, classes: dict,
                assumed: dict | None = None) -> tuple[str | None, str]:
    """(node name, "") or (None, FailedScheduling message as the real scheduler words it)."""
    n = len(nodes)
    block = check_claims(pod, claims, classes)
    if block:
        return None, (f"0/{n} nodes are available: {block}. preemption: 0/{n} nodes are available: "
                      f"{n} Preemption is not helpful for scheduling.")
    reasons: dict[str, int] = {}
    fit = []
    for node in nodes:
        spec = node.get("spec", {})
        taints = list(spec.get("taints") or [])
        if not node_ready(node):
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
        if spec.get("unschedulable"):
            reasons["node(s) were unschedulable"] = reasons.get("node(s) were unschedulable", 0) + 1
            continue
        bad = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(pod, t)]
        if bad:
            t = bad[0]
            r = f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"
            reasons[r] = reasons.get(r, 0) + 1
            continue
        sel = pod.get("spec", {}).get("nodeSelector") or {}
        labels = node.get("metadata", {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in sel.items()):
            r = "node(s) didn't match Pod's node affinity/selector"
            reasons[r] = reasons.get(r, 0) + 1
            continue
        fit.append(name_of(node))
    if not fit:
        if n == 0:
            return None, "no nodes available to schedule pods"
        detail = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
        return None, (f"0/{n} nodes are available: {detail}. preemption: 0/{n} nodes are available: "
                      f"{n} Preemption is not helpful for scheduling.")
    count = {f: 0 for f in fit}
    for p in pods:
        nn = p.get("spec", {}).get("nodeName") or (assumed or {}).get(p["metadata"].get("uid"))
        if nn in count and p.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            count[nn] += 1
    return min(fit, key=lambda f: (count[f], f)), ""


class Scheduler:
    name = "default-scheduler"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue("scheduler", self.sync)
        self.binding_supported = True
        self.assumed: dict[str, str] = {}  # pod uid -> node, until the watch shows the binding
        inf = mgr.informers
        inf["pods"].add_handler(self._pod_changed)
        inf["nodes"].add_handler(lambda *_: self._requeue_pending())
        inf["persistentvolumeclaims"].add_handler(lambda *_: self._requeue_pending())

    def _mine(self, pod: dict) -> bool:
        spec = pod.get("spec", {})
        return (not spec.get("nodeName") and not is_terminating(pod)
                and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
                and pod.get("status", {}).get("phase") in (None, "", "Pending"))

    def _pod_changed(self, etype, pod, old):
        if etype != "DELETED" and self._mine(pod):
            self.queue.add((ns_of(pod), name_of(pod)))
        elif pod.get("spec", {}).get("nodeName"):
            self.assumed.pop(pod["metadata"].get("uid"), None)

    def _requeue_pending(self):
        for k in self.resync_keys():
            self.queue.add(k)

    def resync_keys(self):
        return [(ns_of(p), name_of(p)) for p in self.mgr.informers["pods"].items() if self._mine(p)]

    def sync(self, key):
        inf = self.mgr.informers
        pod = inf["pods"].get(*key)
        if pod is None or not self._mine(pod) or pod["metadata"].get("uid") in self.assumed:
            return
        claims = {(ns_of(c), name_of(c)): c for c in inf["persistentvolumeclaims"].items()}
        classes = {name_of(c): c for c in inf["storageclasses"].items()}
        node, msg = choose_node(pod, inf["nodes"].items(), inf["pods"].items(), claims, classes, self.assumed)
        if node is None:
            self._unschedulable(pod, msg)
            self.queue.add_after(key, 5.0)  # the real scheduler retries unschedulable pods periodically
            return
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name_of(pod), "namespace": ns_of(pod), "uid": pod["metadata"].get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            self._bind(pod, binding, node)
        except ApiErrorT as e:
            if e.conflict or e.not_found:
                return  # bound meanwhile, or gone
            raise
        self.assumed[pod["metadata"].get("uid")] = node
        self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns_of(pod)}/{name_of(pod)} to {node}")

    def _bind(self, pod: dict, binding: dict, node: str) -> None:
        if self.binding_supported:
            try:
                self.client.create("pods", binding, ns_of(pod), subresource="binding", name=name_of(pod))
                return
            except ApiErrorT as e:
                if e.status not in (404, 405) or self.client.get_or_none("pods", name_of(pod), ns_of(pod)) is None:
                    raise
                log.warning("apiserver has no pods/binding subresource (%s): binding by updating spec.nodeName", e)
                self.binding_supported = False
        # what the apiserver's binding REST does: set nodeName, then the PodScheduled condition
        p = deepcopy(pod)
        p["spec"]["nodeName"] = node
        p = self.client.update("pods", p)
        st = p.setdefault("status", {})
        st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now()}]
        self.client.update_status("pods", p)

    def _unschedulable(self, pod: dict, msg: str) -> None:
        cond = condition(pod, "PodScheduled")
        if not (cond and cond.get("status") == "False" and cond.get("message") == msg):
            p = deepcopy(pod)
            st = p.setdefault("status", {})
            st.setdefault("phase", "Pending")
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                          "lastProbeTime": None, "lastTransitionTime": now()})
            st["conditions"] = conds
            try:
                self.client.update_status("pods", p)
            except ApiErrorT as e:
                log.info("pod %s status: %s", name_of(pod), e)
        self.recorder.event(pod, "Warning", "FailedScheduling", msg)
