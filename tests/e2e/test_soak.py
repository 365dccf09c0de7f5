"""The churn soak (``make soak``, tests/soak/run.py), run for a minute and a half on the real machine.

Too short for its slopes to mean anything: they are printed, not judged (run.py judges growth only in runs
of 3 minutes or more).  What is asserted: the run completes and exits 0 (nothing left behind, no error in
either collectd's log, every container's cgroups, sentinels and namespace gone after its stop), it printed
both collectd's series and their slopes, and afterwards nothing of it exists: no ``ccgsoak-<hex>`` cgroup
in any hierarchy, network namespace, nsfs mount, scratch or work directory, and none of its processes.
"""

import os
import re
import subprocess
import sys

from ccg_lab.synthetic import read_hierarchies
from tests.support import CHECKOUT, TESTS

RUN = os.path.join(TESTS, "soak", "run.py")
LAB_LINE = re.compile(r"^lab (plain|exit): cgroups under /(ccgsoak-[0-9a-f]+), host namespace (\S+)$", re.M)
WORK_LINE = re.compile(r"^soaking collectd_cgroups from \S+; work directory (\S+)$", re.M)
PIDS_LINE = re.compile(r"^collectd plain pid (\d+), exit pid (\d+):", re.M)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def test_soak_short_run_leaves_nothing_behind():
    # CCG_SOAK_SRC: soak another checkout's plugin (run.py --src), e.g. a patched copy; default: this one.
    src = ["--src", os.environ["CCG_SOAK_SRC"]] if os.environ.get("CCG_SOAK_SRC") else []
    argv = [sys.executable, "-u", RUN, "--minutes", "1.5", "--containers", "6", "--sample", "5"] + src
    res = subprocess.run(argv, cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=420)
    out = res.stdout
    labs = LAB_LINE.findall(out)
    assert [role for role, _, _ in labs] == ["plain", "exit"], out[-4000:]
    pids = PIDS_LINE.search(out)
    workdir = WORK_LINE.search(out)
    assert workdir and workdir.group(1).startswith("/tmp/ccgsoak-work-"), out[-4000:]
    assert pids, out[-4000:]
    assert res.returncode == 0, "soak exited %s:\n%s" % (res.returncode, out[-6000:])

    # Both series printed, as a table, then their slopes.
    for role in ("plain", "exit"):
        assert re.search(r"^== %s: collectd with(out)? CollectOnExit" % role, out, re.M), out[-4000:]
    assert len(re.findall(r"^\s*min\s+started\s+stopped\s+rss_KiB\s+fds", out, re.M)) == 2, out[-4000:]
    assert len(re.findall(r"^\s+slopes per minute over \d+ samples after", out, re.M)) == 2, out[-4000:]
    for key in ("rss", "fds", "nsfs", "threads", "thr_out", "netns", "stale_cg", "stale_sent", "log_rate"):
        assert len(re.findall(r"^\s+%s\s+[-+]\d+\.\d+" % key, out, re.M)) == 2, (key, out[-4000:])
    assert "cleanup: every process, cgroup, namespace and file of the soak removed" in out
    assert "soak: PASS" in out
    # Containers did churn in both labs.
    ends = re.findall(r"^\s+end: (\d+) containers started and stopped", out, re.M)
    assert len(ends) == 2 and all(int(n) > 6 for n in ends), out[-4000:]

    # Nothing of it is left.
    hierarchies = read_hierarchies()
    for _, prefix, host in labs:
        for mount in set(hierarchies.values()):
            assert not os.path.exists(os.path.join(mount, prefix)), (mount, prefix)
        assert not os.path.exists("/run/netns/" + host)
        for base in ("/var/tmp", "/tmp"):
            assert not os.path.exists(os.path.join(base, prefix))
        with open("/proc/self/mountinfo") as f:
            assert prefix not in f.read()
    for pid in pids.groups():
        assert not _alive(int(pid)), "collectd %s still running" % pid
    assert not os.path.exists(workdir.group(1)), "work directory %s left behind" % workdir.group(1)
    # No process of ours in any ccgsoak cgroup of this run, no box process: the cgroups are gone, so no
    # process can be in them; the lab's box processes and sentinels died with their parents.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % entry) as f:
                cg = f.read()
        except OSError:
            continue
        for _, prefix, _ in labs:
            assert "/%s/" % prefix not in cg, "process %s still in %s" % (entry, prefix)
