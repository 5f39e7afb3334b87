"""nfs-subdir-external-provisioner, run inside the controller-manager because its image cannot run here.

It acts exactly when the real one would: only for a StorageClass whose `provisioner` equals the
PROVISIONER_NAME of a Deployment that has a Running and Ready pod, and only for claims the
persistentvolume-controller handed to that name. It creates `<ns>-<pvc>-<pv>` under NFS_PATH on
NFS_SERVER *through NFS* (nfs-rs, NFSv3, as the real one does through its NFS mount), mode 0777,
then the PV; on a Released PV with reclaimPolicy Delete it removes or archives the directory.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
import uuid

from .common import (ApiErrorT, is_healthy, is_terminating, name_of, ns_of, selector_matches, uid_of)
from .pv_binder import ANN_BETA_STORAGE_PROVISIONER, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER

log = logging.getLogger(__name__)

ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


class NfsRsBackend:
    """Directory operations on an NFSv3 export through nfs-rs (no kernel NFS client here)."""

    def _connect(self, server: str, export: str):
        import nfs_rs  # imported lazily: only the provisioner needs it
        # bounded waits: an unreachable server must fail the attempt (ProvisioningFailed, back-off),
        # not hang the provisioner's worker
        return nfs_rs.Client.connect(f"nfs://{server}{export}", versions=["3"], uid=0, gid=0,
                                     connect_timeout=10.0, operation_timeout=30.0)

    def mkdir(self, server: str, export: str, name: str) -> None:
        with self._connect(server, export) as c:
            c.mkdir(name, 0o777, exist_ok=True)
            # upstream chmods after mkdir so a umask cannot narrow the mode; nfs-ganesha's VFS answers
            # SETATTR with NFS3ERR_JUKEBOX here, so chmod only when the created mode is not already 0777
            if c.stat(name).mode & 0o7777 != 0o777:
                c.chmod(name, 0o777)

    def remove_tree(self, server: str, export: str, name: str) -> None:
        with self._connect(server, export) as c:
            self._rmtree(c, name)

    def _rmtree(self, c, path: str) -> None:
        if not c.exists(path):
            return
        for entry in c.listdir(path):
            if entry in (".", ".."):
                continue
            p = posixpath.join(path, entry)
            try:
                c.listdir(p)
                self._rmtree(c, p)
            except Exception:
                c.remove(p)
        c.rmdir(path)

    def rename(self, server: str, export: str, src: str, dst: str) -> None:
        with self._connect(server, export) as c:
            c.rename(src, dst)


class LocalDirBackend:
    """The same operations on a directory that *is* the export (tests without an NFS server)."""

    def __init__(self, exports: dict[str, str]):
        self.exports = exports  # "server:/export" -> local directory

    def _root(self, server: str, export: str) -> str:
        try:
            return self.exports[f"{server}:{export}"]
        except KeyError:
            raise OSError(f"mount.nfs: Connection refused for {server}:{export}") from None

    def mkdir(self, server, export, name):
        p = os.path.join(self._root(server, export), name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, 0o777)

    def remove_tree(self, server, export, name):
        shutil.rmtree(os.path.join(self._root(server, export), name), ignore_errors=True)

    def rename(self, server, export, src, dst):
        root = self._root(server, export)
        os.rename(os.path.join(root, src), os.path.join(root, dst))


def running_provisioners(deployments: list[dict], pods: list[dict]) -> dict[str, dict]:
    """PROVISIONER_NAME -> {server, path, pod} for Deployments that have a Running and Ready pod."""
    out: dict[str, dict] = {}
    for d in deployments:
        tpl = d.get("spec", {}).get("template", {})
        for c in (tpl.get("spec") or {}).get("containers") or []:
            env = {e.get("name"): e.get("value") for e in c.get("env") or [] if "value" in e}
            if not env.get("PROVISIONER_NAME"):
                continue
            sel = d.get("spec", {}).get("selector")
            live = [p for p in pods if ns_of(p) == ns_of(d) and is_healthy(p)
                    and selector_matches(sel, p.get("metadata", {}).get("labels"))]
            if live:
                out[env["PROVISIONER_NAME"]] = {"server": env.get("NFS_SERVER", ""), "path": env.get("NFS_PATH", "/"),
                                                "pod": name_of(sorted(live, key=name_of)[0]), "deployment": name_of(d)}
    return out


def volume_for(pvc: dict, sc: dict, prov: dict, name: str) -> tuple[dict, str]:
    """The PV the real provisioner creates, and its directory name under the export."""
    pv_name = f"pvc-{uid_of(pvc)}"
    dirname = f"{ns_of(pvc)}-{name_of(pvc)}-{pv_name}"
    spec = pvc.get("spec", {})
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {ANN_PROVISIONED_BY: name}},
        "spec": {
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
            "accessModes": list(spec.get("accessModes") or []),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
            "storageClassName": name_of(sc),
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "nfs": {"server": prov["server"], "path": posixpath.join(prov["path"], dirname)},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns_of(pvc),
                         "name": name_of(pvc), "uid": uid_of(pvc),
                         "resourceVersion": pvc["metadata"].get("resourceVersion")},
        },
    }
    if sc.get("mountOptions"):
        pv["spec"]["mountOptions"] = list(sc["mountOptions"])
    return pv, dirname


class NfsProvisioner:
    name = "nfs-provisioner"

    def __init__(self, mgr):
        self.mgr, self.client = mgr, mgr.client
        self.backend = mgr.nfs_backend or NfsRsBackend()
        self.queue = mgr.queue(self.name, self.sync)
        self.identity = uuid.uuid4()
        self._recorders: dict = {}
        inf = mgr.informers
        inf["persistentvolumeclaims"].add_handler(lambda t, o, old: self.queue.add(("claim", ns_of(o), name_of(o))))
        inf["persistentvolumes"].add_handler(lambda t, o, old: self.queue.add(("volume", "", name_of(o))))
        for r in ("deployments", "pods", "storageclasses"):
            inf[r].add_handler(self._maybe_all)

    def _maybe_all(self, etype, obj, old):
        for k in self.resync_keys():
            self.queue.add(k)

    def resync_keys(self):
        inf = self.mgr.informers
        return ([("claim", ns_of(c), name_of(c)) for c in inf["persistentvolumeclaims"].items()
                 if not c.get("spec", {}).get("volumeName")] +
                [("volume", "", name_of(v)) for v in inf["persistentvolumes"].items()
                 if v.get("status", {}).get("phase") == "Released"])

    def _recorder(self, name: str, prov: dict):
        comp = f"{name}_{prov['pod']}_{self.identity}"  # the real provisioner's event source
        if comp not in self._recorders:
            self._recorders[comp] = self.mgr.recorder(comp)
        return self._recorders[comp]

    def _live(self) -> dict[str, dict]:
        inf = self.mgr.informers
        return running_provisioners(inf["deployments"].items(), inf["pods"].items())

    def sync(self, key):
        kind, ns, name = key
        inf = self.mgr.informers
        if kind == "claim":
            pvc = inf["persistentvolumeclaims"].get(ns, name)
            if pvc is not None:
                self.provision(pvc)
        else:
            pv = inf["persistentvolumes"].get("", name)
            if pv is not None:
                self.reclaim(pv)

    def provision(self, pvc: dict) -> None:
        if pvc.get("spec", {}).get("volumeName") or is_terminating(pvc):
            return
        ann = pvc["metadata"].get("annotations") or {}
        pname = ann.get(ANN_STORAGE_PROVISIONER) or ann.get(ANN_BETA_STORAGE_PROVISIONER)
        if not pname:
            return  # the persistentvolume-controller has not handed it to a provisioner (yet)
        prov = self._live().get(pname)
        if prov is None:
            return  # no running provisioner of that name: the claim stays Pending, as in a real cluster
        sc = self.mgr.informers["storageclasses"].get("", pvc.get("spec", {}).get("storageClassName") or "")
        if sc is None or sc.get("provisioner") != pname:
            return
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not ann.get(ANN_SELECTED_NODE):
            return
        pv, dirname = volume_for(pvc, sc, prov, pname)
        if self.mgr.informers["persistentvolumes"].get("", name_of(pv)) is not None:
            return
        rec = self._recorder(pname, prov)
        rec.event(pvc, "Normal", "Provisioning", f'External provisioner is provisioning volume for claim "{ns_of(pvc)}/{name_of(pvc)}"')
        try:
            self.backend.mkdir(prov["server"], prov["path"], dirname)
        except Exception as e:
            rec.event(pvc, "Warning", "ProvisioningFailed",
                      f'failed to provision volume with StorageClass "{name_of(sc)}": unable to create directory to '
                      f'provision new pv: {e}')
            raise  # the work queue retries with exponential back-off
        try:
            self.client.create("persistentvolumes", pv)
        except ApiErrorT as e:
            if not e.conflict:
                raise
        rec.event(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name_of(pv)}")

    def reclaim(self, pv: dict) -> None:
        ann = pv.get("metadata", {}).get("annotations") or {}
        pname = ann.get(ANN_PROVISIONED_BY)
        if not pname or pv.get("status", {}).get("phase") != "Released" or is_terminating(pv):
            return
        if pv.get("spec", {}).get("persistentVolumeReclaimPolicy", "Retain") != "Delete":
            return  # Retain keeps the volume and its directory
        prov = self._live().get(pname)
        if prov is None:
            return
        nfs = pv.get("spec", {}).get("nfs") or {}
        dirname = posixpath.basename(nfs.get("path", "").rstrip("/"))
        sc = self.mgr.informers["storageclasses"].get("", pv["spec"].get("storageClassName") or "") or {}
        params = sc.get("parameters") or {}
        on_delete = params.get("onDelete", "")
        if on_delete == "retain":
            pass
        elif on_delete == "delete" or params.get("archiveOnDelete", "") == "false":
            self.backend.remove_tree(nfs.get("server", prov["server"]), prov["path"], dirname)
        else:
            self.backend.rename(nfs.get("server", prov["server"]), prov["path"], dirname, f"archived-{dirname}")
        try:
            self.client.delete("persistentvolumes", name_of(pv), uid=uid_of(pv))
        except ApiErrorT as e:
            if not e.not_found:
                raise
