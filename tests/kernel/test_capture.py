"""tests/support/capture.py on the live kernel: a cgroup of the test's own copied into a fixture tree, and
the plugin's ``--root`` pass over the copy.  (The fixture trees themselves: tests/unit/test_fixture_trees.py.)"""

import os

import pytest

from tests.support import capture
from tests.support import fixtureutil as fu
from tests.support.fixtureutil import cli_json


@pytest.fixture
def live_test_cgroup():
    """/ccg-test-<random>/docker/<64 hex> in every hierarchy the plugin reads, removed after."""
    prefix = "/ccg-test-%s" % os.urandom(4).hex()
    cid = os.urandom(32).hex()
    with open("/proc/self/mountinfo") as f:
        mounts = capture.cgroup_mounts(f.read())
    bases = sorted({mp for fstype, opts, root, mp in mounts if root == "/" and (
        fstype == "cgroup2" or set(opts) & {"cpu", "cpuacct", "memory", "pids", "blkio"})})
    made = []
    try:
        for base in bases:
            for path in (prefix, prefix + "/docker", prefix + "/docker/" + cid):
                os.mkdir(base + path)
                made.append(base + path)
        yield prefix + "/docker/" + cid, cid
    finally:
        for path in reversed(made):
            os.rmdir(path)


def test_capture_round_trip(tmp_path, live_test_cgroup):
    cgroup, cid = live_test_cgroup
    dest = str(tmp_path / "captured")
    written = capture.capture(dest, [cgroup], pids=[os.getpid()])
    # only the cgroup lines and the root file system of mountinfo
    with open(os.path.join(dest, "proc/self/mountinfo")) as f:
        kept = f.read().splitlines()
    assert kept and all(" - cgroup" in l or l.split(" ")[4] == "/" for l in kept)
    assert os.path.isfile(os.path.join(dest, "proc/%d/cgroup" % os.getpid()))
    # every readable regular file of the cgroup's directories, and nothing else
    live_dirs = {os.path.dirname(p) for p in written if p.startswith("/sys/") and cid in p}
    assert len(live_dirs) >= 2
    for d in live_dirs:
        readable = set()
        for entry in os.scandir(d):
            try:
                with open(entry.path, "rb") as f:
                    f.read()
                readable.add(entry.name)
            except OSError:
                pass                                 # write-only files
        assert set(os.listdir(dest + d)) == readable
        if "pids.max" in readable:
            with open(d + "/pids.max", "rb") as live, open(dest + d + "/pids.max", "rb") as copy:
                assert copy.read() == live.read() == b"max\n"
    # and the plugin finds the container in the copy, as docker (cgroupfs, under a prefix)
    entries, _ = cli_json(dest)
    assert {e["plugin_instance"] for e in entries} == {"docker-" + cid[:12]}
    assert {e["meta"]["cgroup"] for e in entries} == {cgroup}
    v = fu.values(entries)["docker-" + cid[:12]]
    assert v[("count", "pids")] == 0
    assert v[("cpu", "total")] == 0
