"""hierarchy: mountinfo lines as the kernel prints them -> mounts -> which mount serves what."""

import pytest

from collectd_cgroups import hierarchy
from collectd_cgroups.hierarchy import Hierarchies, parse_mountinfo, parse_proc_cgroups
from tests.support import fixtureutil as fu

# Lines in the kernel's format (proc(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
# [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS), taken from real hosts.
ROOT_FS = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard"
PROC = "22 27 0:21 / /proc rw,relatime - proc proc rw"
TMPFS = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"

V1_SEPARATE = """\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
"""
CO_MOUNTED = """\
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:4 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,net_cls,net_prio
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,seclabel,cpu,cpuacct
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,seclabel,memory
34 25 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,pids
35 25 0:33 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,blkio
"""
LEGACY_SINGLE = ("31 18 0:26 / /cgroup rw,relatime shared:13 - cgroup cgroup "
                 "rw,cpuset,cpu,cpuacct,blkio,memory,devices,freezer,net_cls,perf_event,pids\n")
PURE_V2 = ("26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - "
           "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n")
HYBRID_UNIFIED = ("27 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - "
                  "cgroup2 cgroup2 rw,nsdelegate\n")


def by_path(mounts):
    return {m.path: m for m in mounts}


def test_v1_one_controller_per_mount():
    mounts = parse_mountinfo("\n".join([ROOT_FS, PROC, TMPFS]) + "\n" + V1_SEPARATE)
    got = {m.path: (m.version, sorted(m.controllers), m.name, m.root) for m in mounts}
    assert got == {
        "/sys/fs/cgroup/cpu": (1, ["cpu"], None, "/"),
        "/sys/fs/cgroup/cpuacct": (1, ["cpuacct"], None, "/"),
        "/sys/fs/cgroup/cpuset": (1, ["cpuset"], None, "/"),
        "/sys/fs/cgroup/memory": (1, ["memory"], None, "/"),
        "/sys/fs/cgroup/blkio": (1, ["blkio"], None, "/"),
        "/sys/fs/cgroup/pids": (1, ["pids"], None, "/"),
        "/sys/fs/cgroup/systemd": (1, [], "systemd", "/"),
    }
    h = Hierarchies(mounts)
    assert h.mode == "v1"
    assert h.unified is None
    assert h.mount_for("cpu").path == "/sys/fs/cgroup/cpu"
    assert h.mount_for("cpuacct").path == "/sys/fs/cgroup/cpuacct"
    assert [m.path for m in h.walk_mounts()] == [
        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids", "/sys/fs/cgroup/blkio"]


def test_co_mounted_and_named_with_optional_fields_and_flag_options():
    mounts = parse_mountinfo(CO_MOUNTED)
    m = by_path(mounts)
    assert m["/sys/fs/cgroup/cpu,cpuacct"].controllers == frozenset(["cpu", "cpuacct"])
    assert m["/sys/fs/cgroup/net_cls,net_prio"].controllers == frozenset(["net_cls", "net_prio"])
    # xattr, release_agent=..., seclabel are flags, not controllers
    assert m["/sys/fs/cgroup/systemd"].controllers == frozenset()
    assert m["/sys/fs/cgroup/systemd"].name == "systemd"
    assert m["/sys/fs/cgroup/memory"].controllers == frozenset(["memory"])
    h = Hierarchies(mounts)
    assert h.mode == "v1"
    assert h.mount_for("cpu") is h.mount_for("cpuacct")
    # the co-mounted hierarchy is walked once
    walked = [x.path for x in h.walk_mounts()]
    assert walked.count("/sys/fs/cgroup/cpu,cpuacct") == 1
    assert "/sys/fs/cgroup/systemd" not in walked


def test_named_hierarchy_alone_is_mode_none():
    mounts = parse_mountinfo(CO_MOUNTED.splitlines()[0])
    assert Hierarchies(mounts).mode == "none"


def test_legacy_single_mount():
    mounts = parse_mountinfo(ROOT_FS + "\n" + LEGACY_SINGLE)
    assert len(mounts) == 1
    m = mounts[0]
    assert (m.version, m.path, m.root) == (1, "/cgroup", "/")
    assert m.controllers == frozenset(["cpuset", "cpu", "cpuacct", "blkio", "memory", "devices",
                                       "freezer", "net_cls", "perf_event", "pids"])
    h = Hierarchies(mounts)
    assert h.mode == "v1"
    for c in hierarchy.V1_CONTROLLERS:
        assert h.mount_for(c) is m
    assert h.walk_mounts() == [m]


def test_pure_v2():
    mounts = parse_mountinfo(ROOT_FS + "\n" + PURE_V2)
    assert [(m.version, m.path, m.root, m.controllers) for m in mounts] == [
        (2, "/sys/fs/cgroup", "/", frozenset())]
    h = Hierarchies(mounts, v2_controllers="cpuset cpu io memory hugetlb pids rdma misc".split())
    assert h.mode == "v2"
    assert h.unified is mounts[0]
    for c in ("cpu", "cpuacct", "memory", "pids", "blkio"):   # blkio is "io" on v2
        assert h.mount_for(c) is mounts[0]
    assert h.walk_mounts() == [mounts[0]]


def test_pure_v2_without_a_controller_does_not_serve_it():
    mounts = parse_mountinfo(PURE_V2)
    h = Hierarchies(mounts, v2_controllers=["cpu", "pids"])
    assert h.mount_for("memory") is None
    assert h.mount_for("cpuacct") is mounts[0]


def test_hybrid():
    mounts = parse_mountinfo(V1_SEPARATE + HYBRID_UNIFIED)
    h = Hierarchies(mounts, v2_controllers=[])
    assert h.mode == "hybrid"
    assert h.unified.path == "/sys/fs/cgroup/unified"
    assert h.mount_for("memory").version == 1
    assert h.mount_for("cpu").path == "/sys/fs/cgroup/cpu"
    # the cgroup2 mount is walked too (pressure files live there), once, last
    walked = [m.path for m in h.walk_mounts()]
    assert walked[-1] == "/sys/fs/cgroup/unified" and walked.count("/sys/fs/cgroup/unified") == 1


def test_hybrid_controller_moved_to_v2_is_served_by_v2():
    # systemd "unified" mode with memory on cgroup2 and the rest on v1
    v1_without_memory = "\n".join(l for l in V1_SEPARATE.splitlines() if "memory" not in l)
    mounts = parse_mountinfo(v1_without_memory + "\n" + HYBRID_UNIFIED)
    h = Hierarchies(mounts, v2_controllers=["memory"])
    assert h.mount_for("memory") is h.unified
    assert h.mount_for("cpu").version == 1


def test_bind_mounted_hierarchy_with_non_root_root():
    # inside a container: the host's /docker/<id> of each hierarchy bind-mounted as its root
    cid = "4f" * 32
    text = ("1301 1290 0:32 /docker/%s /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - "
            "cgroup cgroup rw,memory\n" % cid)
    (m,) = parse_mountinfo(text)
    assert m.root == "/docker/" + cid
    assert m.dir_for("/docker/%s" % cid) == "/sys/fs/cgroup/memory"
    assert m.dir_for("/docker/%s/sub" % cid) == "/sys/fs/cgroup/memory/sub"
    assert m.dir_for("/docker/other") is None
    assert m.dir_for("/docker/%sx" % cid) is None     # a sibling with a longer name


def test_hierarchy_mounted_twice_widest_root_wins():
    host = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
    bind = "90 27 0:32 /docker /var/lib/x/memory rw,relatime - cgroup cgroup rw,memory"
    for text in (bind + "\n" + host, host + "\n" + bind):
        h = Hierarchies(parse_mountinfo(text))
        assert h.mount_for("memory").path == "/sys/fs/cgroup/memory"


def test_octal_escaped_mount_point_and_root():
    # space \040, tab \011, newline \012 and backslash \134 are escaped in mountinfo
    text = ("41 31 0:40 /a\\040b /mnt/my\\040cgroups\\011x\\134y rw,relatime - cgroup cgroup rw,pids\n"
            "42 31 0:41 / /mnt/new\\012line rw,relatime - cgroup2 cgroup2 rw\n")
    a, b = parse_mountinfo(text)
    assert a.path == "/mnt/my cgroups\tx\\y"
    assert a.root == "/a b"
    assert b.path == "/mnt/new\nline"


def test_prefix_is_prepended():
    (m,) = parse_mountinfo(PURE_V2, prefix="/tmp/root")
    assert m.path == "/tmp/root/sys/fs/cgroup"
    assert m.dir_for("/system.slice") == "/tmp/root/sys/fs/cgroup/system.slice"
    assert m.dir_for("/") == "/tmp/root/sys/fs/cgroup"


def test_non_cgroup_and_malformed_lines_are_skipped():
    text = "\n".join([
        ROOT_FS, PROC, TMPFS,
        "",                                  # empty
        "garbage",                           # no separator
        "50 27 0:50 / /x rw - cgroup",       # truncated after the fstype
        "51 27 0:51 / /mnt/cg rw,relatime - cgroup cgroup rw,memory",
    ])
    mounts = parse_mountinfo(text)
    assert [m.path for m in mounts] == ["/mnt/cg"]


def test_unknown_mount_options_are_not_controllers():
    (m,) = parse_mountinfo("60 27 0:60 / /mnt/cg rw - cgroup cgroup rw,noprefix,clone_children,cpu,fancy")
    assert m.controllers == frozenset(["cpu"])


def test_parse_proc_cgroups():
    text = ("#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
            "cpuset\t3\t1\t1\ncpu\t1\t12\t1\nmemory\t0\t71\t1\nhugetlb\t0\t1\t0\nbroken line\n")
    assert parse_proc_cgroups(text) == {
        "cpuset": (3, True), "cpu": (1, True), "memory": (0, True), "hugetlb": (0, False)}


@pytest.mark.parametrize("name, mode", [
    ("hybrid-debian12", "hybrid"), ("v2-pure", "v2"),
    ("v1-legacy-single", "v1"), ("v1-systemd-driver", "v1")])
def test_load_fixture_trees(name, mode):
    root = fu.tree(name)
    h = hierarchy.load(root)
    assert h.mode == mode
    for c in hierarchy.V1_CONTROLLERS:
        m = h.mount_for(c)
        assert m is not None and m.path.startswith(root + "/")


def test_load_v2_reads_controllers_at_the_top():
    h = hierarchy.load(fu.tree("v2-pure"))
    assert h.v2_controllers == frozenset("cpuset cpu io memory hugetlb pids rdma misc".split())


def test_load_legacy_single_and_co_mounted():
    h = hierarchy.load(fu.tree("v1-legacy-single"))
    assert {m.path for m in h.walk_mounts()} == {fu.tree("v1-legacy-single") + "/cgroup"}
    h = hierarchy.load(fu.tree("v1-systemd-driver"))
    assert h.mount_for("cpu") is h.mount_for("cpuacct")
    assert h.mount_for("cpu").path.endswith("/sys/fs/cgroup/cpu,cpuacct")


def test_load_without_proc_cgroups(tmp_path):
    root = fu.copy_tree("v2-pure", tmp_path)
    (tmp_path / "v2-pure" / "proc" / "cgroups").unlink()
    assert hierarchy.load(root).mode == "v2"
