"""runtimes/: container metadata from the runtimes' on-disk state (names, pods, images, labels), read
once per container and bounded; a broken state file costs only that container its name."""

import json
import os

import pytest

from collectd_cgroups.root import HostRoot
from collectd_cgroups.runtimes import MAX_STATE_FILE, Metadata, StateError, kubernetes, oci, read_json
from collectd_cgroups.runtimes.resolver import MetadataResolver

H = "0123456789abcdef" * 4
H2 = "fedcba9876543210" * 4
UID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def resolver(root, **kw):
    return MetadataResolver(HostRoot(str(root)), **kw)


# -- Docker ----------------------------------------------------------------------------

def test_docker_name_image_and_labels_from_config_v2(tmp_path):
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H, json.dumps(
        {"ID": H, "Name": "/web1", "Config": {"Image": "nginx:1.25", "Labels": {
            "com.docker.compose.project": "shop", "com.docker.compose.service": "web", "n": 5}}}))
    meta = resolver(tmp_path).lookup("docker", H)
    assert (meta.name, meta.image) == ("web1", "nginx:1.25")
    assert meta.labels == {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
    assert not meta.in_pod


def test_docker_name_missing_then_retried_after_the_delay(tmp_path):
    clock = Clock()
    r = resolver(tmp_path, retry=30.0, clock=clock)
    assert r.lookup("docker", H).name is None
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H, json.dumps({"Name": "/late"}))
    clock.now += 10
    assert r.lookup("docker", H).name is None           # not retried yet
    clock.now += 21
    assert r.lookup("docker", H).name == "late"


def _atomic_write(path, text):
    """As dockerd and containers/storage write their state: a temporary file renamed over the old one."""
    write(path + ".tmp", text)
    os.rename(path + ".tmp", path)


def _pass(r, key):
    r.begin_pass()
    return r.lookup(*key).name


@pytest.mark.parametrize("watched", [True, False], ids=["inotify", "every-other-pass"])
def test_docker_rename_is_seen_when_config_v2_changes(tmp_path, watched):
    path = str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H
    write(path, json.dumps({"Name": "/before"}))
    r = resolver(tmp_path, recheck=2)
    if not watched:
        r.watch.disabled = "as without inotify"
    key = ("docker", H)
    assert _pass(r, key) == "before"
    assert bool(r.watch.dirs) == watched
    if watched:
        assert [_pass(r, key) for _ in range(3)] == ["before"] * 3
    _atomic_write(path, json.dumps({"Name": "/after-the-rename"}))
    names = [_pass(r, key) for _ in range(2)]
    # watched: the very next pass; else within two passes
    assert names == ["after-the-rename"] * 2 if watched else names[-1] == "after-the-rename", names
    # Rewritten into something unusable, then removed with its container: the last good name stays.
    _atomic_write(path, "{not json")
    assert [_pass(r, key) for _ in range(2)] == ["after-the-rename"] * 2
    os.unlink(path)
    os.rmdir(os.path.dirname(path))
    assert [_pass(r, key) for _ in range(2)] == ["after-the-rename"] * 2
    assert r.watch.dirs == {}                   # the directory went: so did its watch
    r.watch.close()


def test_docker_state_not_looked_at_while_nothing_changes(tmp_path, monkeypatch):
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H, json.dumps({"Name": "/web"}))
    for watched, looks in ((True, 0), (False, 5)):
        r = resolver(tmp_path, recheck=2)
        if not watched:
            r.watch.disabled = "as without inotify"
        _pass(r, ("docker", H))
        stats = []
        real_stat = os.stat
        monkeypatch.setattr(os, "stat", lambda p, *a, **kw: stats.append(p) or real_stat(p, *a, **kw))
        assert [_pass(r, ("docker", H)) for _ in range(10)] == ["web"] * 10     # ten passes
        monkeypatch.undo()
        assert len(stats) == looks, (watched, stats)
        r.watch.close()


def test_watches_go_with_their_containers(tmp_path):
    ids = ["%064x" % i for i in range(1, 4)]
    for cid in ids:
        write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % cid, json.dumps({"Name": "/c"}))
    r = resolver(tmp_path)
    r.begin_pass()
    for cid in ids:
        r.lookup("docker", cid)
    assert len(r.watch.dirs) == 3
    r.forget_except({("docker", ids[0])})
    assert list(r.watch.dirs) == [str(tmp_path) + "/var/lib/docker/containers/" + ids[0]]
    r.watch.close()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"Name": "/"}), json.dumps({"Name": 5}),
                                     json.dumps(["Name"]), json.dumps({}), "\xff\xfe",
                                     json.dumps({"Name": "/x", "Config": "not an object"})])
def test_docker_bad_config_gives_no_name_and_one_log_line(tmp_path, content):
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H, content)
    logged = []
    r = resolver(tmp_path, retry=0.0, warn_once=lambda key, msg: logged.append(key))
    for _ in range(3):
        meta = r.lookup("docker", H)
    assert meta.name in (None, "x")
    assert len(set(logged)) <= 1


def test_docker_data_root_option(tmp_path):
    write(str(tmp_path) + "/srv/docker/containers/%s/config.v2.json" % H, json.dumps({"Name": "/elsewhere"}))
    assert resolver(tmp_path, docker_root="/srv/docker").lookup("docker", H).name == "elsewhere"


def test_dockershim_names_give_the_pod(tmp_path):
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H, json.dumps(
        {"Name": "/k8s_nginx_web-0_shop_%s_3" % UID, "Config": {"Image": "nginx"}}))
    write(str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H2, json.dumps(
        {"Name": "/k8s_POD_web-0_shop_%s_0" % UID}))
    r = resolver(tmp_path)
    meta = r.lookup("k8s", H)
    assert (meta.name, meta.namespace, meta.pod, meta.container, meta.pod_uid, meta.image) == \
        ("shop_web-0_nginx", "shop", "web-0", "nginx", UID, "nginx")
    assert r.lookup("k8s", H2).sandbox


# -- containers/storage ------------------------------------------------------------------

def test_storage_names_podman_and_crio(tmp_path):
    write(str(tmp_path) + "/var/lib/containers/storage/overlay-containers/containers.json", json.dumps([
        {"id": H, "names": ["db", "alias"], "image": "x"},
        {"id": H2, "names": ["k8s_nginx_nginx-1_default_%s_0" % UID]},
        {"id": "no-names"}, "garbage", {"id": 5, "names": [7]}]))
    r = resolver(tmp_path)
    assert r.lookup("podman", H).name == "db"
    assert r.lookup("crio", H2).name == "default_nginx-1_nginx"   # the k8s_ name read as a pod's
    assert r.lookup("docker", H).name is None           # docker names come only from docker's state


def test_storage_names_reloaded_when_the_file_changes(tmp_path):
    clock = Clock()
    path = str(tmp_path) + "/var/lib/containers/storage/vfs-containers/containers.json"
    write(path, json.dumps([{"id": H, "names": ["one"]}]))
    r = resolver(tmp_path, retry=0.0, clock=clock)
    assert r.lookup("podman", H).name == "one"
    assert r.lookup("podman", H2).name is None
    write(path, json.dumps([{"id": H, "names": ["one"]}, {"id": H2, "names": ["two"]}]))
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 10 ** 9,) * 2)
    clock.now += 1
    assert r.lookup("podman", H2).name == "two"


def test_found_metadata_is_kept_until_the_container_is_forgotten(tmp_path):
    config = str(tmp_path) + "/var/lib/docker/containers/%s/config.v2.json" % H
    write(config, json.dumps({"Name": "/first"}))
    r = resolver(tmp_path)
    assert r.lookup("docker", H).name == "first"
    write(config, json.dumps({"Name": "/renamed"}))
    assert r.lookup("docker", H).name == "first"        # read once per container, not every pass
    r.forget_except(set())                               # H is gone from the pass ...
    assert r.lookup("docker", H).name == "renamed"      # ... and read afresh if it comes back


def test_the_cache_is_bounded(tmp_path, monkeypatch):
    from collectd_cgroups.runtimes import resolver as mod
    monkeypatch.setattr(mod, "MAX_CACHED", 10)
    r = resolver(tmp_path)
    for n in range(50):
        r.lookup("docker", "%064x" % n)
    assert len(r._cache) == 10


# -- containerd (CRI) bundles -------------------------------------------------------------

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "containerd-cri")


def bundle(root, cid, annotations, ns="k8s.io", state="/run/containerd"):
    write("%s%s/io.containerd.runtime.v2.task/%s/%s/config.json" % (root, state, ns, cid),
          json.dumps({"ociVersion": "1.0.2-dev", "annotations": annotations}))


CRI = "io.kubernetes.cri."


def test_containerd_cri_container_and_sandbox(tmp_path):
    bundle(tmp_path, H, {CRI + "container-type": "container", CRI + "container-name": "app",
                         CRI + "sandbox-name": "web-0", CRI + "sandbox-namespace": "shop", CRI + "sandbox-uid": UID,
                         CRI + "sandbox-id": H2, CRI + "image-name": "ccg.test/busybox:1", "team": "blue"})
    bundle(tmp_path, H2, {CRI + "container-type": "sandbox", CRI + "sandbox-name": "web-0",
                          CRI + "sandbox-namespace": "shop", CRI + "sandbox-uid": UID})
    r = resolver(tmp_path)
    meta = r.lookup("k8s", H)
    assert meta == Metadata(name="shop_web-0_app", namespace="shop", pod="web-0", container="app", pod_uid=UID,
                            image="ccg.test/busybox:1", labels={"team": "blue"})
    sandbox = r.lookup("k8s", H2)
    assert sandbox.sandbox and sandbox.name == "shop_web-0"


def test_containerd_namespaces_and_dockerd_private_state(tmp_path):
    bundle(tmp_path, H, {}, ns="moby", state="/run/docker/containerd/daemon")
    bundle(tmp_path, H2, {CRI + "container-type": "container", CRI + "container-name": "c",
                          CRI + "sandbox-name": "p", CRI + "sandbox-namespace": "n"}, state="/srv/ctrd")
    assert resolver(tmp_path).lookup("containerd", H) is not None      # found, nothing to name it by
    assert resolver(tmp_path).lookup("containerd", H2).name is None    # not in the default state dirs
    assert resolver(tmp_path, containerd_states=("/srv/ctrd",)).lookup("k8s", H2).name == "n_p_c"


def test_captured_containerd_bundles():
    """config.json files as containerd 1.6's CRI plugin wrote them (tests/fixtures/containerd-cri,
    captured by its capture.py from a real containerd)."""
    with open(os.path.join(FIXTURES, "container-config.json")) as f:
        found = json.load(f)["annotations"]
    meta = oci.from_containerd(found)
    assert meta.in_pod and not meta.sandbox
    assert (meta.name, meta.namespace, meta.pod, meta.container, meta.pod_uid, meta.image) == (
        "shop_web-1_app", "shop", "web-1", "app", "0b5c3f7e-1d2a-4e6b-9c8d-7a6f5e4d3c2b", "ccg.test/busybox:1")
    with open(os.path.join(FIXTURES, "sandbox-config.json")) as f:
        sandbox = oci.from_containerd(json.load(f)["annotations"])
    assert sandbox.sandbox and (sandbox.namespace, sandbox.pod) == ("shop", "web-1")


# -- CRI-O ---------------------------------------------------------------------------------

def crio_config(root, cid, annotations, base="/run/containers/storage"):
    write("%s%s/overlay-containers/%s/userdata/config.json" % (root, base, cid),
          json.dumps({"ociVersion": "1.0.2-dev", "annotations": annotations}))


def test_crio_container_from_its_annotations(tmp_path):
    labels = {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "web-0",
              "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": UID}
    crio_config(tmp_path, H, dict(labels, **{
        "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.Labels": json.dumps(labels),
        "io.kubernetes.cri-o.ImageName": "docker.io/library/nginx:1.25",
        "io.kubernetes.cri-o.Name": "k8s_app_web-0_shop_%s_2" % UID}))
    crio_config(tmp_path, H2, {"io.kubernetes.cri-o.ContainerType": "sandbox",
                               "io.kubernetes.cri-o.Labels": json.dumps({"app": "web", "tier": "front"}),
                               "io.kubernetes.cri-o.Name": "k8s_POD_web-0_shop_%s_0" % UID,
                               "io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop"})
    r = resolver(tmp_path)
    meta = r.lookup("crio", H)
    assert (meta.name, meta.image, meta.pod_uid) == ("shop_web-0_app", "docker.io/library/nginx:1.25", UID)
    sandbox = r.lookup("k8s", H2)
    assert sandbox.sandbox and sandbox.labels == {"app": "web", "tier": "front"}


def test_crio_falls_back_on_its_k8s_name(tmp_path):
    crio_config(tmp_path, H, {"io.kubernetes.cri-o.Name": "k8s_app_web-0_shop_%s_0" % UID})
    assert resolver(tmp_path).lookup("crio", H).name == "shop_web-0_app"


# -- hostile or broken state files -----------------------------------------------------------

BROKEN = {
    "malformed": "{\"annotations\": {",
    "not an object": "[1, 2]",
    "annotations not an object": json.dumps({"annotations": ["a"]}),
    "no annotations": json.dumps({"ociVersion": "1.0.2"}),
    "annotations of other types": json.dumps({"annotations": {CRI + "sandbox-name": 5, CRI + "container-type": []}}),
    "binary": "\x00\x01\x02",
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_a_broken_bundle_gives_the_short_id_and_one_log_line(tmp_path, what):
    write(str(tmp_path) + "/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json" % H, BROKEN[what])
    logged = []
    r = resolver(tmp_path, retry=0.0, warn_once=lambda key, msg: logged.append((key, msg)))
    for _ in range(3):
        assert r.lookup("k8s", H).name is None
    assert len(set(k for k, _ in logged)) <= 1


def test_a_huge_state_file_is_not_read(tmp_path):
    path = str(tmp_path) + "/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json" % H
    write(path, "{}")
    os.truncate(path, MAX_STATE_FILE + 1)              # sparse: nothing is written
    with pytest.raises(StateError, match="larger than"):
        read_json(path)
    logged = []
    assert resolver(tmp_path, warn_once=lambda key, msg: logged.append(msg)).lookup("k8s", H).name is None
    assert len(logged) == 1 and "larger than" in logged[0]


def test_an_unreadable_or_odd_state_file(tmp_path):
    path = str(tmp_path) + "/config.json"
    os.mkfifo(path)                                     # never blocks: opened non-blocking, refused
    with pytest.raises(StateError, match="not a regular file"):
        read_json(path)
    os.unlink(path)
    os.symlink("/etc/passwd", path)                     # a state file is never a link to elsewhere
    with pytest.raises(StateError):
        read_json(path)
    assert read_json(str(tmp_path) + "/missing.json") is None
    assert read_json(str(tmp_path) + "/config.json/below") is None


def test_fields_are_bounded():
    meta = oci.from_containerd({CRI + "sandbox-name": "p" * 10000, CRI + "sandbox-namespace": "n",
                                CRI + "container-name": "c", **{"k%d" % i: "v" * 10000 for i in range(1000)}})
    assert len(meta.pod) <= 256 and len(meta.labels) <= 256 and all(len(v) <= 256 for v in meta.labels.values())


# -- Kubernetes names and QoS ---------------------------------------------------------------

def test_k8s_names():
    assert kubernetes.from_name("k8s_app_web-0_shop_%s_12" % UID).name == "shop_web-0_app"
    assert kubernetes.from_name("k8s_POD_web-0_shop_%s_0" % UID).sandbox
    for other in ("web", "k8s_app_web-0_shop_uid", "k8s_a_b_c_d_e_f", "k8s_____0"):
        assert kubernetes.from_name(other) is None


@pytest.mark.parametrize("path, qos", [
    ("/kubepods/besteffort/pod" + UID, "besteffort"), ("/kubepods/burstable/pod" + UID, "burstable"),
    ("/kubepods/pod" + UID, "guaranteed"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice" % UID, "burstable"),
    ("/kubepods.slice/kubepods-pod%s.slice" % UID, "guaranteed")])
def test_qos_class_from_the_pod_path(path, qos):
    assert kubernetes.qos_of(path) == qos
