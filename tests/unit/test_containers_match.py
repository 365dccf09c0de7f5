"""containers: which cgroup paths are containers (every built-in runtime layout, user
Match/Ignore), and the names resolved from runtime state on disk."""

import json
import os
import re

import pytest

from collectd_cgroups import containers
from collectd_cgroups.containers import IGNORED, RUNTIMES, Matcher, NameResolver, builtin_decision

H = "0123456789abcdef" * 4                      # a 64-hex container id
H2 = "fedcba9876543210" * 4
UID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"    # a pod UID; systemd slices use '_' for '-'
POD_SLICE = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice"
             % UID.replace("-", "_"))


def decide(matcher, path):
    """What Discovery asks for one directory (parent is "/" at the top)."""
    parent, base = path.rsplit("/", 1)
    return matcher.decide(path, parent or "/", base)


POSITIVE = [
    # Docker, cgroupfs driver (also nested under another parent) and systemd driver
    ("/docker/" + H, ("docker", H, None)),
    ("/ci-runner/docker/" + H, ("docker", H, None)),
    ("/system.slice/docker-%s.scope" % H, ("docker", H, None)),
    (POD_SLICE + "/docker-%s.scope" % H, ("docker", H, None)),          # dockershim, systemd
    # podman: systemd (rootful and rootless) and cgroupfs
    ("/machine.slice/libpod-%s.scope" % H, ("podman", H, None)),
    ("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-%s.scope" % H, ("podman", H, None)),
    ("/libpod_parent/libpod-" + H, ("podman", H, None)),
    # LXC 4.0+ and before
    ("/lxc.payload.web", ("lxc", "web", "web")),
    ("/lxc.payload.my-app.v2", ("lxc", "my-app.v2", "my-app.v2")),
    ("/lxc/pumpkin", ("lxc", "pumpkin", "pumpkin")),
    # Kubernetes, kubelet cgroupfs driver: runtime not in the path
    ("/kubepods/burstable/pod%s/%s" % (UID, H), ("k8s", H, None)),
    ("/kubepods/besteffort/pod%s/%s" % (UID, H), ("k8s", H, None)),
    ("/kubepods/pod%s/%s" % (UID, H), ("k8s", H, None)),                  # Guaranteed QoS
    ("/kubepods/burstable/pod%s/%s" % (UID.replace("-", "_"), H), ("k8s", H, None)),
    # Kubernetes, systemd driver: containerd and CRI-O
    (POD_SLICE + "/cri-containerd-%s.scope" % H, ("containerd", H, None)),
    (POD_SLICE + "/crio-%s.scope" % H, ("crio", H, None)),
    # systemd-nspawn (systemd-escaped machine names)
    ("/machine.slice/machine-my\\x2dbox.scope", ("nspawn", "my-box", "my-box")),
    ("/machine.slice/machine-web.scope", ("nspawn", "web", "web")),
]

NEGATIVE = [
    "/machine.slice/libpod-conmon-%s.scope" % H,        # podman's conmon
    POD_SLICE + "/crio-conmon-%s.scope" % H,             # CRI-O's conmon
    "/lxc.monitor.web",                                  # LXC 4 monitor
    "/lxc/lxc.pivot",                                    # old LXC's pivot
    "/lxc/lxc.monitor.web",
    "/nested/lxc/pumpkin",                               # old layout only at the top
    "/lxc",
    "/system.slice/" + H,                                # 64 hex under no runtime's parent
    "/buildkit/" + H,
    "/" + H,
    "/kubepods/burstable/" + H,                          # not in a pod directory
    "/other/pod%s/%s" % (UID, H),                        # a pod directory not under kubepods
    "/kubepods/burstable/pod" + UID,                     # the pod itself
    "/kubepods/pod" + UID,
    "/kubepods", "/kubepods/burstable",
    POD_SLICE,                                           # the pod slice itself
    "/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice",
    "/docker",
    "/docker/" + H.upper(),                              # ids are lowercase hex
    "/docker/" + H[:63],
    "/docker/" + H + "0",
    "/docker/%s-init" % H,
    "/system.slice/docker.service", "/system.slice/containerd.service",
    "/system.slice/docker-%s.scope.d" % H,
    "/system.slice/docker-%s" % H,                       # systemd driver names end in .scope
    "/machine.slice/cri-containerd-%s" % H,
    "/system.slice/machine-foo.scope",                   # nspawn only under machine.slice
    "/machine.slice",
    "/init.scope", "/user.slice/user-1000.slice/session-2.scope",
]


@pytest.mark.parametrize("path, expected", POSITIVE)
def test_builtin_layouts(path, expected):
    assert decide(Matcher(), path) == expected


@pytest.mark.parametrize("path", NEGATIVE)
def test_not_containers(path):
    assert decide(Matcher(), path) is None


@pytest.mark.parametrize("path, expected", POSITIVE)
def test_each_layout_only_when_its_runtime_is_enabled(path, expected):
    runtime = expected[0]
    assert decide(Matcher(runtimes=[runtime]), path) == expected
    others = [r for r in RUNTIMES if r != runtime]
    assert decide(Matcher(runtimes=others), path) is None


def test_builtin_decision_is_what_matcher_uses():
    for path, expected in POSITIVE:
        parent, base = path.rsplit("/", 1)
        assert builtin_decision(parent or "/", base, frozenset(RUNTIMES)) == expected


def test_crio_cgroupfs_layout():
    assert decide(Matcher(), "/kubepods/burstable/pod%s/crio-%s" % (UID, H)) == ("crio", H, None)


# -- user Match / Ignore -------------------------------------------------------------

def test_user_match_named_groups_and_label():
    m = Matcher(match=[(re.compile(r"^/batch/(?P<name>job-\d+)-(?P<id>[0-9a-f]{8})$"), "batch")])
    assert decide(m, "/batch/job-12-deadbeef") == ("batch", "deadbeef", "job-12")
    assert decide(m, "/batch/other") is None


def test_user_match_without_groups_uses_the_path():
    m = Matcher(match=[(re.compile(r"^/ci/[^/]+$"), "cgroup")])
    assert decide(m, "/ci/run 1") == ("cgroup", "/ci/run 1", "ci/run 1")


def test_user_match_takes_precedence_over_builtin():
    m = Matcher(match=[(re.compile(r"^/docker/(?P<id>[0-9a-f]{12})"), "mine")])
    assert decide(m, "/docker/" + H) == ("mine", H[:12], "docker/" + H)


def test_first_matching_pattern_wins():
    m = Matcher(match=[(re.compile("^/a/"), "first"), (re.compile("^/a/b"), "second")])
    assert decide(m, "/a/b")[0] == "first"


def test_ignore_applies_to_builtin_and_user_matches_only():
    m = Matcher(match=[(re.compile(r"^/ci/[^/]+$"), "ci")],
                ignore=[re.compile(r"^/docker/"), re.compile(r"/ci/skip")])
    assert decide(m, "/docker/" + H) is IGNORED
    assert decide(m, "/ci/skip-me") is IGNORED
    assert decide(m, "/ci/keep")[0] == "ci"
    assert decide(m, "/system.slice/docker-%s.scope" % H)[0] == "docker"
    assert decide(m, "/system.slice") is None       # not a container: stays "walk into it"


def test_compile_patterns_names_the_option():
    assert [p.pattern for p in containers.compile_patterns(["^/a$"], "Match")] == ["^/a$"]
    with pytest.raises(ValueError, match="Ignore: invalid regular expression"):
        containers.compile_patterns(["(unclosed"], "Ignore")


# -- container_path: the container a process's cgroup lies in ------------------------

@pytest.mark.parametrize("path, container", [
    ("/docker/" + H, "/docker/" + H),
    ("/kubepods/burstable/pod%s/%s/sub/deeper" % (UID, H), "/kubepods/burstable/pod%s/%s" % (UID, H)),
    ("/lxc/pumpkin/docker/" + H, "/lxc/pumpkin"),              # the shallowest container
    ("/machine.slice/machine-my\\x2dbox.scope/payload", "/machine.slice/machine-my\\x2dbox.scope"),
    ("/machine.slice/libpod-%s.scope/container" % H, "/machine.slice/libpod-%s.scope" % H),
    ("/lxc.payload.web/init.scope/", "/lxc.payload.web"),
])
def test_container_path(path, container):
    hit = Matcher().container_path(path)
    assert hit is not None and hit[0] == container


@pytest.mark.parametrize("path", ["/", "/user.slice/user-1000.slice/session-2.scope",
                                  "/lxc.monitor.web", "/machine.slice/libpod-conmon-%s.scope" % H])
def test_container_path_none(path):
    assert Matcher().container_path(path) is None


def test_container_path_ignored():
    assert Matcher(ignore=[re.compile("^/docker/")]).container_path("/docker/%s/x" % H) is None


def test_systemd_unescape():
    assert containers.systemd_unescape("my\\x2dbox") == "my-box"
    assert containers.systemd_unescape("a\\x5cb\\x20c") == "a\\b c"
    assert containers.systemd_unescape("plain") == "plain"


# -- names from runtime state on disk ------------------------------------------------

class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def test_docker_name_from_config_v2(tmp_path):
    root = str(tmp_path)
    write(root + "/var/lib/docker/containers/%s/config.v2.json" % H,
          json.dumps({"ID": H, "Name": "/web1", "Config": {"Image": "nginx"}}))
    r = NameResolver(root)
    assert r.lookup("docker", H) == "web1"


def test_docker_name_missing_then_retried_after_the_delay(tmp_path):
    root, clock = str(tmp_path), Clock()
    r = NameResolver(root, retry=30.0, clock=clock)
    assert r.lookup("docker", H) == H[:12]
    write(root + "/var/lib/docker/containers/%s/config.v2.json" % H, json.dumps({"Name": "/late"}))
    clock.now += 10
    assert r.lookup("docker", H) == H[:12]          # not retried yet
    clock.now += 21
    assert r.lookup("docker", H) == "late"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"Name": "/"}), json.dumps({"Name": 5}),
                                     json.dumps(["Name"]), json.dumps({})])
def test_docker_bad_config_falls_back_to_short_id(tmp_path, content):
    root = str(tmp_path)
    write(root + "/var/lib/docker/containers/%s/config.v2.json" % H, content)
    assert NameResolver(root).lookup("docker", H) == H[:12]


def test_docker_data_root_option(tmp_path):
    root = str(tmp_path)
    write(root + "/srv/docker/containers/%s/config.v2.json" % H, json.dumps({"Name": "/elsewhere"}))
    assert NameResolver(root, docker_root="/srv/docker").lookup("docker", H) == "elsewhere"


def test_storage_names_podman_and_crio(tmp_path):
    root = str(tmp_path)
    write(root + "/var/lib/containers/storage/overlay-containers/containers.json", json.dumps([
        {"id": H, "names": ["db", "alias"], "image": "x"},
        {"id": H2, "names": ["k8s_nginx_nginx-1_default_%s_0" % UID]},
        {"id": "no-names"}, "garbage"]))
    r = NameResolver(root)
    assert r.lookup("podman", H) == "db"
    assert r.lookup("crio", H2) == "k8s_nginx_nginx-1_default_%s_0" % UID
    assert r.lookup("docker", H) == H[:12]          # docker names come only from docker's state


def test_storage_names_reloaded_when_the_file_changes(tmp_path):
    root, clock = str(tmp_path), Clock()
    path = root + "/var/lib/containers/storage/vfs-containers/containers.json"
    write(path, json.dumps([{"id": H, "names": ["one"]}]))
    r = NameResolver(root, retry=0.0, clock=clock)
    assert r.lookup("podman", H) == "one"
    assert r.lookup("podman", H2) == H2[:12]
    write(path, json.dumps([{"id": H, "names": ["one"]}, {"id": H2, "names": ["two"]}]))
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 10 ** 9,) * 2)
    clock.now += 1
    assert r.lookup("podman", H2) == "two"


def test_found_names_are_kept_until_the_container_is_forgotten(tmp_path):
    root = str(tmp_path)
    config = root + "/var/lib/docker/containers/%s/config.v2.json" % H
    write(config, json.dumps({"Name": "/first"}))
    r = NameResolver(root)
    assert r.lookup("docker", H) == "first"
    write(config, json.dumps({"Name": "/renamed"}))
    assert r.lookup("docker", H) == "first"        # a found name is not re-read every pass
    r.forget_except({})                             # H is gone from the pass ...
    assert r.lookup("docker", H) == "renamed"      # ... and read afresh if it comes back
