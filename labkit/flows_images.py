"""mirror-images (issue 9, offline labs): every image the lab needs from outside, copied into the
lab registry so the nodes pull it from there.

The images are the inventory's: the NFS provisioner (``kubernetes.provisioner.image``), the
registry (``registry.image``) and the web base (``images.web.base``). One step on the registry
host reads its docker's images and the registry's manifests, plans (``operations.mirror``),
prints the plan and (unless ``--plan``) uploads/loads a ``--from`` archive, tags and pushes; then
each copy is read back from the registry.
"""
from __future__ import annotations

from labkit import ui
from labkit.errors import OperationError
from labkit.facts.images import LocalImage, RegistryManifest
from labkit.facts.registry import RegistryPing
from labkit.flows import FlowResult, _finish
from labkit.operations import mirror as mirror_ops
from labkit.remote import HostConnection, close_all, connect
from labkit.runner import FactError, Step, gather, run

TITLE = "mirror-images"


def wanted_images(inv) -> list[mirror_ops.Wanted]:
    """The images the lab needs from outside, each once (fields naming the same one are joined)."""
    fields = (("kubernetes.provisioner.image", inv.kubernetes.provisioner.image),
              ("registry.image", inv.registry.image),
              ("images.web.base", inv.images.web.base))
    out: dict[str, mirror_ops.Wanted] = {}
    for name, ref in fields:
        copy = mirror_ops.mirror_ref(ref, inv.registry_address)
        if copy in out:
            out[copy] = mirror_ops.Wanted(f"{out[copy].field}, {name}", out[copy].source, copy)
        else:
            out[copy] = mirror_ops.Wanted(name, ref, copy)
    return list(out.values())


def _manifest(address: str, copy: str) -> RegistryManifest:
    path, tag = copy[len(address) + 1:].rsplit(":", 1)
    return RegistryManifest(address, path, tag)


def mirror_steps(inv, archive: mirror_ops.Archive | None = None) -> dict[str, list[Step]]:
    address, host = inv.registry_address, inv.registry_host.name
    wanted = wanted_images(inv)
    facts: dict = {"ping": RegistryPing(address)}
    for w in wanted:
        facts[f"local:{w.source}"] = LocalImage(w.source)
        facts[f"local:{w.mirror}"] = LocalImage(w.mirror)
        facts[f"remote:{w.mirror}"] = _manifest(address, w.mirror)

    def plan(f):
        if not f["ping"]["ok"]:
            raise OperationError(f"registry {address} not reachable from {host} ({f['ping']['error']}): "
                                 "run setup-registry first")
        return mirror_ops.mirror_images(
            wanted=wanted, registry=address, host=host, archive=archive,
            upload_path=archive.upload_path if archive else "",
            local={k[6:]: v for k, v in f.items() if k.startswith("local:")},
            remote={k[7:]: v for k, v in f.items() if k.startswith("remote:")})

    steps: dict[str, list[Step]] = {h.name: [] for h in inv.hosts}
    steps[host].append(Step(f"mirror images to {address}", facts, plan))
    return steps


def registry_rows(conn: HostConnection, inv) -> list[list[str]]:
    """Each copy read back from the registry: [host, copy, ok|failed, digest or what to do]."""
    wanted = wanted_images(inv)
    got = gather(conn, {w.mirror: _manifest(inv.registry_address, w.mirror) for w in wanted}, tolerant=True)
    rows = []
    for w in wanted:
        m = got[w.mirror]
        if isinstance(m, FactError) or not m or m.get("error"):
            why = m.message if isinstance(m, FactError) else (m or {}).get("error") or "not in the registry"
            rows.append([conn.name, f"GET {w.mirror}", "failed", why])
        else:
            rows.append([conn.name, f"GET {w.mirror}", "ok", m["digest"] or ""])
        ui.line(*rows[-1])
    return rows


def mirror_images(inv, *, plan: bool = False, source: str | None = None) -> FlowResult:
    """Copy the inventory's outside images into the lab registry; ``source``: a local ``docker save``
    archive (``--from``) holding the ones the registry host's docker lacks."""
    archive = mirror_ops.read_archive(source) if source else None  # a bad archive fails before any host
    hosts = connect(inv)
    name = inv.registry_host.name
    try:
        report = run(hosts, mirror_steps(inv, archive), title=TITLE, plan_only=plan)
        checks = [] if plan or report.failures else registry_rows(hosts[name], inv)
        _finish(TITLE, report, checks)
        return FlowResult(report, checks, hosts)
    finally:
        close_all(hosts)
