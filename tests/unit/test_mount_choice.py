"""Mount tables as real hosts and containers have them, through ``--root``: a hierarchy mounted more than
once (a cgroup2 subtree bind-mounted, a v1 hierarchy mounted again with another root, collectd in a
container next to the host's tree under HostRoot) is served by one mount, the same for its controller
list and for every read; a ``/proc/<pid>/cgroup`` path the kernel marks `` (deleted)``.

Each tree is a captured or documented one (tests/fixtures) with its mount table written as the kernel
writes mountinfo lines; the values read must be those of the tree as it was.
"""

import os

import pytest

from tests.support import fixtureutil as fu

V2_DOCKER_SCOPE = "/system.slice/docker-" + "5d" * 32 + ".scope"


def _with_mountinfo(tree, tmp_path, before=(), after=()):
    """A copy of ``tree`` whose mountinfo gets ``before`` lines first and ``after`` lines last."""
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(root, "proc", "self", "mountinfo")
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(list(before) + lines + list(after)) + "\n")
    return root


def _layout(root):
    rc, out, err = fu.run_cli(["--root", root, "--layout"])
    assert rc == 0, err
    return dict(line.split(None, 1) for line in out.splitlines()[1:])


def _values(root):
    entries, err = fu.cli_json(root)
    assert "warning" not in err, err
    return fu.values(entries)


@pytest.fixture(scope="module")
def original():
    """The values and layout of the trees as captured."""
    return {t: (_values(fu.tree(t)), _layout(fu.tree(t))) for t in ("v2-pure", "hybrid-debian12")}


def test_cgroup2_subtree_bind_mount_listed_first(tmp_path, original):
    # A service's cgroup bind-mounted at /run/sub before the whole tree: its cgroup.controllers is
    # empty (nothing enabled below that service), the top one's lists every controller.
    root = _with_mountinfo("v2-pure", tmp_path, before=[
        "19 21 0:23 /system.slice/foo.service /run/sub rw,nosuid,nodev,noexec,relatime shared:8 "
        "- cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"])
    os.makedirs(os.path.join(root, "run", "sub"))
    open(os.path.join(root, "run", "sub", "cgroup.controllers"), "w").close()
    layout = _layout(root)
    top = os.path.join(root, "sys/fs/cgroup")
    for controller in ("cpu", "cpuacct", "memory", "pids", "blkio"):
        assert layout[controller] == "v2 " + top, (controller, layout)
    assert layout["cgroup2"].startswith(top + " (controllers: cpu cpuset hugetlb io memory misc pids rdma")
    values, _ = original["v2-pure"]
    assert _values(root) == values
    assert any(k[0] == "memory" for k in values["podman-db"])     # memory is there to be read


def test_v1_hierarchy_mounted_again_with_other_roots(tmp_path, original):
    # memory mounted again first with a subtree for root, cpu,cpuacct mounted again last with the whole
    # tree (the first listed of two whole-tree mounts serves)
    root = _with_mountinfo("hybrid-debian12", tmp_path, before=[
        "20 21 0:32 /system.slice /run/memsub rw,relatime - cgroup cgroup rw,memory"], after=[
        "90 21 0:29 / /mnt/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct"])
    values, layout = original["hybrid-debian12"]
    assert _layout(root) == {k: v.replace(fu.tree("hybrid-debian12"), root) for k, v in layout.items()}
    assert _values(root) == values


def test_collectd_in_a_container_with_the_host_tree_under_host_root(tmp_path, original):
    # The mount table of collectd's own mount namespace (what <HostRoot>/proc/self/mountinfo is): its
    # container's cgroup2 mount (root: the container's cgroup) and the host's tree bind-mounted under
    # HostRoot (a mount point already below it, taken as it is).
    root = fu.copy_tree("v2-pure", tmp_path)
    with open(os.path.join(root, "proc", "self", "mountinfo"), "w") as f:
        f.write("700 650 0:23 %s /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw\n"
                "701 650 0:23 / %s/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime master:8 - cgroup2 cgroup2 "
                "rw,nsdelegate,memory_recursiveprot\n" % (V2_DOCKER_SCOPE, root))
    values, layout = original["v2-pure"]
    assert _layout(root) == {k: v.replace(fu.tree("v2-pure"), root) for k, v in layout.items()}
    assert _values(root) == values


def test_pid_whose_cgroup_was_removed(tmp_path, original):
    root = fu.copy_tree("v2-pure", tmp_path)
    scope = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d"
             ".slice/cri-containerd-afe4751b95d75330b537d9618b4577bcba76c3925eb81f618dd812406a24ded2.scope")
    assert os.path.isdir(root + "/sys/fs/cgroup" + scope)
    os.makedirs(os.path.join(root, "proc", "4242"))
    with open(os.path.join(root, "proc", "4242", "cgroup"), "w") as f:
        f.write("0::%s (deleted)\n" % scope)
    entries, err = fu.cli_json(root, "--pid", "4242")
    (instance,) = {e["plugin_instance"] for e in entries}
    values, _ = original["v2-pure"]
    assert {e["meta"]["cgroup"] for e in entries} == {scope}
    assert fu.values(entries)[instance] == values[instance]
