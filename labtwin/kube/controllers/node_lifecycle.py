"""node-lifecycle-controller: a node whose kubelet stops posting status for node-monitor-grace-period
turns Ready=Unknown ("Kubelet stopped posting node status.") and gets the unreachable taint, so the
scheduler stops placing pods there; the taint goes when the kubelet reports Ready again.
(Eviction of the node's pods after tolerationSeconds is not modelled.)"""
from __future__ import annotations

import datetime as dt

from .common import ApiErrorT, condition, deepcopy, name_of, now

GRACE_SECONDS = 40  # kube-controller-manager --node-monitor-grace-period
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}


def _age(ts: str | None, at: dt.datetime) -> float:
    if not ts:
        return float("inf")
    t = dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return (at - t).total_seconds()


def plan_node(node: dict, at: dt.datetime, grace: float = GRACE_SECONDS) -> dict | None:
    """The updated Node (status and taints) or None when nothing changes."""
    ready = condition(node, "Ready")
    if ready is None:
        return None
    taints = list(node.get("spec", {}).get("taints") or [])
    has_taint = any(t.get("key") == UNREACHABLE["key"] for t in taints)
    beat = ready.get("lastHeartbeatTime") or node.get("metadata", {}).get("creationTimestamp")
    stale = _age(beat, at) > grace
    n = deepcopy(node)
    if stale and ready.get("status") != "Unknown":
        ts = now()
        for c in n["status"]["conditions"]:
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                     lastTransitionTime=ts)
        if not has_taint:
            n.setdefault("spec", {})["taints"] = taints + [{**UNREACHABLE, "timeAdded": ts}]
        return n
    if not stale and ready.get("status") == "True" and has_taint:
        n["spec"]["taints"] = [t for t in taints if t.get("key") != UNREACHABLE["key"]]
        return n
    return None


class NodeLifecycleController:
    name = "node-lifecycle-controller"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.recorder = mgr.recorder(self.name)
        self.queue = mgr.queue(self.name, self.sync)
        mgr.informers["nodes"].add_handler(lambda t, o, old: self.queue.add(name_of(o)))

    def resync_keys(self):
        return [name_of(n) for n in self.mgr.informers["nodes"].items()]

    def sync(self, name):
        node = self.mgr.informers["nodes"].get("", name)
        if node is None:
            return
        n = plan_node(node, dt.datetime.now(dt.timezone.utc))
        if n is None:
            if (condition(node, "Ready") or {}).get("status") == "True":
                self.queue.add_after(name, 10.0)  # look again when the heartbeat may be stale
            return
        try:
            if n.get("spec") != node.get("spec"):
                n = {**self.client.update("nodes", n), "status": n["status"]}
            if n["status"] != node.get("status"):
                self.client.update_status("nodes", n)
                self.recorder.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        except ApiErrorT as e:
            if e.conflict:
                self.queue.add(name)
            elif not e.not_found:
                raise
