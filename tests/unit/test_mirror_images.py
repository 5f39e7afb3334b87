"""mirror-images (issue 9, offline labs) without hosts: the image facts on recorded outputs
(tests/data/facts/images/, each with the command that produced it), reference -> copy mapping and
the planner as data (tests/data/operations/mirror/; a ``"recorded:<name>"`` value stands for that
recorded fact's parsed value), `docker save` archives (manifest.json recorded from real archives),
the upload, the inventory switch in manifests and in `up`, the task, and the twin's inventory."""
from __future__ import annotations

import gzip
import importlib
import io
import ipaddress
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from invoke import Config, MockContext, Program

from labkit import (flows, flows_cluster, flows_content, flows_images, flows_kube, flows_up, flows_verify,
                    inventory, manifests, runner)
from labkit.errors import InventoryError, OperationError
from labkit.facts import images as image_facts
from labkit.facts.base import FactResult
from labkit.operations import mirror
from labkit.operations.base import Command, Upload
from labkit.remote import HostConnection, SSHSettings
from factdata import plain

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "data" / "facts" / "images"
OPS = ROOT / "tests" / "data" / "operations" / "mirror"
FACT_CASES = sorted(FACTS.glob("*.json"))
PLAN_CASES = sorted(p for p in OPS.glob("*.json") if p.name != "references.json")
REFS = json.loads((OPS / "references.json").read_text())
PROV = "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2"


# ------------------------------------------------------------------ facts on recorded outputs


def _fact(case: dict):
    return getattr(image_facts, case["fact"])(*case["args"])


@pytest.mark.parametrize("path", FACT_CASES, ids=[p.stem for p in FACT_CASES])
def test_fact_parses_recorded_output(path):
    case = json.loads(path.read_text())
    fact = _fact(case)
    assert fact.build() == case["command"], "the recording was made with another command"
    assert case["exited"] in fact.ok_exit_codes
    result = FactResult(case["stdout"], case["stderr"], case["exited"])
    if "error" in case:
        with pytest.raises(OperationError) as exc:
            fact.process(result)
        assert case["error"] in str(exc.value)
        return
    assert plain(fact.process(result)) == case["expected"]


def test_every_recording_says_where_it_comes_from():
    assert len(FACT_CASES) >= 8
    for path in FACT_CASES:
        assert json.loads(path.read_text())["source"], path.name


def test_the_registrys_manifest_is_verified_against_its_digest():
    case = json.loads((FACTS / "manifest-provisioner.json").read_text())
    fact = _fact(case)
    assert fact.process(FactResult(case["stdout"], "", 0))["verified"] is True
    # one byte of the body changed: the config it names is no longer proven to be the digest's
    tampered = case["stdout"].replace('"size": 447', '"size": 448')
    assert tampered != case["stdout"]
    got = fact.process(FactResult(tampered, "", 0))
    assert got["verified"] is False and got["digest"] == case["expected"]["digest"]


def test_http_status_other_than_200_or_404_is_an_error_value():
    fact = image_facts.RegistryManifest("10.0.0.6:5000", "library/httpd", "2.4")
    got = fact.process(FactResult("HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}", "", 0))
    assert got == {"error": "GET /v2/library/httpd/manifests/2.4: HTTP 401: {}"}


def test_a_response_after_100_continue_is_read_from_its_last_header_block():
    status, headers, body = image_facts.split_response(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nX-A: b\r\n\r\n{}")
    assert (status, headers, body) == (404, {"x-a": "b"}, "{}")


@pytest.mark.parametrize("make", [
    lambda: image_facts.LocalImage("httpd:2.4;reboot"),
    lambda: image_facts.LocalImage("$(id)"),
    lambda: image_facts.RegistryManifest("h;id:5000", "library/httpd", "2.4"),
    lambda: image_facts.RegistryManifest("h:5000", "Library/httpd", "2.4"),
    lambda: image_facts.RegistryManifest("h:5000", "library/httpd", "2.4 && reboot"),
])
def test_hostile_values_never_reach_a_command(make):
    with pytest.raises(ValueError):
        make()


def test_fact_commands_quote_their_values():
    assert image_facts.RegistryManifest("[fd00::6]:5000", "library/httpd", "2.4").build().endswith(
        " 'http://[fd00::6]:5000/v2/library/httpd/manifests/2.4'")
    assert image_facts.LocalImage("httpd:2.4").build().endswith("}}}' httpd:2.4")


# ------------------------------------------------------------------ references


@pytest.mark.parametrize("case", REFS["cases"], ids=[c["ref"][:60] for c in REFS["cases"]])
def test_reference_maps_to_the_lab_registrys_copy(case):
    assert mirror.mirror_ref(case["ref"], case["registry"]) == case["mirror"]
    assert mirror.canonical(case["ref"]) == case["canonical"]


@pytest.mark.parametrize("ref", REFS["invalid"])
def test_an_invalid_reference_is_refused(ref):
    with pytest.raises(ValueError):
        mirror.mirror_ref(ref, "10.0.0.6:5000")


# ------------------------------------------------------------------ the planner as data


def _recorded(value):
    if isinstance(value, str) and value.startswith("recorded:"):
        case = json.loads((FACTS / f"{value[9:]}.json").read_text())
        return _fact(case).process(FactResult(case["stdout"], case["stderr"], case["exited"]))
    return value


def _kwargs(case: dict) -> dict:
    kw = dict(case["kwargs"])
    kw["wanted"] = [mirror.Wanted(**w) for w in kw["wanted"]]
    kw["local"] = {k: _recorded(v) for k, v in kw["local"].items()}
    kw["remote"] = {k: _recorded(v) for k, v in kw["remote"].items()}
    if "archive" in kw:
        kw["archive"] = mirror.Archive(**kw["archive"])
    return kw


def _as_data(change):
    if isinstance(change, Upload):
        return {"put": change.path, "description": change.description, "local": change.local, "size": change.size}
    assert isinstance(change, Command) and change.sudo
    return {"command": change.command}


@pytest.mark.parametrize("path", PLAN_CASES, ids=[p.stem for p in PLAN_CASES])
def test_planner(path):
    case = json.loads(path.read_text())
    kw = _kwargs(case)
    if "error" in case:
        with pytest.raises(OperationError) as exc:
            list(mirror.mirror_images(**kw))
        assert case["error"] in str(exc.value)
        return
    assert [_as_data(c) for c in mirror.mirror_images(**kw)] == case["changes"], case["doc"]


def test_planner_cases_cover_what_the_issue_asks():
    names = {p.stem for p in PLAN_CASES}
    assert {"fresh-provisioner-tag-and-push", "already-pushed-same-digest-no-change", "missing-everywhere-error",
            "from-archive-upload-load-tag-push"} <= names


def test_missing_images_are_named_together_with_one_fix():
    wanted = [mirror.Wanted("kubernetes.provisioner.image", PROV, "r:5000/sig-storage/x:v4.0.2"),
              mirror.Wanted("images.web.base", "httpd:2.4", "r:5000/library/httpd:2.4")]
    with pytest.raises(OperationError) as exc:
        list(mirror.mirror_images(wanted=wanted, local={}, remote={}, registry="r:5000", host="master"))
    msg = str(exc.value)
    assert msg.startswith(f"kubernetes.provisioner.image {PROV}; images.web.base httpd:2.4: not in master's docker")
    assert f"`docker pull {PROV} && docker pull httpd:2.4 && docker save -o images.tar {PROV} httpd:2.4`" in msg
    assert "`invoke mirror-images --from images.tar`" in msg


@pytest.mark.parametrize("remote", [None, {"error": "curl: (7) Failed to connect"}])
def test_nothing_is_the_same_as_a_registry_without_the_tag(remote):
    image = {"id": "sha256:" + "b" * 64, "repo_digests": []}
    assert not mirror.same_content(remote, mirror="r:5000/x:1", image=image, config=image["id"])


def test_a_digest_docker_recorded_for_another_repository_proves_nothing():
    remote = {"digest": "sha256:" + "c" * 64, "config": None, "verified": False, "error": None}
    image = {"id": "sha256:" + "b" * 64, "repo_digests": ["r:5000/other@sha256:" + "c" * 64]}
    assert not mirror.same_content(remote, mirror="r:5000/x:1", image=image)
    image["repo_digests"].append("r:5000/x@sha256:" + "c" * 64)
    assert mirror.same_content(remote, mirror="r:5000/x:1", image=image)


# ------------------------------------------------------------------ docker save archives


def _tar(path: Path, members: dict[str, bytes], gz: bool = False) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())
    return path


def _recorded_manifest(name: str) -> bytes:
    return json.loads((OPS / "archives" / f"{name}.json").read_text())["manifest.json"].encode()


def test_archive_of_one_image_recorded_from_docker_save(tmp_path):
    path = _tar(tmp_path / "prov.tar", {"manifest.json": _recorded_manifest("provisioner"), "layer.tar": b"x" * 10})
    a = mirror.read_archive(str(path))
    assert a.images == {PROV: "sha256:b74900f6b06ead258eaae07ef33dbb32a7bf4e203ab5623f31ffca5086ad49ea"}
    assert a.size == path.stat().st_size and a.path == str(path)


def test_archive_of_two_images_compressed(tmp_path):
    path = _tar(tmp_path / "two.tar.gz", {"manifest.json": _recorded_manifest("httpd-and-registry")}, gz=True)
    assert mirror.read_archive(str(path)).images == {
        "docker.io/library/httpd:2.4": "sha256:2b69eaaceb03e8fb3b3494a06c8c00b7bd05616851adfe52b1cd10e7454ac711",
        "docker.io/library/registry:2": "sha256:2e04043b5f4b2ffb167105114da36de592c38800f2cb2aa432aaeb5d0876495c"}


def test_archive_in_the_oci_layout_of_newer_docker(tmp_path):
    # docker 25+ saves an OCI layout and still writes manifest.json, naming configs under blobs/
    manifest = [{"Config": "blobs/sha256/" + "d" * 64, "RepoTags": ["docker.io/library/httpd:2.4"],
                 "Layers": ["blobs/sha256/" + "e" * 64]}]
    path = _tar(tmp_path / "oci.tar", {"index.json": b"{}", "manifest.json": json.dumps(manifest).encode()})
    assert mirror.read_archive(str(path)).images == {"docker.io/library/httpd:2.4": "sha256:" + "d" * 64}


@pytest.mark.parametrize("members, message", [
    ({"index.json": b"{}"}, "not a `docker save` archive (it has no manifest.json)"),
    ({"manifest.json": b'[{"Config": "ab.json", "RepoTags": null, "Layers": []}]'}, "the archive names no image"),
    ({"manifest.json": b"not json"}, "not a readable `docker save` archive"),
])
def test_bad_archives_are_refused_before_any_host(tmp_path, members, message):
    path = _tar(tmp_path / "bad.tar", members)
    with pytest.raises(OperationError) as exc:
        mirror.read_archive(str(path))
    assert message in str(exc.value) and f"--from {path}" in str(exc.value)


def test_a_missing_or_non_tar_file_is_refused(tmp_path):
    with pytest.raises(OperationError, match="no such file"):
        mirror.read_archive(str(tmp_path / "nope.tar"))
    (tmp_path / "text.tar").write_text("hello")
    with pytest.raises(OperationError, match="not a readable"):
        mirror.read_archive(str(tmp_path / "text.tar"))


def test_upload_path_is_a_tmp_name_of_the_files_identity(tmp_path):
    path = _tar(tmp_path / "prov.tar", {"manifest.json": _recorded_manifest("provisioner")})
    a = mirror.read_archive(str(path))
    first = a.upload_path
    assert first.startswith("/tmp/labkit-images-") and first.endswith(".tar") and first == a.upload_path
    path.write_bytes(path.read_bytes() + b"\0" * 1024)
    assert mirror.read_archive(str(path)).upload_path != first


@pytest.mark.parametrize("size, text", [(999, "999 B"), (6235648, "6.2 MB"), (31650304, "31.7 MB"),
                                        (2_500_000_000, "2.5 GB")])
def test_sizes_in_the_plan(size, text):
    assert mirror.human_size(size) == text


def test_the_runner_streams_an_upload_from_this_machine(tmp_path, monkeypatch):
    local = tmp_path / "images.tar"
    local.write_bytes(b"\x00tar bytes\xff")
    host = HostConnection("master", "10.0.0.6", SSHSettings(known_hosts=str(tmp_path / "kh")))
    sent, ran = [], []
    monkeypatch.setattr(host, "put_stream", lambda stream, remote: sent.append((remote, stream.read())))
    monkeypatch.setattr(host, "run", lambda cmd, **kw: ran.append(cmd))
    upload = Upload("/tmp/labkit-images-1.tar", str(local), size=11, description="upload images.tar")
    runner.apply_change(host, upload)
    assert sent == [("/tmp/labkit-images-1.tar", b"\x00tar bytes\xff")] and ran == []  # as it is, no install
    assert runner.describe(upload) == "upload images.tar"


# ------------------------------------------------------------------ the flow's step


@pytest.fixture(scope="module")
def seed():
    return inventory.load(ROOT / "hosts.yaml")


def _with(text_changes: list[tuple[str, str]], tmp_path) -> inventory.Inventory:
    text = (ROOT / "hosts.yaml").read_text()
    for old, new in text_changes:
        assert old in text
        text = text.replace(old, new)
    return inventory.parse(text, tmp_path / "lab.yaml")


def test_the_images_the_lab_needs_from_outside(seed):
    assert flows_images.wanted_images(seed) == [
        mirror.Wanted("kubernetes.provisioner.image", PROV,
                      "192.168.20.6:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2"),
        mirror.Wanted("registry.image", "registry:2", "192.168.20.6:5000/library/registry:2"),
        mirror.Wanted("images.web.base", "httpd:2.4", "192.168.20.6:5000/library/httpd:2.4")]


def test_an_image_named_twice_is_mirrored_once(tmp_path):
    inv = _with([("base: httpd:2.4", "base: docker.io/library/registry:2")], tmp_path)
    assert [(w.field, w.mirror) for w in flows_images.wanted_images(inv)] == [
        ("kubernetes.provisioner.image", "192.168.20.6:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2"),
        ("registry.image, images.web.base", "192.168.20.6:5000/library/registry:2")]


def test_the_step_runs_on_the_registry_host_only_with_one_fact_per_image_and_copy(seed):
    steps = flows_images.mirror_steps(seed)
    assert {h: len(s) for h, s in steps.items()} == {"master": 1, "node01": 0, "node02": 0}
    (step,) = steps["master"]
    assert step.name == "mirror images to 192.168.20.6:5000"
    cmds = [f.build() for f in step.facts.values()]
    assert cmds[0] == "curl -fsS -m 10 http://192.168.20.6:5000/v2/ 2>&1"
    assert len(cmds) == 1 + 3 * 3
    assert any(c.startswith("docker image inspect") and c.endswith(f" {PROV}") for c in cmds)
    assert any(c.endswith(" http://192.168.20.6:5000/v2/library/httpd/manifests/2.4") for c in cmds)


def test_an_unreachable_registry_says_run_setup_registry(seed):
    (step,) = flows_images.mirror_steps(seed)["master"]
    with pytest.raises(OperationError, match="not reachable from master .*run setup-registry first"):
        list(step.plan({"ping": {"ok": False, "error": "curl: (7) refused"}}))


# ------------------------------------------------------------------ the inventory switch


def test_mirror_is_off_by_default_and_a_real_bool(seed, tmp_path):
    assert seed.images.mirror is False
    assert _with([("    tags: [v1, v2]\n", "    tags: [v1, v2]\n  mirror: true\n")], tmp_path).images.mirror is True
    with pytest.raises(InventoryError) as exc:
        _with([("    tags: [v1, v2]\n", "    tags: [v1, v2]\n  mirror: yes please\n")], tmp_path)
    assert "images.mirror" in str(exc.value)


def test_the_switch_changes_only_the_provisioners_image(seed, tmp_path):
    on = _with([("    tags: [v1, v2]\n", "    tags: [v1, v2]\n  mirror: true\n")], tmp_path)
    off_objs, on_objs = manifests.render(seed), manifests.render(on)
    image = lambda objs: next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image(off_objs) == PROV
    assert image(on_objs) == "192.168.20.6:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
    for a, b in zip(off_objs, on_objs):
        if a["kind"] != "Deployment":
            assert a == b
    dep_off = yaml.safe_dump(next(o for o in off_objs if o["kind"] == "Deployment"))
    dep_on = yaml.safe_dump(next(o for o in on_objs if o["kind"] == "Deployment"))
    assert dep_on.replace("192.168.20.6:5000/sig-storage", "registry.k8s.io/sig-storage") == dep_off
    # the cluster is not affected: no image_repository, the kubeadm config is the same
    assert on.kubernetes.cluster == seed.kubernetes.cluster and on.kubernetes.cluster.image_repository is None


# ------------------------------------------------------------------ up runs it, in order


def _fake_flows(monkeypatch, seen: list, registry_pending: bool = False):
    from labkit.operations.base import HostPlan
    from labkit.runner import HostOutcome, RunReport

    def fake(name, operation, changes=()):
        def flow(inv, plan=False, **kw):
            seen.append((name, plan))
            report = RunReport(name, plan, {"master": HostOutcome("master", [HostPlan("master", operation,
                                                                                      list(changes))])})
            return flows.FlowResult(report, [], {})
        return flow

    start = [Command("docker run ...")] if registry_pending else []
    monkeypatch.setattr(flows, "setup_registry", fake("setup-registry", "registry container", start))
    monkeypatch.setattr(flows, "setup_nfs", fake("setup-nfs", "NFS server"))
    monkeypatch.setattr(flows_images, "mirror_images", fake("mirror-images", "mirror images",
                                                            [Command("docker push x")]))
    monkeypatch.setattr(flows, "build_images", fake("build-images", "images"))
    for module, name in ((flows_kube, "deploy"), (flows_kube, "scale"), (flows_content, "write_v2")):
        monkeypatch.setattr(module, name, lambda inv, _n=name, **kw: seen.append((_n, kw.get("plan", False))))
    monkeypatch.setattr(flows_verify, "verify", lambda inv: seen.append(("verify", False)) or "report")


@pytest.mark.parametrize("switch, expected", [
    (False, ["setup-registry", "setup-nfs", "build-images", "deploy", "scale", "write_v2", "verify"]),
    (True, ["setup-registry", "setup-nfs", "mirror-images", "build-images", "deploy", "scale", "write_v2",
            "verify"]),
])
def test_up_runs_mirror_images_after_setup_registry_before_build_images(seed, tmp_path, monkeypatch, switch,
                                                                         expected):
    inv = _with([("    tags: [v1, v2]\n", "    tags: [v1, v2]\n  mirror: true\n")], tmp_path) if switch else seed
    seen: list = []
    _fake_flows(monkeypatch, seen)
    res = flows_up.up(inv)
    assert [n for n, _ in seen] == expected and not any(p for _, p in seen)
    assert ("mirror-images" in res.steps) is switch and res.verify == "report"


def _pending_cluster(monkeypatch):
    monkeypatch.setattr(flows_cluster, "setup_cluster", lambda inv, plan=False, **kw: None)
    monkeypatch.setattr(flows_cluster, "changed", lambda result: True)


@pytest.mark.parametrize("registry_pending", [False, True])
def test_up_plan_shows_mirror_images_in_order(tmp_path, monkeypatch, capsys, registry_pending):
    inv = _with([("    tags: [v1, v2]\n", "    tags: [v1, v2]\n  mirror: true\n"),
                 ("  rollout:\n", "  cluster:\n    create: true\n  rollout:\n")], tmp_path)
    seen: list = []
    _fake_flows(monkeypatch, seen, registry_pending=registry_pending)
    _pending_cluster(monkeypatch)
    res = flows_up.up(inv, plan=True)
    out = " ".join(capsys.readouterr().out.split())
    assert list(res.steps) == ["setup-cluster", "setup-registry", "setup-nfs", "mirror-images", "build-images",
                               "deploy", "scale", "write-v2", "verify"]
    if registry_pending:  # the registry cannot be asked yet: what it would do, from the inventory
        assert res.steps["mirror-images"] == "after setup-registry"
        assert ("mirror-images", True) not in seen
        assert ("plan depends on setup-registry being applied (the registry 192.168.20.6:5000 is not running "
                "yet); then tags and pushes the images the registry lacks: "
                "192.168.20.6:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2") in out
    else:
        assert res.steps["mirror-images"] == "would change"
        assert ("mirror-images", True) in seen
    assert all(plan for _, plan in seen)


# ------------------------------------------------------------------ the task


ROOT_IN_PATH = str(ROOT)


@pytest.fixture
def tasks_module():
    sys.path.insert(0, ROOT_IN_PATH)
    try:
        yield importlib.import_module("tasks")
    finally:
        sys.path.remove(ROOT_IN_PATH)


@pytest.fixture
def lab_file(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not used\n")
    path = tmp_path / "lab.yaml"
    path.write_text((ROOT / "hosts.yaml").read_text().replace("key: ~/.ssh/id_ed25519", f"key: {key}"))
    return path


def test_the_task_passes_plan_and_from(tasks_module, lab_file, monkeypatch):
    calls = []
    monkeypatch.setattr(flows_images, "mirror_images",
                        lambda inv, plan=False, source=None: calls.append((inv.path, plan, source)))
    Program(namespace=tasks_module.ns).run(
        ["invoke", "mirror-images", "-i", str(lab_file), "--plan", "--from", "/srv/images.tar"], exit=False)
    assert calls == [(str(lab_file), True, "/srv/images.tar")]
    ctx = MockContext(config=Config(defaults=tasks_module.ns.configuration()))
    tasks_module.mirror_images(ctx, inventory=str(lab_file))
    assert calls[1] == (str(lab_file), False, None)


def test_a_bad_archive_is_a_clean_exit(tasks_module, lab_file, tmp_path):
    from invoke import Exit

    ctx = MockContext(config=Config(defaults=tasks_module.ns.configuration()))
    with pytest.raises(Exit) as exc:
        tasks_module.mirror_images(ctx, inventory=str(lab_file), from_=str(tmp_path / "none.tar"))
    assert exc.value.code == 1 and f"labkit: --from {tmp_path / 'none.tar'}: no such file" in exc.value.message


def test_the_task_is_listed_and_documented():
    # a fresh process: Invoke hands each option's help to the parser once per process
    env = {**os.environ, "COLUMNS": "200"}
    invoke = [str(Path(sys.executable).parent / "invoke")]
    listed = subprocess.run(invoke + ["--list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    listed = " ".join(listed.stdout.split())
    assert "mirror-images Copy the images the lab needs from outside" in listed
    assert "setup-nfs, mirror-images, build-images" in listed  # up: the steps from labkit/pipeline.py
    out = subprocess.run(invoke + ["--help", "mirror-images"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60).stdout
    out = " ".join(out.split())
    assert "-f STRING, --from=STRING a `docker save` archive on this machine holding the images the registry " \
           "host's docker lacks (uploaded to the registry host and `docker load`-ed there)" in out
    assert "-p, --plan gather facts and print what would change" in out


# ------------------------------------------------------------------ the twin's inventory


def test_the_kubeadm_twin_is_an_offline_lab_that_mirrors(tmp_path):
    from labtwin.hosts import inventory as twin_inventory
    from labtwin.hosts.config import TwinConfig

    net = ipaddress.IPv4Network("10.213.40.0/24")
    kubeadm = twin_inventory.render(TwinConfig(name="t", state_dir=tmp_path, subnet=net, kubeadm=True))
    bare = twin_inventory.render(TwinConfig(name="t", state_dir=tmp_path, subnet=net))
    assert kubeadm["images"]["mirror"] is True and "mirror" not in bare["images"]
    inv = inventory.parse(yaml.safe_dump(kubeadm, sort_keys=False), tmp_path / "inv.yaml")
    dep = next(o for o in manifests.render(inv) if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "10.213.40.6:5000/sig-storage/nfs-subdir-external-provisioner:v4.0.2"
