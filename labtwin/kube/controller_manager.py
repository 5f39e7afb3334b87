"""kube-controller-manager (plus kube-scheduler) of the twin: one process, shared informers, one work
queue and worker per controller, like the real binaries but in Python.

    python -m labtwin.kube.controller_manager --server http://127.0.0.1:6443
"""
from __future__ import annotations

import argparse
import heapq
import logging
import signal
import socket
import threading
import time
from typing import Any, Callable

from .client import ApiError, Client, Informer
from .controllers.common import Recorder

log = logging.getLogger("labtwin.controller-manager")


class WorkQueue:
    """A deduplicating queue with delayed adds; a key is never processed by two workers at once."""

    def __init__(self, name: str, handler: Callable[[Any], None]):
        self.name, self.handler = name, handler
        self._cv = threading.Condition()
        self._queue: list = []
        self._queued: set = set()
        self._processing: set = set()
        self._dirty: set = set()
        self._delayed: list = []  # heap of (when, seq, key)
        self._seq = 0
        self._failures: dict = {}
        self.stop = threading.Event()

    def add(self, key) -> None:
        with self._cv:
            if key in self._processing:
                self._dirty.add(key)  # re-run after the current pass
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
            self._cv.notify_all()

    def add_after(self, key, delay: float) -> None:
        with self._cv:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cv.notify_all()

    def add_rate_limited(self, key) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(0.05 * 2 ** n, 30.0))

    def forget(self, key) -> None:
        self._failures.pop(key, None)

    def _get(self):
        with self._cv:
            while not self.stop.is_set():
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, k = heapq.heappop(self._delayed)
                    if k not in self._queued and k not in self._processing:
                        self._queued.add(k)
                        self._queue.append(k)
                    elif k in self._processing:
                        self._dirty.add(k)
                if self._queue:
                    k = self._queue.pop(0)
                    self._queued.discard(k)
                    self._processing.add(k)
                    return k
                wait = (self._delayed[0][0] - now) if self._delayed else 1.0
                self._cv.wait(max(0.01, min(wait, 1.0)))
            return None

    def _done(self, key) -> None:
        with self._cv:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
            self._cv.notify_all()

    def run(self) -> None:
        while not self.stop.is_set():
            key = self._get()
            if key is None:
                return
            try:
                self.handler(key)
                self.forget(key)
            except ApiError as e:
                if e.conflict:  # our cache was behind a write: routine, retry soon from fresher data
                    log.debug("%s: sync %s conflicted: %s", self.name, key, e)
                else:
                    log.warning("%s: sync %s failed: %s", self.name, key, e)
                self.add_rate_limited(key)
            except Exception as e:
                log.warning("%s: sync %s failed: %s", self.name, key, e, exc_info=log.isEnabledFor(logging.DEBUG))
                self.add_rate_limited(key)
            finally:
                self._done(key)


class Manager:
    """Shared informers + controllers. Controllers register handlers on `informers` and get queues."""

    RESOURCES = ("namespaces", "nodes", "pods", "persistentvolumeclaims", "persistentvolumes", "storageclasses",
                 "deployments", "replicasets", "statefulsets", "controllerrevisions")

    def __init__(self, client: Client, controllers: list[str] | None = None, resync: float = 15.0,
                 nfs_backend=None):
        self.client = client
        self.resync = resync
        self.host = socket.gethostname()
        self.informers = {r: Informer(client, r) for r in self.RESOURCES}
        self.queues: list[WorkQueue] = []
        self.controllers: list = []
        self.nfs_backend = nfs_backend
        self.stop = threading.Event()
        registry = controller_registry()
        for name in controllers or list(registry):
            if name not in registry:
                raise SystemExit(f"unknown controller {name!r}; known: {', '.join(registry)}")
            self.controllers.append(registry[name](self))

    def recorder(self, component: str) -> Recorder:
        return Recorder(self.client, component, self.host)

    def queue(self, name: str, handler) -> WorkQueue:
        q = WorkQueue(name, handler)
        self.queues.append(q)
        return q

    def start(self, sync_timeout: float = 30.0) -> "Manager":
        for inf in self.informers.values():
            inf.start()
        for inf in self.informers.values():
            if not inf.wait_synced(sync_timeout):
                raise RuntimeError(f"informer {inf.plural} did not sync: is the apiserver at {self.client.server} up?")
        for c in self.controllers:  # first pass over everything, then event driven + periodic resync
            for k in c.resync_keys():
                c.queue.add(k)
        for q in self.queues:
            threading.Thread(target=q.run, name=q.name, daemon=True).start()
        threading.Thread(target=self._resync_loop, name="resync", daemon=True).start()
        return self

    def _resync_loop(self) -> None:
        while not self.stop.wait(self.resync):
            for c in self.controllers:
                for k in c.resync_keys():
                    c.queue.add(k)

    def shutdown(self) -> None:
        self.stop.set()
        for inf in self.informers.values():
            inf.stop.set()
        for q in self.queues:
            q.stop.set()


def controller_registry() -> dict:
    from .controllers.deployment import DeploymentController
    from .controllers.gc import GarbageCollector
    from .controllers.node_lifecycle import NodeLifecycleController
    from .controllers.protection import ProtectionController
    from .controllers.provisioner import NfsProvisioner
    from .controllers.pv_binder import PersistentVolumeBinder
    from .controllers.replicaset import ReplicaSetController
    from .controllers.scheduler import Scheduler
    from .controllers.statefulset import StatefulSetController
    return {"scheduler": Scheduler, "statefulset": StatefulSetController, "deployment": DeploymentController,
            "replicaset": ReplicaSetController, "garbagecollector": GarbageCollector,
            "persistentvolume-binder": PersistentVolumeBinder, "nfs-provisioner": NfsProvisioner, "pvc-protection": ProtectionController,
            "node-lifecycle": NodeLifecycleController}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labtwin.kube.controller_manager", description=__doc__)
    ap.add_argument("--server", default="http://127.0.0.1:6443")
    ap.add_argument("--controllers", default="*", help="comma list of controllers, * for all")
    ap.add_argument("--resync", type=float, default=15.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = Client(a.server, user_agent="labtwin-controller-manager")
    names = None if a.controllers == "*" else [c.strip() for c in a.controllers.split(",") if c.strip()]
    while True:  # the apiserver may start after us (systemd ordering is not readiness)
        try:
            client.request("GET", "/version")
            break
        except OSError as e:
            log.info("waiting for the apiserver at %s: %s", a.server, e)
            time.sleep(1)
    mgr = Manager(client, names, resync=a.resync).start()
    log.info("controllers running: %s", ", ".join(type(c).__name__ for c in mgr.controllers))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    mgr.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
