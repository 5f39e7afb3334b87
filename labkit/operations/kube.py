"""Kubernetes planners: facts in, kubectl commands out (nothing when already right).

All commands run on the control-plane host as the SSH user (``sudo=False``: kubectl uses the
user's kubeconfig). Names are validated by the inventory and quoted here anyway.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

import yaml

from labkit import manifests
from labkit import validate
from labkit.errors import OperationError
from labkit.facts import kube as kf
from labkit.facts.kube import PV, PVC, Namespace, StatefulSetState, resource_ref
from labkit.operations.base import Command, PutFile, Wait
from labkit.shell import quote

# Where the rendered manifests are uploaded on the control plane before `kubectl apply -f`.
REMOTE_MANIFEST = "/var/lib/labkit/manifests.yaml"


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
    # the upload names every object; the apply only what drifted, and how many are new (a failure
    # message quotes this description: it must not carry the whole list again)
    new = sum(d == ["missing"] for _, d in changed)
    applied = ", ".join([f"{o['kind']}/{o['metadata']['name']} ({', '.join(d[:3])})" for o, d in changed
                         if d != ["missing"]] + [f"{new} new object{'s' * (new != 1)}"] * bool(new))
    for obj, diffs in changed:
        if obj["kind"] == "StorageClass" and diffs != ["missing"]:
            # provisioner, parameters and reclaimPolicy are immutable: apply would be refused.
            # Recreating the class leaves existing PVs and their data alone.
            yield Command(f"kubectl delete {quote(resource_ref(obj))} --ignore-not-found", sudo=False,
                          description=f"recreate StorageClass/{obj['metadata']['name']} ({', '.join(diffs)} are immutable)")
    yield PutFile(path=remote_path, content=yaml.safe_dump_all([o for o, _ in changed], sort_keys=False),
                  mode=0o644, description=f"upload manifests: {names}")
    yield Command(f"kubectl apply -f {quote(remote_path)}", sudo=False, description=f"kubectl apply: {applied}")


def create_namespace(namespace: dict, live: Namespace | None) -> Iterator[Command]:
    """Create the namespace (``manifests.render_namespace``: with labkit's label) when it is missing;
    nothing when it exists, labelled or not.

    ``kubectl create``, not ``apply``: a namespace that appeared meanwhile makes it fail instead of
    getting labkit's label (which would let ``teardown --purge`` delete someone else's namespace).
    """
    name = namespace["metadata"]["name"]
    if live is not None:
        if live.deleting:
            raise OperationError(f"namespace {name} is being deleted (a teardown --purge?): wait until "
                                 f"`kubectl get namespace {name}` finds nothing, then run deploy again")
        return
    label = ", ".join(f"{k}={v}" for k, v in (namespace["metadata"].get("labels") or {}).items())
    body = json.dumps(namespace, separators=(",", ":"), sort_keys=True)
    yield Command(f"printf '%s\\n' {quote(body)} | kubectl create -f -", sudo=False,
                  description=f"create namespace {name}" + (f" ({label})" if label else ""))


def deploy(namespace: dict, live_namespace: Namespace | None, objects: list[dict], current: dict,
           remote_path: str = REMOTE_MANIFEST) -> Iterator:
    """Deploy's plan: the namespace first when it is missing, then the manifests that are missing or
    differ (``apply_manifests``); nothing when the cluster already has both."""
    yield from create_namespace(namespace, live_namespace)
    yield from apply_manifests(objects, current, remote_path)


def scale_and_rollout(sts: StatefulSetState | None, replicas: int, image: str, partition: int,
                      namespace: str = "default", container: str = "web") -> Iterator[Command]:
    """One ``kubectl patch`` that sets replicas, the container image and the rollout partition together.

    A strategic merge patch (kubectl's default type), not ``--type=merge``: a JSON merge patch
    replaces the whole containers list, dropping ports, probe and volumeMounts; the strategic one
    merges containers by name. Nothing when the set already has all three values.
    """
    if sts is None:
        raise OperationError("the StatefulSet does not exist yet: run deploy first")
    try:
        replicas, partition = validate.replicas(replicas), validate.partition(partition)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
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
        f"kubectl patch statefulset {quote(sts.name)} -n {quote(namespace)} --type=strategic -p {quote(patch)}",
        sudo=False, description=f"statefulset/{sts.name}: {what}")


def teardown(objects: list[dict], current: dict, pvcs: list[PVC], pvs: list[PV], purge: bool = False,
             namespace: str = "default", live_namespace: Namespace | None = None) -> Iterator[Command]:
    """Delete the workload (StatefulSet, Service) that exists; keep PVCs, PVs and NFS data.

    With ``purge``: also the set's PVCs, the PVs bound to them, the StorageClass, the provisioner
    and its RBAC (the NFS directories are the content step's business), and last the namespace
    itself when labkit created it (``live_namespace`` carries labkit's label, see
    ``namespace_kept``); a namespace without the label is never deleted.
    """
    keep_kinds = set() if purge else {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                      "RoleBinding", "Deployment", "StorageClass"}
    # Delete in reverse apply order: workload first, the provisioner last (it may still be needed).
    doomed = [o for o in reversed(objects) if o["kind"] not in keep_kinds and object_id(o) in current]
    namespaced = [o for o in doomed if o["metadata"].get("namespace")]
    cluster = [o for o in doomed if not o["metadata"].get("namespace")]
    if namespaced:
        yield Command("kubectl delete " + " ".join(quote(resource_ref(o)) for o in namespaced)
                      + f" -n {quote(namespace)} --ignore-not-found --wait=true", sudo=False,
                      description="delete " + ", ".join(resource_ref(o) for o in namespaced))
    if not purge:
        return
    if pvcs:
        yield Command("kubectl delete " + " ".join(quote(f"pvc/{c.name}") for c in pvcs)
                      + f" -n {quote(namespace)} --ignore-not-found --wait=true", sudo=False,
                      description=f"delete {len(pvcs)} PVC(s)")
    claimed = {c.name for c in pvcs}
    mine = [v for v in pvs if v.claim_namespace == namespace and v.claim_name in claimed]
    if mine:
        # reclaimPolicy Retain keeps a PV after its claim is gone: delete it explicitly.
        yield Command("kubectl delete " + " ".join(quote(f"pv/{v.name}") for v in mine)
                      + " --ignore-not-found --wait=true", sudo=False,
                      description=f"delete {len(mine)} PV(s)")
    if cluster:
        yield Command("kubectl delete " + " ".join(quote(resource_ref(o)) for o in cluster)
                      + " --ignore-not-found", sudo=False,
                      description="delete " + ", ".join(resource_ref(o) for o in cluster))
    if (live_namespace is not None and live_namespace.name == namespace and not live_namespace.deleting
            and manifests.made_by_labkit(live_namespace.labels)):
        # last: after the claims and volumes above (a PV of the Retain class outlives its namespace)
        yield Command(f"kubectl delete namespace {quote(namespace)} --ignore-not-found --wait=true --timeout=300s",
                      sudo=False, description=f"delete namespace {namespace} (labkit created it)")


def namespace_kept(namespace: str, live_namespace: Namespace | None) -> str | None:
    """Why ``teardown --purge`` leaves the namespace, when it exists and labkit did not create it."""
    if live_namespace is None or manifests.made_by_labkit(live_namespace.labels):
        return None
    return (f"namespace {namespace} stays: labkit did not create it (no {manifests.MANAGED_BY_LABEL}="
            f"{manifests.MANAGER} label), so teardown --purge never deletes it")


# ---- failures ---------------------------------------------------------------------------

# kubectl's wrapping of a server error with the manifest it came from ("error when creating
# "/var/lib/labkit/manifests.yaml": namespaces "lab" not found"): the server's words are the news.
_SOURCE = re.compile(r'(?:for: "[^"]*": )?error when [a-z]+(?: [a-z]+)* "[^"]*": ')


def kubectl_error_lines(output: list[str]) -> list[str]:
    """kubectl's error lines, each once: its warnings and its wrapping with the manifest file dropped
    (kubectl prints the same error for each object it could not create). When some lines are
    errors (``Error from server ...``, ``error: ...``, ``The X "y" is invalid: ...``), only those."""
    lines = [ln.strip() for ln in output]
    lines = [ln for ln in lines if ln and not ln.startswith("Warning:")]
    errors = [ln for ln in lines
              if ln.startswith(("Error from server", "error:", "The ", "for: ")) or "error when" in ln]
    return list(dict.fromkeys(_SOURCE.sub("", ln) for ln in (errors or lines)))


def what_to_do(text: str, namespace: str, task: str) -> str:
    """What the user can do about kubectl's error ``text`` in ``invoke <task>``."""
    missing = re.search(r'namespaces "([^"]+)" not found', text)
    if missing:
        return (f"the namespace {missing.group(1)} does not exist (deleted while {task} ran?): run `invoke deploy` "
                "again, it creates kubernetes.namespace first when it is missing")
    if "because it is being terminated" in text:
        return (f"the namespace {namespace} is still being deleted: wait until `kubectl get namespace {namespace}` "
                "finds nothing, then run `invoke deploy` again")
    if "AlreadyExists" in text and "namespaces" in text:
        return (f"the namespace {namespace} appeared while deploy ran: run `invoke deploy` again (labkit uses it "
                "as it is and never deletes a namespace it did not create)")
    if "forbidden" in text.lower() and "User " in text:
        what = (f"; or have a cluster admin create the namespace {namespace} once"
                if 'resource "namespaces"' in text else "")
        return ("the kubeconfig of the SSH user on the control plane may not do this: give that user a cluster-admin "
                "kubeconfig (kubeadm's /etc/kubernetes/admin.conf as ~/.kube/config)" + what)
    if re.search(r"Unable to connect to the server|connection refused|i/o timeout|no route to host", text):
        return "the API server does not answer: check the control plane with `invoke doctor`"
    if "timed out waiting for the condition" in text and "namespace" in text:
        return (f"the namespace {namespace} is not gone yet: see why in `kubectl get namespace {namespace} -o yaml` "
                "(status.conditions), then run `invoke teardown --purge --yes` again")
    if "field is immutable" in text or "Forbidden: updates to" in text:
        return ("a field that cannot change in place differs from the live object: `invoke teardown` (volumes and "
                "data stay), then `invoke deploy`")
    if " is invalid: " in text or "error validating" in text:
        return ("the cluster refuses a rendered object: check the inventory's kubernetes section against "
                "kubectl's message (`invoke deploy --plan` shows what would be applied)")
    return f"fix what kubectl says, then run `invoke {task}` again"


def kubectl_failure(command: Command, output: list[str], namespace: str, task: str) -> str:
    """One message for a kubectl command that failed in ``invoke <task>``: what failed, kubectl's own
    error line(s) once each, and what to do -- ``kubectl apply failed: Error from server (NotFound):
    namespaces "lab" not found: <what to do>`` (the caller's HostError names the host)."""
    verb = re.search(r"\bkubectl (\w+)", command.command)
    what = f"kubectl {verb.group(1)}" if verb else "kubectl"
    if command.description.startswith(("create namespace", "delete namespace")):
        what += f" namespace {namespace}"
    lines = kubectl_error_lines(output)
    said = "; ".join(lines) or "no output"
    return f"{what} failed: {said}: {what_to_do(said, namespace, task)}"


def wait_for(wait: Wait, rollout: kf.Rollout | None, *, after_changes: bool,
             pods: list[kf.Pod] | None = None) -> Iterator[Wait]:
    """``wait`` when the plan changes something before it, or when the rollout is not done yet (a
    run that failed while waiting); nothing when it is done and nothing changes."""
    settled = rollout is not None and rollout.done and (
        wait.replicas is None or not kf.pods_not_yet_matching(pods or [], wait.replicas))
    if after_changes or not settled:
        yield wait
