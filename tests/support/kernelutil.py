"""Shared helpers for the real-kernel integration tests (tests/kernel/).

These tests run the collection pass in-process against the live cgroup
hierarchies, with synthetic containers (``ccg_lab.synthetic``) under a
prefix each test module owns.  Everything here reads only; creating and
removing cgroups goes through ``CgroupTree`` or :func:`make_dirs` /
:func:`remove_dirs`, which refuse paths outside the owned prefix.
"""

import itertools
import os
import re
import secrets
import subprocess

import pytest

from collectd_cgroups import identifiers
from collectd_cgroups.collector import Collector, Options
from ccg_lab.synthetic import DEFAULT_CONTROLLERS, UNIFIED, CgroupTree, check_path

#: What a collectd name part may contain (the public contract: no '/', no
#: whitespace or control characters, at most 127 characters; identifiers.sanitize
#: keeps [A-Za-z0-9_.:+@=,-] and marks a shortened name with '~<8 hex>').
VALID_NAME = re.compile(r"\A[A-Za-z0-9_.:+@=,~-]{1,127}\Z")

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20


def new_prefix(tag):
    """A fresh top-level cgroup prefix, unique per test module run."""
    return "ccg-test-%s-%s" % (tag, secrets.token_hex(4))


def tree_fixtures(tag):
    """(prefix, module_tree, tree) for a module of real-kernel tests: a top-level prefix of its own, at
    whose end nothing may be left (``module_tree``, autouse), and a fresh sub-prefix ``<prefix>/tN`` per
    test (``tree``).  Assign both fixtures at module level under these names."""
    prefix = new_prefix(tag)
    serial = itertools.count()

    @pytest.fixture(scope="module", autouse=True)
    def module_tree():
        top = CgroupTree(prefix)
        yield top
        teardown_tree(top)

    @pytest.fixture
    def tree():
        t = CgroupTree("%s/t%d" % (prefix, next(serial)))
        yield t
        teardown_tree(t)

    return prefix, module_tree, tree


def match_children(prefix):
    """The Match rule of the brief: every direct child of ``/<prefix>`` is a container."""
    return [("^/%s/(?P<name>[^/]+)$" % re.escape(prefix), "cgroup")]


class Logs(object):
    """Collects the collector's warn/info messages."""

    def __init__(self):
        self.warn = []
        self.info = []

    def about(self, text):
        return [m for m in self.warn + self.info if text in m]


def make_collector(prefix=None, match=None, **options):
    """(Collector, Logs) for the live system, matching the children of ``/<prefix>``.

    The built-in runtime layouts are off unless ``runtimes`` is given: other tests may run Docker, LXC or
    podman containers on this machine at the same time, and only our own cgroups are to be reported."""
    logs = Logs()
    if match is None:
        match = match_children(prefix)
    options.setdefault("runtimes", ())
    collector = Collector(Options(match=match, **options), warn=logs.warn.append, info=logs.info.append)
    return collector, logs


def by_cgroup(results):
    """{cgroup path: ContainerSamples}."""
    out = {}
    for item in results:
        assert item.container.cgroup not in out, "two records for %s" % item.container.cgroup
        out[item.container.cgroup] = item
    return out


def values(item):
    """{(type, type_instance): value} of one ContainerSamples; a tuple for two-valued types
    (disk_octets read/write, if_octets rx/tx)."""
    out = {}
    for type_, type_instance, vals in item.samples:
        out[(type_, type_instance)] = vals[0] if len(vals) == 1 else tuple(vals)
    return out


# -- independent sources ---------------------------------------------------------------------------------


def proc_stat(pid):
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses), as
    bytes: ``[0]`` is field 3 of proc(5) (state), ``[11]`` and ``[12]`` are fields 14 and 15 (utime, stime).
    FileNotFoundError when the process is gone.  The one host-side reader of that file for the tests
    (tests/v2guest keeps its own: it runs in the guest without tests/)."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()


def proc_cpu_ticks(pid):
    """utime + stime of one process from /proc/<pid>/stat, in clock ticks."""
    fields = proc_stat(pid)
    return int(fields[11]) + int(fields[12])


def proc_cpu_seconds(pid):
    """utime + stime of one process from /proc/<pid>/stat, in seconds."""
    return proc_cpu_ticks(pid) / float(CLK_TCK)


def proc_alive(pid):
    """True while ``pid`` exists and is not a zombie (state field of /proc/<pid>/stat)."""
    try:
        return proc_stat(pid)[0] != b"Z"
    except FileNotFoundError:
        return False


def proc_status(pid, key):
    """A ``kB`` figure (or count) from /proc/<pid>/status, as an int (bytes for kB fields)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                parts = line.split()
                return int(parts[1]) * (1024 if parts[-1] == "kB" else 1)
    raise KeyError(key)


def cgroup_procs(directory):
    with open(directory + "/cgroup.procs") as f:
        return sorted(int(x) for x in f.read().split())


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def mountinfo_cgroups(path="/proc/self/mountinfo"):
    """Our own reading of the cgroup mounts: ({v1 controller: mountpoint}, cgroup2 mountpoint or None).

    Only mounts of a hierarchy's root count (bind mounts of sub-cgroups are left out); mount points are
    unescaped (mountinfo writes space, tab, newline and backslash as octal).
    """
    v1, v2 = {}, None
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
    with open(path) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 5 or len(rf) < 3 or lf[3] != "/":
                continue
            mountpoint = unescape(lf[4])
            if rf[0] == "cgroup2" and v2 is None:
                v2 = mountpoint
            elif rf[0] == "cgroup":
                for opt in rf[2].split(","):
                    if opt in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                               "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"):
                        v1.setdefault(opt, mountpoint)
    return v1, v2


def mounts_under(top):
    """Mount points at or below ``top`` (deepest first), from this process's mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == top or mp.startswith(top + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def umount_under(top):
    """Lazily unmount every mount point at or below ``top`` (what a runtime left)."""
    for mp in mounts_under(top):
        subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


# -- cgroups the synthetic module does not make (hostile names, nesting) ---------------------------------


def tree_mounts(tree):
    """The distinct mount points a CgroupTree puts its containers in (v1 ones, then cgroup2)."""
    out = []
    for c in tuple(DEFAULT_CONTROLLERS) + (UNIFIED,):
        mp = tree.hierarchies.get(c)
        if mp and mp not in out:
            out.append(mp)
    return out


def _owned(tree, path):
    mounts = tree_mounts(tree)
    ok = any(path.startswith("%s/%s/" % (mp, tree.prefix)) for mp in mounts)
    assert ok, "refusing %r: not below the test prefix %s" % (path, tree.prefix)
    return check_path(path)


def make_dirs(tree, relpath):
    """mkdir ``<mount>/<prefix>/<relpath>`` (and the levels above it) in every mount of the tree.

    ``relpath`` may contain any byte but NUL; '/' separates levels.  Returns the leaf directories."""
    leaves = []
    for mp in tree_mounts(tree):
        d = mp
        for part in tree.prefix.split("/"):
            d = d + "/" + part
            if not os.path.isdir(d):
                os.mkdir(check_path(d))
        for part in relpath.split("/"):
            d = d + "/" + part
            if not os.path.isdir(d):
                os.mkdir(_owned(tree, d))
        leaves.append(d)
    return leaves


def remove_dirs(tree, relpath):
    """rmdir what :func:`make_dirs` made, deepest level first (directories only, empty cgroups only)."""
    parts = relpath.split("/")
    for mp in tree_mounts(tree):
        for n in range(len(parts), 0, -1):
            d = "%s/%s/%s" % (mp, tree.prefix, "/".join(parts[:n]))
            try:
                os.rmdir(_owned(tree, d))
            except FileNotFoundError:
                pass


def teardown_tree(tree):
    """Stop and remove everything of the tree; fail the test if something is left behind."""
    left = tree.cleanup()
    assert not left, "cgroups left behind: %s" % left
    assert not tree.existing_dirs(), tree.existing_dirs()


def cleanup_nested(inner, containers):
    """Clean up a CgroupTree whose prefix lies inside another tree's container.

    Its cleanup also tries the prefix levels above (they belong to the outer tree, which removes them in
    its own teardown): only the inner containers' directories must be gone here."""
    inner.cleanup()
    left = [d for c in containers for d in set(c.dirs.values()) if os.path.isdir(d)]
    assert not left, "cgroups left behind: %s" % left


# -- consistency of a pass's results ----------------------------------------------------------------------


def check_results(collector, results):
    """Assert that one pass's results are internally consistent; returns the list of instances."""
    hier = collector.hierarchies()
    mounts = {m.path: m for m in hier.walk_mounts()}
    instances = []
    for item in results:
        c = item.container
        assert VALID_NAME.match(item.instance), repr(item.instance)
        base = identifiers.plugin_instance(c, collector.options.instance_format)
        assert item.instance == base or item.instance.startswith(base[:100]), (item.instance, base)
        instances.append(item.instance)
        assert c.dirs, c
        for mount_path, directory in c.dirs.items():
            assert mount_path in mounts, (mount_path, sorted(mounts))
            assert directory == mount_path + c.cgroup, (directory, mount_path, c.cgroup)
        assert item.samples, c
        seen = set()
        for type_, type_instance, vals in item.samples:
            assert type_ in identifiers.TYPES, type_
            assert VALID_NAME.match(type_instance), repr(type_instance)
            assert (type_, type_instance) not in seen, "duplicate %s-%s in %s" % (type_, type_instance, c)
            seen.add((type_, type_instance))
            assert isinstance(vals, tuple) and len(vals) == len(identifiers.data_sources(type_)), vals
            for v in vals:
                assert isinstance(v, int) and not isinstance(v, bool) and v >= 0, (type_, type_instance, vals)
        v = values(item)
        if ("memory", "working_set") in v:
            assert v[("memory", "working_set")] <= v[("memory", "usage")], v
        if ("count", "pids_limit") in v:
            assert v[("count", "pids_limit")] > 0
    assert len(set(instances)) == len(instances), "identifier used twice in one pass: %s" % sorted(instances)
    return instances


__all__ = [
    "CgroupTree", "VALID_NAME", "CLK_TCK", "MiB", "new_prefix", "match_children", "Logs", "make_collector",
    "by_cgroup", "values", "proc_stat", "proc_cpu_ticks", "proc_cpu_seconds", "proc_alive", "proc_status",
    "cgroup_procs", "read_int", "mountinfo_cgroups", "fd_count", "rss_bytes", "tree_mounts", "make_dirs",
    "remove_dirs", "teardown_tree", "cleanup_nested", "check_results",
]
