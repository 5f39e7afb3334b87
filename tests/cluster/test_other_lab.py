"""Another lab's values on the real cluster (issue 8): StatefulSet `web`, Service `web-hl`,
StorageClass `nfs-retain`, export `/srv/nfs`, image `site`, 5 -> 8 replicas behind partition 6.
Any export path works now that pods mount NFS through the kubelet (the emulation knew only
/nfsdata)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"


def test_up_with_another_labs_values(cluster):
    data = yaml.safe_load(Path(cluster.inventory_path).read_text())
    data["nfs"]["export"] = "/srv/nfs"
    data["images"]["web"]["repository"] = "site"
    k = data["kubernetes"]
    k["storage_class"]["name"] = "nfs-retain"
    k["service"]["name"] = "web-hl"
    k["statefulset"].update(name="web", replicas=5)
    k["rollout"].update(replicas=8, partition=6)
    inv = Path(cluster.inventory_path).parent / "other-lab.yaml"
    inv.write_text(yaml.safe_dump(data, sort_keys=False))

    p = subprocess.run([str(INVOKE), "up", "-i", str(inv)], cwd=REPO, capture_output=True, text=True,
                       timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]

    pods = cluster.kubectl_json("get pods -l app=web")["items"]
    served = {int(x["metadata"]["name"].rsplit("-", 1)[1]):
              cluster.sh("master", f"curl -s -m 5 http://{shlex.quote(x['status']['podIP'])}/").strip()
              for x in pods}
    assert served == {o: f"Version: --{'v1' if o < 6 else 'v2'}" for o in range(8)}
    pvcs = cluster.kubectl_json("get pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in pvcs) == sorted(f"test-web-{o}" for o in range(8))
    assert {c["status"]["phase"] for c in pvcs} == {"Bound"}
    assert {c["spec"]["storageClassName"] for c in pvcs} == {"nfs-retain"}
    dirs = cluster.sh("master", "ls /srv/nfs").split()
    assert sorted(dirs) == sorted(f"default-test-web-{o}-{c['spec']['volumeName']}"
                                  for o, c in enumerate(sorted(pvcs, key=lambda c: int(c["metadata"]["name"].rsplit("-", 1)[1]))))
    svc = cluster.kubectl_json("get service web-hl")
    assert svc["spec"]["clusterIP"] == "None"
    sts = cluster.kubectl_json("get statefulset web")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == f"{cluster.registry}/site:v2"
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 6
