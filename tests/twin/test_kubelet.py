"""The kubelet inside the twin's hosts: real dockerd per node, pod network routed between hosts,
NFS PV directories bind-mounted, image pulls through each node's own docker configuration.

Brings up its own twin instance (`ltkube`, 10.213.24.0/24) with the Kubernetes units, so it does
not depend on the session twin's --kube setting."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kube"))  # the manifests test_controllers uses
from kubetwin import nfs_class, nfs_provisioner, web_statefulset  # noqa: E402
from labtwin.kube.client import Client  # noqa: E402

pytestmark = pytest.mark.twin

NAME, SUBNET = "ltkube", "10.213.24.0/24"


class KubeTwin:
    def __init__(self, cfg):
        from labtwin.hosts import lab
        self.cfg, self.lab = cfg, lab
        self.addr = {h.name: str(h.address) for h in cfg.hosts}
        self.client = Client(f"http://{self.addr['master']}:6443", timeout=10)

    def sh(self, host: str, cmd: str, timeout: float = 120) -> str:
        from labtwin.hosts.host import run_in
        rc, out, err = run_in(self.lab.init_pid(self.cfg, self.cfg.host(host)), cmd, timeout=timeout)
        assert rc == 0, f"{host}: {cmd}: {err or out}"
        return out

    def run(self, host: str, cmd: str, timeout: float = 120) -> tuple[int, str, str]:
        from labtwin.hosts.host import run_in
        return run_in(self.lab.init_pid(self.cfg, self.cfg.host(host)), cmd, timeout=timeout)

    def kubectl_apply(self, text: str) -> str:
        return self.sh("master", f"printf '%s' {shlex.quote(text)} | kubectl apply -f -")

    def pod(self, name: str) -> dict:
        return self.client.get("pods", name, "default")


@pytest.fixture(scope="module")
def kt():
    if os.geteuid() != 0:
        pytest.fail("the twin needs root: run the tests as root")
    from labtwin.hosts import lab
    from labtwin.hosts.config import TwinConfig
    cfg = TwinConfig.from_env(name=NAME, state=None, subnet=SUBNET, kube=True)
    lab.down(cfg)
    lab.up(cfg)
    try:
        t = KubeTwin(cfg)
        wait(lambda: len([n for n in t.client.list("nodes")["items"] if _ready(n)]) == 2, 60, "two Ready nodes")
        yield t
    finally:
        lab.down(cfg)


def _ready(obj: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions") or [])


def wait(fn, timeout: float, what: str):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
        except OSError as e:  # the apiserver may still be starting
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def web(name: str, node: str, image: str, extra: str = "", claim: str = "") -> str:
    vol = (f"\n    volumeMounts: [{{name: www, mountPath: /usr/local/apache2/htdocs}}]"
           f"\n  volumes: [{{name: www, persistentVolumeClaim: {{claimName: {claim}}}}}]") if claim else ""
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: web
    image: {image}{extra}
    ports: [{{containerPort: 80, name: http}}]
    readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}{vol}
"""


def test_nodes_register_with_runtime_addresses_and_pod_cidr(kt):
    nodes = {n["metadata"]["name"]: n for n in kt.client.list("nodes")["items"]}
    assert sorted(nodes) == ["node01", "node02"]
    for name, cidr in (("node01", "10.244.1.0/24"), ("node02", "10.244.2.0/24")):
        n = nodes[name]
        assert n["spec"]["podCIDR"] == cidr
        assert {"type": "InternalIP", "address": kt.addr[name]} in n["status"]["addresses"]
        assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
    assert "cni0" in kt.sh("node01", "docker network inspect podnet --format '{{index .Options \"com.docker.network.bridge.name\"}}'")
    assert "-A DOCKER-USER -o cni0 -j ACCEPT" in kt.sh("node01", "iptables -S DOCKER-USER")


def test_pod_on_a_pv_serves_the_nfs_directory_and_reports_status(kt):
    d = kt.cfg.nfs_disk / "kubelet-test"
    d.mkdir(parents=True, exist_ok=True)
    (d / "index.html").write_text("Version: --kubelet\n")
    kt.kubectl_apply(f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: kubelet-test}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  nfs: {{server: {kt.addr['master']}, path: /nfsdata/kubelet-test}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: www}}
spec: {{storageClassName: manual, accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 100Mi}}}}}}
---
{web('web-a', 'node02', 'httpd:2.4', claim='www')}""")
    p = wait(lambda: (lambda p: p if _ready(p) else None)(kt.pod("web-a")), 60, "web-a Ready")
    st = p["status"]
    assert st["phase"] == "Running" and st["hostIP"] == kt.addr["node02"]
    assert st["podIP"].startswith("10.244.2.") and st["podIPs"] == [{"ip": st["podIP"]}]
    assert [c["type"] for c in st["conditions"] if c["status"] == "True"] >= ["Initialized", "Ready"]
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["image"] == "httpd:2.4" and cs["containerID"].startswith("docker://") and cs["imageID"]
    # master reaches the pod on the other host through the host-gw route
    assert kt.sh("master", f"curl -s --max-time 5 http://{st['podIP']}/") == "Version: --kubelet\n"
    # the container is the kubelet's own, named and labelled like the real one's
    names = kt.sh("node02", "docker ps --format '{{.Names}}'").split()
    assert f"k8s_web_web-a_default_{p['metadata']['uid']}_0" in names
    # writes on the export show at once in the pod
    (d / "index.html").write_text("changed\n")
    assert kt.sh("master", f"curl -s --max-time 5 http://{st['podIP']}/") == "changed\n"
    # deleting the pod stops and removes its container
    kt.sh("master", "kubectl delete pod web-a --wait=true --timeout=60s")
    wait(lambda: "web-a" not in kt.sh("node02", "docker ps -a --format '{{.Names}}'"), 30, "container removed")


def test_pull_from_a_registry_the_node_does_not_trust_backs_off_with_the_runtime_message(kt):
    reg = f"{kt.addr['master']}:5000"
    kt.sh("master", "docker run -d --name registry -p 5000:5000 registry:2 >/dev/null && "
                    "for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ && break; sleep 0.2; done && "
                    "docker tag httpd:2.4 localhost:5000/web:v1 && docker push -q localhost:5000/web:v1")
    kt.kubectl_apply(web("web-b", "node01", f"{reg}/web:v1"))

    def waiting():
        cs = (kt.pod("web-b").get("status", {}).get("containerStatuses") or [{}])[0]
        return cs.get("state", {}).get("waiting")

    def pull_errors():
        # ErrImagePull lasts until the next sync puts the container in back-off, so a poll can miss
        # the status; the kubelet's events, as `kubectl describe pod` shows them, stay.
        events = kt.client.list("events", "default")["items"]
        return [e for e in events if e.get("involvedObject", {}).get("name") == "web-b"
                and e.get("reason") == "Failed" and "Failed to pull image" in e.get("message", "")]
    failed = wait(pull_errors, 60, "a Failed to pull image event")
    assert "http: server gave HTTP response to HTTPS client" in failed[0]["message"]
    backoff = wait(lambda: (lambda w: w if w and w.get("reason") == "ImagePullBackOff" else None)(waiting()),
                   60, "ImagePullBackOff")
    assert backoff["message"] == f'Back-off pulling image "{reg}/web:v1"'
    assert kt.pod("web-b")["status"]["phase"] == "Pending"
    kt.sh("master", "kubectl delete pod web-b --wait=true --timeout=60s")


def test_crashing_container_is_restarted_with_back_off(kt):
    kt.kubectl_apply(web("web-c", "node01", "httpd:2.4",
                         extra='\n    command: ["/bin/sh", "-c", "echo hello-from-web-c; exit 3"]'))

    def restarted():
        cs = (kt.pod("web-c").get("status", {}).get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 and cs.get("lastState", {}).get("terminated") else None
    cs = wait(restarted, 60, "a restart")
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    wait(lambda: ((kt.pod("web-c")["status"]["containerStatuses"][0].get("state", {}).get("waiting") or {})
                  .get("reason") == "CrashLoopBackOff"), 60, "CrashLoopBackOff")
    # the kubelet API an apiserver would proxy `kubectl logs` to
    api = f"http://{kt.addr['node01']}:10250"
    assert kt.sh("master", f"curl -s {api}/healthz") == "ok"
    assert kt.sh("master", f"curl -s '{api}/containerLogs/default/web-c/web?previous=true'") == "hello-from-web-c\n"
    assert "404" in kt.sh("master", f"curl -s -o /dev/null -w '%{{http_code}}' {api}/containerLogs/default/nope/web")
    # the same through the apiserver, as a user reads why a pod crashes
    assert kt.sh("master", "kubectl logs web-c --previous") == "hello-from-web-c\n"
    kt.sh("master", "kubectl delete pod web-c --wait=true --timeout=60s")


def test_kubectl_logs_on_master_reads_the_container_through_its_kubelet(kt):
    # no readiness probe: httpd's access log (stdout) stays empty; its start-up notices (stderr)
    # are silenced, so the two lines are all there is
    kt.kubectl_apply("""apiVersion: v1
kind: Pod
metadata: {name: web-l}
spec:
  nodeSelector: {kubernetes.io/hostname: node02}
  containers:
  - name: web
    image: httpd:2.4
    command: ["/bin/sh", "-c", "echo line-one; echo line-two; exec httpd -DFOREGROUND 2>/dev/null"]
""")

    def running():
        cs = (kt.pod("web-l").get("status", {}).get("containerStatuses") or [{}])[0]
        return "running" in cs.get("state", {})
    wait(running, 60, "web-l running")
    out = wait(lambda: (lambda o: o if "line-two" in o else None)(kt.sh("master", "kubectl logs web-l")),
               20, "both lines in kubectl logs")
    assert out == "line-one\nline-two\n"
    assert kt.sh("master", "kubectl logs web-l --tail=1") == "line-two\n"
    assert kt.sh("master", "kubectl logs web-l -c web --limit-bytes=4") == "line"
    # follow: the lines so far, then kept open until the client goes (timeout ends it)
    rc, out, _ = kt.run("master", "timeout 3 kubectl logs -f web-l")
    assert (rc, out) == (124, "line-one\nline-two\n")
    # web-l stays quiet: the kubelet ends its `docker logs --follow` because the client went
    wait(lambda: "--follow" not in kt.sh("node02", "ps -eo args"), 10, "docker logs --follow gone with its client")
    rc, _, err = kt.run("master", "kubectl logs nope")
    assert rc == 1 and '(NotFound): pods "nope" not found' in err
    kt.sh("master", "kubectl delete pod web-l --wait=true --timeout=60s")


GANESHA = """NFS_CORE_PARAM { Protocols = 3, 4; }
EXPORT {
	Export_Id = 1;
	Path = "/nfsdata";
	Pseudo = "/nfsdata";
	Protocols = 3, 4;
	Transports = TCP;
	SecType = sys;
	Squash = No_Root_Squash;
	Access_Type = RW;
	FSAL { Name = VFS; }
}
"""


def start_nfs(kt) -> None:
    kt.sh("master", f"printf '%s' {shlex.quote(GANESHA)} > /etc/ganesha/ganesha.conf && "
                    "systemctl start rpcbind && systemctl restart nfs-ganesha && "
                    "for i in $(seq 100); do showmount -e 127.0.0.1 2>/dev/null | grep -q /nfsdata && break; sleep 0.2; done")


def nfs_and_provisioner(kt, reclaim: str, nfs: bool = True) -> None:
    """ganesha exporting /nfsdata on master, the StorageClass and the provisioner Deployment."""
    if nfs:
        start_nfs(kt)
    m = kt.addr["master"]
    kt.sh("master", "kubectl delete storageclass nfs-client --ignore-not-found")
    # no export mount in the pod: it must run while NFS is down, for the provisioning failure to show
    kt.kubectl_apply(nfs_class(reclaim) + "---\n" + nfs_provisioner(m, mount=False))


def test_provisioning_fails_while_nfs_is_down_and_retries(kt):
    nfs_and_provisioner(kt, "Delete", nfs=False)
    kt.kubectl_apply("""apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: early}
spec: {storageClassName: nfs-client, accessModes: [ReadWriteOnce], resources: {requests: {storage: 100Mi}}}
""")

    def failed():
        return [e["message"] for e in kt.client.list("events", "default")["items"]
                if e["involvedObject"]["name"] == "early" and e["reason"] == "ProvisioningFailed"]
    msgs = wait(failed, 90, "ProvisioningFailed")
    assert msgs[0].startswith('failed to provision volume with StorageClass "nfs-client": unable to create directory')
    assert kt.client.get("persistentvolumeclaims", "early", "default")["status"]["phase"] == "Pending"
    start_nfs(kt)
    wait(lambda: kt.client.get("persistentvolumeclaims", "early", "default")["status"]["phase"] == "Bound",
         90, "bound after NFS came up")
    kt.sh("master", "kubectl delete pvc early --wait=true --timeout=60s")


def test_provisioner_creates_and_removes_directories_through_nfs(kt):
    nfs_and_provisioner(kt, "Delete")
    m = kt.addr["master"]
    kt.kubectl_apply("""apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {storageClassName: nfs-client, accessModes: [ReadWriteOnce], resources: {requests: {storage: 100Mi}}}
""")
    pvc = wait(lambda: (lambda c: c if c.get("status", {}).get("phase") == "Bound" else None)(
        kt.client.get("persistentvolumeclaims", "data", "default")), 90, "claim bound")
    pv = kt.client.get("persistentvolumes", pvc["spec"]["volumeName"])
    dirname = f"default-data-{pv['metadata']['name']}"
    assert pv["spec"]["nfs"] == {"server": m, "path": f"/nfsdata/{dirname}"}
    d = kt.cfg.nfs_disk / dirname
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o777
    kt.sh("master", "kubectl delete pvc data --wait=true --timeout=60s")
    wait(lambda: kt.client.get_or_none("persistentvolumes", pv["metadata"]["name"]) is None, 60, "PV deleted")
    assert not d.exists()


STS = """apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
""" + web_statefulset(6, "httpd:2.4", """        env: [{name: VERSION, value: v1}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
""")


def test_statefulset_on_real_containers_orders_partitions_and_keeps_data(kt):
    nfs_and_provisioner(kt, "Retain")
    t0 = time.monotonic()
    kt.kubectl_apply(STS)
    out = kt.sh("master", "kubectl rollout status statefulset/web --timeout=240s", timeout=300)
    t_deploy = time.monotonic() - t0
    assert "partitioned roll out complete: 6 new pods have been updated..." in out
    ps = {p["metadata"]["name"]: p for p in kt.client.list("pods", "default", label_selector="app=web")["items"]}
    assert sorted(ps) == [f"web-{i}" for i in range(6)]
    assert {p["spec"]["nodeName"] for p in ps.values()} == {"node01", "node02"}  # spread over both nodes
    # write each pod's content into its own PV directory (path read from the PV, never rebuilt)
    for i in range(6):
        claim = kt.client.get("persistentvolumeclaims", f"www-web-{i}", "default")
        path = kt.client.get("persistentvolumes", claim["spec"]["volumeName"])["spec"]["nfs"]["path"]
        (kt.cfg.nfs_disk / path.removeprefix("/nfsdata/")).joinpath("index.html").write_text(f"pod {i} v1\n")
    for i in range(6):
        assert kt.sh("master", f"curl -s --max-time 5 http://{ps[f'web-{i}']['status']['podIP']}/") == f"pod {i} v1\n"
    t1 = time.monotonic()
    kt.sh("master", "kubectl patch statefulset web --type strategic -p " + shlex.quote(
        '{"spec":{"replicas":10,"updateStrategy":{"rollingUpdate":{"partition":4}},'
        '"template":{"spec":{"containers":[{"name":"web","env":[{"name":"VERSION","value":"v2"}]}]}}}}'))
    out = kt.sh("master", "kubectl rollout status statefulset/web --timeout=240s", timeout=300)
    t_scale = time.monotonic() - t1
    assert "partitioned roll out complete: 6 new pods have been updated..." in out
    st = kt.client.get("statefulsets", "web", "default")["status"]
    assert st["currentRevision"] != st["updateRevision"]
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"], st["updatedReplicas"]) == (10, 10, 4, 6)
    ps = {p["metadata"]["name"]: p for p in kt.client.list("pods", "default", label_selector="app=web")["items"]}
    for i in range(10):
        rev = ps[f"web-{i}"]["metadata"]["labels"]["controller-revision-hash"]
        assert (rev == st["updateRevision"]) == (i >= 4)
    # pods 4 and 5 were recreated on the new revision and still serve their old directories
    for i in range(6):
        assert kt.sh("master", f"curl -s --max-time 5 http://{ps[f'web-{i}']['status']['podIP']}/") == f"pod {i} v1\n"
    assert len({kt.client.get("persistentvolumeclaims", f"www-web-{i}", "default")["spec"]["volumeName"]
                for i in range(10)}) == 10
    print(f"\ntwin: 6 pods ready in {t_deploy:.1f}s; 6->10 with partition 4 in {t_scale:.1f}s")


def test_pod_comes_back_after_the_nodes_dockerd_restarts(kt):
    kt.kubectl_apply(web("web-d", "node01", "httpd:2.4"))
    p = wait(lambda: (lambda p: p if _ready(p) else None)(kt.pod("web-d")), 60, "web-d Ready")
    ip = p["status"]["podIP"]
    kt.sh("node01", "systemctl restart docker")  # what setting insecure-registries does to a node

    def back():
        q = kt.pod("web-d")
        cs = q["status"]["containerStatuses"][0]
        return q if _ready(q) and cs["restartCount"] >= 1 else None
    q = wait(back, 90, "web-d Ready again after the restart")
    assert q["status"]["podIP"] == ip  # this kubelet gives a pod back its IP (a real new sandbox may get another)
    assert kt.sh("master", f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://{ip}/") == "200"
    kt.sh("master", "kubectl delete pod web-d --wait=true --timeout=60s")
