"""Requests per second of the API twin on loopback: list (100 pods, JSON and Table), get,
server-side apply and status writes, over one keep-alive connection, with persistence on.

    .venv/bin/python bench/apiserver_requests.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None, ctype="application/json", accept="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": ctype, "Accept": accept})
    r = conn.getresponse()
    payload = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {payload[:200]!r}")
    return payload


def rate(label: str, seconds: float, fn) -> None:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    dt = time.perf_counter() - t0
    print(f"{label:<42} {n / dt:8.0f} req/s  ({n} in {dt:.1f}s)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([sys.executable, "-m", "labtwin.kube.apiserver", "--bind",
                                 "127.0.0.1", "--port", str(port), "--data", data], cwd=ROOT,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            pods = "/api/v1/namespaces/default/pods"
            for i in range(100):
                request(conn, "POST", pods, {"metadata": {"name": f"p{i}", "labels": {
                    "app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
            print(f"API twin on 127.0.0.1:{port}, 100 pods stored, persistence to {data}")
            rate("list 100 pods (JSON)", a.seconds, lambda n: request(conn, "GET", pods))
            rate("list 100 pods (Table, kubectl get)", a.seconds, lambda n: request(
                conn, "GET", pods, accept="application/json;as=Table;v=v1;g=meta.k8s.io"))
            rate("get one pod", a.seconds, lambda n: request(conn, "GET", f"{pods}/p1"))
            sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 1, "serviceName": "web",
                            "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "web",
                                                                  "image": "web:v1"}]}}}}
            path = "/apis/apps/v1/namespaces/default/statefulsets/web?fieldManager=bench&force=true"

            def apply(n):
                sts["spec"]["replicas"] = n % 10 + 1  # a real change every time
                request(conn, "PATCH", path, sts, "application/apply-patch+yaml")
            rate("server-side apply (changing replicas)", a.seconds, apply)
            rate("status merge-patch of a pod", a.seconds, lambda n: request(
                conn, "PATCH", f"{pods}/p{n % 100}/status",
                {"status": {"phase": "Running", "podIP": f"10.244.1.{n % 250}"}},
                "application/merge-patch+json"))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
