"""containers.Discovery over directory trees made at test time (no root, no kernel): the same id under
two parents, the depth limit, the walk's shortcuts; first_pid reading only the head of cgroup.procs."""

import os

import pytest

from collectd_cgroups import containers, fs
from collectd_cgroups.containers import MAX_DEPTH, Discovery, Matcher
from collectd_cgroups.hierarchy import Mount
from collectd_cgroups.identifiers import Naming

H = "0123456789abcdef" * 4
H2 = "fedcba9876543210" * 4


class Names(object):
    """Stands for runtimes.resolver.MetadataResolver: nothing known about any container."""

    def __init__(self):
        self.kept = None
        self.logs = []

    def warn_once(self, key, message):
        self.logs.append((key, message))

    def lookup(self, runtime, cid):
        return containers.NOTHING

    def forget_except(self, keys):
        self.kept = set(keys)


class Hierarchies(object):
    def __init__(self, mounts):
        self.mounts = mounts

    def walk_mounts(self):
        return self.mounts


def make_mounts(tmp_path, controllers=("cpu", "memory"), version=1):
    mounts = []
    for c in controllers:
        path = tmp_path / c
        path.mkdir()
        mounts.append(Mount(version, str(path), "/", [c]))
    return mounts


def mkdirs(mounts, *cgroups):
    for cgroup in cgroups:
        for m in mounts:
            os.makedirs(m.path + cgroup, exist_ok=True)


def rmdirs(mounts, *cgroups):
    for cgroup in cgroups:
        for m in mounts:
            os.rmdir(m.path + cgroup)


def discovery(**kw):
    names = Names()
    return Discovery(Matcher(), names, **kw), names


def by_cgroup(found):
    return dict((c.cgroup, c) for c in found)


# -- the same id under two parents -----------------------------------------------------------

def test_the_same_id_under_two_parents_is_two_containers_with_their_own_names(tmp_path):
    mounts = make_mounts(tmp_path)
    mkdirs(mounts, "/docker/" + H, "/ci/docker/" + H, "/docker/" + H2)
    d, names = discovery()
    found = by_cgroup(d.discover(Hierarchies(mounts)))
    assert sorted(found) == sorted(["/docker/" + H, "/ci/docker/" + H, "/docker/" + H2])
    one, two = found["/docker/" + H], found["/ci/docker/" + H]
    # each is one container in both hierarchies
    assert sorted(one.dirs.values()) == sorted(m.path + "/docker/" + H for m in mounts)
    assert sorted(two.dirs.values()) == sorted(m.path + "/ci/docker/" + H for m in mounts)
    keys = set(c.key for c in found.values())
    assert len(keys) == 3 and ("docker", H2) in keys
    assert set([one.key, two.key]) in ({("docker", H), ("docker", H, "/ci/docker/" + H)},
                                       {("docker", H), ("docker", H, "/docker/" + H)})
    assert names.kept == {("docker", H), ("docker", H2)}        # the resolver's cache: by (runtime, id)
    naming = Naming()
    naming.begin_pass(list(found.values()))
    instances = [naming.name(c) for c in found.values()]
    assert len(set(instances)) == 3


def test_keys_of_the_same_id_do_not_depend_on_the_walk_and_last_while_the_containers_live(tmp_path):
    """Mounts walked in either order (so either container found first): the same keys; when the one
    keyed (runtime, id) goes, the other keeps its key; a newcomer then gets (runtime, id)."""
    mounts = make_mounts(tmp_path, ("cpu", "memory"))
    cpu, memory = mounts
    os.makedirs(cpu.path + "/docker/" + H)           # one container in cpu only ...
    os.makedirs(memory.path + "/ci/docker/" + H)     # ... the other in memory only
    results = []
    for order in (mounts, mounts[::-1]):
        d, _ = discovery()
        results.append(dict((c.cgroup, c.key) for c in d.discover(Hierarchies(order))))
    assert results[0] == results[1]
    d, _ = discovery()
    first = dict((c.cgroup, c.key) for c in d.discover(Hierarchies(mounts)))
    primary = [p for p, k in first.items() if len(k) == 2][0]
    other = [p for p in first if p != primary][0]
    for m in mounts:
        if os.path.isdir(m.path + primary):
            os.rmdir(m.path + primary)
    for order in (mounts, mounts[::-1]):
        assert dict((c.cgroup, c.key) for c in d.discover(Hierarchies(order))) == {other: first[other]}
    # a third one with the same id arrives: it gets (runtime, id), the other still keeps its key
    os.makedirs(cpu.path + "/third/docker/" + H)
    assert dict((c.cgroup, c.key) for c in d.discover(Hierarchies(mounts))) == {
        other: first[other], "/third/docker/" + H: ("docker", H)}


def test_the_one_keyed_by_runtime_and_id_keeps_its_key_when_another_arrives(tmp_path):
    mounts = make_mounts(tmp_path, ("cpu",))
    mkdirs(mounts, "/zz/docker/" + H)
    d, _ = discovery()
    assert [c.key for c in d.discover(Hierarchies(mounts))] == [("docker", H)]
    mkdirs(mounts, "/aa/docker/" + H)        # found first by a sorted walk, older by nothing: a newcomer
    got = dict((c.cgroup, c.key) for c in d.discover(Hierarchies(mounts)))
    assert got == {"/zz/docker/" + H: ("docker", H), "/aa/docker/" + H: ("docker", H, "/aa/docker/" + H)}


def test_copy_keeps_the_key():
    c = containers.Container("docker", H, "web", "/ci/docker/" + H, 5, key=("docker", H, "/ci/docker/" + H))
    c.dirs["/m"] = "/m/ci/docker/" + H
    other = c.copy({"/m": "/m/x"})
    assert other.key == c.key and other.dirs == {"/m": "/m/x"} and c.dirs == {"/m": "/m/ci/docker/" + H}
    assert containers.Container("docker", H, "web", "/docker/" + H).key == ("docker", H)


# -- the depth limit ------------------------------------------------------------------------

def nested(levels):
    return "".join("/l%02d" % i for i in range(levels))


def test_a_tree_deeper_than_the_limit_is_logged_once(tmp_path):
    mounts = make_mounts(tmp_path, ("cpu", "memory"))
    mkdirs(mounts, nested(MAX_DEPTH - 1) + "/docker/" + H2)      # H2 at level MAX_DEPTH + 1: found
    d, names = discovery()
    assert [c.id for c in d.discover(Hierarchies(mounts))] == [H2]
    assert names.logs == []                                         # nothing below the limit: nothing said
    mkdirs(mounts, nested(MAX_DEPTH + 3) + "/docker/" + H, "/other" + nested(MAX_DEPTH + 1))
    for _ in range(3):
        assert [c.id for c in d.discover(Hierarchies(mounts))] == [H2]
    # once per hierarchy and top directory
    assert sorted(k for k, _ in names.logs) == sorted(
        [("depth", m.path, top) for m in mounts for top in ("/l00", "/other")])
    assert all("more than %d levels deep" % (MAX_DEPTH + 1) in msg for _, msg in names.logs)


def test_the_depth_log_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(containers, "MAX_DEPTH", 1)
    monkeypatch.setattr(containers, "MAX_DEEP_LOGGED", 3)
    mounts = make_mounts(tmp_path, ("cpu",))
    mkdirs(mounts, *["/t%d/a/b/c" % i for i in range(10)])
    d, names = discovery()
    d.discover(Hierarchies(mounts))
    d.discover(Hierarchies(mounts))
    assert len(names.logs) == 3


# -- the walk's shortcuts ---------------------------------------------------------------------

def test_plain_directories_with_and_without_subdirectories(tmp_path):
    """Leaves (link count 2) are not listed; a container below plain directories at any depth within the
    limit is found, also when it appears below a directory that was a leaf in the last pass."""
    mounts = make_mounts(tmp_path, ("cpu",))
    mkdirs(mounts, *["/system.slice/unit-%d.service" % i for i in range(50)])
    mkdirs(mounts, "/a/b/c/docker/" + H)
    d, _ = discovery()
    assert [c.cgroup for c in d.discover(Hierarchies(mounts))] == ["/a/b/c/docker/" + H]
    mkdirs(mounts, "/system.slice/unit-7.service/docker/" + H2)
    assert sorted(c.cgroup for c in d.discover(Hierarchies(mounts))) == sorted(
        ["/a/b/c/docker/" + H, "/system.slice/unit-7.service/docker/" + H2])
    rmdirs(mounts, "/system.slice/unit-7.service/docker/" + H2)
    assert [c.cgroup for c in d.discover(Hierarchies(mounts))] == ["/a/b/c/docker/" + H]


@pytest.mark.parametrize("count, found", [(None, True), (23, True), (21, False)])
def test_v2_leaves_by_nr_descendants(tmp_path, count, found):
    """On cgroup v2 a directory whose cgroup.stat counts as many descendants as it has children has only
    leaves: they are not looked at (the kernel's count is trusted, so the stale 21 here hides H); the true
    count (23), or no cgroup.stat, and they are."""
    mounts = make_mounts(tmp_path, ("unified",), version=2)
    top = mounts[0].path + "/system.slice"
    mkdirs(mounts, *["/system.slice/unit-%02d.service" % i for i in range(20)])
    mkdirs(mounts, "/system.slice/unit-03.service/docker/" + H, "/system.slice/docker-%s.scope" % H2)
    if count is not None:
        with open(top + "/cgroup.stat", "w") as f:
            f.write("nr_descendants %d\nnr_dying_descendants 0\n" % count)
    d, _ = discovery()
    got = [c.id for c in d.discover(Hierarchies(mounts))]
    assert H2 in got                            # a container among the children is always found
    assert (H in got) == found


# -- first_pid reads the head of cgroup.procs ---------------------------------------------------

def test_first_pid_reads_only_the_head_of_a_huge_cgroup_procs(tmp_path, monkeypatch):
    d = tmp_path / "huge"
    d.mkdir()
    (d / "cgroup.procs").write_bytes(b"".join(b"%d\n" % pid for pid in range(4194304, 4194304 - 200000, -1)))
    reads = []
    real = os.read

    def read(fd, n):
        data = real(fd, n)
        reads.append((n, len(data)))
        return data
    monkeypatch.setattr(containers.os, "read", read)
    assert containers.first_pid({"/m": str(d)}) == 4194304
    assert reads == [(containers.HEAD_SIZE, containers.HEAD_SIZE)]


def test_first_pid_empty_nested_absent_and_gone(tmp_path):
    top = tmp_path / "c"
    (top / "payload" / "inner").mkdir(parents=True)
    (top / "cgroup.procs").write_bytes(b"")
    (top / "payload" / "cgroup.procs").write_bytes(b"")
    (top / "payload" / "inner" / "cgroup.procs").write_bytes(b"321\n322\n")
    assert containers.first_pid([str(top)]) == 321
    (tmp_path / "empty").mkdir()
    assert containers.first_pid([str(tmp_path / "empty")]) is None        # no cgroup.procs: nothing
    with pytest.raises(fs.Gone):
        containers.first_pid([str(tmp_path / "gone")])
    assert containers.read_head(str(tmp_path / "empty"), "cgroup.procs") is None
    with pytest.raises(fs.Gone):
        containers.read_head(str(tmp_path / "gone"), "cgroup.procs")


# -- through the CLI, on a captured tree ------------------------------------------------------------

def test_a_captured_container_copied_under_another_parent_is_reported_twice(tmp_path):
    """hybrid-debian12's Docker container, copied in every hierarchy to /ci/docker/<the same id>: two
    containers, each with its own figures, under two plugin_instances."""
    import glob
    import shutil
    from tests.support import fixtureutil as fu
    root = fu.copy_tree("hybrid-debian12", tmp_path)
    for docker in glob.glob(os.path.join(root, "sys/fs/cgroup/*/docker")):
        (cid,) = [n for n in os.listdir(docker) if len(n) == 64]
        os.makedirs(os.path.join(os.path.dirname(docker), "ci"))
        shutil.copytree(docker, os.path.join(os.path.dirname(docker), "ci", "docker"), symlinks=True)
    entries, err = fu.cli_json(root)
    by_instance = {}
    for e in entries:
        if e["plugin_instance"].startswith("docker-"):
            by_instance.setdefault(e["plugin_instance"], set()).add((e["type"], e["type_instance"]))
    assert sorted(by_instance) == ["docker-web1", "docker-web1-" + cid[:12]]
    assert by_instance["docker-web1"] == by_instance["docker-web1-" + cid[:12]]
    assert err.count("identifier docker-web1 already taken") == 1
