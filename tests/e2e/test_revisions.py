"""verify expects what Kubernetes does, not an ordinal rule: each pod's image from the
StatefulSet's revisions, each pod's content from what labkit last wrote to its PV. The sequence
the seed's readers go on with: the seed, the full rollout (partition 0), a scale-down (which
puts the inventory's partition 4 back: no pod is rolled back), a scale-up, and a new tag.

The tests build on each other in file order on one fresh twin that ran the seed flow."""
from __future__ import annotations

import pytest
import yaml

from e2ekit import NS, STS, seed_flow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def t(e2e):
    seed_flow(e2e)
    return e2e


def _images(t) -> dict[int, str]:
    return {o: p["spec"]["containers"][0]["image"].rsplit(":", 1)[1] for o, p in sorted(t.pods().items())}


def _verify_green(t, n: int) -> str:
    res = t.invoke("verify", check=False)
    assert res.returncode == 0 and f"verify: {n}/{n} pods ok" in res.output, res.output[-3000:]
    return res.output


def test_the_full_rollout_is_green(t):
    t.invoke("scale", "--partition", "0")
    assert _images(t) == {o: "v2" for o in range(10)}
    sts = t.kubectl_json(f"get statefulset {STS} -n {NS}")["status"]
    assert sts["currentRevision"] == sts["updateRevision"]  # the rollout finished
    _verify_green(t, 10)


def test_a_scale_down_keeps_the_pods_on_v2_and_verify_agrees(t):
    # partition 4 comes back with the inventory's rollout values; pods 0-2 stay on v2 (before:
    # verify said "image tag v2, expected v1" for all three)
    out = t.invoke("scale", "--replicas", "3").output
    assert "partition 0 -> 4" in " ".join(out.split()), out[-2000:]
    assert _images(t) == {0: "v2", 1: "v2", 2: "v2"}
    _verify_green(t, 3)


def test_a_scale_up_is_green(t):
    t.invoke("scale", "--replicas", "10")
    assert _images(t) == {o: "v2" for o in range(10)}
    _verify_green(t, 10)


def test_a_new_tag_above_the_partition(t, tmp_path):
    inv = yaml.safe_load(open(t.inventory))
    inv["images"]["web"]["tags"] = ["v1", "v2", "v3"]
    path = tmp_path / "three-tags.yaml"
    path.write_text(yaml.safe_dump(inv))
    t.invoke("build-images", inventory=str(path))
    t.invoke("scale", "--image-tag", "v3", "--partition", "7", inventory=str(path))
    assert _images(t) == {o: "v2" if o < 7 else "v3" for o in range(10)}
    # the pods' content is what labkit wrote to their PVs; verify says so before and after write-v2
    _verify_green(t, 10)
    out = t.invoke("write-v2", inventory=str(path)).output
    assert "Version: --v3" in out
    # 0-3 still hold the deploy's v1 page, 4-6 the seed's v2, 7-9 now v3
    assert t.served() == {o: f"Version: --v{1 if o < 4 else 2 if o < 7 else 3}" for o in range(10)}
    _verify_green(t, 10)
