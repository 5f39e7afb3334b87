"""Waiting for rollouts: what a ``Wait`` in a plan does once the runner applied the changes before it.

Like ``kubectl rollout status``, but polling, so the wait can say how far it is (ready/desired),
why each pod or claim that holds it up is stuck (``facts.kube.WaitBlockers``: the latest Warning
event and a fix), and fail early when a known blocker stays unchanged for
``kubernetes.stuck_after`` seconds. ``timeout`` stays the upper bound.
"""
from __future__ import annotations

import time

from labkit import manifests, ui
from labkit.errors import HostError, LabkitError
from labkit.facts import kube as kf
from labkit.operations.base import Wait
from labkit.remote import HostConnection
from labkit.runner import gather

DEFAULT_TIMEOUT = 600  # seconds: --timeout's default, the upper bound of a rollout wait
POLL_SECONDS = 2.0
BLOCKERS_EVERY = 10.0  # seconds between reads of what blocks a rollout (one more kubectl command)


def until_done(host: HostConnection, inv, wait: Wait, timeout: int) -> None:
    """Run one ``Wait`` of a plan on ``host`` (the control plane)."""
    until_rolled_out(host, inv, wait.kind, wait.name, timeout)
    if wait.replicas is not None:
        until_exact_pods(host, inv, wait.replicas, timeout)


def until_rolled_out(host: HostConnection, inv, kind: str, name: str, timeout: int) -> None:
    ns = inv.kubernetes.namespace
    what, after = f"{kind}/{name}", inv.kubernetes.stuck_after
    fact = kf.RolloutFact(kind, name, ns)
    start = last_look = time.monotonic()
    first_seen: dict[tuple, float] = {}
    why = ""
    with ui.waiting(host.name, f"wait for {what}") as progress:
        while True:
            state = gather(host, {"r": fact})["r"]
            if state is not None and state.done:
                break
            now = time.monotonic()
            if now - last_look >= BLOCKERS_EVERY or now - start > timeout:
                last_look = now
                blockers = read_blockers(host, inv)
                why = "; ".join(kf.describe_blockers(blockers))
                stuck = kf.stuck(blockers, first_seen, now, after)
                if stuck:
                    raise HostError(host.name, f"{what} is stuck: the same cause for {after}s"
                                    + "".join(f"\n  {line}" for line in kf.describe_blockers(stuck)))
                if now - start > timeout:
                    raise HostError(host.name, f"{what} did not roll out in {timeout}s"
                                    + "".join(f"\n  {line}" for line in kf.describe_blockers(blockers)
                                              or ["(no pod or claim reports a reason yet)"]))
            progress.update(state.ready if state else 0, state.desired if state else 0, why)
            time.sleep(POLL_SECONDS)
    ui.line(host.name, "wait", "ok", f"{what}: {state.ready}/{state.desired} ready")


def read_blockers(host: HostConnection, inv) -> list:
    k = inv.kubernetes
    name, prefix = k.statefulset.name, f"{k.statefulset.claim_template}-{k.statefulset.name}-"
    try:
        return gather(host, {"b": kf.WaitBlockers(k.namespace, (f"{name}-", f"{manifests.PROVISIONER_SA}-"),
                                                  prefix)})["b"]
    except LabkitError:  # the wait goes on; what blocks it is only the why
        return []


def until_exact_pods(host: HostConnection, inv, replicas: int, timeout: int) -> None:
    """After the rollout wait: until the set has exactly pods 0..replicas-1, all Ready (a scale-down
    is done only when the top pods are gone), so a verify right after scale sees the set as asked."""
    k = inv.kubernetes
    fact = {"pods": kf.StatefulSetPods(k.namespace, k.statefulset.name, manifests.app_label(inv))}
    deadline = time.monotonic() + timeout
    waiting = kf.pods_not_yet_matching(gather(host, fact)["pods"], replicas)
    if waiting:
        ui.line(host.name, "wait", "running", f"exactly {replicas} pod(s): {'; '.join(waiting)}")
    while waiting:
        if time.monotonic() > deadline:
            raise HostError(host.name, f"the StatefulSet does not have exactly {replicas} Ready pod(s) after "
                                       f"{timeout}s: {'; '.join(waiting)}"
                            + "".join(f"\n  {line}" for line in kf.describe_blockers(read_blockers(host, inv))))
        time.sleep(1)
        waiting = kf.pods_not_yet_matching(gather(host, fact)["pods"], replicas)
