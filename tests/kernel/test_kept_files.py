"""Cgroup files kept open between passes and re-read with pread (KeepFilesOpen), on the real kernel.

A kept descriptor must give the same figures as opening the file, must not keep a removed cgroup alive,
must notice a cgroup re-created under the same path, must be closed when its container goes, and must
respect its limit.  Synthetic containers under a prefix of this module's own.
"""

import os


from collectd_cgroups import fs
from tests.support.kernelutil import MiB, by_cgroup, make_collector, tree_fixtures, values

PREFIX, module_tree, tree = tree_fixtures("keep")
GROUPS = ("cpu", "memory", "blkio", "pids", "pressure")     # network has its own tests


def kept_targets():
    """{fd: path} of this process's descriptors at or above fs.FD_FLOOR (where kept files live)."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= fs.FD_FLOOR:
            try:
                out[fd] = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                pass
    return out


def under(paths, directories):
    return {p for p in paths if any(p.startswith(d + "/") for d in directories)}


def container_dirs(*containers):
    return [d for c in containers for d in c.dirs.values()]


def make(tree, name, pids_limit, children=0, memory_mib=4):
    c = tree.container(name)
    c.set_pids_limit(pids_limit)
    c.set_memory_limit(64 * MiB)
    c.spawn(memory_mib=memory_mib, children=children).wait_ready()
    return c


def test_kept_descriptors_give_the_same_figures_without_opening_anything(tree, monkeypatch):
    a = make(tree, "a", 40, children=1)
    b = make(tree, "b", 50, children=2)
    kept, logs = make_collector(tree.prefix, groups=GROUPS, keep_files=True)
    plain, _ = make_collector(tree.prefix, groups=GROUPS, keep_files=False)
    before = set(kept_targets())
    try:
        kept.collect()                        # opens and keeps
        found = kept.discover()
        read = {p for c in found for p in kept.files_read(c)
                if os.path.basename(p) not in fs.NEVER_KEEP}
        targets = set(kept_targets().items()) - {(fd, p) for fd, p in kept_targets().items() if fd in before}
        held = under({p for _, p in targets}, container_dirs(a, b))
        # files_read says what a pass reads now: not the limit files, read in the first pass (their
        # descriptors kept with the others) and next in 30 s (plan.RARE_AGE).
        rare = set().union(*(r.rare_files for r in kept.readers))
        assert read and read <= held and {os.path.basename(p) for p in held - read} == {"pids.max"} <= rare, \
            sorted(read ^ held)
        assert len(kept.kept) >= len(held)

        # The next pass opens nothing below the containers: every file is re-read through its descriptor.
        opened = []
        real_open = os.open

        def recording_open(path, *args, **kw):
            opened.append(path)
            return real_open(path, *args, **kw)
        monkeypatch.setattr(os, "open", recording_open)
        got = by_cgroup(kept.collect())
        monkeypatch.setattr(os, "open", real_open)
        assert not under(opened, container_dirs(a, b)), opened
        want = by_cgroup(plain.collect())
        assert sorted(got) == sorted(want) == sorted([a.path, b.path])
        for path in got:
            g, w = values(got[path]), values(want[path])
            assert sorted(g) == sorted(w)
            # Levels that do not move between the two reads are equal; counters only grow.
            for key in (("count", "pids"), ("count", "pids_limit"), ("memory", "limit")):
                assert g[key] == w[key], key
            assert g[("cpu", "total")] <= w[("cpu", "total")]
        assert values(got[a.path])[("count", "pids")] == 2 and values(got[b.path])[("count", "pids")] == 3
        assert values(got[b.path])[("count", "pids_limit")] == 50
        assert not logs.warn, logs.warn
    finally:
        kept.close()
    assert set(kept_targets()) == before


def test_a_removed_container_is_not_pinned_and_its_descriptors_close(tree):
    a = make(tree, "a", 40)
    b = make(tree, "b", 40)
    col, logs = make_collector(tree.prefix, groups=GROUPS, keep_files=True)
    try:
        col.collect()
        col.collect()
        a_dirs = container_dirs(a)
        assert under(kept_targets().values(), a_dirs)
        a.stop()
        a.remove()                            # rmdir succeeds while the plugin holds its files open
        assert not any(os.path.exists(d) for d in a_dirs)
        got = by_cgroup(col.collect())
        assert sorted(got) == [b.path]
        assert not under(kept_targets().values(), a_dirs), "descriptors of a removed container still open"
        assert under(kept_targets().values(), container_dirs(b))
        assert not logs.warn, logs.warn
    finally:
        col.close()


def test_a_container_re_created_under_the_same_path_is_read_afresh(tree):
    c = make(tree, "c", 10)
    col, logs = make_collector(tree.prefix, groups=GROUPS, keep_files=True)
    try:
        first = by_cgroup(col.collect())
        assert values(first[c.path])[("count", "pids_limit")] == 10
        stale = col.discover()                # the records of the old cgroup
        c.stop()
        c.remove()
        again = make(tree, "c", 20, children=2)
        # A pass over the old records: the kept descriptors fail (the cgroup they belonged to is gone)
        # and the files are read again by path, from the new cgroup.  (Its limit files, read every 30 s
        # and held in the old cgroup's record, are read afresh after the next discovery, which finds the
        # new inode and so starts a new record.)
        got = by_cgroup(col.collect(stale))
        assert values(got[again.path])[("count", "pids")] == 3
        got = by_cgroup(col.collect())
        assert values(got[again.path])[("count", "pids_limit")] == 20
        assert values(got[again.path])[("count", "pids")] == 3
        assert not logs.warn, logs.warn
    finally:
        col.close()


def test_beyond_the_limit_files_are_read_the_plain_way(tree):
    cs = [make(tree, "c%d" % i, 30 + i) for i in range(3)]
    col, logs = make_collector(tree.prefix, groups=GROUPS, keep_files=True)
    plain, _ = make_collector(tree.prefix, groups=GROUPS, keep_files=False)
    col.kept.own_limit = 5
    try:
        for _ in range(3):
            got = by_cgroup(col.collect())
        assert len(col.kept) == 5
        assert len(under(kept_targets().values(), container_dirs(*cs))) <= 5
        want = by_cgroup(plain.collect())
        for c in cs:
            assert sorted(values(got[c.path])) == sorted(values(want[c.path]))
            assert values(got[c.path])[("count", "pids_limit")] == values(want[c.path])[("count", "pids_limit")]
        assert not logs.warn, logs.warn
    finally:
        col.close()


def test_auto_keeps_from_enough_containers_at_a_short_enough_interval():
    col, _ = make_collector("none-such", groups=GROUPS)     # keep_files="auto"
    assert col.options.keep_files == "auto"
    frm, rate = fs.KEEP_FILES_FROM, fs.KEEP_FILES_RATE
    steps = [
        ((frm - 1, None), False),           # too few
        ((frm, None), True),                # interval unknown: the count decides
        ((frm, 2.0), False),                # 32 a second is below the rate: stop
        ((frm, 1.0), True),                 # Interval 1: from 64 containers
        ((47, 1.0), False),                 # below three quarters of 64
        ((500, 10.0), True),                # collectd's default interval, a big host
        ((400, 10.0), True),                # within the three quarters: go on
        ((370, 10.0), False),
        ((1000, float("inf")), False),      # the plugin's first pass: the interval not known yet
        ((3000, 60.0), True),
    ]
    try:
        for (n, interval), keeping in steps:
            assert (col.keep.for_pass(n, interval) is not None) == keeping, (n, interval)
        assert rate == 50.0
    finally:
        col.close()


def test_never_kept_files_are_opened_each_time():
    kept = fs.KeptFiles()
    try:
        assert kept.read("/proc/self", "cgroup.procs") is None      # the name decides, not the place
        assert len(kept) == 0
    finally:
        kept.close()
