"""containers: which cgroup paths are containers (every built-in runtime layout, user
Match/Ignore), and the names resolved from runtime state on disk."""

import re

import pytest

from collectd_cgroups import containers
from collectd_cgroups.containers import IGNORED, POD, RUNTIMES, Matcher, builtin_decision

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
    (POD_SLICE + "/docker-%s.scope" % H, ("k8s", H, None)),             # dockershim, systemd
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
    # Kubernetes, systemd driver: containerd and CRI-O (a pod's containers are "k8s" whatever runtime runs them)
    (POD_SLICE + "/cri-containerd-%s.scope" % H, ("k8s", H, None)),
    (POD_SLICE + "/crio-%s.scope" % H, ("k8s", H, None)),
    ("/kubepods/burstable/pod%s/crio-%s" % (UID, H), ("k8s", H, None)),    # CRI-O, cgroupfs driver
    # Kubernetes pods' own cgroups, both drivers, every QoS class, under a --cgroup-root
    ("/kubepods/burstable/pod" + UID, (POD, UID, None)),
    ("/kubepods/besteffort/pod" + UID, (POD, UID, None)),
    ("/kubepods/pod" + UID, (POD, UID, None)),
    ("/node-a/kubepods/pod" + UID, (POD, UID, None)),
    (POD_SLICE, (POD, UID, None)),
    ("/kubepods.slice/kubepods-pod%s.slice" % UID.replace("-", "_"), (POD, UID, None)),
    # containerd's CRI outside kubepods: not a pod, its runtime named
    ("/system.slice/cri-containerd-%s.scope" % H, ("containerd", H, None)),
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
    "/kubepods", "/kubepods/burstable",
    "/other/pod" + UID,                                  # a pod directory not under kubepods
    "/kubepods/burstable/other/pod" + UID,               # nor directly under a QoS directory
    "/kubepods/burstable/podcast",                       # not a pod UID
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
    runtime = "k8s" if expected[0] == POD else expected[0]      # pods come with the k8s layouts
    assert decide(Matcher(runtimes=[runtime]), path) == expected
    others = [r for r in RUNTIMES if r != runtime]
    assert decide(Matcher(runtimes=others), path) is None


def test_builtin_decision_is_what_matcher_uses():
    for path, expected in POSITIVE:
        parent, base = path.rsplit("/", 1)
        assert builtin_decision(parent or "/", base, frozenset(RUNTIMES)) == expected


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
    ("/kubepods/burstable/pod%s" % UID, "/kubepods/burstable/pod%s" % UID),    # in the pod, in no container
    (POD_SLICE + "/crio-%s.scope" % H, POD_SLICE + "/crio-%s.scope" % H),   # the container, not its pod
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
