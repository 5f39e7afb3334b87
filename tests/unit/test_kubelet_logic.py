"""The kubelet's decisions without a docker daemon: the exact `docker run` argv it builds, NFS path
mapping, pull policy and back-off, and the pod status it reports."""
import json
import os
import socket
import time

import pytest

from labtwin.kube.kubelet import Config, DockerError, Kubelet


class FakeDocker:
    def __init__(self, images=("httpd:2.4",), pull_error=None):
        self.calls, self.images, self.pull_error = [], set(images), pull_error
        self.containers_ = []

    def run(self, *args, timeout=120):
        self.calls.append(list(args))
        if args[0] == "pull":
            if self.pull_error:
                raise DockerError(["docker", *args], 1, self.pull_error)
            self.images.add(args[1])
            return ""
        if args[0] == "run":
            return "c0ffee\n"
        return ""

    def inspect(self, kind, ref):
        if kind == "image":
            return {"Id": "sha256:1", "RepoDigests": ["httpd@sha256:abc"]} if ref in self.images or ref == "sha256:1" else None
        if kind == "container":
            return {"Id": ref, "Image": "sha256:1", "Name": "/x",
                    "State": {"Running": True, "StartedAt": "2026-01-01T00:00:00.123Z"},
                    "Config": {"Labels": {"labtwin.pod-ip": "10.244.1.2"}}}
        return None

    def containers(self, node):
        return self.containers_


class FakeClient:
    def __init__(self, objs):
        self.objs, self.events, self.status_writes = objs, [], []

    def get_or_none(self, plural, name, namespace=None):
        return self.objs.get((plural, name))

    def create(self, plural, obj, namespace=None, **kw):
        self.events.append((obj.get("reason"), obj.get("message")))
        return obj

    def update(self, plural, obj, subresource=None):
        return obj

    def update_status(self, plural, obj):
        self.status_writes.append(obj)
        return obj


@pytest.fixture
def kubelet(tmp_path):
    nfs = tmp_path / "nfs"
    (nfs / "default-www-web-0-pvc-1").mkdir(parents=True)
    cfg = Config(server="http://x", node_name="node01", node_ip="10.213.20.7", pod_cidr="10.244.1.0/24",
                 nfs_mounts={"10.213.20.6:/nfsdata": str(nfs)}, state_dir=str(tmp_path / "state"))
    client = FakeClient({
        ("persistentvolumeclaims", "www-web-0"): {"spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}},
        ("persistentvolumes", "pvc-1"): {"spec": {"nfs": {"server": "10.213.20.6",
                                                          "path": "/nfsdata/default-www-web-0-pvc-1"}}},
    })
    k = Kubelet(cfg, client=client, docker=FakeDocker())
    k.recorder.min_interval = 0
    return k


def web_pod(image="httpd:2.4", **container):
    c = {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
         "env": [{"name": "A", "value": "x; rm -rf /"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
         "volumeMounts": [{"name": "www", "mountPath": "/usr/local/apache2/htdocs"}], **container}
    return {"metadata": {"name": "web-0", "namespace": "default", "uid": "u1"},
            "spec": {"hostname": "web-0", "subdomain": "web", "containers": [c],
                     "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]},
            "status": {"phase": "Pending"}}


def test_docker_run_argv(kubelet, tmp_path):
    pod = web_pod(command=["/bin/sh", "-c"], args=["exec httpd -DFOREGROUND"])
    st = kubelet._ensure_container(pod, pod["spec"]["containers"][0], "10.244.1.2", [])
    run = next(c for c in kubelet.docker.calls if c[0] == "run")
    nfs = tmp_path / "nfs" / "default-www-web-0-pvc-1"
    assert run == ["run", "-d", "--name", "k8s_web_web-0_default_u1_0", "--restart", "no", "--hostname", "web-0",
                   "--label", "labtwin.kubelet.node=node01", "--label", "io.kubernetes.pod.name=web-0",
                   "--label", "io.kubernetes.pod.namespace=default", "--label", "io.kubernetes.pod.uid=u1",
                   "--label", "io.kubernetes.container.name=web", "--label", "labtwin.pod-ip=10.244.1.2",
                   "--label", "labtwin.attempt=0", "--network", "podnet", "--ip", "10.244.1.2",
                   "--add-host", "web-0.web.default.svc.cluster.local:10.244.1.2",
                   "-e", "A=x; rm -rf /", "-e", "POD=web-0", "-v", f"{nfs}:/usr/local/apache2/htdocs",
                   "--entrypoint", "/bin/sh", "httpd:2.4", "-c", "exec httpd -DFOREGROUND"]
    assert ["pull", "httpd:2.4"] not in kubelet.docker.calls  # IfNotPresent and present
    assert st["containerID"] == "docker://c0ffee" and st["imageID"] == "docker-pullable://httpd@sha256:abc"
    assert st["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}} and st["ready"] is True


def test_unbound_claim_waits_in_container_creating(kubelet):
    kubelet.client.objs[("persistentvolumeclaims", "www-web-0")]["status"]["phase"] = "Pending"
    pod = web_pod()
    st = kubelet._ensure_container(pod, pod["spec"]["containers"][0], "10.244.1.2", [])
    assert st["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert ("FailedMount", 'MountVolume.SetUp failed: persistentvolumeclaim "www-web-0" is not bound') in kubelet.client.events
    assert not any(c[0] == "run" for c in kubelet.docker.calls)


def test_refused_pull_reports_err_image_pull_then_back_off(kubelet):
    msg = 'Error response from daemon: Get "https://10.213.20.6:5000/v2/": http: server gave HTTP response to HTTPS client'
    kubelet.docker.pull_error = msg
    pod = web_pod(image="10.213.20.6:5000/web:v1")
    c = pod["spec"]["containers"][0]
    st = kubelet._ensure_container(pod, c, "10.244.1.2", [])
    assert st["state"] == {"waiting": {"reason": "ErrImagePull", "message": msg}}
    st = kubelet._ensure_container(pod, c, "10.244.1.2", [])  # within the back-off: no new pull
    assert st["state"]["waiting"] == {"reason": "ImagePullBackOff",
                                      "message": 'Back-off pulling image "10.213.20.6:5000/web:v1"'}
    assert [x for x in kubelet.docker.calls if x[0] == "pull"] == [["pull", "10.213.20.6:5000/web:v1"]]
    kubelet._write_status(pod, "10.244.1.2", [st])
    written = kubelet.client.status_writes[-1]["status"]
    assert written["phase"] == "Pending" and written["podIP"] == "10.244.1.2" and written["hostIP"] == "10.213.20.7"
    ready = next(x for x in written["conditions"] if x["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ContainersNotReady",
                                                                    "containers with unready status: [web]")


@pytest.mark.parametrize("server,path,expect", [
    ("10.213.20.6", "/nfsdata/default-www-web-0-pvc-1", "default-www-web-0-pvc-1"),
    ("10.213.20.6", "/nfsdata", ""),
    ("10.213.20.9", "/nfsdata/default-www-web-0-pvc-1", None),  # another server: no local view
    ("10.213.20.6", "/nfsdata2/x", None),                      # prefix of a different export
])
def test_nfs_mapping(kubelet, tmp_path, server, path, expect):
    got = kubelet._nfs_local({"server": server, "path": path})
    assert got == (None if expect is None else str(tmp_path / "nfs" / expect) if expect else str(tmp_path / "nfs"))


def test_config_requires_the_contract_keys(tmp_path):
    p = tmp_path / "k.json"
    p.write_text(json.dumps({"server": "http://x:6443", "node_name": "n"}))
    with pytest.raises(SystemExit, match="missing node_ip, pod_cidr"):
        Config.load(str(p))


def test_follow_ends_the_docker_logs_process_when_the_client_goes(kubelet, tmp_path):
    """A quiet container writes nothing for long: the kubelet must notice the gone client itself
    instead of keeping `docker logs --follow` until the container's next line."""
    pidfile = tmp_path / "docker.pid"
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\necho $$ > {pidfile}\necho \"$*\"\nexec sleep 300\n")
    docker.chmod(0o755)
    kubelet.docker.binary = str(docker)
    kubelet.docker.containers_ = [{"Id": "c1", "Config": {"Labels": {
        "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.container.name": "web", "labtwin.attempt": "0"}}}]
    kubelet.cfg.node_ip, kubelet.cfg.port = "127.0.0.1", 0
    srv = kubelet.serve()
    try:
        s = socket.create_connection(srv.server_address[:2], timeout=10)
        s.sendall(b"GET /containerLogs/default/web-0/web?follow=true&tailLines=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"logs --tail 5 --follow c1\n" not in got:
            data = s.recv(4096)
            assert data, got
            got += data
        assert got.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in got
        pid = int(pidfile.read_text())
        os.kill(pid, 0)  # still following while the client stays
        s.close()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("docker logs --follow outlived its client")
    finally:
        srv.shutdown()
        srv.server_close()
