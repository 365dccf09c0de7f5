"""runtimes/podman.py over podman 4.3.1's captured state (tests/fixtures/podman-state, see its README):
name, image, pod and infra container from containers.json and config.json; a missing file is "nothing
yet", a broken one a StateError or a Metadata with what is there, never any other exception."""

import json
import os
import shutil

import pytest

from collectd_cgroups.root import HostRoot
from collectd_cgroups.runtimes import MAX_STATE_FILE, Metadata, StateError, podman
from collectd_cgroups.runtimes.storage import MAX_CONTAINERS_JSON
from tests.support import FIXTURES

TREE = os.path.join(FIXTURES, "podman-state")
STORE = "/var/lib/containers/storage/vfs-containers"
LAB1 = "fe4b70a6805b41c9db0087c9957ead989db0d6fe466391f943febd6f0656ceb9"
INFRA = "012ef5f32453c83af169158a2a35787348dfee9a1784068f73220c4567d6182d"
PODC = "43b21043e7a872ff3e7d2d4a8fbf196c6757a7de029fbeabb6fb4a7e3f5223e4"
POD_ID = "b71b78bc1b7759d50ab2f4c73e6a31eac207f10687dd26527fbca4a40bb7ce0f"


def inspect():
    with open(os.path.join(TREE, "inspect.json")) as f:
        doc = json.load(f)
    return dict((c["Id"], c) for c in doc["containers"]), doc["pods"][0]


@pytest.fixture
def tree(tmp_path):
    """A writable copy of the fixture tree."""
    dest = str(tmp_path / "root")
    shutil.copytree(TREE, dest)
    return dest


def config_path(root, cid):
    return root + STORE + "/%s/userdata/config.json" % cid


def test_fixture_gives_what_podman_inspect_reports():
    containers, pod = inspect()
    root = HostRoot(TREE)
    assert podman.read(root, LAB1) == Metadata(name="lab1", image="localhost/ccg-busybox:test")
    assert podman.read(root, PODC) == Metadata(name="podc", pod="ccgpod", pod_uid=POD_ID,
                                               image="localhost/ccg-busybox:test")
    assert podman.read(root, INFRA) == Metadata(name="b71b78bc1b77-infra", pod="ccgpod", pod_uid=POD_ID,
                                                sandbox=True, image="localhost/ccg-busybox:test")
    for cid, meta in ((c, podman.read(root, c)) for c in (LAB1, PODC, INFRA)):
        want = containers[cid]
        assert (meta.name, meta.image, meta.sandbox) == (want["Name"], want["ImageName"], want["IsInfra"])
        if want["Pod"]:
            assert (meta.pod, meta.pod_uid) == (pod["Name"], pod["Id"]) == ("ccgpod", want["Pod"])
            assert meta.namespace is None and not meta.in_pod       # a podman pod is no Kubernetes pod
        else:
            assert meta.pod is meta.pod_uid is None
        # podman 4.3 keeps the labels only in bolt_state.db: none read (inspect has some)
        assert meta.labels == {} and want["Config"]["Labels"]
    assert pod["InfraContainerID"] == INFRA


def test_overlay_store_reads_alike(tmp_path):
    dest = str(tmp_path / "root")
    shutil.copytree(TREE, dest)
    base = dest + "/var/lib/containers/storage"
    os.rename(base + "/vfs-containers", base + "/overlay-containers")
    assert podman.read(HostRoot(dest), PODC).pod == "ccgpod"


def test_private_storage_root(tmp_path):
    dest = str(tmp_path / "root")
    shutil.copytree(TREE + "/var/lib/containers/storage", dest + "/srv/store")
    assert podman.read(HostRoot(dest), LAB1, storage_root="/srv/store", run_root="/srv/run").name == "lab1"
    assert podman.read(HostRoot(dest), LAB1) is None


def test_missing_state_is_none(tmp_path):
    assert podman.read(HostRoot(str(tmp_path)), LAB1) is None                  # no storage at all
    assert podman.read(HostRoot(TREE), "ab" * 32) is None                         # no such container
    assert podman.read(HostRoot(TREE), "../" + LAB1[3:]) is None                   # not an id
    os.makedirs(str(tmp_path) + STORE + "/" + LAB1)
    assert podman.read(HostRoot(str(tmp_path)), LAB1) is None                   # no containers.json


def test_not_started_yet_has_no_config_json(tree):
    """``podman create`` (or kube play --start=false): containers.json only, the pod not known yet."""
    os.unlink(config_path(tree, PODC))
    assert podman.read(HostRoot(tree), PODC) == Metadata(name="podc", image="localhost/ccg-busybox:test")


def test_member_without_its_infra_config(tree):
    os.unlink(config_path(tree, INFRA))
    assert podman.read(HostRoot(tree), PODC) == Metadata(name="podc", pod_uid=POD_ID,
                                                         image="localhost/ccg-busybox:test")


def test_infra_name_alone_is_not_a_sandbox(tree):
    """A container named like an infra container but in no pod cgroup is a container of its own."""
    with open(config_path(tree, INFRA)) as f:
        config = json.load(f)
    config["linux"]["cgroupsPath"] = "/libpod_parent/libpod-" + INFRA
    with open(config_path(tree, INFRA), "w") as f:
        json.dump(config, f)
    meta = podman.read(HostRoot(tree), INFRA)
    assert meta == Metadata(name="b71b78bc1b77-infra", image="localhost/ccg-busybox:test")


def test_systemd_cgroup_path(tree):
    with open(config_path(tree, PODC)) as f:
        config = json.load(f)
    config["linux"]["cgroupsPath"] = "machine-libpod_pod_%s.slice:libpod:%s" % (POD_ID, PODC)
    with open(config_path(tree, PODC), "w") as f:
        json.dump(config, f)
    assert podman.read(HostRoot(tree), PODC).pod_uid == POD_ID


@pytest.mark.parametrize("which", ["containers.json", "config.json"])
@pytest.mark.parametrize("content", ["{not json", "\xff\xfe", "[1, 2", "", "null ]"])
def test_malformed_json_is_a_state_error(tree, which, content):
    path = tree + STORE + "/containers.json" if which == "containers.json" else config_path(tree, LAB1)
    with open(path, "w", encoding="latin-1") as f:
        f.write(content)
    with pytest.raises(StateError):
        podman.read(HostRoot(tree), LAB1)


@pytest.mark.parametrize("which,limit", [("containers.json", MAX_CONTAINERS_JSON), ("config.json", MAX_STATE_FILE)])
def test_huge_file_is_not_read(tree, which, limit):
    path = tree + STORE + "/containers.json" if which == "containers.json" else config_path(tree, LAB1)
    os.truncate(path, limit + 1)                  # sparse: nothing is written
    with pytest.raises(StateError, match="larger than"):
        podman.read(HostRoot(tree), LAB1)


@pytest.mark.parametrize("doc", [{}, "a string", 7, {"id": LAB1}])
def test_containers_json_not_a_list(tree, doc):
    with open(tree + STORE + "/containers.json", "w") as f:
        json.dump(doc, f)
    with pytest.raises(StateError):
        podman.read(HostRoot(tree), LAB1)


@pytest.mark.parametrize("entry,want", [
    ({"id": LAB1}, Metadata()),
    ({"id": LAB1, "names": [], "metadata": "{"}, Metadata()),
    ({"id": LAB1, "names": [7], "metadata": 7}, Metadata()),
    ({"id": LAB1, "names": "lab1", "metadata": "[]"}, Metadata()),
    ({"id": LAB1, "names": ["x" * 1000], "metadata": json.dumps({"image-name": ["no"]})}, Metadata(name="x" * 256)),
    ({"id": LAB1, "names": ["lab1"], "metadata": json.dumps({"image-name": "busybox"})},
     Metadata(name="lab1", image="busybox")),
])
def test_entry_without_the_expected_fields(tree, entry, want):
    with open(tree + STORE + "/containers.json", "w") as f:
        json.dump([None, 3, {"id": 5}, entry], f)
    assert podman.read(HostRoot(tree), LAB1) == want


@pytest.mark.parametrize("config", [
    {}, {"annotations": None}, {"annotations": [1]}, {"annotations": {"io.kubernetes.cri-o.ContainerType": 3}},
    {"annotations": {"io.kubernetes.cri-o.ContainerType": "container"}},
    {"annotations": {"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "../x"}},
    {"annotations": {"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": INFRA},
     "linux": "no"},
    {"annotations": {"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": INFRA},
     "linux": {"cgroupsPath": ["no"]}},
    {"annotations": {"io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": LAB1},
     "linux": {"cgroupsPath": "/p/%s/libpod-%s" % (POD_ID, PODC)}},
])
def test_member_config_without_the_expected_fields(tree, config):
    """Whatever config.json holds, the name and image from containers.json stay and no pod is made up."""
    with open(config_path(tree, PODC), "w") as f:
        json.dump(config, f)
    assert podman.read(HostRoot(tree), PODC) == Metadata(name="podc", image="localhost/ccg-busybox:test")


@pytest.mark.parametrize("config", [[], "x", 1])
def test_config_json_not_an_object(tree, config):
    with open(config_path(tree, LAB1), "w") as f:
        json.dump(config, f)
    with pytest.raises(StateError, match="not a JSON object"):
        podman.read(HostRoot(tree), LAB1)


def test_infra_config_broken_for_a_member(tree):
    with open(config_path(tree, INFRA), "w") as f:
        f.write("{")
    with pytest.raises(StateError):
        podman.read(HostRoot(tree), PODC)
    with open(config_path(tree, INFRA), "w") as f:
        json.dump({"hostname": 5}, f)
    assert podman.read(HostRoot(tree), PODC) == Metadata(name="podc", pod_uid=POD_ID,
                                                         image="localhost/ccg-busybox:test")


def test_state_files_that_are_not_regular_files(tree):
    os.unlink(config_path(tree, LAB1))
    os.mkfifo(config_path(tree, LAB1))
    with pytest.raises(StateError, match="not a regular file"):
        podman.read(HostRoot(tree), LAB1)
    os.unlink(config_path(tree, LAB1))
    os.symlink("/etc/passwd", config_path(tree, LAB1))
    with pytest.raises(StateError):
        podman.read(HostRoot(tree), LAB1)


def test_podman_rename_is_seen_when_containers_json_changes(tree):
    # podman rename rewrites the store's containers.json (names[0]), as a temporary file renamed over it;
    # the resolver watches the store's directory and reads the container again in the next pass.
    from collectd_cgroups.runtimes.resolver import MetadataResolver
    r = MetadataResolver(HostRoot(tree))
    r.begin_pass()
    assert r.lookup("podman", LAB1).name == "lab1"
    assert r.lookup("podman", PODC).pod == "ccgpod"
    assert len(r.watch.dirs) == 1                       # one store: one watch for both
    path = tree + STORE + "/containers.json"
    with open(path) as f:
        doc = json.load(f)
    (entry,) = [e for e in doc if e["id"] == LAB1]
    entry["names"] = ["lab1-renamed"]
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    r.begin_pass()
    assert r.lookup("podman", LAB1).name == "lab1-renamed"
    assert r.lookup("podman", PODC).pod == "ccgpod"     # the others read again alike
    r.watch.close()
